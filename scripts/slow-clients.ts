#!/usr/bin/env -S node --import tsx
/**
 * Slow clients against a `tensorbridge serve` process: thousands of
 * connections that trickle a request head, trickle a body announced as
 * 60 MiB (to the HTTP/1.1 front's inference path and to node:http through
 * fastify), or — over gRPC — stay silent or trickle a unary call's message,
 * more of them than the connection limits allow; meanwhile one normal
 * client keeps inferring on the keep-alive connection it opened before.
 *
 *   node --import tsx scripts/slow-clients.ts                       3000 HTTP + 600 gRPC clients
 *   node --import tsx scripts/slow-clients.ts --clients 300 --json out.json
 *
 * Reports: slow clients ended at the deadline (HTTP 408 / gRPC
 * DEADLINE_EXCEEDED or GOAWAY at the idle timeout) and when, refusals past
 * the limits (HTTP 503 / GOAWAY ENHANCE_YOUR_CALM), the normal client's
 * latency throughout (p50, max, failures) and the server's RSS (before,
 * peak, after). Exit 1 when a slow client outlives its deadline by more
 * than the check slack, the normal client fails, or the server dies.
 *
 * Keep `--max-connections` below `ulimit -n` (both processes hold one
 * descriptor per client).
 *
 * @module
 */
import { connect as h2connect, constants as h2c, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { connect as netConnect } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { Client } from "undici";

import { ROOT, startServerProcess, type ServerProcess } from "./lib/server-process.js";

/** Options of {@link runSlowClients}. */
export interface SlowClientOptions {
  /** Slow HTTP clients (default 3000). */
  clients: number;
  /** `--http-max-connections` (default 2000). */
  maxConnections: number;
  /** `--http-header-timeout-ms` (default 5000). */
  headerTimeoutMs: number;
  /** `--http-request-timeout-ms` (default 10 000). */
  requestTimeoutMs: number;
  /** Slow gRPC clients (default 600). */
  grpcClients: number;
  /** `--grpc-max-connections` (default 400). */
  grpcMaxConnections: number;
  /** `--grpc-idle-timeout-ms` (default 5000). */
  grpcIdleTimeoutMs: number;
  /** `--grpc-request-timeout-ms` (default 10 000). */
  grpcRequestTimeoutMs: number;
  /** A slow client sends one byte this often, in ms (default 500). */
  trickleMs: number;
  /** The normal client sends a request this often, in ms (default 50). */
  normalEveryMs: number;
  /** The model repository (default examples/models). */
  repository: string;
}

/** What one slow client saw. */
/**
 * `timed-out`: ended at a deadline with its answer (HTTP 408, gRPC
 * DEADLINE_EXCEEDED, GOAWAY at the idle timeout); `refused`: answered 503 /
 * GOAWAY ENHANCE_YOUR_CALM; `dropped`: closed past the limit at once;
 * `closed`: closed with no answer later (past the limit: reset before this
 * loaded process read its 503); `open`: never ended.
 */
type Outcome = "timed-out" | "refused" | "dropped" | "closed" | "open";

/** The figures {@link runSlowClients} reports. */
export interface SlowClientReport {
  options: SlowClientOptions;
  http: {
    /** Per kind (`head`, `front-body`, `node-body`): outcome counts. */
    kinds: Record<string, Record<Outcome, number>>;
    /** Seconds from a timed-out client's connect to its 408, min / max. */
    endedAfterS: { min: number; max: number };
    refused: number;
    /** Closed past the limit without an answer (more refusals at once than MAX_LINGERING). */
    dropped: number;
  };
  grpc: {
    kinds: Record<string, Record<Outcome, number>>;
    endedAfterS: { min: number; max: number };
    refused: number;
    dropped: number;
  };
  normal: { requests: number; failures: number; p50Ms: number; p99Ms: number; maxMs: number };
  server: { rssMib: { before: number; peak: number; after: number }; alive: boolean; counters?: unknown };
  seconds: number;
  failures: string[];
}

const DEFAULTS: SlowClientOptions = {
  clients: 3000,
  maxConnections: 2000,
  headerTimeoutMs: 5000,
  requestTimeoutMs: 10_000,
  grpcClients: 600,
  grpcMaxConnections: 400,
  grpcIdleTimeoutMs: 5000,
  grpcRequestTimeoutMs: 10_000,
  trickleMs: 500,
  normalEveryMs: 50,
  repository: join(ROOT, "examples/models"),
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ADD_SUB_BODY = JSON.stringify({
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
  ],
});

interface Slow {
  kind: string;
  start: number;
  end: number;
  outcome: Outcome;
  /** The next bytes to trickle, one per tick. */
  trickle: Buffer;
  at: number;
  write(b: Buffer): void;
}

/** One raw HTTP/1.1 connection that trickles its request. */
function slowHttp(port: number, kind: string, all: Slow[]): Promise<void> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    const head =
      kind === "head"
        ? "POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: "
        : `POST ${kind === "front-body" ? "/v2/models/add_sub/infer" : "/v2/repository/index"} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${60 * 1024 * 1024}\r\n\r\n{`;
    const c: Slow = {
      kind,
      start: Date.now(),
      end: 0,
      outcome: "open",
      trickle: Buffer.from("a".repeat(100_000)),
      at: 0,
      // Nothing before the head: the ticker may run before the connection is up.
      write: (b) => {
        if (!s.destroyed && s.readyState === "open" && s.bytesWritten > 0) s.write(b);
      },
    };
    let first = "";
    s.on("data", (d: Buffer) => {
      if (first.length < 16) first += d.toString("latin1");
      // As a client does once answered with Connection: close.
      if (first.length >= 12) s.end();
    });
    s.on("error", () => {});
    s.on("close", () => {
      c.end = Date.now();
      // Closed with no answer before any deadline: dropped past the limit
      // (refusals waiting for their answer are capped; see connection-limit.ts).
      c.outcome = first.startsWith("HTTP/1.1 408")
        ? "timed-out"
        : first.startsWith("HTTP/1.1 503")
          ? "refused"
          : first === "" && c.end - c.start < 1000
            ? "dropped"
            : "closed";
    });
    s.once("connect", () => {
      s.write(head);
      resolve();
    });
    s.once("close", () => resolve());
    all.push(c);
  });
}

/** One HTTP/2 connection: `idle` opens no call; `message` trickles a unary ModelInfer's message. */
function slowGrpc(port: number, kind: string, all: Slow[]): Promise<void> {
  return new Promise((resolve) => {
    const session: ClientHttp2Session = h2connect(`http://127.0.0.1:${port}`);
    const c: Slow = { kind, start: Date.now(), end: 0, outcome: "open", trickle: Buffer.alloc(100_000, 1), at: 0, write: () => {} };
    all.push(c);
    let goawayCode = -1;
    let grpcStatus = "";
    session.on("error", () => {});
    session.on("goaway", (code) => {
      goawayCode = code;
    });
    session.on("close", () => {
      c.end ||= Date.now();
      if (c.outcome === "open") {
        c.outcome = goawayCode === h2c.NGHTTP2_ENHANCE_YOUR_CALM ? "refused" : goawayCode === h2c.NGHTTP2_NO_ERROR ? "timed-out" : "closed";
      }
      resolve();
    });
    session.once("connect", () => {
      resolve();
      if (kind !== "message") return;
      const req = session.request({ ":method": "POST", ":path": "/inference.GRPCInferenceService/ModelInfer", "content-type": "application/grpc", te: "trailers" });
      req.on("error", () => {});
      req.on("response", (h) => {
        grpcStatus = String(h["grpc-status"] ?? "");
      });
      req.on("trailers", (h) => {
        grpcStatus = String(h["grpc-status"] ?? grpcStatus);
      });
      closeWhenAnswered(req);
      req.on("close", () => {
        c.end = Date.now();
        // DEADLINE_EXCEEDED: 4; a refused connection's GOAWAY may come before the call's end
        c.outcome = grpcStatus === "4" ? "timed-out" : goawayCode === h2c.NGHTTP2_ENHANCE_YOUR_CALM ? "refused" : "closed";
        session.close();
      });
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(60 * 1024 * 1024, 1);
      req.write(prefix);
      c.write = (b) => {
        if (!req.destroyed && !req.writableEnded) req.write(b);
      };
    });
  });
}

/**
 * Reads `req`'s response and closes it once the server's side ends, as a
 * gRPC client does. A server that ends a call whose request is still
 * arriving sends its status with END_STREAM, then RST_STREAM(NO_ERROR);
 * node's HTTP/2 client keeps a stream whose response nobody reads, and
 * whose own side is still writing, open after that (its `close` never
 * comes). The trickling clients here and in __test__/server-limits.spec.ts
 * use it.
 */
export function closeWhenAnswered(req: ClientHttp2Stream): void {
  req.resume();
  req.on("end", () => {
    if (!req.closed) req.close();
  });
}

/**
 * Runs the slow clients against a fresh server process.
 *
 * @returns the figures; `failures` lists what went wrong (empty when all is well).
 */
export async function runSlowClients(opts: Partial<SlowClientOptions> = {}): Promise<SlowClientReport> {
  const o: SlowClientOptions = { ...DEFAULTS, ...opts };
  const t0 = Date.now();
  const failures: string[] = [];
  const server: ServerProcess = await startServerProcess(o.repository, [
    `--http-max-connections=${o.maxConnections}`,
    `--http-header-timeout-ms=${o.headerTimeoutMs}`,
    `--http-request-timeout-ms=${o.requestTimeoutMs}`,
    `--grpc-max-connections=${o.grpcMaxConnections}`,
    `--grpc-idle-timeout-ms=${o.grpcIdleTimeoutMs}`,
    `--grpc-request-timeout-ms=${o.grpcRequestTimeoutMs}`,
  ]);
  const rss = { before: server.rssMib(), peak: 0, after: 0 };
  const http: Slow[] = [];
  const grpc: Slow[] = [];
  const latencies: number[] = [];
  let normalFailures = 0;
  const state = { running: true };
  // The normal client: one keep-alive connection, opened before the flood.
  const normal = new Client(`http://127.0.0.1:${server.httpPort}`, { pipelining: 1, keepAliveTimeout: 600_000 });
  const normalLoop = (async () => {
    while (state.running) {
      const s = performance.now();
      try {
        const res = await normal.request({ method: "POST", path: "/v2/models/add_sub/infer", body: ADD_SUB_BODY, headers: { "content-type": "application/json" } });
        const body = (await res.body.json()) as { outputs?: { data: number[] }[] };
        if (res.statusCode !== 200 || body.outputs?.[0]?.data[0] !== 5) normalFailures++;
      } catch {
        normalFailures++;
      }
      latencies.push(performance.now() - s);
      await sleep(o.normalEveryMs);
    }
  })();
  await sleep(200);
  const ticker = setInterval(() => {
    rss.peak = Math.max(rss.peak, server.rssMib());
    for (const c of [...http, ...grpc]) {
      if (c.outcome !== "open" || c.at >= c.trickle.length) continue;
      c.write(c.trickle.subarray(c.at, c.at + 1));
      c.at++;
    }
  }, o.trickleMs);
  // Open the slow clients in batches: the listen backlog is finite.
  const kinds = ["head", "front-body", "node-body"];
  for (let i = 0; i < o.clients; i += 100) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(o.clients, i + 100); j++) batch.push(slowHttp(server.httpPort, kinds[j % 3]!, http));
    await Promise.all(batch);
  }
  for (let i = 0; i < o.grpcClients; i += 100) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(o.grpcClients, i + 100); j++) batch.push(slowGrpc(server.grpcPort, j % 2 === 0 ? "idle" : "message", grpc));
    await Promise.all(batch);
  }
  // Everyone's deadline, plus the checking slack (a quarter), plus time to close.
  const longest = Math.max(o.requestTimeoutMs, o.headerTimeoutMs, o.grpcIdleTimeoutMs, o.grpcRequestTimeoutMs);
  const until = Date.now() + longest * 1.25 + 5000;
  while (Date.now() < until && [...http, ...grpc].some((c) => c.outcome === "open")) await sleep(200);
  clearInterval(ticker);
  state.running = false;
  await normalLoop;
  await normal.close();
  rss.after = server.rssMib();
  const alive = server.alive();
  if (!alive) failures.push("the server process died");

  const tally = (list: Slow[]) => {
    const kindsOut: Record<string, Record<Outcome, number>> = {};
    for (const c of list) {
      const k = (kindsOut[c.kind] ??= { "timed-out": 0, refused: 0, dropped: 0, closed: 0, open: 0 });
      k[c.outcome]++;
    }
    const ended = list.filter((c) => c.outcome === "timed-out").map((c) => (c.end - c.start) / 1000);
    return {
      kinds: kindsOut,
      endedAfterS: { min: ended.length ? Math.min(...ended) : Number.NaN, max: ended.length ? Math.max(...ended) : Number.NaN },
      refused: list.filter((c) => c.outcome === "refused").length,
      dropped: list.filter((c) => c.outcome === "dropped").length,
    };
  };
  const h = tally(http);
  const g = tally(grpc);
  // The normal client holds one HTTP place.
  for (const [name, list, places] of [["HTTP", http, o.maxConnections - 1] as const, ["gRPC", grpc, o.grpcMaxConnections] as const]) {
    const open = list.filter((c) => c.outcome === "open").length;
    if (open > 0) failures.push(`${open} slow ${name} clients were still open after every deadline`);
    // Every accepted client ends at its deadline with an answer; the rest
    // were past the limit (refused: answered, dropped, or reset before the
    // loaded client read its answer).
    // (A connection the loaded server accepts late, after a deadline freed
    // a place, is accepted: more than `places` may time out.)
    const timedOut = list.filter((c) => c.outcome === "timed-out").length;
    const want = places > 0 ? Math.min(list.length, places) : list.length;
    if (timedOut < want) failures.push(`only ${timedOut} slow ${name} clients ended at a deadline, not ${want} (every place)`);
  }
  if (o.clients > o.maxConnections && h.refused === 0) failures.push("no HTTP client was refused past the connection limit");
  if (o.grpcClients > o.grpcMaxConnections && g.refused === 0) failures.push("no gRPC client was refused past the connection limit");
  if (normalFailures > 0) failures.push(`the normal client failed ${normalFailures} times`);
  const sorted = [...latencies].sort((a, b) => a - b);
  const report: SlowClientReport = {
    options: o,
    http: h,
    grpc: g,
    normal: { requests: latencies.length, failures: normalFailures, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1) ?? Number.NaN },
    server: { rssMib: rss, alive },
    seconds: (Date.now() - t0) / 1000,
    failures,
  };
  const code = await server.stop(10_000);
  if (code !== 0) failures.push(`the server exited with ${code} on SIGTERM`);
  return report;
}

function parseArgs(argv: string[]): { opts: Partial<SlowClientOptions>; json?: string } {
  const opts: Partial<SlowClientOptions> = {};
  let json: string | undefined;
  const keys: Record<string, keyof SlowClientOptions> = {
    "--clients": "clients",
    "--max-connections": "maxConnections",
    "--header-timeout-ms": "headerTimeoutMs",
    "--request-timeout-ms": "requestTimeoutMs",
    "--grpc-clients": "grpcClients",
    "--grpc-max-connections": "grpcMaxConnections",
    "--grpc-idle-timeout-ms": "grpcIdleTimeoutMs",
    "--grpc-request-timeout-ms": "grpcRequestTimeoutMs",
    "--trickle-ms": "trickleMs",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--json") json = argv[++i];
    else if (a === "--repository") opts.repository = argv[++i]!;
    else if (keys[a] !== undefined) (opts as Record<string, number>)[keys[a]] = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  return { opts, json };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { opts, json } = parseArgs(process.argv.slice(2));
  const report = await runSlowClients(opts);
  const text = JSON.stringify(report, null, 2);
  if (json) writeFileSync(json, text);
  console.log(text);
  process.exitCode = report.failures.length > 0 ? 1 : 0;
}
