/**
 * Round trips to a worker thread, timed, for the thread benches
 * (thread-transport.bench.ts, threads.bench.ts): through a pair of the
 * thread instances' shared-memory rings, or any other way a bench sends.
 */
import { MessageChannel, Worker } from "node:worker_threads";

import { pollFor, RingReader, ringBuffer, RingWriter, waitAsync, WRITTEN } from "../src/runtime/thread-ring.js";

/** µs per call of `once`, over `n` calls after 2000 uncounted ones: wall time, and the process's CPU time. */
export async function perRoundTrip(once: () => Promise<void>, n: number): Promise<{ wall: number; cpu: number }> {
  for (let i = 0; i < 2000; i++) await once();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await once();
  const wall = ((performance.now() - t0) * 1000) / n;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / n };
}

/**
 * Starts a worker running `source` (CommonJS, tsx registered first) with
 * `workerData` = `{ toWorker, fromWorker, port, ...data }`: two rings and
 * the port their overflow goes through. Then times `n` round trips: this
 * thread writes `message` to the worker and waits (`Atomics.waitAsync`) for
 * one message back; with `pollUs`, it first polls the ring for that long
 * (and the worker's source may read `workerData.pollUs` to do the same).
 */
export async function ringRoundTrip(source: string, data: Record<string, unknown>, message: unknown, n: number, pollUs = 0): Promise<{ wall: number; cpu: number }> {
  const toWorker = ringBuffer();
  const fromWorker = ringBuffer();
  const { port1, port2 } = new MessageChannel();
  const boot = `require(${JSON.stringify(import.meta.resolve("tsx/cjs/api").replace("file://", ""))}).register(); ${source}`;
  const w = new Worker(boot, { eval: true, workerData: { toWorker, fromWorker, port: port2, pollUs, ...data }, transferList: [port2] });
  await new Promise((r) => w.once("online", r));
  const out = new RingWriter(toWorker, port1);
  const inbox = new RingReader(fromWorker, port1);
  const once = async (): Promise<void> => {
    out.write(message);
    if (pollUs > 0) pollFor(inbox, pollUs);
    for (;;) {
      if (inbox.read() !== undefined) return;
      const r = waitAsync(inbox.ctrl, WRITTEN, inbox.readCount);
      if (r.async) await r.value;
    }
  };
  const timed = await perRoundTrip(once, n);
  await w.terminate();
  port1.close();
  return timed;
}
