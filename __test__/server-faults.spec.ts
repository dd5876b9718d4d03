/**
 * Model faults fail only the model: a model whose initialize() throws,
 * whose execute() rejects, returns the wrong number of responses or the
 * wrong shape, or never settles, gets a clear error naming it (HTTP and
 * gRPC), while the server keeps serving the other models (and the faulty
 * ones keep failing the same way, no worse) and /v2/health/live answers
 * throughout. For a never-settling execute(), a client's cancellation or
 * deadline ends its request and reaches the model (`isCancelled()`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import test from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { INIT_THROWS, NEVER_SETTLES, REJECTS, WRONG_COUNT, WRONG_SHAPE } from "./fixtures/faults.js";
import { ADD_SUB, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, sleep, startTestServer } from "./server-helpers.js";

test.after.always(cleanupRepos);

const ADD_SUB_BODY = {
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
  ],
};
const inBody = (v: number) => ({ inputs: [{ name: "IN", shape: [1], datatype: "INT32", data: [v] }] });
const inGrpc = (model: string, v: number) => ({ model_name: model, inputs: [{ name: "IN", datatype: "INT32", shape: [1] }], raw_input_contents: [Buffer.from(new Int32Array([v]).buffer)] });

/** Polls /v2/health/live every 20 ms until stopped: every status and the slowest answer. */
function watchLive(server: InferenceServer): { stop(): Promise<{ statuses: number[]; maxMs: number }> } {
  const statuses: number[] = [];
  let maxMs = 0;
  const state = { on: true };
  const loop = (async () => {
    while (state.on) {
      const t0 = performance.now();
      statuses.push((await http(server, "GET", "/v2/health/live")).status);
      maxMs = Math.max(maxMs, performance.now() - t0);
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      state.on = false;
      await loop;
      return { statuses, maxMs };
    },
  };
}

async function addSubServed(server: InferenceServer): Promise<boolean> {
  const a = await http(server, "POST", "/v2/models/add_sub/infer", ADD_SUB_BODY);
  return a.status === 200 && JSON.stringify(a.json.outputs[0].data) === "[5,5,5,5]";
}

test("initialize() throwing, execute() rejecting, the wrong count or shape of responses: each fails only its model, with an error naming it, twice the same; the others and /v2/health/live keep answering", async (t) => {
  const server = await startTestServer(makeRepo({ add_sub: ADD_SUB, init_throws: INIT_THROWS, rejects: REJECTS, wrong_count: WRONG_COUNT, wrong_shape: WRONG_SHAPE }));
  const client = grpcClient(server);
  const live = watchLive(server);
  try {
    const index = (await http(server, "POST", "/v2/repository/index", {})).json as { name: string; state: string; reason?: string }[];
    const init = index.find((m) => m.name === "init_throws")!;
    t.is(init.state, "UNAVAILABLE");
    t.regex(init.reason!, /initialize\(\) of instance init_throws_0_0 failed: initialize failed on purpose/);
    t.deepEqual(
      index.filter((m) => m.state === "READY").map((m) => m.name),
      ["add_sub", "rejects", "wrong_count", "wrong_shape"],
    );
    const expected: Record<string, { http: number; grpc: grpc.status; says: RegExp }> = {
      init_throws: { http: 400, grpc: grpc.status.UNAVAILABLE, says: /'init_throws'.*initialize failed on purpose/ },
      rejects: { http: 500, grpc: grpc.status.INTERNAL, says: /'rejects_0_0'.*execute rejected on purpose/ },
      wrong_count: { http: 500, grpc: grpc.status.INTERNAL, says: /'wrong_count'.*one InferenceResponse per request \(1\), got 2/ },
      wrong_shape: { http: 500, grpc: grpc.status.INTERNAL, says: /'wrong_shape'.*output 'OUT' has shape \[2\], but the config expects \[1\]/ },
    };
    for (const round of [1, 2]) {
      for (const [model, want] of Object.entries(expected)) {
        const a = await http(server, "POST", `/v2/models/${model}/infer`, inBody(round));
        t.is(a.status, want.http, `${model} over HTTP, round ${round}`);
        t.regex(a.json?.error ?? "", want.says);
        const g = await grpcUnary(client, "ModelInfer", inGrpc(model, round));
        t.false(g.ok);
        if (!g.ok) {
          t.is(g.code, want.grpc, `${model} over gRPC, round ${round}`);
          t.regex(g.details, want.says);
        }
        t.true(await addSubServed(server), `add_sub is served after ${model} failed`);
      }
    }
    t.is((await http(server, "GET", "/v2/health/ready")).status, 400, "strict readiness: init_throws is not ready");
  } finally {
    const { statuses, maxMs } = await live.stop();
    t.log(`/v2/health/live: ${statuses.length} answers, slowest ${maxMs.toFixed(1)} ms`);
    t.true(statuses.length > 0 && statuses.every((s) => s === 200));
    client.close();
    await server.close();
  }
});

test("execute() that never settles: the others keep serving, live answers, a client's abort (HTTP) or deadline (gRPC) ends the request and reaches the model; close() gives up on it after exitTimeoutMs (--exit-timeout-secs)", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, never_settles: NEVER_SETTLES });
  const errors: string[] = [];
  const server = await startTestServer(repo, { exitTimeoutMs: 1000, logger: { info() {}, warn() {}, error: (m) => errors.push(m) } });
  const client = grpcClient(server);
  const live = watchLive(server);
  try {
    const ac = new AbortController();
    const stuck = fetch(`${server.address.url}/v2/models/never_settles/infer`, { method: "POST", body: JSON.stringify(inBody(5)), signal: ac.signal }).then(
      () => "answered",
      (e: Error) => e.name,
    );
    // IN 5 first (the one instance runs it, for ever); IN 6 waits in the queue behind it.
    await sleep(300);
    const deadline = grpcUnary(client, "ModelInfer", inGrpc("never_settles", 6), { deadline: 500 });
    for (let i = 0; i < 5; i++) t.true(await addSubServed(server), "add_sub is served while never_settles hangs");
    const g = await deadline;
    t.false(g.ok);
    if (!g.ok) t.is(g.code, grpc.status.DEADLINE_EXCEEDED);
    ac.abort();
    t.is(await stuck, "AbortError");
    // The abort closed the connection: the request is cancelled, and the model sees it.
    const marker = join(repo, "never_settles", "cancelled-5");
    for (let i = 0; i < 100 && !existsSync(marker); i++) await sleep(20);
    t.true(existsSync(marker), "the model saw request.isCancelled()");
    t.true(await addSubServed(server));
  } finally {
    const { statuses, maxMs } = await live.stop();
    t.log(`/v2/health/live: ${statuses.length} answers, slowest ${maxMs.toFixed(1)} ms`);
    t.true(statuses.length > 0 && statuses.every((s) => s === 200));
    client.close();
    // The execution never ends: close() waits exitTimeoutMs for it, then resolves.
    const t0 = Date.now();
    const closed = await Promise.race([server.close().then(() => true), sleep(15_000).then(() => false)]);
    t.true(closed, "close() resolved");
    t.true(Date.now() - t0 >= 900, "close() waited for the execution first");
    t.true(errors.some((m) => m.includes("--exit-timeout-secs")), errors.join("\n"));
  }
});
