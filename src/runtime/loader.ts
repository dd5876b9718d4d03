/**
 * Loads model modules. Installs (once) a Node module hook so that
 * `import ... from "tensorbridge"` inside a model, wherever the model
 * repository lies on disk and with no `node_modules` of its own, resolves to
 * the serving process's own copy of tensorbridge (the way Triton provides
 * `triton_python_backend_utils` to Python models), and so that `.ts` models
 * load without a build step: the hook transpiles a model's TypeScript files
 * itself with sucrase, whether or not the server runs under tsx.
 *
 * Why sucrase: it is plain JavaScript with no install script anywhere in its
 * dependencies (tsx needs esbuild, whose postinstall npm 11 asks every user of
 * the package to approve), runs on Node 20, keeps `import`/`export` as they
 * are and every line where it was (a model's stack traces keep their lines
 * even without source maps), and adds about 10 MiB to a thread that loads it.
 * `@swc/wasm-typescript` (one 3.7 MB wasm module) would add about 38 MiB to
 * every hooks thread, the serving thread's and each instance thread's, and
 * moves lines; `typescript`'s `transpileModule` weighs 24 MB; Node's own type
 * stripping needs Node 22.18+. What sucrase lacks, model files cannot use:
 * decorators, and namespaces that hold values (sucrase drops them).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { createRequire, register } from "node:module";
import { extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { MessageChannel, type MessagePort } from "node:worker_threads";

import { ServingError, errorMessage } from "./errors.js";

/**
 * The hook, as an ES module source. It runs on Node's hooks thread;
 * `initialize` receives the entry URL, the transpiler's path and a port on
 * which the runtime announces model directories.
 *
 * A model's scope: files under a model directory, and the files such files
 * import by a relative path (wherever they lie). Within it:
 * - resolve: bare `tensorbridge` maps to the serving copy; a relative
 *   `./util.js` that does not exist resolves to `./util.ts` (`.mjs` to
 *   `.mts`, `.cjs` to `.cts`; `./util` to `.ts`, `.mts`, `.cts`, `/index.ts`),
 *   as tsx resolves it; TypeScript files and a model directory's `.js` files
 *   are ES modules whatever the package scope above them says (a model loaded
 *   as CommonJS would get a second, CommonJS instance of tensorbridge, whose
 *   classes are not the server's).
 * - load: `.ts`/`.mts`/`.cts` files are transpiled here (types removed,
 *   enums and parameter properties compiled, `import x = require()` through
 *   `createRequire`), with an inline source map, and never reach tsx or
 *   Node's own type stripping.
 * Resolution still goes through the next hooks (another hook sees a model's
 * imports); only loading TypeScript is short-circuited.
 */
const HOOK_SOURCE = `
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

let entry;
let transpilerPath;
let transform;
let port;
const modelDirs = [];
const importedByModels = new Set();
const TYPESCRIPT = /\\.(ts|mts|cts)$/;

export async function initialize(data) {
  entry = data.entry;
  transpilerPath = data.transpiler;
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

const withoutQuery = (url) => url.split(/[?#]/)[0];
const inModelDir = (path) => modelDirs.some((d) => path.startsWith(d));
const inModelScope = (url) => url.startsWith("file:") && (inModelDir(withoutQuery(url)) || importedByModels.has(withoutQuery(url)));
const isRelative = (s) => s.startsWith("./") || s.startsWith("../") || s === "." || s === "..";

function isFile(url) {
  try {
    return statSync(fileURLToPath(withoutQuery(url))).isFile();
  } catch {
    return false;
  }
}

/** The TypeScript file a relative import of a missing .js (or extensionless) path means, as tsx resolves it. */
function typeScriptTwin(url) {
  const path = withoutQuery(url);
  const rest = url.slice(path.length);
  if (isFile(url)) return undefined;
  const js = /\\.([mc]?)js$/.exec(path);
  const name = path.slice(path.lastIndexOf("/") + 1);
  const candidates = js
    ? [path.slice(0, -js[0].length) + "." + js[1] + "ts"]
    : name.includes(".") ? [] : [path + ".ts", path + ".mts", path + ".cts", path + "/index.ts"];
  const found = candidates.find(isFile);
  return found === undefined ? undefined : found + rest;
}

export async function resolve(specifier, context, next) {
  if (specifier === "tensorbridge") return next(entry, context);
  const parent = context.parentURL;
  const relativeFromModel = parent !== undefined && isRelative(specifier) && inModelScope(parent);
  const twin = relativeFromModel ? typeScriptTwin(new URL(specifier, parent).href) : undefined;
  const r = await next(twin ?? specifier, context);
  if (!r.url.startsWith("file:")) return r;
  const path = withoutQuery(r.url);
  if (relativeFromModel) importedByModels.add(path);
  if (TYPESCRIPT.test(path) && inModelScope(r.url)) return { ...r, format: "module" };
  if (path.endsWith(".js") && inModelDir(path)) {
    if (r.format === undefined || r.format === null || r.format === "commonjs") return { ...r, format: "module" };
  }
  return r;
}

export async function load(url, context, next) {
  if (!url.startsWith("file:") || !TYPESCRIPT.test(withoutQuery(url)) || !inModelScope(url)) return next(url, context);
  const href = withoutQuery(url);
  const file = fileURLToPath(href);
  const source = readFileSync(file, "utf8");
  transform ??= createRequire(transpilerPath)(transpilerPath).transform;
  const out = transform(source, {
    transforms: ["typescript"],
    disableESTransforms: true,
    injectCreateRequireForImportRequire: true,
    filePath: file,
    sourceMapOptions: { compiledFilename: file },
  });
  const map = { ...out.sourceMap, file: href, sources: [href] };
  const inline = Buffer.from(JSON.stringify(map)).toString("base64");
  return { format: "module", source: out.code + "\\n//# sourceMappingURL=data:application/json;base64," + inline, shortCircuit: true };
}
`;

let installed: { entry: string; port?: MessagePort } | undefined;
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

/**
 * Installs the module hook in this thread (idempotent). Models imported
 * afterwards see the serving copy of `tensorbridge`, and their TypeScript
 * files are transpiled by the hook.
 *
 * @param entry - override the URL bare `tensorbridge` resolves to (tests).
 * @returns resolves once the hook is registered.
 */
export async function installModelModuleHook(entry?: string): Promise<void> {
  if (installed) return;
  const { port1, port2 } = new MessageChannel();
  const url = entry ?? defaultEntryUrl();
  // Hooks registered later run first: under `--import tsx` ours still sees
  // model files before tsx does (and tsx's tsconfig `paths`, which may map
  // `tensorbridge` to another copy, never apply to them).
  register(`data:text/javascript,${encodeURIComponent(HOOK_SOURCE)}`, {
    parentURL: import.meta.url,
    data: { entry: url, transpiler: createRequire(import.meta.url).resolve("sucrase"), port: port2 },
    transferList: [port2],
  });
  port1.unref();
  installed = { entry: url, port: port1 };
  // The hook's inline source maps put a model's own file and line in its
  // stack traces (the URL it is imported under carries a load counter).
  process.setSourceMapsEnabled(true);
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
