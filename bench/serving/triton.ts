/**
 * Real Triton 2.51 from PyPI `nvidia-pytriton` (bench/.work/venv-peers, made
 * by `bash bench/serving/setup.sh peers`), laid out to serve ordinary
 * Python-backend `model.py` models without a container: the serving
 * benchmark (run.ts) and the differential conformance suite
 * (__test__/triton-conformance.spec.ts) both start it from here.
 *
 * The layout (DESIGN.md, "Serving peers and client tools"): a writable copy
 * of `pytriton/tritonserver` in bench/.work/tritonserver with the Python 3.11
 * stub put into `backends/python/`; the server runs with
 * `LD_LIBRARY_PATH=<site>/nvidia_pytriton.libs:<libpython dir>` and the
 * venv's `bin` first on `PATH` (the stub needs `libpython3.11.so.1.0` and the
 * venv's numpy).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** bench/.work: everything installed or laid out for the serving checks (git-ignored). */
export const WORK = join(ROOT, "bench/.work");
/** The venv with nvidia-pytriton (Triton 2.51) and mlserver. */
export const PEERS = process.env["TENSORBRIDGE_PEERS_VENV"] ?? join(WORK, "venv-peers");
/** The copy of Triton's binary tree that is served from. */
export const TRITON_DIR = join(WORK, "tritonserver");

/** site-packages of a venv. */
export function sitePackages(venv: string): string {
  const lib = join(venv, "lib");
  const py = readdirSync(lib).find((d) => d.startsWith("python"))!;
  return join(lib, py, "site-packages");
}

/**
 * Why Triton cannot be started here (the venv or its pytriton tree is
 * missing), or undefined when it can.
 */
export function tritonMissing(): string | undefined {
  if (!existsSync(join(PEERS, "bin/python"))) return `venv-peers is missing (${PEERS}); run: bash bench/serving/setup.sh peers`;
  let site: string;
  try {
    site = sitePackages(PEERS);
  } catch {
    return `venv-peers has no site-packages (${PEERS}); run: bash bench/serving/setup.sh --force peers`;
  }
  if (!existsSync(join(site, "pytriton/tritonserver/bin/tritonserver"))) {
    return `nvidia-pytriton's tritonserver is missing from ${site}; run: bash bench/serving/setup.sh --force peers`;
  }
  return undefined;
}

/** Directory of libpython3.x.so of the interpreter that made the venv (the Python backend's stub links it). */
function pythonLibDir(): string {
  try {
    const home = /^home = (.+)$/m.exec(readFileSync(join(PEERS, "pyvenv.cfg"), "utf8"))?.[1];
    if (home) return join(home, "..", "lib");
  } catch {
    // fall through
  }
  return "";
}

/** How to run tritonserver: the binary, its fixed arguments and its environment. */
export interface TritonInstall {
  bin: string;
  /** `--backend-directory` and the options every run here needs (no pinned memory, no GPU metrics). */
  baseArgs: string[];
  /** Variables to add to the environment (LD_LIBRARY_PATH, PATH). */
  env: Record<string, string>;
}

/**
 * Lays out bench/.work/tritonserver (once: a copy of pytriton's tree with the
 * Python 3.11 stub in backends/python; made in a scratch directory and
 * renamed, so a concurrent or interrupted run never sees half a tree) and
 * says how to run it.
 *
 * @throws {Error} when venv-peers is missing (see {@link tritonMissing}).
 */
export function tritonInstall(): TritonInstall {
  const missing = tritonMissing();
  if (missing) throw new Error(`bench/serving/triton: ${missing}`);
  const site = sitePackages(PEERS);
  const stub = join(TRITON_DIR, "backends/python/triton_python_backend_stub");
  if (!existsSync(stub)) {
    const tmp = `${TRITON_DIR}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    cpSync(join(site, "pytriton/tritonserver"), tmp, { recursive: true });
    cpSync(join(tmp, "python_backend_stubs/3.11/triton_python_backend_stub"), join(tmp, "backends/python/triton_python_backend_stub"));
    rmSync(TRITON_DIR, { recursive: true, force: true });
    renameSync(tmp, TRITON_DIR);
  }
  const pyLib = process.env["TENSORBRIDGE_PYTHON_LIBDIR"] ?? pythonLibDir();
  return {
    bin: join(TRITON_DIR, "bin/tritonserver"),
    baseArgs: [`--backend-directory=${join(TRITON_DIR, "backends")}`, "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"],
    env: {
      LD_LIBRARY_PATH: [join(site, "nvidia_pytriton.libs"), pyLib, process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":"),
      PATH: `${join(PEERS, "bin")}:${process.env["PATH"]}`,
      // The Python stub would write __pycache__ into a model's version directory as it imports model.py,
      // a change that Triton's next load of the model sees, at times, and reloads for.
      PYTHONDONTWRITEBYTECODE: "1",
    },
  };
}

/** Options of {@link tritonCommand} and {@link startTriton}. */
export interface TritonOptions {
  repository: string;
  httpPort: number;
  grpcPort: number;
  metricsPort: number;
  /** Listening address of HTTP and gRPC (default 127.0.0.1). */
  host?: string;
  /** More tritonserver options (e.g. `--model-control-mode=explicit`, `--load-model=…`). */
  args?: string[];
}

/** tritonservers this process has started: each gets a /dev/shm prefix of its own. */
let started = 0;

/** The command line and environment of one tritonserver run, and the prefix of the /dev/shm regions it makes. */
export function tritonCommand(opts: TritonOptions): { cmd: string; args: string[]; env: Record<string, string>; shmPrefix: string } {
  const install = tritonInstall();
  const host = opts.host ?? "127.0.0.1";
  const shmPrefix = `tb${process.pid}_${++started}_`;
  return {
    shmPrefix,
    cmd: install.bin,
    args: [
      `--model-repository=${opts.repository}`,
      ...install.baseArgs,
      // The Python backend's /dev/shm regions start with this: a killed server's can be found and removed.
      `--backend-config=python,shm-region-prefix-name=${shmPrefix}`,
      `--http-address=${host}`,
      `--http-port=${opts.httpPort}`,
      `--grpc-address=${host}`,
      `--grpc-port=${opts.grpcPort}`,
      `--metrics-port=${opts.metricsPort}`,
      ...(opts.args ?? []),
    ],
    env: install.env,
  };
}

/** A running tritonserver. */
export interface RunningTriton {
  child: ChildProcess;
  /** `http://host:port` of its HTTP endpoint. */
  httpUrl: string;
  /** `host:port` of its gRPC endpoint. */
  grpcUrl: string;
  /** Its stdout and stderr so far. */
  log(): string;
  /** Resolves once `GET /v2/health/ready` answers 200 (and each of `models` is ready); rejects if it exits or the time runs out. */
  ready(models?: string[], timeoutMs?: number): Promise<void>;
  /**
   * SIGTERM, then SIGKILL after 20 s; resolves when it has exited and no
   * process it started (a Python backend stub, or anything a model spawned)
   * is left, nor any of its /dev/shm regions.
   */
  stop(): Promise<void>;
}

/** Starts tritonserver (see {@link tritonCommand}); wait for it with `ready()`. */
export function startTriton(opts: TritonOptions): RunningTriton {
  const { cmd, args, env, shmPrefix } = tritonCommand(opts);
  // Its own process group, so that what it leaves behind when it dies can be
  // killed with it: a stub orphaned by a crash keeps our pipes open, and the
  // test process waiting on them never exits.
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const group = child.pid!;
  liveGroups.add(group);
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  child.once("exit", () => {
    killGroup(group);
    liveGroups.delete(group);
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const host = opts.host ?? "127.0.0.1";
  const httpUrl = `http://${host}:${opts.httpPort}`;
  return {
    child,
    httpUrl,
    grpcUrl: `${host}:${opts.grpcPort}`,
    log: () => out,
    async ready(models = [], timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (const path of ["/v2/health/ready", ...models.map((m) => `/v2/models/${m}/ready`)]) {
        for (;;) {
          try {
            if ((await fetch(`${httpUrl}${path}`)).status === 200) break;
          } catch {
            // not listening yet
          }
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`tritonserver exited (${child.exitCode ?? child.signalCode}):\n${out.slice(-4000)}`);
          if (Date.now() > deadline) throw new Error(`tritonserver: ${path} not ready after ${timeoutMs} ms:\n${out.slice(-4000)}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const done = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await done;
        clearTimeout(t);
      }
      // The group was killed on exit; its pipes close once the last holder is
      // gone, or are let go after 5 s (a process that left the group).
      const grace = new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref());
      await Promise.race([closed, grace]);
      child.stdout!.destroy();
      child.stderr!.destroy();
      // A server that exits cleanly removes its regions; one that was killed leaves them.
      removeShm(shmPrefix);
    },
  };
}

/** Process groups of the tritonservers this process started and that still run. */
const liveGroups = new Set<number>();
// A detached server outlives us unless taken down: do it when this process exits.
process.once("exit", () => {
  for (const g of liveGroups) killGroup(g);
});

/** Removes the /dev/shm regions whose names start with `prefix`. */
function removeShm(prefix: string): void {
  let names: string[];
  try {
    names = readdirSync("/dev/shm");
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith(prefix)) rmSync(join("/dev/shm", name), { force: true });
}

/** SIGKILL to every process of a group; one already gone is no error. */
function killGroup(group: number): void {
  try {
    process.kill(-group, "SIGKILL");
  } catch {
    // ESRCH: nothing left in it
  }
}

/** A started, ready tritonserver and the ports it took. */
export interface ReadyTriton {
  triton: RunningTriton;
  httpPort: number;
  grpcPort: number;
  metricsPort: number;
}

/**
 * Starts tritonserver on free ports and waits until it and `models` are
 * ready. Triton 2.51 was seen to die while loading Python-backend models on
 * a loaded machine (SIGSEGV, "Non-graceful termination detected" in its
 * stub), once in a few runs: a server that exits before it is ready is
 * started again, up to `tries` times in all; any other failure is thrown.
 */
export async function startTritonReady(
  opts: Omit<TritonOptions, "httpPort" | "grpcPort" | "metricsPort">,
  models: string[],
  tries = 3,
  onRetry?: (message: string) => void,
): Promise<ReadyTriton> {
  for (let attempt = 1; ; attempt++) {
    const [httpPort, grpcPort, metricsPort] = (await freePorts(3)) as [number, number, number];
    const triton = startTriton({ ...opts, httpPort, grpcPort, metricsPort });
    try {
      await triton.ready(models);
      return { triton, httpPort, grpcPort, metricsPort };
    } catch (e) {
      await triton.stop();
      if (attempt >= tries || !(e as Error).message.startsWith("tritonserver exited")) throw e;
      onRetry?.(`tritonserver exited while loading (try ${attempt} of ${tries}); starting it again`);
    }
  }
}

/**
 * Free TCP ports on 127.0.0.1 (bound to port 0 together, then released: a
 * port can still be taken by someone else before tritonserver binds it,
 * which then fails to start and says so).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
