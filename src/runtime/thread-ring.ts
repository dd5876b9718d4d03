/**
 * The shared-memory channel between the serving thread and a thread
 * instance's worker (see `thread-instance.ts`): one {@link RingWriter} /
 * {@link RingReader} pair per direction, over a `SharedArrayBuffer` with
 * `Atomics`, so a message costs no `postMessage` (whose round trip is
 * several times the cost of a request on the serving thread).
 *
 * A message is encoded by `thread-codec.ts` (binary for the hot path, JSON
 * for the rest). One that does not fit in the ring's free space (a ring
 * full of unread messages, or one larger than the ring), that the codec
 * cannot hold (a `bigint` address), or that the writer sends that way (rare
 * control messages whose content is the model's, which JSON could alter)
 * goes through a `MessagePort` instead, which the reader drains synchronously with
 * `receiveMessageOnPort`; every message has a sequence number, so the
 * reader takes them in the order they were written, whichever way each
 * went. The writer never waits for the reader: a slow reader costs
 * `postMessage`s, not a stall.
 *
 * Layout of the buffer: {@link CTRL_WORDS} `Int32` control words (the
 * read and write positions, the count of messages written, the reader's
 * polling flag, when the last message was written), then the data:
 * each message is `[byte length][sequence number][payload]`, 4-byte
 * aligned; a length of -1 says the next message starts at offset 0.
 *
 * @module
 */
import { availableParallelism } from "node:os";
import { receiveMessageOnPort, type MessagePort } from "node:worker_threads";

import { decodeMessage, ENCODE_NO_ROOM, encodeInto } from "./thread-codec.js";

/** Control words at the start of a ring's buffer (the last one spare, so that the data starts 8-byte aligned). */
export const CTRL_WORDS = 6;
/** Where the reader is (byte offset in the data), written by the reader only. */
const HEAD = 0;
/** Where the writer is, written by the writer only. */
const TAIL = 1;
/** How many messages were written (either way), modulo 2^32: the word readers wait on. */
export const WRITTEN = 2;
/** Nonzero while the reader polls the ring (see {@link RingReader.polling}): the writer need not wake it. */
const POLLING = 3;
/** When the last message was written (µs, modulo 2^32, see {@link nowUs}): a woken reader's lateness. */
const WRITTEN_AT = 4;
/** Says the data goes on at offset 0. */
const WRAP = -1;
/** A message's header: its byte length and its sequence number. */
const HEADER = 8;

type WaitAsync = (
  ta: Int32Array,
  index: number,
  value: number,
  timeout?: number,
) => { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };

/** `Atomics.waitAsync` (ES2024, older than the TypeScript lib this project builds with). */
export const waitAsync: WaitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync.bind(Atomics);

/** The default size of a ring's data, per direction (1 MiB). */
export const DEFAULT_RING_BYTES = 1 << 20;

/** Makes a ring's buffer for `bytes` of data (rounded up to a multiple of 4, at least 64). */
export function ringBuffer(bytes = DEFAULT_RING_BYTES): SharedArrayBuffer {
  const data = Math.max(64, Math.ceil(bytes / 4) * 4);
  return new SharedArrayBuffer(CTRL_WORDS * 4 + data);
}

const align4 = (n: number): number => (n + 3) & ~3;

/** The views both ends of a ring read it through: its control words, and its data area as bytes, as words and as a `DataView` (the codec's numbers). */
function ringViews(buffer: SharedArrayBuffer): { ctrl: Int32Array; cap: number; bytes: Buffer; words: Int32Array; view: DataView } {
  const cap = buffer.byteLength - CTRL_WORDS * 4;
  return {
    ctrl: new Int32Array(buffer, 0, CTRL_WORDS),
    cap,
    bytes: Buffer.from(buffer, CTRL_WORDS * 4, cap),
    words: new Int32Array(buffer, CTRL_WORDS * 4, cap / 4),
    view: new DataView(buffer, CTRL_WORDS * 4, cap),
  };
}

/** A message that went through the port: its sequence number and the message itself. */
interface Overflow {
  readonly seq: number;
  readonly message: unknown;
}

/** The writing end of a ring: the only writer of its tail. */
export class RingWriter {
  readonly #ctrl: Int32Array;
  readonly #bytes: Buffer;
  readonly #words: Int32Array;
  readonly #view: DataView;
  readonly #cap: number;
  readonly #port: MessagePort;
  #tail: number;
  #seq = 0;
  /** Messages that went through the port because they did not fit or JSON could not hold them (for the tests). */
  overflowed = 0;

  /**
   * @param buffer - the ring's buffer ({@link ringBuffer}).
   * @param port - this end of the port that messages go through when they do not fit.
   */
  constructor(buffer: SharedArrayBuffer, port: MessagePort) {
    ({ ctrl: this.#ctrl, cap: this.#cap, bytes: this.#bytes, words: this.#words, view: this.#view } = ringViews(buffer));
    this.#port = port;
    this.#tail = Atomics.load(this.#ctrl, TAIL);
  }

  /**
   * Writes `m` and wakes the reader: in the ring, or (when it does not fit,
   * the codec cannot hold it, or `byPort`) through the port, which
   * structured-clones it.
   */
  write(m: unknown, byPort = false): void {
    const seq = this.#seq;
    this.#seq = (seq + 1) | 0;
    if (byPort || !this.#put(m, seq)) {
      if (!byPort) this.overflowed++;
      this.#port.postMessage({ seq, message: m } satisfies Overflow);
    }
    Atomics.store(this.#ctrl, WRITTEN_AT, nowUs());
    Atomics.add(this.#ctrl, WRITTEN, 1);
    // (The count goes up first: a reader that stops polling clears its flag, then looks at the count.)
    if (Atomics.load(this.#ctrl, POLLING) === 0) Atomics.notify(this.#ctrl, WRITTEN);
  }

  /**
   * Encodes `m` straight into the ring's free space (no scratch copy) if it
   * fits there and the codec can hold it; false if not. The reader sees
   * none of the bytes until the tail moves past them.
   */
  #put(m: unknown, seq: number): boolean {
    const cap = this.#cap;
    const head = Atomics.load(this.#ctrl, HEAD);
    let at = this.#tail;
    // The ring is never filled to its last word, so that head === tail means empty: a message ends
    // a word before the reader at the latest (and a word before the end while the reader is at 0).
    let end = encodeInto(m, this.#bytes, this.#view, at + HEADER, at >= head ? (head === 0 ? cap - 4 : cap) : head - 4);
    if (end === ENCODE_NO_ROOM && at >= head && head > 0) {
      // Not enough room before the end: start over at 0, if the room before the reader is enough.
      end = encodeInto(m, this.#bytes, this.#view, HEADER, head - 4);
      if (end >= 0) {
        this.#words[at >> 2] = WRAP;
        at = 0;
      }
    }
    if (end < 0) return false;
    const len = end - at - HEADER;
    const w = at >> 2;
    this.#words[w] = len;
    this.#words[w + 1] = seq;
    let tail = at + HEADER + align4(len);
    if (tail === cap) tail = 0;
    this.#tail = tail;
    Atomics.store(this.#ctrl, TAIL, tail);
    return true;
  }
}

/** The reading end of a ring: the only writer of its head. */
export class RingReader {
  readonly #ctrl: Int32Array;
  readonly #bytes: Buffer;
  readonly #words: Int32Array;
  readonly #view: DataView;
  readonly #cap: number;
  readonly #port: MessagePort;
  /** Messages read, modulo 2^32 (compared with the writer's count). */
  #read = 0;

  /**
   * @param buffer - the ring's buffer ({@link ringBuffer}).
   * @param port - this end of the port that messages that did not fit come through.
   */
  constructor(buffer: SharedArrayBuffer, port: MessagePort) {
    ({ ctrl: this.#ctrl, cap: this.#cap, bytes: this.#bytes, words: this.#words, view: this.#view } = ringViews(buffer));
    this.#port = port;
  }

  /** The control words, for `Atomics.wait`/`waitAsync` on {@link WRITTEN}. */
  get ctrl(): Int32Array {
    return this.#ctrl;
  }

  /** How many messages this end has read (modulo 2^32): wait while {@link WRITTEN} equals it. */
  get readCount(): number {
    return this.#read;
  }

  /**
   * Says whether this end polls the ring, so that the writer can skip its
   * `Atomics.notify` (which, to a thread with a `waitAsync` pending, posts
   * a task to it). A reader that stops polling must look at
   * {@link pending} afterwards: a message written meanwhile woke nobody.
   */
  polling(on: boolean): void {
    Atomics.store(this.#ctrl, POLLING, on ? 1 : 0);
  }

  /** µs since the last message was written: after a blocked wait, what the wake cost. */
  lateness(): number {
    return (nowUs() - Atomics.load(this.#ctrl, WRITTEN_AT)) | 0;
  }

  /** Whether a message is waiting. */
  pending(): boolean {
    return Atomics.load(this.#ctrl, WRITTEN) !== this.#read;
  }

  /** Bytes of the ring that hold unread messages (0 once every message was read: nothing is left in a slot). */
  usedBytes(): number {
    const head = Atomics.load(this.#ctrl, HEAD);
    const tail = Atomics.load(this.#ctrl, TAIL);
    return (tail - head + this.#cap) % this.#cap;
  }

  /** Takes the next message, or undefined when none is waiting. */
  read(): unknown {
    if (!this.pending()) return undefined;
    const seq = this.#read;
    this.#read = (seq + 1) | 0;
    let head = Atomics.load(this.#ctrl, HEAD);
    if (head !== Atomics.load(this.#ctrl, TAIL)) {
      if (this.#words[head >> 2] === WRAP) head = 0;
      const w = head >> 2;
      if (this.#words[w + 1] === seq) {
        const len = this.#words[w]!;
        const m = decodeMessage(this.#bytes, head + HEADER, this.#view);
        let next = head + HEADER + align4(len);
        if (next === this.#cap) next = 0;
        Atomics.store(this.#ctrl, HEAD, next);
        return m;
      }
    }
    // Not in the ring: it went through the port, which already holds it (it was posted before the count went up).
    const o = receiveMessageOnPort(this.#port)?.message as Overflow | undefined;
    if (o === undefined || o.seq !== seq) throw new Error(`thread ring: message ${seq} is missing (got ${o === undefined ? "none" : o.seq})`);
    return o.message;
  }
}

/** This thread's time origin (ms since the epoch; each thread has its own, fixed): read once, its getter costs as much as the clock. */
const TIME_ORIGIN = performance.timeOrigin;

/**
 * The clock both ends of a ring share, in µs modulo 2^32 (an `Int32`
 * control word holds it; differences of less than half an hour are right).
 */
function nowUs(): number {
  return ((TIME_ORIGIN + performance.now()) * 1000) % 0x1_0000_0000 | 0;
}

/** The longest one end of a ring polls for the next message before it blocks (µs). */
export const POLL_MAX_US = 200;
/** A budget below this is none: polling is off (µs). */
const POLL_MIN_US = 4;
/**
 * A poll's budget at most, in wakes: spinning longer than a few wakes cost
 * saves less than it burns.
 */
const WAKES = 4;
/** While polling is off, every this many-th wait polls anyway, for the full budget, to see whether it pays again. */
const PROBE_EVERY = 64;

/**
 * How long one end of a ring polls for its next message before it blocks,
 * learned from the waits before (spin-then-block).
 *
 * - The budget is at most {@link WAKES} times what a blocked wait's wake
 *   costs, measured on each blocked wait a message ends as the time from its
 *   write to the reader running: tens of µs to well over 100 on an idle VM
 *   here (a halted vCPU), around 15 on a loaded one, where polling would
 *   also take the core the other side needs; and at most
 *   {@link POLL_MAX_US}.
 * - A poll that found its message keeps the full budget.
 * - A poll that ran out, whose message then came within the full budget
 *   after it began, was too short: the next one is half as long again as
 *   that message took. This is what gets both ends of a request's hop out of
 *   blocking: each answers late because the other blocked, so each of their
 *   polls runs out just before the answer.
 * - One whose message came later, or not at all before the wait gave up,
 *   halves the budget, down to none: messages that come seldom cost a few
 *   polls, then nothing but a probe every {@link PROBE_EVERY} waits.
 */
export class PollBudget {
  /** What a blocked wait's wake costs (µs), a moving average. */
  #wake = POLL_MAX_US;
  /** The budget of the next poll (µs), before the cap (`#full`). */
  #us = POLL_MAX_US;
  #sinceProbe = 0;

  /** The most a poll may take now (µs). */
  get #full(): number {
    return Math.min(POLL_MAX_US, WAKES * this.#wake);
  }

  /** µs to poll for this wait; 0: block at once. */
  next(): number {
    const us = this.us;
    if (us > 0) return us;
    if (++this.#sinceProbe < PROBE_EVERY) return 0;
    this.#sinceProbe = 0;
    return this.#full;
  }

  /** The poll found its message. */
  hit(): void {
    this.#us = POLL_MAX_US;
  }

  /** The poll ran out, and its message did not come while the wait lasted (or is not known to have). */
  miss(): void {
    this.#us = Math.min(this.#us, this.#full) / 2;
  }

  /** The poll ran out; its message came `arrivalUs` after the poll began (see {@link RingReader.lateness}). */
  late(arrivalUs: number): void {
    if (arrivalUs <= this.#full) this.#us = Math.max(this.#us, 1.5 * arrivalUs);
    else this.miss();
  }

  /**
   * A blocked wait was ended by a message written `lateUs` before (see
   * {@link RingReader.lateness}). `ranOutAt`: when the poll before that
   * wait began (`performance.now()`), if it ran out; the message came
   * that long after it, less its lateness (see {@link late}).
   */
  woke(lateUs: number, ranOutAt?: number): void {
    // (A negative or huge lateness is a clock oddity, or a message that came before the wait: no sample.)
    if (lateUs >= 0 && lateUs < 10_000) this.#wake += (lateUs - this.#wake) / 8;
    if (ranOutAt !== undefined) this.late((performance.now() - ranOutAt) * 1000 - lateUs);
  }

  /** The current budget (µs; 0 while off, when {@link next} only probes). */
  get us(): number {
    const us = Math.min(this.#us, this.#full);
    return us >= POLL_MIN_US ? us : 0;
  }
}

/**
 * How many threads of the process may poll a ring (blocking, as workers
 * do) at once: all thread instances' workers share one, made by the
 * serving thread and passed to each. At most the cores but one, which the
 * serving thread keeps: with more instances than cores, workers polling for
 * their next request would take the cores the others compute on.
 */
export class PollGate {
  /** [threads polling now, the most allowed]. */
  readonly #words: Int32Array;

  /** A gate over `buffer`, made by {@link PollGate.buffer}. */
  constructor(buffer: SharedArrayBuffer) {
    this.#words = new Int32Array(buffer);
  }

  /** A gate's shared words, for at most `max` threads polling at once (default: the cores but one, at least one). */
  static buffer(max = Math.max(1, availableParallelism() - 1)): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(8);
    new Int32Array(buffer)[1] = max;
    return buffer;
  }

  /** Takes a place to poll in; false when all are taken (then block without polling). */
  enter(): boolean {
    if (Atomics.add(this.#words, 0, 1) < Atomics.load(this.#words, 1)) return true;
    Atomics.sub(this.#words, 0, 1);
    return false;
  }

  /** Gives back the place {@link enter} took. */
  leave(): void {
    Atomics.sub(this.#words, 0, 1);
  }
}

/**
 * How many times {@link pollFor} looks at the ring per reading of the clock.
 * A look is a load of a word in this core's cache (about 10 ns here); a
 * reading of the clock costs several times that and allocates (a heap
 * number): read on every look, a second of polling made some 280 MB of
 * garbage, and a worker's scavenges, which run while its next request waits,
 * came mostly from its polls.
 */
export const LOOKS_PER_CLOCK = 32;

/** Polls `reader` for up to `us` µs, blocking this thread; true as soon as a message is waiting. */
export function pollFor(reader: RingReader, us: number): boolean {
  const end = performance.now() + us / 1000;
  do for (let k = 0; k < LOOKS_PER_CLOCK; k++) if (reader.pending()) return true;
  while (performance.now() < end);
  return false;
}
