/**
 * Slow clients and connection limits: the HTTP header and body deadlines
 * on both HTTP paths (the HTTP/1.1 front and node:http), the connection
 * limits and their refusals (HTTP 503 + JSON; HTTP/2 GOAWAY
 * ENHANCE_YOUR_CALM, UNAVAILABLE to gRPC clients), gRPC's idle timeout and
 * unary request deadline, the options and CLI flags, and a CI-sized run of
 * scripts/slow-clients.ts (hundreds of trickling clients against a server
 * process, a normal client served throughout, RSS growing with bytes
 * received, not with bytes announced).
 */
import { connect as h2connect, constants as h2c } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";

import * as grpc from "@grpc/grpc-js";
import test from "ava";

import { parseCli } from "../src/cli.js";
import { ErrorCode } from "../src/errors.js";
import { ServingError } from "../src/runtime/errors.js";
import { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT_MS, serverLimits } from "../src/server/server.js";
import { GrpcTransport } from "../src/server/grpc/transport.js";
import { closeWhenAnswered, runSlowClients } from "../scripts/slow-clients.js";
import { ADD_SUB, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, sleep, startTestServer } from "./server-helpers.js";
import { throwsCode } from "./helpers.js";

test.after.always(cleanupRepos);

const INFER_BODY = JSON.stringify({
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
  ],
});

/** The count of one outcome over every kind of slow client. */
const sum = (k: Record<string, Record<string, number>>, o: string): number => Object.values(k).reduce((a, x) => a + (x[o] ?? 0), 0);

/** A raw connection: what it received, and when it closed (ms after opening). */
function raw(port: number): Promise<{ s: Socket; got: () => string; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, "127.0.0.1");
    const start = Date.now();
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString("latin1")));
    s.on("error", () => {});
    const closed = new Promise<number>((r) => s.once("close", () => r(Date.now() - start)));
    s.once("connect", () => resolve({ s, got: () => got, closed }));
    s.once("error", reject);
  });
}

test.serial("serverLimits: defaults, the header deadline cut to the request's, and bad values refused with ERR_INVALID_ARGUMENT", (t) => {
  const d = serverLimits({ repository: "x" });
  t.deepEqual(d, {
    headersTimeoutMs: DEFAULT_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
    maxConnections: DEFAULT_MAX_CONNECTIONS,
    grpcMaxConnections: DEFAULT_MAX_CONNECTIONS,
    grpcIdleTimeoutMs: 300_000,
    grpcRequestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
    exitTimeoutMs: 30_000,
  });
  t.is(serverLimits({ repository: "x", headersTimeoutMs: 9000, requestTimeoutMs: 2000 }).headersTimeoutMs, 2000);
  t.is(serverLimits({ repository: "x", headersTimeoutMs: 0, requestTimeoutMs: 2000 }).headersTimeoutMs, 2000, "the request's deadline bounds the head too");
  t.is(serverLimits({ repository: "x", headersTimeoutMs: 0, requestTimeoutMs: 0 }).headersTimeoutMs, 0, "both off");
  t.is(serverLimits({ repository: "x", requestTimeoutMs: 7 }).grpcRequestTimeoutMs, 7, "gRPC's request deadline follows HTTP's unless given");
  throwsCode(t, () => serverLimits({ repository: "x", maxConnections: -1 }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => serverLimits({ repository: "x", requestTimeoutMs: 1.5 }), ErrorCode.INVALID_ARGUMENT);
});

test.serial("parseCli: the deadline and connection-limit flags", (t) => {
  const o = parseCli([
    "serve",
    "/m",
    "--http-header-timeout-ms=1000",
    "--http-request-timeout-ms",
    "2000",
    "--http-max-connections=300",
    "--grpc-max-connections=40",
    "--grpc-idle-timeout-ms=0",
    "--grpc-request-timeout-ms=500",
    "--exit-timeout-secs",
    "3",
  ]).options;
  t.like(o, { headersTimeoutMs: 1000, requestTimeoutMs: 2000, maxConnections: 300, grpcMaxConnections: 40, grpcIdleTimeoutMs: 0, grpcRequestTimeoutMs: 500, exitTimeoutMs: 3000 });
  const err = t.throws(() => parseCli(["serve", "--http-max-connections=-3"]), { instanceOf: ServingError });
  t.is(err?.code, "ERR_CLI_USAGE");
});

for (const fastInfer of [true, "node"] as const) {
  test.serial(`HTTP (${fastInfer === true ? "the front" : "node:http"}): a trickled head gets 408 at the header deadline, a trickled body at the request deadline; a normal client is served meanwhile`, async (t) => {
    const server = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { fastInfer, headersTimeoutMs: 400, requestTimeoutMs: 1200, allowGrpc: false });
    try {
      const port = server.address.port;
      const head = await raw(port);
      head.s.write("POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ");
      const body = await raw(port);
      body.s.write(`POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ${60 * 1024 * 1024}\r\n\r\n{`);
      // node:http's own path: a non-inference endpoint
      const nodeBody = await raw(port);
      nodeBody.s.write(`POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{`);
      const tick = setInterval(() => {
        for (const c of [head, body, nodeBody]) if (!c.s.destroyed) c.s.write("a");
      }, 50);
      const normal = await http(server, "POST", "/v2/models/add_sub/infer", INFER_BODY);
      t.is(normal.status, 200, "a normal client is served while the slow ones trickle");
      const [h, b, n] = await Promise.all([head.closed, body.closed, nodeBody.closed]);
      clearInterval(tick);
      t.regex(head.got(), /^HTTP\/1\.1 408 /);
      t.regex(body.got(), /^HTTP\/1\.1 408 /);
      t.regex(nodeBody.got(), /^HTTP\/1\.1 408 /);
      // deadline + at most a quarter (the check interval) + scheduling slack on a loaded machine (load 15+ on 2 cores here)
      t.true(h >= 400 && h < 400 * 1.25 + 2000, `head ended after ${h} ms`);
      t.true(b >= 1200 && b < 1200 * 1.25 + 2000, `body ended after ${b} ms`);
      t.true(n >= 1200 && n < 1200 * 1.25 + 2000, `node:http body ended after ${n} ms`);
    } finally {
      await server.close();
    }
  });
}

test.serial("HTTP: past --http-max-connections a new connection gets 503 with a JSON error and is closed; a closed one frees its place", async (t) => {
  const server = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { maxConnections: 3, allowGrpc: false });
  try {
    const port = server.address.port;
    const held = await Promise.all([raw(port), raw(port), raw(port)]);
    for (let i = 0; i < 100 && server.connectionCounters.http.open < 3; i++) await sleep(20);
    t.is(server.connectionCounters.http.open, 3);
    const over = await raw(port);
    await over.closed;
    const [head, json] = over.got().split("\r\n\r\n");
    t.regex(head!, /^HTTP\/1\.1 503 /);
    t.regex(head!, /content-type: application\/json/i);
    t.regex(head!, /connection: close/i);
    t.regex((JSON.parse(json!) as { error: string }).error, /--http-max-connections/);
    t.is(server.connectionCounters.http.refused, 1);
    held[0]!.s.destroy();
    await held[0]!.closed;
    for (let i = 0; i < 100 && server.connectionCounters.http.open > 2; i++) await sleep(20);
    const ok = await http(server, "POST", "/v2/models/add_sub/infer", INFER_BODY);
    t.is(ok.status, 200, "the closed connection's place is free again");
    for (const c of held) c.s.destroy();
  } finally {
    await server.close();
  }
});

/**
 * A raw HTTP/2 unary ModelInfer that announces a 60 MiB message and
 * trickles it; resolves with its grpc-status and message once the server
 * has ended the call (its response read and the request closed then: see
 * closeWhenAnswered; without it a CI run waited on such a stream until
 * ava's timeout).
 */
function tricklingCall(url: string, headers: Record<string, string>): { done: Promise<{ status: string; message: string }>; stop(): void } {
  const session = h2connect(url);
  session.on("error", () => {});
  const req = session.request({ ":method": "POST", ":path": "/inference.GRPCInferenceService/ModelInfer", "content-type": "application/grpc", te: "trailers", ...headers });
  req.on("error", () => {});
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(60 * 1024 * 1024, 1);
  req.write(prefix);
  const tick = setInterval(() => {
    if (!req.destroyed) req.write(Buffer.alloc(1, 1));
  }, 50);
  const done = new Promise<{ status: string; message: string }>((resolve) => {
    let s = { status: "", message: "" };
    const take = (h: Record<string, unknown>) => {
      if (h["grpc-status"] !== undefined) s = { status: String(h["grpc-status"]), message: String(h["grpc-message"] ?? "") };
    };
    req.on("response", take);
    req.on("trailers", take);
    closeWhenAnswered(req);
    req.on("close", () => {
      clearInterval(tick);
      session.close();
      resolve(s);
    });
  });
  return {
    done,
    stop: () => {
      clearInterval(tick);
      session.destroy();
    },
  };
}

for (const grpcServer of ["tensorbridge", "grpc-js"] as const) {
  test.serial(`gRPC (${grpcServer}): past --grpc-max-connections a connection gets GOAWAY ENHANCE_YOUR_CALM (grpc-js clients: RESOURCE_EXHAUSTED); idle connections close at the idle timeout`, async (t) => {
    const server = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { grpcServer, grpcMaxConnections: 2, grpcIdleTimeoutMs: 500 });
    try {
      const url = `http://${server.grpcAddress!.url}`;
      const sessions = [h2connect(url), h2connect(url)];
      for (const s of sessions) s.on("error", () => {});
      // Listening from the start: on a loaded machine the idle timeout may come before the checks below end.
      const idleCodes = Promise.all(sessions.map((s) => new Promise<number>((r) => s.once("goaway", (c) => r(c)))));
      await Promise.all(sessions.map((s) => new Promise((r) => s.once("connect", r))));
      const refused = h2connect(url);
      refused.on("error", () => {});
      const code = await new Promise<number>((r) => refused.once("goaway", (c) => r(c)));
      t.is(code, h2c.NGHTTP2_ENHANCE_YOUR_CALM);
      const client = grpcClient(server);
      const a = await grpcUnary(client, "ServerLive", {});
      t.false(a.ok);
      // grpc-js reads ENHANCE_YOUR_CALM as RESOURCE_EXHAUSTED (gRPC C-core: UNAVAILABLE)
      if (!a.ok) t.is(a.code, grpc.status.RESOURCE_EXHAUSTED);
      client.close();
      // The two idle sessions are closed by the server (GOAWAY NO_ERROR) at the idle timeout.
      const codes = await Promise.race([idleCodes, sleep(10_000).then(() => "no GOAWAY within 10 s")]);
      t.deepEqual(codes, [h2c.NGHTTP2_NO_ERROR, h2c.NGHTTP2_NO_ERROR]);
      await sleep(100);
      const again = grpcClient(server);
      t.true((await grpcUnary(again, "ServerLive", {})).ok, "places are free again");
      again.close();
      t.true(server.connectionCounters.grpc!.refused >= 1);
    } finally {
      await server.close();
    }
  });

  test.serial(`gRPC (${grpcServer}): a unary call whose message trickles ends with DEADLINE_EXCEEDED at --grpc-request-timeout-ms, with and without grpc-timeout; a normal call is served meanwhile`, async (t) => {
    const server = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { grpcServer, grpcRequestTimeoutMs: 500 });
    try {
      const url = `http://${server.grpcAddress!.url}`;
      const t0 = Date.now();
      // No grpc-timeout: the direct path reads it; a long grpc-timeout: grpc-js does.
      const calls = [tricklingCall(url, {}), tricklingCall(url, { "grpc-timeout": "100S" })];
      const client = grpcClient(server);
      const live = await grpcUnary(client, "ServerLive", {});
      t.true(live.ok);
      const results = await Promise.all(calls.map((c) => c.done));
      const took = Date.now() - t0;
      for (const s of results) {
        t.is(s.status, String(grpc.status.DEADLINE_EXCEEDED));
        t.regex(s.message, /--grpc-request-timeout-ms/);
      }
      t.true(took >= 500 && took < 500 * 1.25 + 2000, `ended after ${took} ms`);
      client.close();
    } finally {
      await server.close();
    }
  });
}

for (const grpcServer of ["tensorbridge", "grpc-js"] as const) {
  test.serial(`gRPC (${grpcServer}): a call is watched for --grpc-request-timeout-ms only while its request is arriving, not until the next sweep`, async (t) => {
    const server = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { allowGrpc: false });
    // A 60 s deadline sweeps every 15 s: nothing below waits for a sweep.
    const transport = await GrpcTransport.start(server.endpoint, { host: "127.0.0.1", port: 0, server: grpcServer, requestTimeoutMs: 60_000 });
    const client = grpcClient(`127.0.0.1:${transport.port}`);
    try {
      const req = { model_name: "add_sub", inputs: ["INPUT0", "INPUT1"].map((name) => ({ name, datatype: "FP32", shape: [4] })), raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), Buffer.from(new Float32Array([4, 3, 2, 1]).buffer)] };
      // The direct path (no deadline), grpc-js's own (a deadline), and another RPC.
      for (let i = 0; i < 20; i++) {
        const answers = await Promise.all([grpcUnary(client, "ModelInfer", req), grpcUnary(client, "ModelInfer", req, { deadline: 10_000 }), grpcUnary(client, "ServerLive", {})]);
        t.true(answers.every((a) => a.ok));
      }
      const trickling = tricklingCall(`http://127.0.0.1:${transport.port}`, {});
      for (let i = 0; i < 200 && transport.callsWatched !== 1; i++) await sleep(5);
      t.is(transport.callsWatched, 1, "the call whose message is still arriving is watched, and only it");
      trickling.stop();
      for (let i = 0; i < 200 && transport.callsWatched > 0; i++) await sleep(5);
      t.is(transport.callsWatched, 0, "no call is watched once its stream closed");
    } finally {
      client.close();
      await transport.close();
      await server.close();
    }
  });
}

test.serial("scripts/slow-clients.ts at CI size: every slow client ended at its deadline or refused past the limit, the normal client always served, RSS grows with bytes received, not announced", async (t) => {
  t.timeout(180_000);
  const r = await runSlowClients({
    clients: 300,
    maxConnections: 200,
    headerTimeoutMs: 1500,
    requestTimeoutMs: 3000,
    grpcClients: 100,
    grpcMaxConnections: 60,
    grpcIdleTimeoutMs: 1500,
    grpcRequestTimeoutMs: 3000,
    trickleMs: 250,
  });
  t.log(JSON.stringify({ http: r.http, grpc: r.grpc, normal: r.normal, rss: r.server.rssMib }));
  t.deepEqual(r.failures, []);
  // 199 places (the normal client holds one) for 300 clients; a place freed
  // at a deadline may take a connection the loaded server accepts late.
  t.true(sum(r.http.kinds, "timed-out") >= 199);
  t.is(sum(r.http.kinds, "timed-out") + r.http.refused + r.http.dropped + sum(r.http.kinds, "closed"), 300);
  t.true(r.http.refused > 0);
  t.true(sum(r.grpc.kinds, "timed-out") >= 60);
  t.true(r.grpc.refused > 0);
  t.is(r.normal.failures, 0);
  // 199 clients announcing 60 MiB each (about 12 GiB): the server holds what arrived.
  t.true(r.server.rssMib.peak - r.server.rssMib.before < 64, `RSS grew ${r.server.rssMib.peak - r.server.rssMib.before} MiB`);
});
