/**
 * TypeScript models are transpiled by the runtime's own module hook
 * (src/runtime/loader.ts, with sucrase), in the serving thread and in
 * instance threads, also here where the suites run under tsx: the path a
 * user of the installed package gets, where no tsx exists. The hook
 * resolves `./util.js` to `util.ts` (and `.mjs` to `.mts`, extensionless
 * paths, `index.ts`), follows relative imports out of the version
 * directory, compiles enums, parameter properties and `import x =
 * require()`, elides imports used only as types, and keeps a model's own
 * file and line in its stack traces.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { Tensor } from "../src/tensor.js";
import { ServingError } from "../src/runtime/errors.js";
import { importModelClass } from "../src/runtime/loader.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import { cleanupRepos, makeRepo, setupModelEntry } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

const CONFIG = `
input { name: "X" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }
`;
const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;

// Line 5 makes the Error whose stack the model reports, after a type the
// transpiler removes: its column is right only through the source map.
const SCALE_TS = `export function scale(x: number, by: number = 10): number {
  return x * by;
}
export function whereAmI(): string {
  const n: number = 1; return new Error("probe" + n).stack!.split("\\n")[1]!;
}
`;
const PROBE_COLUMN = SCALE_TS.split("\n")[4]!.indexOf("new Error") + 1;
const UTIL_TS = `export enum Mode { Off, On = 7 }
export class Adder {
  constructor(private readonly by: number) {}
  add(x: number): number { return x + this.by; }
}
`;
const MODEL_TS = `import path = require("node:path");
import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
import { TritonModel } from "tensorbridge"; // a type only, without \`type\`: elided as tsc and tsx do
import { Adder, Mode } from "./util.js";
import { fromMts } from "./helper.mjs";
import { fromIndex } from "./lib";
import { scale, whereAmI } from "../common/scale";

function probe(): number {
  /* a comment that esbuild (tsx) drops and sucrase keeps */ return 1;
}

export default class Everything implements TritonModel {
  execute(requests: InferenceRequest[]) {
    const adder = new Adder(Mode.On);
    const ours = probe.toString().includes("sucrase keeps") ? 1 : 0;
    const at = /common[\\\\/]scale\\.ts:(\\d+):(\\d+)\\)?$/.exec(whereAmI());
    const basename = path.basename("/a/b.txt") === "b.txt" ? 1 : 0;
    return requests.map((r) => {
      const x = (r.getInputTensorByName("X")!.data() as Float32Array)[0]!;
      const y = [adder.add(x), fromMts, fromIndex, scale(x), ours, at ? Number(at[1]) : -1, at ? Number(at[2]) : -1, basename];
      return new InferenceResponse({ outputTensors: { Y: Tensor.from(new Float32Array(y)) } });
    });
  }
}
`;

/** Writes the model's other files: beside model.ts, in a subfolder, and outside the version directory. */
function addFiles(repo: string, name: string): void {
  const dir = join(repo, name);
  mkdirSync(join(dir, "common"), { recursive: true });
  mkdirSync(join(dir, "1", "lib"), { recursive: true });
  writeFileSync(join(dir, "common", "scale.ts"), SCALE_TS);
  writeFileSync(join(dir, "1", "util.ts"), UTIL_TS);
  writeFileSync(join(dir, "1", "helper.mts"), "export const fromMts: number = 100;\n");
  writeFileSync(join(dir, "1", "lib", "index.ts"), "export const fromIndex = 1000 as number;\n");
}

test("TypeScript models and what they import are transpiled by the runtime's hook, in the serving thread and in instance threads", async (t) => {
  const repo = makeRepo({
    in_thread: { config: CONFIG, model: MODEL_TS },
    threaded: { config: `${CONFIG}\n${THREADS}`, model: MODEL_TS },
  });
  for (const name of ["in_thread", "threaded"]) addFiles(repo, name);
  // A CommonJS package scope above the repository must not matter.
  writeFileSync(join(repo, "package.json"), JSON.stringify({ type: "commonjs" }));
  const reg = new ModelRegistry({ repository: repo });
  try {
    t.deepEqual(await reg.loadAll(), []);
    for (const name of ["in_thread", "threaded"]) {
      const out = await reg.get(name).infer({ inputs: [Tensor.from(new Float32Array([2])).withName("X")] });
      // [Adder(Mode.On).add(2), .mts, lib/index.ts, ../common/scale.ts, transpiled by our hook, line and column in scale.ts, import = require()]
      t.deepEqual(Array.from(out.outputs[0]!.data() as Float32Array), [9, 100, 1000, 20, 1, 5, PROBE_COLUMN, 1], name);
    }
  } finally {
    await reg.close();
  }
});

test("a model that is not valid TypeScript fails to import with ERR_MODEL_LOAD naming the file and position", async (t) => {
  const repo = makeRepo({ bad: { config: CONFIG, model: "export default class Bad {\n  execute(requests: ) { return []; }\n}\n" } });
  const file = join(repo, "bad", "1", "model.ts");
  const e = await t.throwsAsync(importModelClass(file), { instanceOf: ServingError });
  t.is(e?.code, "ERR_MODEL_LOAD");
  t.true(e!.message.includes(file), e!.message);
  t.regex(e!.message, /\(2:\d+\)/, "the line of the error");
});

test("each import of a TypeScript model transpiles the file as it is now (an edit between loads is seen)", async (t) => {
  const repo = makeRepo({ edited: { config: CONFIG, model: "export default class V { version: number = 1; execute() { return []; } }\n" } });
  const file = join(repo, "edited", "1", "model.ts");
  const First = (await importModelClass(file)) as new () => { version: number };
  writeFileSync(file, "export default class V { version: number = 2; execute() { return []; } }\n");
  const Second = (await importModelClass(file)) as new () => { version: number };
  t.is(new First().version, 1);
  t.is(new Second().version, 2);
});
