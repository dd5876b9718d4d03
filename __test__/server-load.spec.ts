/**
 * Load at CI size: scripts/load.ts for 6 s at concurrency 32 over mixed
 * models (add_sub over HTTP and gRPC, `flaky` that throws on inputs
 * divisible by 7, `slow`, the decoupled `repeat` over gRPC streams) against
 * a server process, every answer checked against its request, then SIGTERM
 * under load: requests in flight are answered, later ones refused cleanly,
 * the process exits 0. The long run (60 s at concurrency 64) is the same
 * script: `node --import tsx scripts/load.ts`.
 */
import test from "ava";

import { runLoad } from "../scripts/load.js";

test("6 s of mixed load at concurrency 32: 0 lost, duplicated or mixed-up answers; a graceful shutdown under load answers what it took and refuses the rest", async (t) => {
  t.timeout(240_000);
  const r = await runLoad({ durationMs: 6000, concurrency: 32, shutdownLoadMs: 1500 });
  t.log(JSON.stringify({ total: r.total, shutdown: r.shutdown, rss: r.rssMib }));
  t.deepEqual(r.failures, []);
  t.deepEqual(r.wrong, { lost: 0, duplicated: 0, mixed: 0 });
  for (const k of ["add_sub-http", "add_sub-grpc", "flaky-http", "slow-http", "repeat-grpc-stream"]) {
    t.true((r.kinds[k]?.ok ?? 0) > 0, `no '${k}' request was answered`);
  }
  // flaky threw for its multiples of 7, each error naming the request's own input
  t.true(r.kinds["flaky-http"]!.expectedErrors > 0);
  t.is(r.total.answered + r.shutdown.keepAliveRace, r.total.sent);
  t.is(r.shutdown.exitCode, 0);
  t.true(r.shutdown.inFlight > 0);
  t.is(r.shutdown.inFlightAnswered + r.shutdown.keepAliveRace, r.shutdown.inFlight);
  t.true(r.shutdown.after.refused > 0, "requests after SIGTERM were refused");
  t.is(r.shutdown.after.other, 0);
});
