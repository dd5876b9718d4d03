/**
 * HTTP cancellation: a client whose connection closes before its answer
 * cancels its request, on each HTTP path (the front, node:http, fastify). A
 * request still queued never reaches execute() and is counted as Triton
 * counts it; a running one sees request.isCancelled(); nothing is written
 * to the closed connection, and the server keeps serving.
 */
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";

import test from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { cleanupRepos, http, makeRepo, sleep, startTestServer, type TestModel } from "./server-helpers.js";

test.after.always(() => cleanupRepos());

/** One instance; records each request it runs, sleeps, then records whether it was cancelled meanwhile. */
const GATE: TestModel = {
  config: `
input { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }
`,
  model: `
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { InferenceResponse, Tensor, type InferenceRequest, type InitializeArgs } from "tensorbridge";
export default class Gate {
  dir = "";
  initialize(args: InitializeArgs) { this.dir = args.model_repository; }
  async execute(requests: InferenceRequest[]) {
    for (const r of requests) writeFileSync(join(this.dir, "ran-" + r.requestId), "");
    await new Promise((res) => setTimeout(res, Number(requests[0]!.parameters["sleep_ms"] ?? 0)));
    for (const r of requests) writeFileSync(join(this.dir, "cancelled-" + r.requestId), String(r.isCancelled()));
    return requests.map((r) => new InferenceResponse({ outputTensors: { OUT: r.getInputTensorByName("IN")! } }));
  }
}
`,
};

const body = (id: string, sleepMs: number): string =>
  JSON.stringify({ id, parameters: { sleep_ms: sleepMs }, inputs: [{ name: "IN", shape: [1], datatype: "INT32", data: [1] }] });

/** Sends a request on a raw socket and returns the socket (to close it before the answer). */
async function send(server: InferenceServer, id: string, sleepMs: number): Promise<{ close(): void; received(): string }> {
  const b = body(id, sleepMs);
  const sock = connect(server.address.port, "127.0.0.1");
  await new Promise<void>((r) => sock.once("connect", () => r()));
  let got = "";
  sock.on("data", (d) => (got += d.toString()));
  sock.on("error", () => {});
  sock.write(`POST /v2/models/gate/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${b.length}\r\n\r\n${b}`);
  return { close: () => sock.destroy(), received: () => got };
}

async function waitFor(path: string): Promise<boolean> {
  for (let i = 0; i < 300 && !existsSync(path); i++) await sleep(10);
  return existsSync(path);
}

for (const [label, fastInfer] of [
  ["the front", true],
  ["node:http", "node"],
  ["fastify", false],
] as const) {
  test.serial(`${label}: a closed connection cancels its queued request (dropped, counted) and its running one (isCancelled)`, async (t) => {
    const dir = makeRepo({ gate: GATE });
    const server = await startTestServer(dir, { fastInfer });
    try {
      const running = await send(server, "running", 400);
      t.true(await waitFor(join(dir, "gate", "ran-running")), "the first request runs");
      const queued = await send(server, "queued", 0);
      await sleep(50);
      queued.close();
      running.close();
      t.true(await waitFor(join(dir, "gate", "cancelled-running")));
      t.is(readFileSync(join(dir, "gate", "cancelled-running"), "utf8"), "true", "the running request saw isCancelled()");
      await sleep(50);
      t.false(existsSync(join(dir, "gate", "ran-queued")), "the queued request never reached execute()");
      t.is(queued.received(), "", "nothing was written to the closed connection");
      // The server goes on serving.
      const ok = await http(server, "POST", "/v2/models/gate/infer", body("after", 0));
      t.is(ok.status, 200);
      const stats = (await http(server, "GET", "/v2/models/gate/stats")).json as {
        model_stats: { inference_stats: { success: { count: number }; fail: { count: number } } }[];
      };
      // Triton 2.51's InferStatistics has no cancel count: the dropped request is a failure.
      const s = stats.model_stats[0]!.inference_stats;
      t.deepEqual([s.success.count, s.fail.count], [2, 1], JSON.stringify(s));
    } finally {
      await server.close();
    }
  });
}
