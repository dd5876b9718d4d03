/**
 * The set of models a server serves from one repository: load all at start,
 * load/reload/unload on request, look models up, list the repository index,
 * and finalize everything on close.
 *
 * A load may bring the model's files instead (Triton's `file:` load
 * parameters, see model-files.ts): the model then loads from a private
 * temporary directory, which is removed when the model is unloaded, loaded
 * again (from other files or from the repository), or the load fails, and
 * at close.
 *
 * @module
 */
import { modelConfigFromJson, type ModelConfig } from "./config.js";
import { addBlsTarget } from "./bls.js";
import { ServingError, errorMessage } from "./errors.js";
import { ModelVersion, type RuntimeLogger } from "./model-version.js";
import { modelDirectorySnapshot } from "./model-snapshot.js";
import { checkFilesModelName, filesRefusal, modelFilePaths, writeModelFiles, type ModelFiles, type ModelFilesDirectory } from "./model-files.js";
import {
  findModelFile,
  findRepositoryModel,
  modelDirectory,
  readModelConfig,
  scanRepository,
  selectVersions,
  type RepositoryModel,
} from "./repository.js";
import type { InferenceObserver } from "./stats.js";
import { existsSync } from "node:fs";
import { join } from "node:path";

import { autoCompleteModelConfig } from "./auto-complete.js";
import type { GpuInventory } from "./instance-plan.js";
import { importModelClass } from "./loader.js";
import { DEFAULT_MODEL_HOST, runInModel, type ModelContext, type ModelHost } from "./model-context.js";

/** Readiness of a model as the repository index reports it. */
export type ModelState = "READY" | "UNAVAILABLE" | "LOADING" | "UNLOADING";

/** One row of the repository index (`POST /v2/repository/index`). */
export interface ModelIndexEntry {
  /** Model name. */
  name: string;
  /** Version (absent for a model that was never loaded, or failed before its versions were known). */
  version?: string;
  /** State (absent for a model that was never loaded). */
  state?: ModelState;
  /** Why it is not ready. */
  reason?: string;
}

/** Options of {@link ModelRegistry}. */
export interface ModelRegistryOptions {
  /** The repository directory. */
  repository: string;
  /** Receives inference events (metrics). */
  observer?: InferenceObserver;
  /** Where load/unload messages go (default: silent). */
  logger?: RuntimeLogger;
  /**
   * Whether models may be loaded and unloaded once the registry runs (the
   * repository API over HTTP and gRPC, and `loadModel` / `unloadModel` from
   * a model, see bls.ts): false is Triton's `--model-control-mode none`.
   * Default true.
   */
  modelControl?: boolean;
  /**
   * Run each model class's static `autoCompleteConfig(config)` and let a
   * model without config.pbtxt load (Triton's default; its
   * `--disable-auto-complete-config` is `false` here). Default true.
   */
  autoCompleteConfig?: boolean;
  /** The GPUs `KIND_GPU` instance groups are checked against (default: the CUDA driver's answer; tests inject one). */
  gpus?: GpuInventory;
}

/** Options of {@link ModelRegistry.load}. */
export interface LoadOptions {
  /** A config (Triton JSON form, object or JSON string) to use instead of config.pbtxt; required with `files`. */
  config?: unknown;
  /**
   * The model's files (`file:<path relative to the model directory>` →
   * content, e.g. `file:1/model.ts`): the model loads from a temporary
   * directory made of them instead of the repository's (see model-files.ts).
   */
  files?: ModelFiles;
}

interface ModelEntry {
  name: string;
  state: ModelState;
  reason: string;
  config: ModelConfig | undefined;
  versions: Map<number, ModelVersion>;
  /** Serialises loads and unloads of this model. */
  lock: Promise<void>;
  /** True while the model is meant to be served (loaded and not unloaded since). */
  wanted: boolean;
  /** The directory of the files its serving versions were loaded from (a load with files); removed when they go. */
  files: ModelFilesDirectory | undefined;
  /** True when the last load was from files: the index lists it only if the repository has it too (as Triton). */
  fromFiles: boolean;
  /**
   * False until a load of it got past its config (Triton's "poll" of the
   * repository): until then the model is unknown to the server, as in
   * Triton (the index lists its directory only, requests find no model,
   * readiness ignores it, unloading it changes nothing).
   */
  polled: boolean;
  /** Its directory as it was when the serving versions were loaded from the repository (see model-snapshot.ts); undefined: unknown, or loaded from files. */
  snapshot: string | undefined;
  /**
   * While no version serves: why each version a load or unload got to is
   * not available (`unloaded`, or its load error), as Triton 2.51's index
   * lists them, one row per version.
   */
  rows: Map<number, string>;
}

/**
 * A load refused before anything was loaded: the model is missing, or its
 * config cannot be read or is not valid. Triton 2.51 answers these
 * INTERNAL "failed to load '…', failed to poll from model repository" and
 * only logs why; the reason follows those words here. The code stays the
 * cause's (`ERR_MODEL_NOT_FOUND`, `ERR_CONFIG_*`).
 */
export function pollRefusal(name: string, cause: ServingError): ServingError {
  return new ServingError(cause.code, `failed to load '${name}', failed to poll from model repository: ${cause.message}`, { tritonCode: "INTERNAL", cause });
}

/**
 * A load request whose model failed to load (its code, a module that does
 * not import, an `initialize()` that throws…): Triton 2.51's words, "load
 * failed for model '…': version N is at UNAVAILABLE state: ", then why
 * (Triton's own reason is its backend's; the index's reason is why alone,
 * as Triton's). The code and Triton code stay the cause's.
 */
export function loadRefusal(name: string, version: number, cause: ServingError): ServingError {
  return new ServingError(cause.code, `load failed for model '${name}': version ${version} is at UNAVAILABLE state: ${cause.message}`, { tritonCode: cause.tritonCode, cause });
}

/** Whether a load's `config` is given (absent, null and "" are not: Triton's `load_model(name, config="")` from a model). */
function hasConfig(config: unknown): boolean {
  return config !== undefined && config !== null && config !== "";
}

const silent: RuntimeLogger = { info() {}, warn() {}, error() {} };

/** Models served from one repository. */
export class ModelRegistry {
  /** The repository directory. */
  readonly repository: string;
  readonly #observer: InferenceObserver | undefined;
  readonly #log: RuntimeLogger;
  readonly #models = new Map<string, ModelEntry>();
  #closed = false;
  /** Whether models may load and unload models (see {@link ModelRegistryOptions.modelControl}). */
  readonly modelControl: boolean;
  /** Whether model classes complete their configs (see {@link ModelRegistryOptions.autoCompleteConfig}). */
  readonly autoCompleteConfig: boolean;
  readonly #gpus: GpuInventory | undefined;
  readonly #removeBlsTarget: () => void;

  /** @param opts - repository, observer, logger. */
  constructor(opts: ModelRegistryOptions) {
    this.repository = opts.repository;
    this.#observer = opts.observer;
    this.#log = opts.logger ?? silent;
    this.modelControl = opts.modelControl ?? true;
    this.autoCompleteConfig = opts.autoCompleteConfig ?? true;
    this.#gpus = opts.gpus;
    // BLS calls made outside any model's context go to the newest registry (see bls.ts).
    this.#removeBlsTarget = addBlsTarget(this);
  }

  /**
   * Loads every model in the repository. A model that fails is recorded as
   * UNAVAILABLE with its reason (and logged); the others load regardless.
   *
   * @returns the names of the models that failed.
   * @throws {ServingError} `ERR_REPOSITORY` when the repository cannot be read.
   */
  async loadAll(): Promise<string[]> {
    const models = await scanRepository(this.repository);
    const failed: string[] = [];
    for (const m of models) {
      try {
        await this.#withLock(m.name, async () => this.#load(m, undefined, { snapshot: await modelDirectorySnapshot(m.dir) }));
      } catch {
        failed.push(m.name);
      }
    }
    return failed;
  }

  /**
   * Loads (or reloads) one model. On reload the new versions are loaded
   * first and the old ones are unloaded (after their requests finish) only
   * when that succeeded; otherwise the old ones keep serving. As Triton
   * 2.51: a model that serves from the repository is not loaded again when
   * the load brings no config and its directory did not change since (the
   * request succeeds; the running versions keep their state and
   * statistics).
   *
   * @throws {ServingError} refused before anything loads (Triton's "failed to poll" refusal,
   * INTERNAL, nothing changes): `ERR_MODEL_NOT_FOUND` when the repository
   * has no such model, `ERR_CONFIG_*` for a config that cannot be read or is
   * not valid; `ERR_CONFIG_*` / `ERR_MODEL_LOAD` when it fails to load.
   */
  async load(name: string, opts: LoadOptions = {}): Promise<void> {
    if (this.#closed) throw new ServingError("ERR_SERVER_CLOSED", "the server is shutting down");
    // Any key makes it a load from files (a key without the `file:` prefix is refused there, as Triton refuses it).
    if (opts.files !== undefined && opts.files !== null && Object.keys(opts.files).length > 0) return this.#loadFiles(name, opts.config, opts.files);
    const m = await findRepositoryModel(this.repository, name);
    if (!m) throw pollRefusal(name, new ServingError("ERR_MODEL_NOT_FOUND", `no model directory '${name}' in the model repository`));
    await this.#withLock(name, async () => {
      const entry = this.#models.get(name)!;
      const snapshot = await modelDirectorySnapshot(m.dir);
      const unchanged = snapshot !== undefined && snapshot === entry.snapshot && entry.files === undefined && entry.versions.size > 0;
      if (unchanged && !hasConfig(opts.config)) return;
      await this.#load(m, opts.config, { api: true, snapshot });
      // Served from the repository again: the files it was loaded from before go.
      entry.fromFiles = false;
      await this.#dropFiles(entry);
    });
  }

  /**
   * Loads a model from the files given with the load: checked, written to a
   * temporary directory, loaded from there with the given config. On
   * failure the directory is removed and what served before keeps serving.
   */
  async #loadFiles(name: string, config: unknown, files: ModelFiles): Promise<void> {
    checkFilesModelName(name);
    if (!hasConfig(config)) {
      throw filesRefusal(name, "Load parameter 'config' must be specified for model file override");
    }
    modelFilePaths(name, files); // every path checked before anything is written
    await this.#withLock(name, async () => {
      if (this.#closed) throw new ServingError("ERR_SERVER_CLOSED", "the server is shutting down");
      const entry = this.#models.get(name)!;
      if (entry.versions.size === 0) entry.fromFiles = true;
      const dir = await writeModelFiles(name, files);
      try {
        const m = await modelDirectory(name, dir.path);
        await this.#load(m, config, { api: true });
      } catch (e) {
        await dir.remove();
        throw e;
      }
      const old = entry.files;
      entry.files = dir;
      entry.fromFiles = true;
      // #load unloaded the versions that ran from the old files before it returned.
      await old?.remove();
    });
  }

  /** Removes the files a model's versions were loaded from, once those versions are gone. */
  async #dropFiles(entry: ModelEntry): Promise<void> {
    const dir = entry.files;
    entry.files = undefined;
    await dir?.remove();
  }

  /**
   * Unloads a model: it stops taking requests, waits for running ones, and
   * its instances are finalised. Unloading a model that is not loaded does
   * nothing and succeeds, also for a name the repository does not have (as
   * Triton 2.51).
   */
  async unload(name: string): Promise<void> {
    const entry = this.#models.get(name);
    if (!entry) return;
    await this.#withLock(name, async () => {
      // Never got past a load's config (a load may have been under way): still unknown, nothing to unload.
      if (!entry.polled) return;
      entry.wanted = false;
      entry.state = "UNLOADING";
      const versions = [...entry.versions.values()];
      await Promise.all(versions.map((v) => v.unload(this.#log)));
      entry.versions.clear();
      // As Triton: a model that failed to load keeps its versions' reasons.
      if (versions.length > 0) entry.rows = new Map(versions.map((v) => [v.version, "unloaded"]));
      // Unloaded, a model that came from files is still not the repository's (fromFiles stays: the index leaves it out).
      await this.#dropFiles(entry);
      entry.state = "UNAVAILABLE";
      entry.reason = "unloaded";
      this.#log.info(`successfully unloaded '${name}'`);
    });
  }

  async #withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    let entry = this.#models.get(name);
    if (!entry) {
      entry = {
        name,
        state: "LOADING",
        reason: "",
        config: undefined,
        versions: new Map(),
        lock: Promise.resolve(),
        wanted: true,
        files: undefined,
        fromFiles: false,
        polled: false,
        snapshot: undefined,
        rows: new Map(),
      };
      this.#models.set(name, entry);
    }
    const prev = entry.lock;
    let release!: () => void;
    entry.lock = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Loads a model's versions from `m`. `api`: a load request's (a config
   * refused is Triton's "failed to poll" refusal and changes nothing; at start it is
   * recorded as the model's reason). `snapshot`: the directory as it was
   * before the load, recorded when it succeeds.
   */
  async #load(m: RepositoryModel, override: unknown, opts: { api?: boolean; snapshot?: string } = {}): Promise<void> {
    const entry = this.#models.get(m.name)!;
    const before = { state: entry.state, reason: entry.reason, wanted: entry.wanted };
    entry.wanted = true;
    const wasServing = entry.versions.size > 0;
    if (!wasServing) entry.state = "LOADING";
    let config: ModelConfig;
    const fresh: ModelVersion[] = [];
    let polled = false;
    /** The version being loaded when it failed (the newest while its class completes the config). */
    let failing: number | undefined;
    try {
      // With auto-complete on, inputs and outputs may leave out what the model's autoCompleteConfig fills in.
      const source = async (partial: boolean): Promise<ModelConfig> => {
        if (override !== undefined && override !== null && override !== "") {
          let obj = override;
          if (typeof obj === "string") {
            try {
              obj = JSON.parse(obj);
            } catch (e) {
              throw new ServingError("ERR_CONFIG_INVALID", `the config given for '${m.name}' is not valid JSON: ${errorMessage(e)}`);
            }
          }
          return modelConfigFromJson(obj, { file: `config of '${m.name}'`, modelName: m.name, partial });
        }
        if (this.autoCompleteConfig && !existsSync(m.configPath)) {
          // As Triton with auto-complete on: no config.pbtxt is a config with only the name, for the model to complete.
          return modelConfigFromJson({ name: m.name }, { file: `config of '${m.name}'`, modelName: m.name, partial });
        }
        return readModelConfig(m, { partial });
      };
      config = await source(this.autoCompleteConfig);
      polled = true;
      entry.polled = true;
      let imported: { file: string; cls: new () => unknown } | undefined;
      const versions = selectVersions(config.version_policy, m.versions);
      failing = versions.at(-1);
      if (versions.length === 0) {
        throw new ServingError(
          "ERR_MODEL_LOAD",
          `model '${m.name}' has no version directory that its version policy selects (found: ${m.versions.length ? m.versions.join(", ") : "none"})`,
        );
      }
      if (this.autoCompleteConfig) {
        // The newest version's class completes the config (version_policy is not the model's to change).
        const newest = findModelFile(join(m.dir, String(versions.at(-1))), config);
        // In the model's context, so that its Logger lines name it.
        const ctx: ModelContext = { name: m.name, version: versions.at(-1)!, host: (this.#observer as { modelHost?: ModelHost } | undefined)?.modelHost ?? DEFAULT_MODEL_HOST };
        const partial = config;
        const completed =
          newest === undefined
            ? undefined
            : await runInModel(ctx, async () => {
                const cls = await importModelClass(newest);
                // The newest version's in-thread instances use this import (its module is not evaluated twice).
                imported = { file: newest, cls };
                return autoCompleteModelConfig(partial, cls);
              });
        // No autoCompleteConfig: the config as given, checked in full (with its file positions).
        config = completed ?? (await source(false));
      }
      for (const v of versions) {
        failing = v;
        const dir = join(m.dir, String(v));
        const file = findModelFile(dir, config);
        if (!file) {
          throw new ServingError(
            "ERR_MODEL_LOAD",
            `model '${m.name}' version ${v} has no model file (${config.default_model_filename || "model.ts, model.mts, model.js or model.mjs"}) in ${dir}`,
          );
        }
        const mv = new ModelVersion({
          name: m.name,
          version: v,
          config,
          modelDir: m.dir,
          file,
          observer: this.#observer,
          bls: this,
          gpus: this.#gpus,
          modelClass: imported?.file === file ? imported.cls : undefined,
        });
        await mv.load();
        fresh.push(mv);
      }
    } catch (e) {
      for (const mv of fresh) await mv.unload(this.#log);
      const err =
        e instanceof ServingError ? e : new ServingError("ERR_MODEL_LOAD", `failed to load '${m.name}': ${errorMessage(e)}`, { cause: e });
      if (!polled && opts.api) {
        // As Triton: a load request refused at the config leaves the model as it was (not even known, if it was not).
        Object.assign(entry, before);
        this.#log.error(`failed to load '${m.name}', failed to poll from model repository: ${err.message}`);
        throw pollRefusal(m.name, err);
      }
      entry.polled = true;
      if (!wasServing) {
        entry.state = "UNAVAILABLE";
        entry.reason = err.message;
        // As Triton: the versions that loaded were unloaded again, the failing one has its reason.
        entry.rows = new Map(fresh.map((v) => [v.version, "unloaded"]));
        if (failing !== undefined) entry.rows.set(failing, err.message);
      }
      this.#log.error(`failed to load '${m.name}': ${err.message}`);
      throw opts.api && failing !== undefined ? loadRefusal(m.name, failing, err) : err;
    }
    const old = [...entry.versions.values()];
    entry.versions = new Map(fresh.map((v) => [v.version, v]));
    entry.config = config;
    entry.state = "READY";
    entry.reason = "";
    entry.snapshot = opts.snapshot;
    entry.rows = new Map();
    for (const v of fresh) this.#log.info(`successfully loaded '${m.name}' version ${v.version}`);
    await Promise.all(old.map((v) => v.unload(this.#log)));
  }

  /**
   * The model version that serves a request.
   *
   * @param name - model name.
   * @param version - a version number or decimal string; absent or `""` means the newest ready one.
   * @throws {ServingError} `ERR_MODEL_NOT_FOUND` for an unknown model or
   * version, `ERR_MODEL_UNAVAILABLE` for a model that is not ready,
   * `ERR_INVALID_REQUEST` for a malformed version.
   */
  get(name: string, version?: number | string): ModelVersion {
    const entry = this.#models.get(name);
    if (!entry?.polled) throw new ServingError("ERR_MODEL_NOT_FOUND", `Request for unknown model: '${name}' is not found`);
    if (version === undefined || version === "") {
      let best: ModelVersion | undefined;
      for (const v of entry.versions.values()) if (v.ready && (!best || v.version > best.version)) best = v;
      if (!best) {
        throw new ServingError(
          "ERR_MODEL_UNAVAILABLE",
          `Request for unknown model: '${name}' has no available versions${entry.reason ? ` (${entry.reason})` : ""}`,
        );
      }
      return best;
    }
    const n = typeof version === "number" ? version : /^[0-9]+$/.test(version) ? Number(version) : NaN;
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new ServingError("ERR_INVALID_REQUEST", `invalid model version '${String(version)}' (expected a positive integer)`);
    }
    const v = entry.versions.get(n);
    if (!v) throw new ServingError("ERR_MODEL_NOT_FOUND", `Request for unknown model: '${name}' version ${n} is not found`);
    if (!v.ready) throw new ServingError("ERR_MODEL_UNAVAILABLE", `Request for unknown model: '${name}' version ${n} is not at ready state`);
    return v;
  }

  /** True when the model (version) is ready to serve. */
  isReady(name: string, version?: number | string): boolean {
    try {
      return this.get(name, version).ready;
    } catch {
      return false;
    }
  }

  /** All model versions that are loaded and ready, by name then version. */
  readyVersions(): ModelVersion[] {
    const out: ModelVersion[] = [];
    for (const e of [...this.#models.values()].toSorted((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      for (const v of [...e.versions.values()].toSorted((a, b) => a.version - b.version)) if (v.ready) out.push(v);
    }
    return out;
  }

  /** Every loaded version of a model (ready or not). */
  versionsOf(name: string): ModelVersion[] {
    return [...(this.#models.get(name)?.versions.values() ?? [])].toSorted((a, b) => a.version - b.version);
  }

  /**
   * The server's readiness: false while closing or while a model is
   * loading; with `strict` (Triton's default), also false while a model
   * that is meant to be served (not explicitly unloaded) is not ready.
   */
  allReady(strict = true): boolean {
    if (this.#closed) return false;
    for (const e of this.#models.values()) {
      if (!e.polled) continue;
      if (e.state === "LOADING" && e.versions.size === 0) return false;
      if (strict && e.wanted && e.versions.size === 0) return false;
    }
    return true;
  }

  /**
   * The repository index: every model directory, with version, state and
   * reason for those that were loaded or failed.
   *
   * @param opts - `ready: true` lists only ready versions.
   */
  async index(opts: { ready?: boolean } = {}): Promise<ModelIndexEntry[]> {
    // A model no load got past its config is listed as its directory only (or not at all, without one).
    const names = new Set<string>([...this.#models].filter(([, e]) => e.polled).map(([n]) => n));
    const inRepository = new Set<string>();
    try {
      for (const m of await scanRepository(this.repository)) inRepository.add(m.name);
    } catch {
      // repository gone: list what we know
    }
    for (const n of inRepository) names.add(n);
    // As Triton 2.51: a model loaded from files is listed only if the repository has a directory of that name.
    for (const [n, e] of this.#models) if (e.fromFiles && !inRepository.has(n)) names.delete(n);
    const out: ModelIndexEntry[] = [];
    for (const name of [...names].toSorted()) {
      const e = this.#models.get(name);
      if (!e?.polled) {
        if (!opts.ready) out.push({ name });
        continue;
      }
      if (e.versions.size > 0) {
        for (const v of [...e.versions.values()].toSorted((a, b) => a.version - b.version)) {
          const state: ModelState = v.state === "READY" ? "READY" : v.state === "UNLOADING" ? "UNLOADING" : v.state === "LOADING" ? "LOADING" : "UNAVAILABLE";
          if (opts.ready && state !== "READY") continue;
          // As Triton: no reason for a version that has none to give.
          out.push(v.reason ? { name, version: String(v.version), state, reason: v.reason } : { name, version: String(v.version), state });
        }
      } else if (!opts.ready && e.state === "UNAVAILABLE" && e.rows.size > 0) {
        for (const [version, reason] of [...e.rows].toSorted(([a], [b]) => a - b)) out.push({ name, version: String(version), state: "UNAVAILABLE", reason });
      } else if (!opts.ready) {
        // No version known (its config was refused at start, or it has no version to load).
        const state = e.state === "READY" ? "UNAVAILABLE" : e.state;
        out.push(e.reason ? { name, state, reason: e.reason } : { name, state });
      }
    }
    return out;
  }

  /** Unloads every model (finalising instances) and refuses further loads. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#removeBlsTarget();
    await Promise.all([...this.#models.keys()].map((n) => this.unload(n).catch((e) => this.#log.error(errorMessage(e)))));
  }
}
