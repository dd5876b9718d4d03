#!/usr/bin/env node
/**
 * The `tensorbridge` command line.
 *
 * ```
 * tensorbridge serve [<repository>] [--http-port 8000] [--grpc-port 8001] [--host 127.0.0.1] [--log-verbose]
 * ```
 *
 * @module
 */
import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

import { ServingError, errorMessage } from "./runtime/errors.js";
import {
  DEFAULT_BODY_LIMIT,
  DEFAULT_EXIT_TIMEOUT_MS,
  DEFAULT_GRPC_IDLE_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  InferenceServer,
  type ServerOptions,
} from "./server/server.js";

/** The help text of `tensorbridge --help`. */
export const USAGE = `Usage: tensorbridge serve [<model-repository>] [options]

Serve a Triton-layout model repository of TypeScript models over the
KServe v2 / Triton HTTP and gRPC protocols.

  <model-repository>        directory with <model>/config.pbtxt and
                            <model>/<version>/model.ts (default: the bundled
                            examples/models); --model-repository=<dir> also works

Options:
  --http-port <port>        HTTP port (default 8000; 0 picks a free port)
  --grpc-port <port>        gRPC port (default 8001; 0 picks a free port)
  --allow-grpc[=true|false] serve gRPC (default true)
  --grpc-server <name>      the HTTP/2 server under gRPC: tensorbridge (default, its
                            own) or grpc-js (grpc-js's, on node:http2)
  --host <address>          interface to bind, HTTP and gRPC (default 127.0.0.1; 0.0.0.0 for all)
  --log-verbose             log every request and model event
  --http-max-body-size <n>  largest request body in bytes (default ${DEFAULT_BODY_LIMIT}); larger: HTTP 413
  --http-header-timeout-ms <ms>
                            a request head must arrive within this time of its first
                            byte, else HTTP 408 and the connection closes
                            (default ${DEFAULT_HEADERS_TIMEOUT_MS}; 0: none)
  --http-request-timeout-ms <ms>
                            a whole request, head and body, must arrive within this
                            time, else HTTP 408 and the connection closes
                            (default ${DEFAULT_REQUEST_TIMEOUT_MS}; 0: none)
  --http-max-connections <n>
                            open HTTP connections at most; past it HTTP 503 and the
                            connection closes (default ${DEFAULT_MAX_CONNECTIONS}; 0: no limit;
                            keep it below 'ulimit -n')
  --grpc-max-connections <n>
                            open gRPC connections at most; past it a GOAWAY
                            (clients see UNAVAILABLE) (default ${DEFAULT_MAX_CONNECTIONS}; 0: no limit)
  --grpc-idle-timeout-ms <ms>
                            close gRPC connections with no call open this long
                            (default ${DEFAULT_GRPC_IDLE_TIMEOUT_MS}; 0: never)
  --exit-timeout-secs <s>   on SIGINT/SIGTERM, wait this long for in-flight requests,
                            then exit anyway (default ${DEFAULT_EXIT_TIMEOUT_MS / 1000})
  --grpc-request-timeout-ms <ms>
                            a unary call's request message must arrive within this
                            time, else DEADLINE_EXCEEDED (default: the HTTP request
                            timeout; 0: none)
  --allow-client-shm[=true|false]
                            allow the system shared-memory extension (default false)
  --strict-readiness[=true|false]
                            /v2/health/ready only when every model is ready (default true)
  --model-control-mode <mode>
                            none: every model loads at start, the load/unload API is
                            refused (as Triton's default); explicit: only --load-model
                            models load at start, the API loads and unloads (default:
                            every model at start, and the API allowed)
  --load-model <name>       with --model-control-mode explicit: a model to load at
                            start (repeat it; * for all)
  --disable-auto-complete-config
                            do not run models' static autoCompleteConfig(config), and
                            require config.pbtxt (default: models may complete it)
  --strict-model-config[=true|false]
                            Triton's older spelling: true = --disable-auto-complete-config
  -h, --help                show this help
  -v, --version             show the version

SIGINT or SIGTERM stops the server gracefully: in-flight requests finish,
then every model's finalize() runs. A second signal exits at once.

Example:
  tensorbridge serve examples/models --http-port 8000 --grpc-port 8001
  curl -s localhost:8000/v2/models/add_sub/infer -d '{"inputs":[
    {"name":"INPUT0","shape":[4],"datatype":"FP32","data":[1,2,3,4]},
    {"name":"INPUT1","shape":[4],"datatype":"FP32","data":[4,3,2,1]}]}'
`;

/** Parsed command line. */
export interface CliCommand {
  /** What to do. */
  command: "serve" | "help" | "version";
  /** Server options for `serve`. */
  options: ServerOptions;
}

function usageError(message: string): never {
  throw new ServingError("ERR_CLI_USAGE", `${message}\nRun 'tensorbridge --help' for usage.`);
}

function parseBool(name: string, v: string | undefined): boolean {
  if (v === undefined || v === "true" || v === "1" || v === "yes") return true;
  if (v === "false" || v === "0" || v === "no") return false;
  return usageError(`--${name} takes true or false, got '${v}'`);
}

/** The bundled example repository (`examples/models` next to `src/` or `dist/`). */
export function defaultRepository(): string {
  return fileURLToPath(new URL("../examples/models", import.meta.url));
}

/**
 * Parses the arguments after `tensorbridge`.
 *
 * @throws {ServingError} `ERR_CLI_USAGE` for unknown or malformed options.
 */
export function parseCli(argv: readonly string[]): CliCommand {
  const options: ServerOptions = { repository: "" };
  let command: CliCommand["command"] | undefined;
  const positional: string[] = [];
  let repoFlag: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h" || arg === "--help") return { command: "help", options };
    if (arg === "-v" || arg === "--version") return { command: "version", options };
    if (!arg.startsWith("-") || arg === "-") {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = (eq >= 0 ? arg.slice(0, eq) : arg).replace(/^--?/, "");
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) usageError(`--${name} needs a value`);
      i++;
      return next;
    };
    const intValue = (min: number, max: number): number => {
      const s = value();
      if (!/^[0-9]+$/.test(s) || Number(s) < min || Number(s) > max) usageError(`--${name} must be an integer from ${min} to ${max}, got '${s}'`);
      return Number(s);
    };
    switch (name) {
      case "http-port":
      case "port":
        options.port = intValue(0, 65535);
        break;
      case "grpc-port":
        options.grpcPort = intValue(0, 65535);
        break;
      case "allow-grpc":
        options.allowGrpc = parseBool(name, inline);
        break;
      case "model-control-mode": {
        const v = value().toLowerCase();
        if (v === "poll") usageError("--model-control-mode poll is not supported (tensorbridge does not poll the repository): use none or explicit");
        if (v !== "none" && v !== "explicit") usageError(`--model-control-mode takes none or explicit, got '${v}'`);
        options.modelControlMode = v;
        break;
      }
      case "load-model":
        options.loadModels = [...(options.loadModels ?? []), value()];
        break;
      case "grpc-server": {
        const v = value();
        if (v !== "tensorbridge" && v !== "grpc-js") usageError(`--grpc-server takes tensorbridge or grpc-js, got '${v}'`);
        options.grpcServer = v;
        break;
      }
      case "host":
      case "http-address":
        options.host = value();
        break;
      case "model-repository":
      case "model-store":
        repoFlag = value();
        break;
      case "log-verbose":
        options.logVerbose = inline === undefined ? true : inline !== "0" && parseBool(name, inline);
        break;
      case "http-max-body-size":
        options.bodyLimit = intValue(1, Number.MAX_SAFE_INTEGER);
        break;
      case "http-header-timeout-ms":
        options.headersTimeoutMs = intValue(0, 2 ** 31 - 1);
        break;
      case "http-request-timeout-ms":
        options.requestTimeoutMs = intValue(0, 2 ** 31 - 1);
        break;
      case "http-max-connections":
        options.maxConnections = intValue(0, 2 ** 31 - 1);
        break;
      case "grpc-max-connections":
        options.grpcMaxConnections = intValue(0, 2 ** 31 - 1);
        break;
      case "grpc-idle-timeout-ms":
        options.grpcIdleTimeoutMs = intValue(0, 2 ** 31 - 1);
        break;
      case "grpc-request-timeout-ms":
        options.grpcRequestTimeoutMs = intValue(0, 2 ** 31 - 1);
        break;
      case "exit-timeout-secs":
        options.exitTimeoutMs = intValue(0, 2_000_000) * 1000;
        break;
      case "allow-client-shm":
        options.allowClientShm = parseBool(name, inline);
        break;
      case "strict-readiness":
        options.strictReadiness = parseBool(name, inline);
        break;
      case "disable-auto-complete-config":
        if (inline !== undefined) usageError("--disable-auto-complete-config takes no value");
        options.autoCompleteConfig = false;
        break;
      case "strict-model-config":
        // Triton's older spelling: strict means no auto-complete.
        options.autoCompleteConfig = !parseBool(name, inline);
        break;
      default:
        usageError(`unknown option '${arg}'`);
    }
  }
  if (positional[0] === "serve") {
    command = "serve";
    positional.shift();
  } else if (positional.length === 0 && repoFlag !== undefined) {
    command = "serve";
  }
  if (repoFlag !== undefined) {
    if (positional.length > 0) usageError("give the model repository either as an argument or with --model-repository, not both");
    positional.push(repoFlag);
  }
  if (command === undefined) {
    if (positional.length === 0) return { command: "help", options };
    usageError(`unknown command '${positional[0]}'`);
  }
  if (positional.length > 1) usageError(`serve takes one model repository, got ${positional.length}: ${positional.join(" ")}`);
  options.repository = positional[0] ?? defaultRepository();
  return { command, options };
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/**
 * Runs the CLI. For `serve`, resolves once the server listens and installs
 * SIGINT/SIGTERM handlers that close it gracefully and exit.
 *
 * @param argv - the arguments after the program name.
 * @returns the exit code for `help`/`version`/errors, or the running server.
 */
export async function main(argv: readonly string[]): Promise<number | InferenceServer> {
  let cmd: CliCommand;
  try {
    cmd = parseCli(argv);
  } catch (e) {
    process.stderr.write(`tensorbridge: ${errorMessage(e)}\n`);
    return 2;
  }
  if (cmd.command === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cmd.command === "version") {
    process.stdout.write(`tensorbridge ${version()}\n`);
    return 0;
  }
  const opts = cmd.options;
  let server: InferenceServer;
  try {
    server = await InferenceServer.start(opts);
  } catch (e) {
    process.stderr.write(`tensorbridge: cannot start the server: ${errorMessage(e)}\n`);
    return 1;
  }
  const index = await server.registry.index();
  const rows = index.map((r) => [r.name, r.version ?? "-", r.state ?? "-", r.reason ?? ""]);
  if (rows.length > 0) {
    const w = [5, 7, 6].map((min, c) => Math.max(min, ...rows.map((r) => r[c]!.length)));
    const line = (r: string[]) => `| ${r[0]!.padEnd(w[0]!)} | ${r[1]!.padEnd(w[1]!)} | ${r[2]!.padEnd(w[2]!)} | ${r[3]}`;
    process.stdout.write(`${line(["Model", "Version", "Status", "Reason"])}\n${rows.map(line).join("\n")}\n`);
  } else {
    process.stdout.write(`no models in ${server.registry.repository}\n`);
  }
  const grpc = server.grpcAddress;
  if (grpc !== undefined) process.stdout.write(`Started GRPCInferenceService at ${grpc.url}\n`);
  process.stdout.write(`Started HTTPService at ${server.address.host}:${server.address.port}\n`);
  process.stdout.write(`Started Metrics Service at ${server.address.url}/metrics\n`);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`tensorbridge: ${signal} again, exiting now\n`);
      process.exit(130);
    }
    stopping = true;
    process.stdout.write(`tensorbridge: ${signal}: stopping (waiting for in-flight requests, then finalizing models)\n`);
    server.close().then(
      () => {
        process.stdout.write("tensorbridge: stopped\n");
        process.exit(0);
      },
      (e: unknown) => {
        process.stderr.write(`tensorbridge: error while stopping: ${errorMessage(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return server;
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  const result = await main(process.argv.slice(2));
  if (typeof result === "number") process.exitCode = result;
}
