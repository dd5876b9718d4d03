/**
 * How the two ends of a thread instance's rings poll before they block
 * (thread-ring.ts): the budget that PollBudget learns from the waits before
 * (the cost of a wake, polls that found their message, ran out just
 * before it, or ran out for good), and the ring's polling flag, which
 * spares the writer its notify while the reader polls and must not lose a
 * message when the reader stops.
 */
import { availableParallelism } from "node:os";
import { MessageChannel } from "node:worker_threads";

import test from "ava";

import { ModelRegistry } from "../src/runtime/model-registry.js";
import { LOOKS_PER_CLOCK, PollBudget, pollFor, PollGate, POLL_MAX_US, RingReader, ringBuffer, RingWriter, waitAsync, WRITTEN } from "../src/runtime/thread-ring.js";
import { Tensor } from "../src/tensor.js";
import { cleanupRepos, makeRepo, setupModelEntry } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

/** A ring and both its ends, in this thread. */
function ring(): { reader: RingReader; writer: RingWriter; close(): void } {
  const buf = ringBuffer(1024);
  const { port1, port2 } = new MessageChannel();
  return { reader: new RingReader(buf, port2), writer: new RingWriter(buf, port1), close: () => port1.close() };
}

/** What a pending waitAsync on the reader's count gives within `ms`: "ok" if notified. */
async function notifiedWithin(reader: RingReader, ms: number): Promise<string> {
  const w = waitAsync(reader.ctrl, WRITTEN, reader.readCount, ms);
  if (!w.async) return w.value;
  // (A pending waitAsync does not keep the process alive.)
  const alive = setTimeout(() => {}, ms + 1000);
  try {
    return await w.value;
  } finally {
    clearTimeout(alive);
  }
}

test("a fresh budget polls for the longest; misses halve it down to none; then one wait in 64 probes with the full budget", (t) => {
  const b = new PollBudget();
  t.is(b.next(), POLL_MAX_US);
  const seen: number[] = [];
  while (b.us > 0) {
    seen.push(b.us);
    b.miss();
  }
  t.deepEqual(seen.slice(0, 3), [POLL_MAX_US, POLL_MAX_US / 2, POLL_MAX_US / 4]);
  t.true(seen.length < 10, `it took ${seen.length} misses to turn polling off`);
  const budgets = Array.from({ length: 128 }, () => b.next());
  t.deepEqual(
    budgets.flatMap((us, i) => (us > 0 ? [i] : [])),
    [63, 127],
    "every 64th wait probes",
  );
  t.is(budgets[63], POLL_MAX_US);
  b.hit();
  t.is(b.next(), POLL_MAX_US, "a probe that found its message turns polling back on");
});

test("the budget is at most four wakes: cheap wakes (a loaded machine) poll briefly; nonsense lateness is no sample", (t) => {
  const b = new PollBudget();
  for (let i = 0; i < 100; i++) b.woke(10);
  t.true(b.us > 39 && b.us <= 41, `budget ${b.us} µs after wakes of 10 µs`);
  b.woke(-5);
  b.woke(1e9);
  t.true(b.us > 39 && b.us <= 41, "a negative or huge lateness moved the estimate");
  for (let i = 0; i < 100; i++) b.woke(1000);
  t.is(b.us, POLL_MAX_US, "expensive wakes: the longest poll, no more");
});

test("a poll that ran out just before its message lengthens the next; one that ran out for long halves it", (t) => {
  const b = new PollBudget();
  for (let i = 0; i < 4; i++) b.miss();
  const short = b.us;
  b.late(60);
  t.is(b.us, 90, "half as long again as the message took");
  b.late(POLL_MAX_US + 1);
  t.is(b.us, 45, "a message later than the longest poll: halved");
  t.true(short < 45);
});

test("a wake after a poll that ran out judges that poll: the message came when the wake says, less its lateness", (t) => {
  const b = new PollBudget();
  for (let i = 0; i < 4; i++) b.miss();
  const short = b.us;
  // The poll began 80 µs ago; the message was written 20 µs ago: it came 60 µs after the poll began.
  b.woke(20, performance.now() - 0.08);
  // (At least: the clock moves on between the two readings.)
  t.true(b.us >= 90 && b.us <= POLL_MAX_US, `budget ${b.us} µs: half as long again as 60 µs or more`);
  t.true(short < 45);
  const c = new PollBudget();
  for (let i = 0; i < 4; i++) c.miss();
  c.woke(20);
  t.is(c.us, short, "without a poll that ran out, only the wake's cost is sampled");
});

test("PollGate: no more threads poll at once than it allows (by default the cores but one, at least one); a place given back is taken again", (t) => {
  const buffer = PollGate.buffer(2);
  const a = new PollGate(buffer);
  const b = new PollGate(buffer);
  t.true(a.enter());
  t.true(b.enter());
  t.false(a.enter(), "a third place");
  b.leave();
  t.true(a.enter());
  t.is(new Int32Array(PollGate.buffer())[1], Math.max(1, availableParallelism() - 1));
});

test("pollFor: true at once with a message waiting, false when none comes within the budget", (t) => {
  const { reader, writer, close } = ring();
  t.teardown(close);
  t.false(pollFor(reader, 20));
  writer.write({ x: 1 });
  t.true(pollFor(reader, 1_000_000));
  t.deepEqual(reader.read(), { x: 1 });
});

test("pollFor looks at the ring many times per reading of the clock (a reading allocates: read per look, polls made most of a worker's garbage)", (t) => {
  const { reader, close } = ring();
  t.teardown(close);
  let looks = 0;
  let clocks = 0;
  const pending = reader.pending.bind(reader);
  reader.pending = () => (looks++, pending());
  const now = performance.now.bind(performance);
  performance.now = () => (clocks++, now());
  try {
    t.false(pollFor(reader, 2000));
  } finally {
    // (Synchronous: no other test runs meanwhile and sees the stand-in clock.)
    delete (performance as { now?: unknown }).now;
  }
  t.true(performance.now !== undefined && clocks > 1);
  t.true(looks >= LOOKS_PER_CLOCK * (clocks - 1), `${looks} looks for ${clocks} readings of the clock`);
});

test("while the reader polls, the writer does not notify; a reader that stops polling finds what came meanwhile", async (t) => {
  const { reader, writer, close } = ring();
  t.teardown(close);
  reader.polling(true);
  const quiet = notifiedWithin(reader, 200);
  writer.write({ n: 1 });
  t.is(await quiet, "timed-out", "a polling reader was notified");
  reader.polling(false);
  t.true(reader.pending(), "the message written while it polled");
  t.deepEqual(reader.read(), { n: 1 });
  const woken = notifiedWithin(reader, 10_000);
  writer.write({ n: 2 });
  t.is(await woken, "ok", "a reader that does not poll is notified");
  t.deepEqual(reader.read(), { n: 2 });
});

test("lateness: the µs since the last write, on the clock both threads share", (t) => {
  const { reader, writer, close } = ring();
  t.teardown(close);
  writer.write(1);
  const late = reader.lateness();
  t.true(late >= 0 && late < 1_000_000, `lateness ${late} µs`);
  reader.read();
});

test("through a thread instance, requests with pauses of every length between them (so polls hit, run out just before, and run out for good), and some at once: every one answered, in its own order", async (t) => {
  const root = makeRepo({
    echo: {
      config: `name: "echo"
input { name: "X" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }
parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`,
      model: `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class Echo {
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } }));
  }
}`,
    },
  });
  const reg = new ModelRegistry({ repository: root });
  t.teardown(() => reg.close());
  await reg.loadAll();
  const mv = reg.get("echo");
  const ask = async (i: number): Promise<number> => {
    const out = await mv.infer({ inputs: [Tensor.from(new Int32Array([i]), { name: "X" })] });
    return (out.outputs[0]!.data() as Int32Array)[0]!;
  };
  // Pauses from none to well past the longest poll and the worker's blocking wait (2 ms).
  const pauses = [0, 0, 0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 1, 3, 5];
  let wrong = 0;
  for (let i = 0; i < 1200; i++) {
    const pause = pauses[(i * 7) % pauses.length]!;
    const until = performance.now() + pause;
    if (pause >= 1) await new Promise((r) => setTimeout(r, pause));
    else while (performance.now() < until);
    if ((await ask(i)) !== i) wrong++;
    if (i % 100 === 99) {
      const many = await Promise.all(Array.from({ length: 16 }, (_, k) => ask(100_000 + k)));
      t.deepEqual(many, Array.from({ length: 16 }, (_, k) => 100_000 + k));
    }
  }
  t.is(wrong, 0);
});
