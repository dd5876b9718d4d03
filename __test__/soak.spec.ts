/**
 * The ownership soak (scripts/soak.mjs) at CI size: 10^4 cycles of create /
 * data() view / toDlpack legacy and versioned / fromDlpack / release() to an
 * address / DLPackCapsule.fromAddress / foreign producers / dispose or drop to
 * GC, with a worker-thread transfer round trip every 1000 cycles. Run in a
 * child process of its own, so its counters and RSS are its alone. The long
 * runs (10^6 cycles, and 10^4 under valgrind memcheck) are the same script:
 * see scripts/soak.mjs and scripts/soak-valgrind.sh.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import test from "ava";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

interface Summary {
  cycles: number;
  seconds: number;
  counts: { transfers: number; foreign: number; consumedTwice: number; droppedCapsules: number };
  exports: { created: number; deleted: number };
  ownedAllocations: { made: number; freed: number };
  foreignDeleters: { made: number; called: number };
  rssMib: { start: number; afterWarmUp: number; end: number; driftAfterWarmUp: number };
  checkpoints: Array<{ liveExports: number; ownedLiveBytes: number; handles: { tensors: number; capsules: number }; views: number }>;
  failures: string[];
}

test("10^4 soak cycles: every export, allocation, deleter, handle and view released once, RSS flat", async (t) => {
  t.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), "tb-soak-"));
  const json = join(dir, "soak.json");
  try {
    const child = spawn(
      process.execPath,
      ["--expose-gc", join(ROOT, "scripts/soak.mjs"), "--cycles", "10000", "--checkpoints", "5", "--json", json],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    t.log(output.trim().split("\n").at(-2) ?? output);
    t.is(code, 0, output);
    const s = JSON.parse(readFileSync(json, "utf8")) as Summary;
    t.deepEqual(s.failures, []);
    t.is(s.cycles, 10_000);
    t.true(s.exports.created > 20_000, "every cycle exported several times");
    t.is(s.exports.deleted, s.exports.created);
    t.is(s.ownedAllocations.freed, s.ownedAllocations.made);
    t.true(s.foreignDeleters.made >= 1_000);
    t.is(s.foreignDeleters.called, s.foreignDeleters.made);
    t.true(s.counts.transfers >= 10 * 17, "a worker round trip every 1000 cycles");
    t.true(s.counts.consumedTwice > 0 && s.counts.droppedCapsules > 0);
    // Nothing accumulates between checkpoints either (after GC on both threads).
    for (const cp of s.checkpoints) {
      t.deepEqual([cp.liveExports, cp.ownedLiveBytes, cp.handles.tensors, cp.handles.capsules, cp.views], [0, 0, 0, 0, 0]);
    }
    t.true(s.rssMib.driftAfterWarmUp < 32, `RSS drift ${s.rssMib.driftAfterWarmUp} MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
