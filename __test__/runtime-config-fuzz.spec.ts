/**
 * config.pbtxt parsing against protobuf's own text format parser and
 * Triton's ModelConfig message (`model_config_pb2` from tritonclient, run by
 * `python/model_config_oracle.py`), on seeded mutations of real configs:
 *
 * - what protobuf refuses, `parseModelConfig` refuses too (a config Triton
 *   would not load is not served);
 * - what both take, they read alike: every field protobuf sets has the same
 *   value in ours (int64s, which protobuf's JSON writes as strings, compared
 *   as numbers; floats as float32);
 * - every refusal is a ConfigError whose line and column lie inside the
 *   text (or the documented ERR_MODEL_LOAD of a bad
 *   FORCE_CPU_ONLY_INPUT_TENSORS value); a syntax error
 *   (`ERR_CONFIG_SYNTAX`) only where protobuf refuses the text too.
 *
 * The oracle is Python's protobuf plus the C++ tokenizer's escape rules
 * (Triton parses with the C++ library, which refuses unknown escapes).
 *
 * Needs the venv of `bash bench/serving/setup.sh client` (tritonclient and
 * protobuf); without it the test is skipped with that reason.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { ConfigError, ServingError } from "../src/runtime/errors.js";
import { parseModelConfig } from "../src/runtime/config.js";
import { CASES, SEED, mutate, rng } from "./fuzz-helpers.js";
import { ROOT } from "./server-helpers.js";

const VENV = process.env["TENSORBRIDGE_CLIENT_VENV"] ?? join(ROOT, "bench/.work/venv-client");
const PYTHON = join(VENV, "bin/python");
const ORACLE = join(ROOT, "__test__/python/model_config_oracle.py");

/** protobuf's verdict on each text, or why there is none. */
function oracle(texts: string[]): { ok: boolean; config?: unknown; error?: string }[] | string {
  if (!existsSync(PYTHON)) return `no Python venv at ${VENV}; run bash bench/serving/setup.sh client`;
  const r = spawnSync(PYTHON, [ORACLE], { input: JSON.stringify(texts), maxBuffer: 1 << 28, encoding: "utf8" });
  if (r.status !== 0) return `the oracle failed (tritonclient not installed? run bash bench/serving/setup.sh client): ${r.stderr.trim().split("\n").pop()}`;
  return JSON.parse(r.stdout) as { ok: boolean; config?: unknown; error?: string }[];
}

const RICH = `name: "m"
backend: "tensorbridge"
max_batch_size: 8
version_policy: { specific: { versions: [1, 3] } }
input [
  { name: "IN" data_type: TYPE_FP16 dims: [ -1, 3 ] reshape: { shape: [ 3, -1 ] } },
  { name: "S" data_type: TYPE_STRING dims: [ 1 ] optional: true }
]
output [ { name: "OUT" data_type: TYPE_BF16 dims: [ 2 ] label_filename: "labels.txt" } ]
instance_group [
  { count: 2 kind: KIND_CPU },
  { name: "g" count: 1 kind: KIND_GPU gpus: [ 0, 1 ] }
]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
parameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "no" } }
parameters [ { key: "k2" value: { string_value: "v\\t2" } } ]
model_warmup [ { name: "w" batch_size: 1 inputs { key: "IN" value: { data_type: TYPE_FP16 dims: [ 3 ] zero_data: true } } } ]
`;
const SEEDS = [RICH, readExample("add_sub"), readExample("force_cpu_no")];

function readExample(name: string): string {
  return readFileSync(join(ROOT, "examples/models", name, "config.pbtxt"), "utf8");
}

/** Bytes and words that matter to the text format. */
const BYTES = ["{", "}", "[", "]", "<", ">", ":", ",", ";", '"', "'", "\\", "#", "\n", " ", "-", "0", "1", "x", "e", ".", "f", "TYPE_FP32", "KIND_GPU", "true", "inf", "name", "dims", "\u00e9"];
const LINES = ['name: "m"', "max_batch_size: -1", "max_batch_size: 2147483648", "dims: [4]", 'backend: "python"', "input [ ]", 'output { name: "X" data_type: TYPE_INT8 dims: [0] }', "instance_group { kind: KIND_MODEL }", 'unknown_field: "x"', "[ext.field]: 1", "sequence_batching { }", "# a comment"];
const NUMBERS = ["0", "-1", "-2", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808", "0x10", "010", "1.5", "1e3", "-0", "inf", "nan"];

/** Whether every field set in protobuf's form has the same value in ours; the first difference. */
function sameAsOracle(want: unknown, got: unknown, path = "config"): string | undefined {
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length !== want.length) return `${path}: protobuf ${JSON.stringify(want)}, ours ${JSON.stringify(got)}`;
    for (let i = 0; i < want.length; i++) {
      const d = sameAsOracle(want[i], got[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (want !== null && typeof want === "object") {
    if (got === null || typeof got !== "object") return `${path}: protobuf ${JSON.stringify(want)}, ours ${JSON.stringify(got)}`;
    for (const [k, v] of Object.entries(want)) {
      const d = sameAsOracle(v, (got as Record<string, unknown>)[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  // int64 fields: protobuf's JSON writes them as strings
  if (typeof want === "string" && typeof got === "number" && /^-?[0-9]+$/.test(want)) return BigInt(want) === BigInt(got) ? undefined : `${path}: protobuf ${want}, ours ${got}`;
  if (typeof want === "number" && typeof got === "number") return Math.fround(want) === Math.fround(got) ? undefined : `${path}: protobuf ${want}, ours ${got}`;
  return want === got ? undefined : `${path}: protobuf ${JSON.stringify(want)}, ours ${JSON.stringify(got)}`;
}

const texts: string[] = [];
{
  const next = rng(SEED ^ 0x3c3c3c3c);
  for (let i = 0; i < CASES; i++) texts.push(mutate(next, { seeds: SEEDS, alphabet: BYTES, lines: LINES, numbers: NUMBERS, lineBreak: "\n" }).text);
}
const verdicts = oracle([...SEEDS, ...texts]);
const fuzzTest = typeof verdicts === "string" ? test.skip : test;

fuzzTest(`config.pbtxt: mutated configs are refused where protobuf refuses them and read alike where both take them${typeof verdicts === "string" ? ` (skipped: ${verdicts})` : ""}`, (t) => {
  const all = verdicts as Exclude<typeof verdicts, string>;
  // The seeds themselves: protobuf and we both take them, alike.
  for (let s = 0; s < SEEDS.length; s++) {
    t.true(all[s]!.ok, `seed ${s}: ${all[s]!.error}`);
    t.is(sameAsOracle(all[s]!.config, parseModelConfig(SEEDS[s]!, { file: `seed${s}` })), undefined, `seed ${s}`);
  }
  const failures: string[] = [];
  const counts = { bothTake: 0, bothRefuse: 0, oursOnlyRefuse: 0 };
  for (let i = 0; i < texts.length && failures.length < 5; i++) {
    const text = texts[i]!;
    const want = all[SEEDS.length + i]!;
    const why = (msg: string) => failures.push(`case ${i} (TB_FUZZ_SEED=${SEED} TB_FUZZ_CASES=${i + 1}): ${msg}\n  text: ${JSON.stringify(text)}`);
    let got: unknown;
    let error: unknown;
    try {
      got = parseModelConfig(text, { file: "fuzz.pbtxt" });
    } catch (e) {
      error = e;
    }
    if (error === undefined) {
      if (!want.ok) {
        why(`we take what protobuf refuses (${want.error})`);
        continue;
      }
      counts.bothTake++;
      const d = sameAsOracle(want.config, got);
      if (d) why(d);
      continue;
    }
    if (!(error instanceof ConfigError)) {
      // The one documented exception: a bad FORCE_CPU_ONLY_INPUT_TENSORS value fails the load (protobuf knows nothing of it).
      const forceCpu = error instanceof ServingError && error.code === "ERR_MODEL_LOAD" && error.message.includes("FORCE_CPU_ONLY_INPUT_TENSORS");
      if (!forceCpu || !want.ok) why(`not a ConfigError: ${String(error)}`);
      else counts.oursOnlyRefuse++;
      continue;
    }
    const lines = text.split("\n");
    if (error.line < 1 || error.line > lines.length + 1 || error.column < 1 || error.column > (lines[error.line - 1]?.length ?? 0) + 1) {
      why(`position ${error.line}:${error.column} is outside the text`);
    }
    if (want.ok) {
      counts.oursOnlyRefuse++;
      if (error.code === "ERR_CONFIG_SYNTAX") why(`syntax error where protobuf reads the text: ${error.message}`);
    } else {
      counts.bothRefuse++;
    }
  }
  t.deepEqual(failures, []);
  t.true(counts.bothTake >= CASES / 20, `only ${counts.bothTake} of ${CASES} mutated configs were taken by both`);
  t.log(`${CASES} mutated configs (seed ${SEED}): ${counts.bothTake} taken by both and read alike, ${counts.bothRefuse} refused by both, ${counts.oursOnlyRefuse} refused by our checks only (ERR_CONFIG_INVALID, ERR_MODEL_LOAD)`);
});
