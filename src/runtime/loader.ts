/**
 * Loads model modules. Installs (once) a Node module resolution hook so that
 * `import ... from "tensorbridge"` inside a model, wherever the model
 * repository lies on disk and with no `node_modules` of its own, resolves to
 * the serving process's own copy of tensorbridge (the way Triton provides
 * `triton_python_backend_utils` to Python models). `.ts` models load without
 * a build step: under tsx the running loader handles them; from the built
 * `dist/` the runtime registers tsx itself.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { register } from "node:module";
import { extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { ServingError, errorMessage } from "./errors.js";

/**
 * The resolve hook, as an ES module source. It runs on Node's loader thread;
 * `initialize` receives the entry URL. Bare `tensorbridge` (and
 * `tensorbridge/...` for the package's own subpaths) maps to the serving
 * copy; model files (`.ts`/`.js`, whatever the package scope above them says)
 * are loaded as ES modules: a model loaded as CommonJS would get a second,
 * CommonJS instance of tensorbridge, whose classes are not the server's.
 */
const HOOK_SOURCE = `
let entry;
let modelDirs = [];
let port;
export async function initialize(data) {
  entry = data.entry;
  port = data.port;
  if (port) {
    port.on("message", (m) => {
      if (m && m.type === "model-dir") {
        modelDirs.push(m.dir);
        port.postMessage({ ack: m.id });
      }
    });
    port.unref();
  }
}
export async function resolve(specifier, context, next) {
  if (specifier === "tensorbridge") return next(entry, context);
  const r = await next(specifier, context);
  if (r.url.startsWith("file:") && modelDirs.some((d) => r.url.startsWith(d))) {
    const path = r.url.split(/[?#]/)[0];
    if (/\\.(ts|js)$/.test(path)) {
      if (r.format === undefined || r.format === null || r.format === "commonjs") return { ...r, format: "module" };
      // Node >= 22.18 strips types itself and labels .ts files by package scope.
      if (r.format === "commonjs-typescript") return { ...r, format: "module-typescript" };
    }
  }
  return r;
}
`;

let installed: { entry: string; port?: import("node:worker_threads").MessagePort } | undefined;
let tsxReady: Promise<void> | undefined;
let loadCounter = 0;
let ackCounter = 0;
const knownDirs = new Set<string>();
/** Loads waiting for the hook thread's ack of their model directory, by message id. */
const ackWaiters = new Map<number, () => void>();
let ackListening = false;

/**
 * The URL that bare `tensorbridge` resolves to for models: this copy's
 * narrow model entry, `model.ts` (running from source under tsx) or
 * `model.js` (running from `dist/`): the tensor and model-author API,
 * without the server.
 */
export function defaultEntryUrl(): string {
  const here = new URL(import.meta.url);
  const ext = extname(here.pathname) === ".ts" ? ".ts" : ".js";
  return new URL(`../model${ext}`, here).href;
}

/** True when this module itself was loaded as TypeScript (tsx or similar is active). */
function typescriptLoaderActive(): boolean {
  return extname(new URL(import.meta.url).pathname) === ".ts";
}

/**
 * Installs the module hook (idempotent). Models imported afterwards see the
 * serving copy of `tensorbridge`.
 *
 * @param entry - override the URL bare `tensorbridge` resolves to (tests).
 * @returns resolves once `.ts` files can be imported.
 */
export async function installModelModuleHook(entry?: string): Promise<void> {
  // tsx first: hooks registered later run first, and ours must map
  // `tensorbridge` before tsx could. And tsx without a tsconfig: it would
  // take the working directory's, whose `paths` may map `tensorbridge` to
  // another copy (this repository's does); a worker on Node 22+ still saw
  // that mapping first. Model files are not the working directory's code.
  if (!typescriptLoaderActive()) {
    tsxReady ??= import("tsx/esm/api").then((m) => {
      m.register({ tsconfig: false });
    });
    await tsxReady;
  }
  if (!installed) {
    const { MessageChannel } = await import("node:worker_threads");
    const { port1, port2 } = new MessageChannel();
    const url = entry ?? defaultEntryUrl();
    register(`data:text/javascript,${encodeURIComponent(HOOK_SOURCE)}`, {
      parentURL: import.meta.url,
      data: { entry: url, port: port2 },
      transferList: [port2],
    });
    port1.unref();
    installed = { entry: url, port: port1 };
  }
}

/** The entry URL the hook maps `tensorbridge` to (undefined before installation). */
export function installedEntryUrl(): string | undefined {
  return installed?.entry;
}

/**
 * Tells the hook that files under `dir` are model files (loaded as ES
 * modules even without a package.json that says `"type": "module"`), and
 * waits until the hook thread has taken note.
 */
export async function registerModelDirectory(dir: string): Promise<void> {
  let href = pathToFileURL(dir).href;
  if (!href.endsWith("/")) href += "/";
  const port = installed?.port;
  if (!port || knownDirs.has(href)) return;
  knownDirs.add(href);
  const id = ++ackCounter;
  if (!ackListening) {
    // One listener for every wait: a listener per concurrent load trips Node's MaxListeners warning past ten.
    ackListening = true;
    port.on("message", (m: { ack?: number }) => {
      const done = m?.ack === undefined ? undefined : ackWaiters.get(m.ack);
      if (done === undefined) return;
      ackWaiters.delete(m.ack!);
      done();
    });
  }
  // The port keeps the process alive while any load waits (not only until the first one's ack).
  if (ackWaiters.size === 0) port.ref();
  try {
    await new Promise<void>((resolve) => {
      ackWaiters.set(id, resolve);
      port.postMessage({ type: "model-dir", dir: href, id });
    });
  } finally {
    if (ackWaiters.size === 0) port.unref();
  }
}

function isClass(v: unknown): v is new () => unknown {
  return typeof v === "function" && v.prototype !== undefined;
}

/**
 * Imports a model module and returns its model class (the default export;
 * a module that has no default but exactly one exported class, or a named
 * export `TritonPythonModel`/`Model`, is accepted too).
 *
 * Each call imports a fresh copy (a load after an unload picks up edits).
 *
 * @param file - absolute path of `model.ts`/`.js`/`.mjs`.
 * @returns the class.
 * @throws {ServingError} `ERR_MODEL_LOAD` when the file is missing, does not
 * import, or exports no class.
 */
export async function importModelClass(file: string): Promise<new () => unknown> {
  if (!existsSync(file)) throw new ServingError("ERR_MODEL_LOAD", `model file ${file} does not exist`);
  await installModelModuleHook();
  await registerModelDirectory(fileURLToPath(new URL(".", pathToFileURL(file))));
  let mod: Record<string, unknown>;
  try {
    mod = (await import(`${pathToFileURL(file).href}?tensorbridge-load=${++loadCounter}`)) as Record<string, unknown>;
  } catch (e) {
    throw new ServingError("ERR_MODEL_LOAD", `failed to import ${file}: ${errorMessage(e)}`, { cause: e });
  }
  let cls: unknown = mod["default"];
  // A CommonJS module's default export is module.exports
  if (!isClass(cls) && cls && typeof cls === "object" && isClass((cls as Record<string, unknown>)["default"])) {
    cls = (cls as Record<string, unknown>)["default"];
  }
  if (!isClass(cls)) cls = mod["TritonPythonModel"] ?? mod["Model"];
  if (!isClass(cls)) {
    const classes = Object.values(mod).filter(isClass);
    if (classes.length === 1) cls = classes[0];
  }
  if (!isClass(cls)) {
    throw new ServingError("ERR_MODEL_LOAD", `${file} must export a model class as its default export (export default class ... { execute(requests) { ... } })`);
  }
  if (typeof (cls.prototype as { execute?: unknown }).execute !== "function") {
    throw new ServingError("ERR_MODEL_LOAD", `the model class exported by ${file} has no execute(requests) method`);
  }
  return cls;
}
