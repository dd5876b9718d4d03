#!/usr/bin/env -S node --import tsx
/**
 * Load over mixed models against a `tensorbridge serve` process: add_sub
 * (HTTP JSON and gRPC), `flaky` (throws on inputs divisible by 7), `slow`
 * (answers 5–40 ms later) and the decoupled `repeat` (gRPC streams, three
 * responses per request), at a fixed concurrency for a fixed time; then a
 * graceful shutdown (SIGTERM) while the load goes on.
 *
 *   node --import tsx scripts/load.ts                                60 s at concurrency 64
 *   node --import tsx scripts/load.ts --duration-ms 5000 --json out.json
 *
 * Every answer is checked against its request (unique values and ids per
 * request: the outputs, the id, the model, the flaky model's error naming
 * the request's own input; a stream's responses by id and index): lost,
 * duplicated and mixed-up answers are counted and are failures. Requests
 * started before SIGTERM must be answered (but for HTTP requests written
 * on a keep-alive connection the server closed as idle at that moment, or
 * whose new connection was refused because the listener had closed:
 * counted apart as `keepAliveRace`); requests started after it are
 * answered or refused cleanly (HTTP 503 with a JSON error, gRPC
 * UNAVAILABLE, a refused or closed connection). Reports p50/p99/max per
 * kind and overall, and the server's RSS.
 *
 * @module
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { Pool } from "undici";

import { ROOT, startServerProcess } from "./lib/server-process.js";

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** How long the load runs before the shutdown, in ms (default 60 000). */
  durationMs: number;
  /** Requests in flight at once (default 64). */
  concurrency: number;
  /** Keep the load going this long after SIGTERM, in ms (default 2000). */
  shutdownLoadMs: number;
}

/** Per kind of request: how many, their outcomes, and latencies. */
interface KindStats {
  sent: number;
  ok: number;
  /** Model errors that were expected (flaky on a multiple of 7), with the right message. */
  expectedErrors: number;
  latencyMs: { p50: number; p99: number; max: number };
}

/** The figures {@link runLoad} reports. */
export interface LoadReport {
  options: LoadOptions;
  kinds: Record<string, KindStats>;
  /** Before SIGTERM: every request, and the latency over all kinds. */
  total: { sent: number; answered: number; perSecond: number; latencyMs: { p50: number; p99: number; max: number } };
  /** Answers that were wrong: `lost` (no answer), `duplicated`, `mixed` (another request's answer or a wrong value). */
  wrong: { lost: number; duplicated: number; mixed: number };
  shutdown: {
    /** Requests in flight when SIGTERM was sent, and how many of them were answered correctly. */
    inFlight: number;
    inFlightAnswered: number;
    /**
     * HTTP requests the client had just written on a keep-alive connection
     * that the server, seeing it idle, closed at SIGTERM: never read, so
     * never accepted (HTTP/1.1 has no way to close a connection without
     * this race; the client sees "other side closed" and may retry); and
     * HTTP requests whose client was still opening a new connection when
     * the listener closed (ECONNREFUSED: the server never saw them). gRPC
     * has no such race (GOAWAY names the last stream taken).
     */
    keepAliveRace: number;
    /** Requests started after SIGTERM: answered, refused cleanly, or otherwise. */
    after: { answered: number; refused: number; other: number };
    /** How the refusals looked. */
    refusals: Record<string, number>;
    exitCode: number | null;
    /** From SIGTERM to the process's exit, in s. */
    seconds: number;
  };
  rssMib: { start: number; peak: number; end: number };
  failures: string[];
}

const DEFAULTS: LoadOptions = { durationMs: 60_000, concurrency: 64, shutdownLoadMs: 2000 };

type Outcome = { kind: "ok" } | { kind: "expected-error" } | { kind: "refused"; how: string } | { kind: "wrong"; why: "lost" | "duplicated" | "mixed"; detail: string };

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const round2 = (v: number): number => Math.round(v * 100) / 100;
function summary(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const r = round2;
  return { p50: r(pct(s, 50)), p99: r(pct(s, 99)), max: r(s.at(-1) ?? Number.NaN) };
}

const i32 = (a: number[]): Buffer => Buffer.from(new Int32Array(a).buffer);
const u32 = (a: number[]): Buffer => Buffer.from(new Uint32Array(a).buffer);

type GrpcClient = grpc.Client & Record<string, (...args: any[]) => any>;

function grpcClient(port: number): GrpcClient {
  const dir = join(ROOT, "proto/triton");
  const def = loadSync(join(dir, "grpc_service.proto"), { keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: false, oneofs: true, includeDirs: [dir] });
  const Ctor = grpc.loadPackageDefinition(def)["inference"] as unknown as { GRPCInferenceService: new (t: string, c: grpc.ChannelCredentials, o: object) => GrpcClient };
  return new Ctor.GRPCInferenceService(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {});
}

/** An HTTP answer that is a shutdown's refusal: 503 with a JSON error. */
function httpRefusal(status: number, json: any): string | undefined {
  return status === 503 && typeof json?.error === "string" ? "http 503" : undefined;
}

/** Is this failure a clean refusal of a request the server never took (shutdown)? */
function refusalOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && ["ECONNREFUSED", "ECONNRESET", "UND_ERR_SOCKET", "UND_ERR_CLOSED", "EPIPE"].includes(code)) return code;
  if (code === grpc.status.UNAVAILABLE) return "grpc UNAVAILABLE";
  return undefined;
}

interface StreamWaiter {
  id: string;
  values: number[];
  got: Map<number, number>;
  resolve(o: Outcome): void;
}

/**
 * Runs the load against a fresh server process, then shuts it down under load.
 *
 * @returns the figures; `failures` lists what went wrong.
 */
export async function runLoad(opts: Partial<LoadOptions> = {}): Promise<LoadReport> {
  const o: LoadOptions = { ...DEFAULTS, ...opts };
  const repo = mkdtempSync(join(tmpdir(), "tb-load-"));
  for (const m of ["add_sub", "repeat"]) cpSync(join(ROOT, "examples/models", m), join(repo, m), { recursive: true });
  for (const m of ["flaky", "slow"]) cpSync(join(ROOT, "__test__/fixtures/load", m), join(repo, m), { recursive: true });
  const server = await startServerProcess(repo);
  const pool = new Pool(`http://127.0.0.1:${server.httpPort}`, { connections: o.concurrency, pipelining: 1 });
  const client = grpcClient(server.grpcPort);
  const rss = { start: server.rssMib(), peak: 0, end: 0 };
  const failures: string[] = [];
  const wrong = { lost: 0, duplicated: 0, mixed: 0 };
  const stats = new Map<string, { sent: number; ok: number; expectedErrors: number; lat: number[] }>();
  const allLat: number[] = [];
  let seq = 1;
  const phase = { shuttingDown: false, stop: false };
  const shutdownStats = { inFlight: 0, inFlightAnswered: 0, keepAliveRace: 0, after: { answered: 0, refused: 0, other: 0 }, refusals: {} as Record<string, number> };
  const inFlightAtSigterm = new Set<Promise<Outcome>>();
  const running = new Set<Promise<Outcome>>();
  let sentBefore = 0;
  let answeredBefore = 0;
  const t0 = Date.now();

  const note = (o2: Outcome, kind: string, id: string): void => {
    if (o2.kind === "wrong") {
      wrong[o2.why]++;
      if (failures.length < 20) failures.push(`${kind} ${id}: ${o2.why}: ${o2.detail}`);
    }
  };

  // --- one request of each kind -------------------------------------------
  const httpJson = async (model: string, body: object): Promise<{ status: number; json: any }> => {
    const res = await pool.request({ method: "POST", path: `/v2/models/${model}/infer`, body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    const text = await res.body.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = { unparsable: text.slice(0, 200) };
    }
    return { status: res.statusCode, json };
  };

  const addSubHttp = async (v: number, id: string): Promise<Outcome> => {
    const a = [v, v + 1, v + 2, v + 3];
    const b = [1, 2, 3, 4];
    const { status, json } = await httpJson("add_sub", { id, inputs: [{ name: "INPUT0", shape: [4], datatype: "FP32", data: a }, { name: "INPUT1", shape: [4], datatype: "FP32", data: b }] });
    const refused = httpRefusal(status, json);
    if (refused) return { kind: "refused", how: refused };
    const out0 = json?.outputs?.find((x: any) => x.name === "OUTPUT0")?.data;
    const out1 = json?.outputs?.find((x: any) => x.name === "OUTPUT1")?.data;
    if (status !== 200 || json.id !== id || JSON.stringify(out0) !== JSON.stringify(a.map((x, i) => x + b[i]!)) || JSON.stringify(out1) !== JSON.stringify(a.map((x, i) => x - b[i]!))) {
      return { kind: "wrong", why: "mixed", detail: `${status} ${JSON.stringify(json).slice(0, 200)}` };
    }
    return { kind: "ok" };
  };
  const flakyHttp = async (v: number, id: string): Promise<Outcome> => {
    const { status, json } = await httpJson("flaky", { id, inputs: [{ name: "IN", shape: [1], datatype: "INT32", data: [v] }] });
    const refused = httpRefusal(status, json);
    if (refused) return { kind: "refused", how: refused };
    if (v % 7 === 0) {
      if (status >= 400 && typeof json?.error === "string" && json.error.includes(`IN ${v} is divisible`)) return { kind: "expected-error" };
      return { kind: "wrong", why: "mixed", detail: `expected flaky's error for ${v}: ${status} ${JSON.stringify(json).slice(0, 200)}` };
    }
    if (status !== 200 || json.id !== id || json.outputs?.[0]?.data?.[0] !== v * 2) return { kind: "wrong", why: "mixed", detail: `${status} ${JSON.stringify(json).slice(0, 200)}` };
    return { kind: "ok" };
  };
  const slowHttp = async (v: number, id: string): Promise<Outcome> => {
    const { status, json } = await httpJson("slow", { id, inputs: [{ name: "IN", shape: [1], datatype: "INT32", data: [v] }, { name: "DELAY", shape: [1], datatype: "UINT32", data: [5 + (v % 36)] }] });
    const refused = httpRefusal(status, json);
    if (refused) return { kind: "refused", how: refused };
    if (status !== 200 || json.id !== id || json.outputs?.[0]?.data?.[0] !== v) return { kind: "wrong", why: "mixed", detail: `${status} ${JSON.stringify(json).slice(0, 200)}` };
    return { kind: "ok" };
  };
  const addSubGrpc = (v: number, id: string): Promise<Outcome> =>
    new Promise((resolve) => {
      const a = new Float32Array([v, v + 1, v + 2, v + 3]);
      const b = new Float32Array([4, 3, 2, 1]);
      const req = {
        model_name: "add_sub",
        id,
        inputs: [
          { name: "INPUT0", datatype: "FP32", shape: [4] },
          { name: "INPUT1", datatype: "FP32", shape: [4] },
        ],
        raw_input_contents: [Buffer.from(a.buffer), Buffer.from(b.buffer)],
      };
      client["ModelInfer"]!(req, (err: grpc.ServiceError | null, res: any) => {
        if (err) {
          const how = refusalOf(err);
          resolve(how ? { kind: "refused", how } : { kind: "wrong", why: "lost", detail: `${err.code} ${err.details}` });
          return;
        }
        const raw = res?.raw_output_contents?.[0] as Buffer | undefined;
        const sum = raw && raw.length === 16 ? Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + 16))) : undefined;
        if (res.id !== id || JSON.stringify(sum) !== JSON.stringify([v + 4, v + 4, v + 4, v + 4])) resolve({ kind: "wrong", why: "mixed", detail: `${res.id} ${JSON.stringify(sum)}` });
        else resolve({ kind: "ok" });
      });
    });

  // One ModelStreamInfer stream per worker that uses it: requests by id, responses matched by id and IDX.
  const streams = new Map<number, { call: grpc.ClientDuplexStream<object, any>; waiters: Map<string, StreamWaiter>; ended: boolean }>();
  const streamOf = (w: number) => {
    let s = streams.get(w);
    if (s && !s.ended) return s;
    const call = client["ModelStreamInfer"]!() as grpc.ClientDuplexStream<object, any>;
    const waiters = new Map<string, StreamWaiter>();
    const entry = { call, waiters, ended: false };
    call.on("data", (m: any) => {
      const r = m.infer_response;
      const waiter = r ? waiters.get(r.id) : undefined;
      if (!waiter) {
        wrong.duplicated++;
        if (failures.length < 20) failures.push(`repeat: a message for no pending request: ${JSON.stringify(m).slice(0, 200)}`);
        return;
      }
      if (m.error_message) {
        waiters.delete(waiter.id);
        // A stream's requests after shutdown began are refused one by one, in the stream.
        waiter.resolve(
          phase.shuttingDown && /shutting down/.test(m.error_message) ? { kind: "refused", how: "stream error_message (shutting down)" } : { kind: "wrong", why: "mixed", detail: m.error_message },
        );
        return;
      }
      const out = (r.raw_output_contents?.[0] as Buffer | undefined)?.readInt32LE(0);
      const idx = (r.raw_output_contents?.[1] as Buffer | undefined)?.readUInt32LE(0);
      if (idx === undefined || out === undefined || waiter.values[idx] !== out) {
        waiters.delete(waiter.id);
        waiter.resolve({ kind: "wrong", why: "mixed", detail: `IDX ${idx} OUT ${out} for ${JSON.stringify(waiter.values)}` });
        return;
      }
      if (waiter.got.has(idx)) {
        waiters.delete(waiter.id);
        waiter.resolve({ kind: "wrong", why: "duplicated", detail: `IDX ${idx} twice` });
        return;
      }
      waiter.got.set(idx, out);
      if (waiter.got.size === waiter.values.length) {
        waiters.delete(waiter.id);
        waiter.resolve({ kind: "ok" });
      }
    });
    const endAll = (e: unknown) => {
      entry.ended = true;
      for (const waiter of waiters.values()) {
        const how = refusalOf(e);
        waiter.resolve(how ? { kind: "refused", how: `stream ${how}` } : { kind: "wrong", why: "lost", detail: `the stream ended: ${(e as Error)?.message ?? e}` });
      }
      waiters.clear();
    };
    call.on("error", endAll);
    call.on("end", () => endAll({ code: grpc.status.UNAVAILABLE, message: "the server ended the stream" }));
    streams.set(w, entry);
    return entry;
  };
  const repeatGrpc = (w: number, v: number, id: string): Promise<Outcome> =>
    new Promise((resolve) => {
      const s = streamOf(w);
      const values = [v, -v, v + 1];
      s.waiters.set(id, { id, values, got: new Map(), resolve });
      s.call.write({ model_name: "repeat", id, inputs: [{ name: "IN", datatype: "INT32", shape: [3] }], raw_input_contents: [i32(values)] });
    });
  void u32;

  const KINDS = ["add_sub-http", "add_sub-http", "add_sub-grpc", "flaky-http", "slow-http", "repeat-grpc-stream"] as const;

  const worker = async (w: number): Promise<void> => {
    let n = 0;
    while (!phase.stop) {
      const kind = KINDS[(w + n++) % KINDS.length]!;
      const v = seq++;
      const id = `w${w}-${v}`;
      const startedAfter = phase.shuttingDown;
      const s = performance.now();
      const p: Promise<Outcome> = (async () => {
        try {
          switch (kind) {
            case "add_sub-http":
              return await addSubHttp(v, id);
            case "add_sub-grpc":
              return await addSubGrpc(v, id);
            case "flaky-http":
              return await flakyHttp(v, id);
            case "slow-http":
              return await slowHttp(v, id);
            default:
              return await repeatGrpc(w, v, id);
          }
        } catch (e) {
          const how = refusalOf(e);
          return how ? { kind: "refused", how } : { kind: "wrong", why: "lost", detail: `${(e as Error).message}` };
        }
      })();
      running.add(p);
      const outcome = await p;
      running.delete(p);
      const ms = performance.now() - s;
      const st = stats.get(kind) ?? { sent: 0, ok: 0, expectedErrors: 0, lat: [] };
      stats.set(kind, st);
      if (!startedAfter) {
        sentBefore++;
        st.sent++;
        if (inFlightAtSigterm.has(p)) {
          if (outcome.kind === "ok" || outcome.kind === "expected-error") shutdownStats.inFlightAnswered++;
          else if (outcome.kind === "refused" && kind.endsWith("-http") && (outcome.how === "UND_ERR_SOCKET" || outcome.how === "ECONNRESET" || outcome.how === "ECONNREFUSED")) shutdownStats.keepAliveRace++;
          else if (failures.length < 20) failures.push(`${kind} ${id}: in flight at SIGTERM and not answered: ${JSON.stringify(outcome)}`);
        } else {
          st.lat.push(ms);
          allLat.push(ms);
        }
        if (outcome.kind === "ok") st.ok++;
        if (outcome.kind === "expected-error") st.expectedErrors++;
        if (outcome.kind === "ok" || outcome.kind === "expected-error") answeredBefore++;
        else if (!inFlightAtSigterm.has(p)) note(outcome.kind === "refused" ? { kind: "wrong", why: "lost", detail: `refused before shutdown: ${outcome.how}` } : outcome, kind, id);
      } else {
        if (outcome.kind === "ok" || outcome.kind === "expected-error") shutdownStats.after.answered++;
        else if (outcome.kind === "refused") {
          shutdownStats.after.refused++;
          shutdownStats.refusals[outcome.how] = (shutdownStats.refusals[outcome.how] ?? 0) + 1;
          // A refused client backs off a little, as a real one would.
          await new Promise((r) => setTimeout(r, 20));
        } else {
          shutdownStats.after.other++;
          note(outcome, kind, id);
        }
      }
    }
  };

  const sampler = setInterval(() => {
    const now = server.rssMib();
    if (!Number.isNaN(now)) rss.peak = Math.max(rss.peak, now);
  }, 500);
  const workers = Array.from({ length: o.concurrency }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, o.durationMs));
  const loadSeconds = (Date.now() - t0) / 1000;
  rss.end = server.rssMib();
  rss.peak = Math.max(rss.peak, rss.end);
  // Graceful shutdown under load.
  for (const p of running) inFlightAtSigterm.add(p);
  shutdownStats.inFlight = inFlightAtSigterm.size;
  phase.shuttingDown = true;
  const sigterm = Date.now();
  const exited = server.stop(60_000);
  await new Promise((r) => setTimeout(r, o.shutdownLoadMs));
  phase.stop = true;
  const exitCode = await exited;
  const shutdownSeconds = (Date.now() - sigterm) / 1000;
  await Promise.all(workers);
  clearInterval(sampler);
  for (const s of streams.values()) s.call.cancel();
  client.close();
  await pool.destroy();
  rmSync(repo, { recursive: true, force: true });

  if (exitCode !== 0) failures.push(`the server exited with ${exitCode} after SIGTERM:\n${server.output().slice(-2000)}`);
  if (shutdownStats.inFlightAnswered + shutdownStats.keepAliveRace !== shutdownStats.inFlight) failures.push(`${shutdownStats.inFlight - shutdownStats.inFlightAnswered} of ${shutdownStats.inFlight} requests in flight at SIGTERM were not answered`);
  if (shutdownStats.after.other > 0) failures.push(`${shutdownStats.after.other} requests after SIGTERM were neither answered nor refused cleanly`);
  if (wrong.lost + wrong.duplicated + wrong.mixed > 0 && !failures.some((f) => f.includes("lost") || f.includes("mixed") || f.includes("duplicated"))) failures.push(`wrong answers: ${JSON.stringify(wrong)}`);

  const kinds: Record<string, KindStats> = {};
  for (const [k, st] of stats) kinds[k] = { sent: st.sent, ok: st.ok, expectedErrors: st.expectedErrors, latencyMs: summary(st.lat) };
  return {
    options: o,
    kinds,
    total: { sent: sentBefore, answered: answeredBefore, perSecond: Math.round(sentBefore / loadSeconds), latencyMs: summary(allLat) },
    wrong,
    shutdown: { ...shutdownStats, exitCode, seconds: shutdownSeconds },
    rssMib: rss,
    failures,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opts: Partial<LoadOptions> = {};
  let jsonOut: string | undefined;
  for (let a = 0; a < args.length; a++) {
    const name = args[a]!;
    const v = args[++a]!;
    if (name === "--duration-ms") opts.durationMs = Number(v);
    else if (name === "--concurrency") opts.concurrency = Number(v);
    else if (name === "--shutdown-load-ms") opts.shutdownLoadMs = Number(v);
    else if (name === "--json") jsonOut = v;
    else throw new Error(`unknown argument ${name}`);
  }
  const report = await runLoad(opts);
  const text = JSON.stringify(report, null, 2);
  if (jsonOut) writeFileSync(jsonOut, text);
  console.log(text);
  process.exitCode = report.failures.length > 0 ? 1 : 0;
}
