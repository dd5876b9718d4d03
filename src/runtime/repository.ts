/**
 * Reads a model repository laid out as Triton's:
 *
 * ```
 * <repository>/
 *   <model>/
 *     config.pbtxt
 *     <version>/          (a positive integer)
 *       model.ts          (or model.js / model.mjs, or config's default_model_filename)
 * ```
 *
 * @module
 */
import { existsSync } from "node:fs";
import { readFile, readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";

import { parseModelConfig, type ModelConfig, type ModelVersionPolicy } from "./config.js";
import { ServingError, errorMessage } from "./errors.js";

/** Model file names tried in a version directory, in order. */
export const MODEL_FILE_NAMES: readonly string[] = Object.freeze(["model.ts", "model.mts", "model.js", "model.mjs"]);

/** One model directory found in a repository. */
export interface RepositoryModel {
  /** Model name (the directory name). */
  name: string;
  /** Absolute path of the model directory. */
  dir: string;
  /** Absolute path of config.pbtxt (it may not exist). */
  configPath: string;
  /** Numeric version directories found, ascending. */
  versions: number[];
}

/**
 * Lists the models of a repository: every subdirectory whose name does not
 * start with `.`, with its numeric version subdirectories.
 *
 * @param root - the repository directory.
 * @returns the models, sorted by name.
 * @throws {ServingError} `ERR_REPOSITORY` when `root` is not a readable directory.
 */
export async function scanRepository(root: string): Promise<RepositoryModel[]> {
  const abs = resolve(root);
  let entries;
  try {
    entries = await readdir(abs, { withFileTypes: true });
  } catch (e) {
    throw new ServingError("ERR_REPOSITORY", `cannot read model repository ${abs}: ${errorMessage(e)}`, { cause: e });
  }
  const out: RepositoryModel[] = [];
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const dir = join(abs, e.name);
    if (!(await isDirectory(dir))) continue;
    out.push({ name: e.name, dir, configPath: join(dir, "config.pbtxt"), versions: await listVersions(dir) });
  }
  return out.toSorted((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Finds one model directory by name.
 *
 * @returns the model, or `undefined` when the repository has no such directory.
 */
export async function findRepositoryModel(root: string, name: string): Promise<RepositoryModel | undefined> {
  if (name === "" || name.startsWith(".") || name.includes("/") || name.includes("\\")) return undefined;
  const dir = join(resolve(root), name);
  if (!(await isDirectory(dir))) return undefined;
  return { name, dir, configPath: join(dir, "config.pbtxt"), versions: await listVersions(dir) };
}

/**
 * A model directory outside the repository (the one a load's files were
 * written to, see model-files.ts), read as a repository's model directory
 * of that name.
 */
export async function modelDirectory(name: string, dir: string): Promise<RepositoryModel> {
  return { name, dir, configPath: join(dir, "config.pbtxt"), versions: await listVersions(dir) };
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function listVersions(dir: string): Promise<number[]> {
  const versions: number[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!/^[0-9]+$/.test(e.name)) continue;
    const v = Number(e.name);
    if (!Number.isSafeInteger(v) || v < 1) continue;
    if (await isDirectory(join(dir, e.name))) versions.push(v);
  }
  return versions.toSorted((a, b) => a - b);
}

/**
 * Reads and validates a model's config.pbtxt.
 *
 * @throws {ServingError} `ERR_MODEL_LOAD` when the file is missing;
 * `ERR_CONFIG_SYNTAX` / `ERR_CONFIG_INVALID` / `ERR_MODEL_LOAD` from
 * {@link parseModelConfig}.
 */
export async function readModelConfig(model: RepositoryModel, options: { partial?: boolean } = {}): Promise<ModelConfig> {
  let text: string;
  try {
    text = await readFile(model.configPath, "utf8");
  } catch (e) {
    throw new ServingError(
      "ERR_MODEL_LOAD",
      `model "${model.name}" has no readable config.pbtxt at ${model.configPath}: ${errorMessage(e)}`,
      { cause: e },
    );
  }
  return parseModelConfig(text, { file: model.configPath, modelName: model.name, partial: options.partial === true });
}

/**
 * The versions a version policy selects from those present.
 *
 * @param policy - the config's version_policy (normalised).
 * @param available - versions present on disk, ascending.
 * @returns selected versions, ascending.
 */
export function selectVersions(policy: ModelVersionPolicy, available: number[]): number[] {
  const sorted = [...available].toSorted((a, b) => a - b);
  if (policy.all) return sorted;
  if (policy.specific) return sorted.filter((v) => policy.specific!.versions.includes(v));
  const n = policy.latest?.num_versions ?? 1;
  return sorted.slice(Math.max(0, sorted.length - n));
}

/**
 * The model file of one version directory: the config's
 * `default_model_filename` when set, else the first of
 * {@link MODEL_FILE_NAMES} that exists.
 *
 * @returns the absolute path, or `undefined` when there is none.
 */
export function findModelFile(versionDir: string, config: Pick<ModelConfig, "default_model_filename">): string | undefined {
  if (config.default_model_filename) {
    const p = join(versionDir, config.default_model_filename);
    return existsSync(p) ? p : undefined;
  }
  for (const n of MODEL_FILE_NAMES) {
    const p = join(versionDir, n);
    if (existsSync(p)) return p;
  }
  return undefined;
}
