// The serving path's own CPU per request in two checkouts of this
// repository, side by side in one process: each checkout's server (its
// src/, loaded through tsx) serves add_sub through its direct HTTP
// inference handler (`directInfer`, as path.bench.ts does) to a callback
// sink, no promise per request, in alternating chunks; the figure is the
// median of the per-pair ratios (B over A), so that load that comes and
// goes on a shared machine hits both sides alike. How the commits of the
// serving-path work (issue 16) were measured, one against its parent:
//
//   git worktree add --detach /tmp/tb-a <rev>   # symlink node_modules and the .node file into it
//   node --import tsx --expose-gc bench/serving/path-ab.bench.ts --a /tmp/tb-a [--b .] [--cases binary,json] [--pairs 30] [--requests 5000]
//
// Run it a second time with --a and --b swapped: a ratio that holds both
// ways is the change's, not the order's. The two checkouts share one V8,
// so what one does to the process (an AsyncLocalStorage store it runs, its
// garbage) is paid by both: compare such changes with path.bench.ts runs.
import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";

import type { DirectInfer, InferRoute, ResponseSink } from "../../src/server/http-infer.js";
import { ADD_SUB_REQUESTS, addSubRepository } from "./add-sub-requests.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const A = resolve(arg("a", ""));
const B = resolve(arg("b", "."));
const CASES = arg("cases", "binary,json").split(",") as ("binary" | "json")[];
for (const c of CASES) if (!(c in ADD_SUB_REQUESTS)) throw new Error(`path-ab.bench: --cases takes binary and json, got '${c}'`);
const PAIRS = Number(arg("pairs", "30"));
const N = Number(arg("requests", "5000"));
if (arg("a", "") === "") throw new Error("path-ab.bench: --a <checkout> is required (see the comment at the top)");

/** A sink that counts the successful responses and keeps nothing. */
class Sink implements ResponseSink {
  headersSent = false;
  status = 0;
  ok = 0;
  writeHead(status: number): this {
    this.status = status;
    this.headersSent = true;
    return this;
  }
  write(): boolean {
    return true;
  }
  end(): void {
    if (this.status === 200) this.ok++;
  }
  cork(): void {}
  uncork(): void {}
  destroy(): void {
    throw new Error("path-ab.bench: the handler dropped a response");
  }
}

interface Side {
  root: string;
  close: () => Promise<void>;
  direct: DirectInfer;
  repo: string;
}

async function side(root: string): Promise<Side> {
  const { directInfer } = (await import(join(root, "src/server/http-infer.ts"))) as typeof import("../../src/server/http-infer.js");
  const { InferenceServer } = (await import(join(root, "src/server/server.ts"))) as typeof import("../../src/server/server.js");
  const repo = addSubRepository(root);
  const server = await InferenceServer.start({ repository: repo, port: 0, allowGrpc: false, quiet: true });
  return { root, repo, close: () => server.close(), direct: directInfer(server.endpoint, { bodyLimit: 64 << 20, chunkThreshold: 64 * 1024 }) };
}

/** CPU µs per request of `n` requests, one at a time. */
function measure(s: Side, c: "binary" | "json", n: number): number {
  const { body, headers } = ADD_SUB_REQUESTS[c];
  const req = { method: "POST", url: "/v2/models/add_sub/infer", headers };
  const sink = new Sink();
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    sink.headersSent = false;
    sink.status = 0;
    s.direct.serve(req, sink, s.direct.route(req) as InferRoute, body);
  }
  const t = process.cpuUsage(t0);
  if (sink.ok !== n) throw new Error(`path-ab.bench: ${s.root}: ${n - sink.ok} of ${n} requests failed`);
  return (t.user + t.system) / n;
}

const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;
const sides = [await side(A), await side(B)];
console.log(`path-ab.bench: A = ${A}, B = ${B}; ${PAIRS} pairs of ${N} requests; load average ${loadavg()[0]!.toFixed(2)}`);
console.log("| request | A CPU/request (µs) | B CPU/request (µs) | B/A (median of pair ratios) |");
console.log("|---|---|---|---|");
for (const c of CASES) {
  for (const s of sides) measure(s, c, 20000); // warm-up
  const us: number[][] = [[], []];
  const ratios: number[] = [];
  for (let p = 0; p < PAIRS; p++) {
    // Each side goes first in every other pair.
    for (const k of p % 2 ? [1, 0] : [0, 1]) us[k]!.push(measure(sides[k]!, c, N));
    ratios.push(us[1]!.at(-1)! / us[0]!.at(-1)!);
  }
  console.log(`| ${c} | ${median(us[0]!).toFixed(2)} | ${median(us[1]!).toFixed(2)} | ${median(ratios).toFixed(3)}× |`);
}
console.log(`(load average at the end ${loadavg()[0]!.toFixed(2)})`);
for (const s of sides) {
  await s.close();
  rmSync(s.repo, { recursive: true, force: true });
}
