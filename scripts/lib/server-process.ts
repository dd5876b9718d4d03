/**
 * A `tensorbridge serve` child process for the slow-client, hostile-request
 * and load scripts: started through the CLI (so the flags under test are
 * the ones users pass), with its ports read from its banner and its RSS
 * read from /proc.
 *
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** A running server process. */
export interface ServerProcess {
  /** The child process. */
  child: ChildProcess;
  /** HTTP port. */
  httpPort: number;
  /** gRPC port (0 when gRPC is off). */
  grpcPort: number;
  /** What the server wrote to stdout and stderr so far. */
  output(): string;
  /** The server's resident set size in MiB (Linux: /proc), NaN elsewhere. */
  rssMib(): number;
  /** True while the process runs. */
  alive(): boolean;
  /** SIGTERM (a graceful stop); resolves with the exit code, SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Starts `tensorbridge serve <repository> --http-port 0 --grpc-port 0 …args`
 * and resolves once both services listen.
 *
 * @throws {Error} with the server's output when it exits or does not listen within `timeoutMs`.
 */
export function startServerProcess(repository: string, args: string[] = [], timeoutMs = 60_000): Promise<ServerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src/cli.ts"), "serve", repository, "--http-port", "0", "--grpc-port", "0", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let exited = false;
  let exitCode: number | null = null;
  const exit = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      exited = true;
      exitCode = code;
      resolve(code);
    }),
  );
  const proc: ServerProcess = {
    child,
    httpPort: 0,
    grpcPort: 0,
    output: () => out,
    rssMib: () => {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        return m ? Number(m[1]) / 1024 : Number.NaN;
      } catch {
        return Number.NaN;
      }
    },
    alive: () => !exited,
    stop: async (graceMs = 30_000) => {
      if (exited) return exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exit;
      clearTimeout(timer);
      return code;
    },
  };
  const grpcOff = args.some((a) => a === "--allow-grpc=false");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the server did not listen within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (d: Buffer): void => {
      // The last 64 KiB: a server that logs every refused request must not grow this process.
      out = (out + d.toString()).slice(-65_536);
      const h = /Started HTTPService at .*:(\d+)/.exec(out);
      const g = /Started GRPCInferenceService at .*:(\d+)/.exec(out);
      if (h && (g || grpcOff) && proc.httpPort === 0) {
        proc.httpPort = Number(h[1]);
        proc.grpcPort = g ? Number(g[1]) : 0;
        clearTimeout(timer);
        resolve(proc);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exit.then((code) => {
      clearTimeout(timer);
      if (proc.httpPort === 0) reject(new Error(`the server exited (${code}) before listening:\n${out}`));
    });
  });
}
