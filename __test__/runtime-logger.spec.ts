/**
 * The model-author Logger (Triton's pb_utils.Logger): lines in the
 * server's log with the model's name and version at each level, verbose
 * lines only with logVerbose, attribution across awaits and timers, two
 * models at once, instance threads, and lines outside any model.
 */
import test from "ava";

import { Logger } from "../src/model.js";
import { ServingError } from "../src/runtime/errors.js";
import { DEFAULT_MODEL_HOST } from "../src/runtime/model-context.js";
import type { RuntimeLogger } from "../src/runtime/model-version.js";
import { cleanupRepos, http, makeRepo, sleep, startTestServer } from "./server-helpers.js";

test.after.always(() => cleanupRepos());

const CONFIG = `
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
`;
const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;

/** Logs at every level in initialize/execute/finalize; an async part after an await and a timer. */
const LOGGING = `
import { InferenceResponse, Logger, type InferenceRequest } from "tensorbridge";
export default class Logging {
  initialize() { Logger.logInfo("initialized"); }
  async execute(requests: InferenceRequest[]) {
    Logger.logInfo("info line");
    Logger.logWarn("warn line");
    Logger.logError("error line");
    Logger.logVerbose("verbose line");
    Logger.log("log at WARNING", Logger.WARNING);
    const x = requests[0]!.getInputTensorByName("X")!;
    const ms = (x.data() as Float32Array)[0] ?? 0;
    await new Promise((r) => setTimeout(r, ms));
    Logger.logInfo("after await " + ms);
    await new Promise<void>((r) => setTimeout(() => { Logger.logInfo("in timer"); r(); }, 1));
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } }));
  }
  finalize() { Logger.logInfo("finalized"); }
}
`;

interface Line {
  level: "I" | "W" | "E" | "V";
  text: string;
}

function capture(): { logger: RuntimeLogger; lines: Line[] } {
  const lines: Line[] = [];
  return {
    lines,
    logger: {
      info: (m) => lines.push({ level: "I", text: m }),
      warn: (m) => lines.push({ level: "W", text: m }),
      error: (m) => lines.push({ level: "E", text: m }),
      debug: (m) => lines.push({ level: "V", text: m }),
    },
  };
}

const infer = (x: number[]) => ({ inputs: [{ name: "X", datatype: "FP32", shape: [x.length], data: x }] });
const of = (lines: Line[], prefix: string) => lines.filter((l) => l.text.startsWith(prefix)).map((l) => `${l.level} ${l.text.slice(prefix.length)}`);

test("each level is a line in the server's log with the model's name and version; verbose only with logVerbose", async (t) => {
  for (const verbose of [false, true]) {
    const repo = makeRepo({ logging: { config: CONFIG, model: LOGGING, versions: [3] } });
    const { logger, lines } = capture();
    const server = await startTestServer(repo, { logger, logVerbose: verbose });
    try {
      const r = await http(server, "POST", "/v2/models/logging/infer", infer([0]));
      t.is(r.status, 200, r.body.toString());
    } finally {
      await server.close();
    }
    const expected = [
      "I initialized",
      "I info line",
      "W warn line",
      "E error line",
      ...(verbose ? ["V verbose line"] : []),
      "W log at WARNING",
      "I after await 0",
      "I in timer",
      "I finalized",
    ];
    t.deepEqual(of(lines, "model 'logging' version 3: "), expected, `logVerbose ${verbose}`);
  }
});

test("the real stderr logger writes 'I <iso time> model ... : message'", async (t) => {
  const repo = makeRepo({ logging: { config: CONFIG, model: LOGGING } });
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const server = await startTestServer(repo, { quiet: false });
    await server.close();
  } finally {
    process.stderr.write = write;
  }
  t.true(
    written.some((l) => /^I \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z model 'logging' version 1: initialized\n$/.test(l)),
    written.join(""),
  );
});

test("two models logging at once: each line names its own model, across awaits", async (t) => {
  const repo = makeRepo({ a: { config: CONFIG, model: LOGGING }, b: { config: CONFIG, model: LOGGING } });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  try {
    // Interleaved: a waits 30 ms, b 5 ms, both started before either ends.
    const answers = await Promise.all([
      http(server, "POST", "/v2/models/a/infer", infer([30])),
      http(server, "POST", "/v2/models/b/infer", infer([5])),
      http(server, "POST", "/v2/models/a/infer", infer([1])),
    ]);
    t.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200],
    );
  } finally {
    await server.close();
  }
  const after = lines.filter((l) => l.text.includes("after await"));
  t.deepEqual(after.map((l) => l.text).sort(), ["model 'a' version 1: after await 1", "model 'a' version 1: after await 30", "model 'b' version 1: after await 5"]);
  t.is(lines.filter((l) => l.text === "model 'a' version 1: in timer").length, 2);
  t.is(lines.filter((l) => l.text === "model 'b' version 1: in timer").length, 1);
  t.false(
    lines.some((l) => l.text.startsWith("(no model)")),
    "no line lost its model",
  );
});

test("an instance thread's lines reach the server's log with the model's name", async (t) => {
  const repo = makeRepo({ threaded: { config: `${CONFIG}\n${THREADS}`, model: LOGGING, versions: [2] } });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger, logVerbose: true });
  try {
    const r = await http(server, "POST", "/v2/models/threaded/infer", infer([2]));
    t.is(r.status, 200, r.body.toString());
  } finally {
    await server.close();
  }
  t.deepEqual(of(lines, "model 'threaded' version 2: "), [
    "I initialized",
    "I info line",
    "W warn line",
    "E error line",
    "V verbose line",
    "W log at WARNING",
    "I after await 2",
    "I in timer",
    "I finalized",
  ]);
});

/** A decoupled model that logs from timers set in its synchronous execute(), after it returned. */
const decoupled = (tag: string): string => `
import { InferenceResponse, Logger, type InferenceRequest } from "tensorbridge";
export default class Later {
  execute(requests: InferenceRequest[]) {
    for (const r of requests) {
      const sender = r.getResponseSender();
      const x = r.getInputTensorByName("X")!;
      const ms = (x.data() as Float32Array)[0] ?? 0;
      // execute() has returned when these run: only the context carried into the timers names the model.
      setTimeout(() => {
        Logger.logInfo("${tag} first send");
        sender.send(new InferenceResponse({ outputTensors: { Y: x } }));
        setTimeout(() => {
          Logger.logInfo("${tag} final");
          sender.send(undefined, { final: true });
        }, ms);
      }, ms);
    }
  }
}`;

test("a decoupled model's lines from a timer set in a synchronous execute() keep its name, two models interleaved", async (t) => {
  const config = `${CONFIG}\nmodel_transaction_policy { decoupled: true }`;
  const repo = makeRepo({ d1: { config, model: decoupled("one") }, d2: { config, model: decoupled("two") } });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  try {
    const [a, b] = await Promise.all([
      http(server, "POST", "/v2/models/d1/generate_stream", { X: [20] }),
      http(server, "POST", "/v2/models/d2/generate_stream", { X: [5] }),
    ]);
    t.is(a.status, 200, a.body.toString());
    t.is(b.status, 200, b.body.toString());
  } finally {
    await server.close();
  }
  const sends = lines.filter((l) => / (first send|final)$/.test(l.text)).map((l) => l.text);
  // Interleaved in time (the order depends on when each request arrives); each line attributed to its model.
  t.deepEqual(sends.sort(), ["model 'd1' version 1: one final", "model 'd1' version 1: one first send", "model 'd2' version 1: two final", "model 'd2' version 1: two first send"]);
});

test("outside any model a line says (no model); an unknown level is ERR_LOG", (t) => {
  const seen: string[] = [];
  const log = DEFAULT_MODEL_HOST.logger;
  const info = log.info;
  (log as { info: (m: string) => void }).info = (m) => seen.push(m);
  try {
    Logger.logInfo("from a script");
  } finally {
    (log as { info: (m: string) => void }).info = info;
  }
  t.deepEqual(seen, ["(no model): from a script"]);
  const e = t.throws(() => Logger.log("x", "DEBUG" as never), { instanceOf: ServingError });
  t.is((e as ServingError).code, "ERR_LOG");
  t.is((e as ServingError).tritonCode, "INVALID_ARG");
  t.is(Logger.INFO, "INFO");
  t.is(Logger.VERBOSE, "VERBOSE");
});

test("a model's console.* keeps working beside the Logger", async (t) => {
  const repo = makeRepo({
    c: {
      config: CONFIG,
      model: `
import { InferenceResponse, Logger, type InferenceRequest } from "tensorbridge";
export default class C {
  execute(requests: InferenceRequest[]) {
    console.error("console line");
    Logger.logInfo("logger line");
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } }));
  }
}`,
    },
  });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  const errors: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(" "));
  try {
    const r = await http(server, "POST", "/v2/models/c/infer", infer([1]));
    t.is(r.status, 200);
  } finally {
    console.error = orig;
    await server.close();
  }
  t.deepEqual(errors, ["console line"]);
  t.deepEqual(of(lines, "model 'c' version 1: "), ["I logger line"]);
  await sleep(0);
});
