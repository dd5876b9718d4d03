/**
 * Model files sent with a load request: Triton's model-repository extension
 * lets a load carry `file:<path>` parameters (HTTP: base64 strings in
 * `parameters`; gRPC: `bytes_param`; a model: `loadModel(name, { config,
 * files })`, Triton's `pb_utils.load_model(model_name, config, files)`).
 * The files make the model's directory (`file:1/model.ts` is version 1's
 * model file) and the model loads from there instead of the repository;
 * `config` is then required.
 *
 * Here the directory is a private temporary one (`mkdtemp`, mode 0700,
 * files 0600, created with O_EXCL so nothing is followed), written only
 * after every path was checked: a path must be relative, hold no NUL or
 * backslash, stay inside the directory after `..` is resolved, and not
 * name a file where another file needs a directory. Triton 2.51 checks the
 * escape after it joined the path (its prefix check lets a sibling
 * directory whose name starts with the temporary one's through) and puts an
 * absolute path under the directory; both are refused here. The registry
 * removes the directory when the model is unloaded or loaded again, or when
 * that load fails; directories still there when the process exits are
 * removed then.
 *
 * @module
 */
import { rmSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix, win32 } from "node:path";

import { ServingError } from "./errors.js";
import type { ModelErrorCode } from "./model-error.js";

/** The prefix of a load parameter that carries a model file. */
export const FILE_PARAMETER_PREFIX = "file:";

/** A load's model files: `file:<relative path>` → content. */
export type ModelFiles = Readonly<Record<string, Uint8Array>>;

/**
 * A load refused for its files: Triton 2.51's client-side words (INTERNAL,
 * "failed to load '…', failed to poll from model repository"), then the
 * reason Triton only writes to its log.
 */
export function filesRefusal(model: string, reason: string, tritonCode: ModelErrorCode = "INTERNAL"): ServingError {
  return new ServingError("ERR_MODEL_FILES", `failed to load '${model}', failed to poll from model repository: ${reason}`, { tritonCode });
}

/**
 * Checks the name of a model loaded from files (it names no directory of
 * the repository, so the repository's lookup does not check it). Triton
 * 2.51 takes any name; later Triton refuses these in these words.
 *
 * @throws {ServingError} `ERR_MODEL_FILES` (INVALID_ARG).
 */
export function checkFilesModelName(name: string): void {
  const trimmed = name.trim();
  if (trimmed === "") {
    throw new ServingError("ERR_MODEL_FILES", "Model name cannot be empty. Please enter a valid name to deploy.", { tritonCode: "INVALID_ARG" });
  }
  if (trimmed === "." || trimmed === ".." || name.includes("/") || name.includes("\\") || name.includes("\0")) {
    throw new ServingError("ERR_MODEL_FILES", `invalid model name '${name}', model name must not contain path traversal characters`, { tritonCode: "INVALID_ARG" });
  }
}

/**
 * The path a `file:` key names, relative to the model directory and
 * normalised (`1/./model.ts` → `1/model.ts`, `1/../model.ts` → `model.ts`).
 *
 * @throws {ServingError} `ERR_MODEL_FILES` for a key without the prefix, an
 * empty, absolute, NUL- or backslash-holding path, one that ends with `/`,
 * one that leaves the directory or names the directory itself.
 */
export function modelFilePath(model: string, key: string): string {
  if (!key.startsWith(FILE_PARAMETER_PREFIX)) throw filesRefusal(model, `Unrecognized load parameter '${key}' with type 'BYTES'`);
  const rel = key.slice(FILE_PARAMETER_PREFIX.length);
  const bad = (why: string): ServingError => filesRefusal(model, `Invalid file parameter '${key}': ${why}`);
  if (rel === "") throw bad("the path is empty (name a file under the model directory, e.g. 'file:1/model.ts')");
  if (rel.includes("\0")) throw bad("the path holds a NUL character");
  if (rel.includes("\\")) throw bad("the path holds a backslash (separate directories with '/')");
  if (posix.isAbsolute(rel) || win32.isAbsolute(rel)) throw bad("the path is absolute (paths are relative to the model directory, e.g. 'file:1/model.ts')");
  if (rel.endsWith("/")) throw bad("the path ends with '/' (it must name a file)");
  const norm = posix.normalize(rel);
  if (norm === ".." || norm.startsWith("../")) {
    throw filesRefusal(model, `Invalid file parameter '${key}' with normalized path '${norm}' must stay within model directory.`);
  }
  if (norm === "." || norm === "") throw bad("the path names the model directory itself");
  return norm;
}

/**
 * Checks every key of a load's files and returns the normalised path of
 * each, in order.
 *
 * @throws {ServingError} `ERR_MODEL_FILES`: as {@link modelFilePath}; two
 * keys naming the same file; a file where another key needs a directory
 * (Triton's "directory has been created as a file").
 */
export function modelFilePaths(model: string, files: ModelFiles): [key: string, path: string][] {
  const out: [string, string][] = [];
  const byPath = new Map<string, string>();
  for (const key of Object.keys(files)) {
    const path = modelFilePath(model, key);
    const twin = byPath.get(path);
    if (twin !== undefined) throw filesRefusal(model, `Invalid file parameter '${key}': it names the same file as '${twin}'`);
    byPath.set(path, key);
    out.push([key, path]);
  }
  for (const [key, path] of out) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (byPath.has(dir)) throw filesRefusal(model, `Invalid file parameter '${key}', directory has been created as a file ('${byPath.get(dir)}')`);
    }
  }
  return out;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/**
 * The content of one `file:` load parameter as the endpoint receives it:
 * bytes (gRPC's `bytes_param`) as they are, a string (HTTP's JSON) decoded
 * from base64. Triton 2.51's HTTP decoder skips what is not base64 and
 * loads the rest; a string that is not base64 is refused here instead.
 *
 * @throws {ServingError} `ERR_MODEL_FILES`: INVALID_ARG for a string that
 * is not base64; INTERNAL (Triton's HTTP answer, "attempt to access JSON
 * non-string as string") for a value that is neither.
 */
export function fileParameterContent(model: string, key: string, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") {
    if (!BASE64.test(value)) {
      throw new ServingError("ERR_MODEL_FILES", `failed to load '${model}': load parameter '${key}' is not valid base64 (send the file's content base64-encoded)`, {
        tritonCode: "INVALID_ARG",
      });
    }
    return Buffer.from(value, "base64");
  }
  throw new ServingError("ERR_MODEL_FILES", `attempt to access JSON non-string as string: load parameter '${key}' of '${model}' must be the file's content as a base64 string`);
}

/** Temporary model directories not removed yet (removed at process exit, whatever happens before). */
const live = new Set<string>();
let exitHookInstalled = false;

function removeAtExit(dir: string): void {
  live.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const d of live) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // exiting: nothing more to do
      }
    }
  });
}

/** A model directory written from a load's files; {@link ModelFilesDirectory.remove} deletes it. */
export class ModelFilesDirectory {
  /** Absolute path of the directory. */
  readonly path: string;
  #removed: Promise<void> | undefined;

  /** @param path - the directory (already written). */
  constructor(path: string) {
    this.path = path;
  }

  /** Deletes the directory and everything in it (idempotent). */
  remove(): Promise<void> {
    this.#removed ??= rm(this.path, { recursive: true, force: true }).finally(() => live.delete(this.path));
    return this.#removed;
  }
}

/** The temporary model directories of this process not removed yet (tests check that none is left). */
export function liveModelFilesDirectories(): string[] {
  return [...live];
}

/**
 * Writes a load's files into a new private temporary directory.
 *
 * @param model - the model's name (for messages).
 * @param files - `file:<path>` → content; checked by {@link modelFilePaths} first.
 * @param parent - where the directory is made (default: the OS's temporary directory).
 * @throws {ServingError} `ERR_MODEL_FILES` for a bad path (nothing is
 * written then); an I/O error as `ERR_MODEL_FILES` (the directory is
 * removed).
 */
export async function writeModelFiles(model: string, files: ModelFiles, parent = tmpdir()): Promise<ModelFilesDirectory> {
  const paths = modelFilePaths(model, files);
  for (const [key] of paths) {
    if (!(files[key] instanceof Uint8Array)) throw filesRefusal(model, `File parameter '${key}' must have bytes type for its value`, "INVALID_ARG");
  }
  await mkdir(parent, { recursive: true });
  const dir = new ModelFilesDirectory(await mkdtemp(join(parent, "tensorbridge-model-")));
  removeAtExit(dir.path);
  try {
    await chmod(dir.path, 0o700);
    for (const [key, path] of paths) {
      const file = join(dir.path, ...path.split("/"));
      const parts = path.split("/");
      if (parts.length > 1) await mkdir(join(dir.path, ...parts.slice(0, -1)), { recursive: true, mode: 0o700 });
      // wx: O_CREAT|O_EXCL, so nothing that is already there (a link) is followed or overwritten.
      await writeFile(file, files[key]!, { mode: 0o600, flag: "wx" });
    }
  } catch (e) {
    await dir.remove();
    throw filesRefusal(model, `cannot write the model files: ${(e as Error).message}`);
  }
  return dir;
}
