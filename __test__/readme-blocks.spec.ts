/**
 * Every fenced code block in README.md and docs/*.md is checked, and how is
 * written down here, block by block (CHECKS, keyed by file, language and
 * first line). A block with no entry fails the first test, so a new block
 * cannot go unchecked, and one that is not run says why in its entry.
 *
 * - program: TypeScript, type-checked and run with tsx; it must exit 0.
 * - model: TypeScript model, type-checked (fragments inside the wrapper the
 *   entry gives), then served from a temporary repository with the config the
 *   entry gives, and inferred, with the answer checked.
 * - fragment: TypeScript excerpt, type-checked only; the entry says why it
 *   is not run.
 * - sh: run with bash (set -eo pipefail) against a server of examples/models
 *   on free ports (`localhost:8000` rewritten to it, plus the entry's own
 *   rewrites); a `# {json}` line in the block is output it must print.
 * - covered: run by another suite, which must still contain the marker.
 * - same: identical to a block that something else compiles and runs.
 * - skip / text: not run; the entry says why.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import test from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { ROOT, cleanupRepos, http, startTestServer } from "./server-helpers.js";

interface Block {
  file: string;
  line: number;
  lang: string;
  code: string;
  id: string;
}

/** Fenced blocks of a markdown file (``` at any indentation). */
function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    const code = body.join("\n") + "\n";
    const first = body.find((l) => l.trim() !== "")?.trim() ?? "";
    out.push({ file, line: i + 1, lang: open[2] || "text", code, id: `${file} ${open[2] || "text"} ${first}` });
    i = j;
  }
  return out;
}

const FILES = ["README.md", ...(existsSync(join(ROOT, "docs")) ? readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`) : [])];
const BLOCKS = FILES.flatMap(blocksOf);

type Check =
  | { kind: "program" }
  | { kind: "model"; name: string; config: string; before?: string; after?: string; infer: (server: InferenceServer) => Promise<{ got: unknown; want: unknown }> }
  | { kind: "fragment"; before?: string; after?: string; reason: string }
  | { kind: "sh"; rewrite?: [string, string][]; expect?: RegExp[] }
  | { kind: "covered"; by: string; marker: string }
  | { kind: "same"; as: string; note: string }
  | { kind: "skip"; reason: string }
  | { kind: "text"; reason: string };

const IMPORTS = 'import { InferenceRequest, InferenceResponse, Tensor, type TritonModel } from "tensorbridge";\n';
const example = (m: string): string => readFileSync(join(ROOT, "examples/models", m, "config.pbtxt"), "utf8");

async function inferJson(server: InferenceServer, model: string, inputs: object[]): Promise<Record<string, number[]>> {
  const res = await http(server, "POST", `/v2/models/${model}/infer`, { inputs });
  if (res.status !== 200) throw new Error(`${model}: HTTP ${res.status} ${res.body.toString()}`);
  return Object.fromEntries((res.json.outputs as { name: string; data: number[] }[]).map((o) => [o.name, o.data]));
}

/** How each block is checked: `${file} ${lang} ${first line}`. */
const CHECKS: Record<string, Check> = {
  "README.md sh npm install && npm start": {
    kind: "skip",
    reason: "installs from the registry and runs the whole suite (npm test: CI's .ci/run); npm start is run by examples.spec.ts's quick-start test",
  },
  "README.md sh curl -s localhost:8000/v2/models/add_sub/infer -d '{\"inputs\":[": {
    kind: "sh",
    rewrite: [["examples/client.ts", "examples/client.ts --url http://$TB_HTTP"]],
    expect: [/JSON {3}OUTPUT0 = INPUT0 \+ INPUT1/],
  },
  'README.md ts import { Tensor, TensorBridgeError } from "tensorbridge";': { kind: "program" },
  "README.md text models/": { kind: "text", reason: "a directory layout, not code" },
  "README.md ts // models/add_sub/1/model.ts": {
    kind: "model",
    name: "readme_add_sub",
    config: example("add_sub").replace('name: "add_sub"', 'name: "readme_add_sub"'),
    infer: async (server) => {
      const out = await inferJson(server, "readme_add_sub", [
        { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
        { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
      ]);
      return { got: [out["OUTPUT0"], out["OUTPUT1"]], want: [[5, 5, 5, 5], [-3, -1, 1, 3]] };
    },
  },
  "README.md ts // config.pbtxt: max_batch_size: 8, input X / output Y dims [ 4 ], dynamic_batching { max_queue_delay_microseconds: 500 }": {
    kind: "model",
    name: "readme_doubler",
    before: IMPORTS,
    config: `name: "readme_doubler"
backend: "tensorbridge"
max_batch_size: 8
input [{ name: "X" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [ 4 ] }]
dynamic_batching { max_queue_delay_microseconds: 500 }
`,
    infer: async (server) => {
      const answers = await Promise.all(
        [1, 10, 100].map((k) => inferJson(server, "readme_doubler", [{ name: "X", shape: [1, 4], datatype: "FP32", data: [1, 2, 3, 4].map((v) => v * k) }])),
      );
      return { got: answers.map((a) => a["Y"]), want: [1, 10, 100].map((k) => [2, 4, 6, 8].map((v) => v * k)) };
    },
  },
  "README.md ts // models/repeat/1/model.ts (examples/models/repeat has the whole example)": {
    kind: "model",
    name: "readme_repeat",
    before: `${IMPORTS}export default class Repeat implements TritonModel {\n`,
    after: "}\n",
    config: `name: "readme_repeat"
backend: "tensorbridge"
input [{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
model_transaction_policy { decoupled: true }
`,
    infer: async (server) => {
      const res = await http(server, "POST", "/v2/models/readme_repeat/generate_stream", { IN: [4, 5, 6] });
      const events = res.body
        .toString()
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => JSON.parse(l.slice(6)) as { OUT?: number });
      return { got: [res.status, events.map((e) => e.OUT)], want: [200, [4, 5, 6]] };
    },
  },
  "README.md ts export default class AddSub {": {
    kind: "fragment",
    before: 'import type { AutoCompleteModelConfig } from "tensorbridge";\n',
    reason: "an excerpt: its execute() is a comment; auto-completion itself is run by the runtime's config tests",
  },
  "README.md sh curl -N localhost:8000/v2/models/repeat/generate_stream -d '{\"IN\":[4,5,6],\"DELAY\":300}'": {
    kind: "sh",
    rewrite: [["examples/stream.ts", "examples/stream.ts --http http://$TB_HTTP --grpc $TB_GRPC"]],
    expect: [/data: \{"IDX":0,"OUT":4,/, /data: \{"IDX":2,"OUT":6,/, /ModelStreamInfer: \[4, 5, 6, 7\] ok/, /generate_stream: \[4, 5, 6, 7\] ok/],
  },
  "README.md ts // models/pipeline/1/model.ts (add_sub's inputs and outputs; it calls add_sub, then the decoupled repeat)": {
    kind: "covered",
    by: "__test__/runtime-bls.spec.ts",
    marker: "/```ts\\n\\/\\/ models\\/pipeline\\/1\\/model\\.ts",
  },
  'README.md ts import { InferenceResponse, Logger, MetricFamily, type InferenceRequest, type InitializeArgs, type Metric } from "tensorbridge";': {
    kind: "model",
    name: "counted",
    config: `name: "counted"
backend: "tensorbridge"
input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }]
`,
    infer: async (server) => {
      const out = await inferJson(server, "counted", [{ name: "IN", shape: [2], datatype: "FP32", data: [1, 2] }]);
      const metrics = (await http(server, "GET", "/metrics")).body.toString();
      return {
        got: [out["OUT"], /my_requests_total\{model="counted"\} 1\b/.test(metrics), /my_step_seconds_count\{step="tokenize"\} 1\b/.test(metrics)],
        want: [[1, 2], true, true],
      };
    },
  },
  "README.md sh npm start                                       # serves it with the other examples": {
    kind: "covered",
    by: "__test__/digits.spec.ts",
    marker: 'join(ROOT, "examples/digits-client.ts")',
  },
  "README.md sh docker build -t tensorbridge/tensorbridge:0.1.0 .": {
    kind: "skip",
    reason: "needs a Docker daemon, and this machine has none (README says so); deploy.spec.ts checks the Dockerfiles and deploy/rehearse-image.sh rehearses the build without Docker",
  },
  "README.md sh kubectl apply -f deploy/kserve/servingruntime.yaml": {
    kind: "skip",
    reason: "needs a Kubernetes cluster with KServe (none is reachable here); deploy.spec.ts validates every manifest against the pinned KServe and Kubernetes schemas",
  },
  "docs/README.md sh npm run docs        # then open docs/api/index.html": {
    kind: "covered",
    by: "scripts/test.mjs",
    marker: '"scripts/docs.ts", "--check"',
  },
  "README.md rust use tensorbridge_core::{Capsule, DataType, ExportOptions, Tensor};": {
    kind: "same",
    as: "crates/core/README.md",
    note: "the core crate's README, compiled and run as a doctest by cargo test (crates/core/src/lib.rs ReadmeDoctests)",
  },
};

test.after.always(cleanupRepos);

test("every code block in README.md and docs/*.md has a check, and every check a block", (t) => {
  t.true(BLOCKS.length >= 10, `blocks: ${BLOCKS.length}`);
  const unclassified = BLOCKS.filter((b) => !(b.id in CHECKS)).map((b) => `${b.file}:${b.line} (${b.id})`);
  t.deepEqual(unclassified, [], "add each to CHECKS in __test__/readme-blocks.spec.ts, saying how it is checked");
  const stale = Object.keys(CHECKS).filter((id) => !BLOCKS.some((b) => b.id === id));
  t.deepEqual(stale, [], "checks whose block is gone");
  for (const [id, c] of Object.entries(CHECKS)) {
    if (c.kind === "skip" || c.kind === "text" || c.kind === "fragment") t.true(c.reason.length > 20, `${id}: says why it is not run`);
  }
});

const classified = (kind: Check["kind"]): (Block & { check: Check })[] =>
  BLOCKS.filter((b) => CHECKS[b.id]?.kind === kind).map((b) => ({ ...b, check: CHECKS[b.id]! }));

const work = mkdtempSync(join(tmpdir(), "tb-readme-blocks-"));
// ES modules, as the package is.
writeFileSync(join(work, "package.json"), '{ "type": "module" }\n');
test.after.always(() => rmSync(work, { recursive: true, force: true }));

/** The source a TypeScript block is checked and run as. */
function tsSource(b: Block): string {
  const c = CHECKS[b.id]!;
  return c.kind === "model" || c.kind === "fragment" ? `${c.before ?? ""}${b.code}${c.after ?? ""}` : b.code;
}

test("TypeScript blocks type-check against the package (tsc, the repository's settings)", (t) => {
  const ts = BLOCKS.filter((b) => b.lang === "ts" && ["program", "model", "fragment", "covered"].includes(CHECKS[b.id]?.kind ?? ""));
  t.true(ts.length >= 5);
  const dir = join(work, "tsc");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
  ts.forEach((b, i) => writeFileSync(join(dir, `block${i}.ts`), tsSource(b)));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      extends: join(ROOT, "tsconfig.json"),
      // Unused names are a lint, not an error, in an excerpt.
      compilerOptions: { noEmit: true, noUnusedLocals: false, noUnusedParameters: false, rootDir: "/", typeRoots: [join(ROOT, "node_modules/@types")] },
      include: ["*.ts"],
    }),
  );
  const r = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(dir, "tsconfig.json")], { encoding: "utf8" });
  const where = (s: string): string => s.replace(/block(\d+)\.ts\((\d+)/g, (_, i: string, l: string) => `${ts[Number(i)]!.file}:${ts[Number(i)]!.line} block line ${l}`);
  t.is(r.status, 0, where(r.stdout + r.stderr));
});

for (const b of classified("program")) {
  test(`${b.file}:${b.line}: the program runs`, async (t) => {
    const file = join(work, `program-${b.line}.ts`);
    writeFileSync(file, b.code);
    // tsx in the repository: its tsconfig maps "tensorbridge" to src/index.ts.
    const r = await run(process.execPath, ["--import", "tsx", "--expose-gc", file], {});
    t.is(r.code, 0, r.out);
  });
}

/** Runs a command to its end; stdout and stderr together. */
function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env } });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (out += d.toString()));
    p.on("close", (code) => resolve({ code, out }));
  });
}

const models = classified("model");
test("model blocks load in a server and answer as the README says", async (t) => {
  t.true(models.length >= 3);
  const repo = join(work, "models");
  for (const b of models) {
    const c = b.check as Extract<Check, { kind: "model" }>;
    mkdirSync(join(repo, c.name, "1"), { recursive: true });
    writeFileSync(join(repo, c.name, "config.pbtxt"), c.config);
    writeFileSync(join(repo, c.name, "1", "model.ts"), tsSource(b));
  }
  const server = await startTestServer(repo);
  try {
    for (const b of models) {
      const c = b.check as Extract<Check, { kind: "model" }>;
      const { got, want } = await c.infer(server);
      t.deepEqual(got, want, `${b.file}:${b.line} (${c.name})`);
    }
  } finally {
    await server.close();
  }
});

const shells = classified("sh");
const hasCurl = spawnSync("sh", ["-c", "command -v curl"], { stdio: "ignore" }).status === 0;
(hasCurl ? test : test.skip)(`shell blocks run against a server of examples/models${hasCurl ? "" : " (SKIPPED: curl is not installed)"}`, async (t) => {
  t.true(shells.length >= 2);
  const repo = join(work, "examples");
  for (const m of ["add_sub", "repeat"]) cpSync(join(ROOT, "examples/models", m), join(repo, m), { recursive: true });
  const server = await startTestServer(repo);
  try {
    const httpAddr = server.address.url.replace(/^http:\/\//, "");
    const grpcAddr = server.grpcAddress!.url.replace(/^[a-z]+:\/\//, "");
    for (const b of shells) {
      const c = b.check as Extract<Check, { kind: "sh" }>;
      let script = b.code.replaceAll("localhost:8000", "$TB_HTTP");
      for (const [from, to] of c.rewrite ?? []) {
        t.true(script.includes(from), `${b.file}:${b.line} still has '${from}'`);
        script = script.replaceAll(from, to);
      }
      const r = await run("bash", ["-c", `set -eo pipefail\n${script}`], { TB_HTTP: httpAddr, TB_GRPC: grpcAddr });
      t.is(r.code, 0, `${b.file}:${b.line}\n${r.out}`);
      // `# {…}` lines are output the block promises.
      for (const line of b.code.split("\n").filter((l) => l.startsWith("# {"))) t.true(r.out.includes(line.slice(2)), `${b.file}:${b.line} prints ${line}\n${r.out}`);
      for (const re of c.expect ?? []) t.regex(r.out, re, `${b.file}:${b.line}`);
    }
  } finally {
    await server.close();
  }
});

test("the repository paths shell blocks name exist", (t) => {
  for (const b of BLOCKS.filter((x) => x.lang === "sh")) {
    for (const [path] of b.code.matchAll(/\b(?:deploy|examples|scripts|docs|bench)\/[\w./-]*[\w/]|\bDockerfile(?:\.\w+)?/g)) {
      if (path.startsWith("docs/api/")) continue; // built by the block itself (npm run docs)
      t.true(existsSync(join(ROOT, path)), `${b.file}:${b.line} names ${path}`);
    }
  }
});

test("covered blocks: the suite that runs each still does", (t) => {
  const covered = classified("covered");
  t.true(covered.length >= 1);
  for (const b of covered) {
    const c = b.check as Extract<Check, { kind: "covered" }>;
    t.true(readFileSync(join(ROOT, c.by), "utf8").includes(c.marker), `${c.by} runs ${b.file}:${b.line}`);
  }
});

test("'same' blocks are identical to the block that is compiled and run elsewhere", (t) => {
  for (const b of classified("same")) {
    const c = b.check as Extract<Check, { kind: "same" }>;
    const twins = blocksOf(c.as).filter((o) => o.lang === b.lang);
    t.true(twins.some((o) => o.code === b.code), `${b.file}:${b.line} equals a ${b.lang} block of ${c.as} (${c.note})`);
  }
});
