/**
 * Differential fuzzing of the server's two hand-written fast paths against
 * the slow paths they stand in for, on thousands of seeded mutations:
 *
 * - The HTTP/1.1 front's kept heads against its head parser: a head served
 *   from a connection's kept parse (the same bytes, or other
 *   `Content-Length` digits) must be exactly what a fresh parse gives.
 * - The HTTP/1.1 front's head parser against node:http's own (llhttp):
 *   whatever `parseRequestHead` takes, a plain node:http server must read as
 *   the same request (method, target, every header value, body length,
 *   keep-alive). A head the front refuses goes to node:http, so refusing is
 *   always safe; taking a head that llhttp reads differently (or refuses)
 *   would let the two disagree on where a request ends, the root of request
 *   smuggling.
 * - The codec's kept decode plans (JSON and binary bodies seen before)
 *   against the full decode: the same inputs, outputs and parameters, or the
 *   same error, and every error a ServingError (a 4xx), never a TypeError or
 *   a read past the body.
 *
 * The mutations are seeded (`fuzz-helpers.ts`), so a failure names a case
 * that can be replayed: `TB_FUZZ_SEED=<seed> TB_FUZZ_CASES=<n>` choose the run.
 */
import { createServer, type IncomingMessage } from "node:http";
import { connect, type AddressInfo } from "node:net";

import test from "ava";

import { decodeInferRequest, forgetDecodePlans } from "../src/server/codec.js";
import { keepHead, parseRequestHead, reuseHead, type ParsedHead } from "../src/server/http-front.js";
import { CASES, SEED, mutate, rng } from "./fuzz-helpers.js";
import { decodeOutcome } from "./server-helpers.js";

const HEADS = [
  "POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 5",
  "POST /v2/models/add_sub/versions/1/infer HTTP/1.1\r\nhost: a\r\ncontent-type: application/octet-stream\r\ninference-header-content-length: 3\r\ncontent-length: 5\r\nconnection: keep-alive",
  "POST /echo?x=1&y=%20 HTTP/1.1\r\nUser-Agent: perf_analyzer\r\nHost: h\r\nAccept: */*\r\nContent-Length:0\r\nConnection: close",
  // perf_analyzer's head for a JSON body (both lengths vary), and a numeric header between blanks.
  "POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1:8403\r\nUser-Agent: libcurl-agent/1.0\r\nAccept: */*\r\nInference-Header-Content-Length: 475\r\nContent-Type: application/json\r\nContent-Length: 475\r\nX-Retry:  7 \t",
];

/** Bytes and fragments that matter to an HTTP/1.1 head parser. */
const HEAD_BYTES = [" ", "\t", "\r", "\n", "\r\n", ":", ",", ";", "0", "1", "9", "a", "Z", "-", "_", "/", "?", "#", "%", '"', "\x00", "\x01", "\x0b", "\x0c", "\x7f", "\x80", "\xff", "\r\n ", "\r\n\t"];

/** Whole header lines that change framing or connection handling. */
const HEAD_LINES = [
  "Content-Length: 5",
  "content-length: 05",
  "Content-Length:  5 ",
  "Content-Length: 5, 5",
  "Content-Length: -1",
  "Transfer-Encoding: chunked",
  "transfer-encoding: identity",
  "Connection: close",
  "Connection: keep-alive, close",
  "Connection: Upgrade",
  "connection:keep-alive",
  "Expect: 100-continue",
  "Upgrade: h2c",
  "Host:",
  "Host: a, b",
  "X-Empty:",
  "X-Sp:   v  ",
  "X-Tab:\tv\t",
  "Proxy-Connection: close",
  "Keep-Alive: timeout=5",
];

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: number;
  keepAlive: boolean;
}

test("every head the front takes, node:http reads as the same request", async (t) => {
  let seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = 0;
    req.on("data", (c: Buffer) => (body += c.length));
    req.on("end", () => {
      // shouldKeepAlive is what llhttp made of Connection and the version.
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body, keepAlive: (req as unknown as { shouldKeepAlive: boolean }).shouldKeepAlive });
      res.end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;

  /** Sends one request on its own connection, ends the client's side, waits for the server to close. */
  const exchange = (bytes: Buffer) =>
    new Promise<void>((resolve) => {
      const s = connect({ port, host: "127.0.0.1" }, () => s.end(bytes));
      s.on("data", () => {});
      s.on("error", () => {});
      s.on("close", () => resolve());
    });

  const next = rng(SEED);
  let taken = 0;
  const failures: string[] = [];
  for (let i = 0; i < CASES && failures.length < 5; i++) {
    const head = mutate(next, { seeds: HEADS, alphabet: HEAD_BYTES, lines: HEAD_LINES }).text;
    const parsed = parseRequestHead(head);
    if (!parsed) continue;
    taken++;
    seen = [];
    await exchange(Buffer.from(`${head}\r\n\r\n${"b".repeat(parsed.length)}`, "latin1"));
    const why = (msg: string) => failures.push(`case ${i} (TB_FUZZ_SEED=${SEED} TB_FUZZ_CASES=${i + 1}): ${msg}\n  head: ${JSON.stringify(head)}`);
    if (seen.length !== 1) {
      why(`node:http read ${seen.length} requests`);
      continue;
    }
    const r = seen[0]!;
    if (r.method !== parsed.method || r.url !== parsed.url) why(`request line: node ${r.method} ${r.url}, front ${parsed.method} ${parsed.url}`);
    if (r.body !== parsed.length) why(`body: node ${r.body} bytes, front ${parsed.length}`);
    if (r.keepAlive === parsed.close) why(`keep-alive: node ${r.keepAlive}, front close=${parsed.close}`);
    for (const [k, v] of Object.entries(parsed.headers)) {
      // node joins some duplicates and drops others; the front refuses duplicates, so values compare one to one
      const nv = r.headers[k];
      const nodeValue = Array.isArray(nv) ? nv.join(", ") : nv;
      if (nodeValue !== v) why(`header ${k}: node ${JSON.stringify(nodeValue)}, front ${JSON.stringify(v)}`);
    }
  }
  t.deepEqual(failures, []);
  // Not vacuous: the mutations keep enough heads valid for the comparison to mean something.
  t.true(taken >= CASES / 10, `only ${taken} of ${CASES} mutated heads were taken by the front`);
  t.log(`${taken} of ${CASES} mutated heads taken by the front and read alike by node:http (seed ${SEED})`);
});

/** A parse as plain data, for deepEqual (headers have no prototype). */
const plain = (h: ParsedHead | undefined) => (h === undefined ? undefined : { ...h, headers: { ...h.headers } });

test("a head served from a kept parse (the same bytes, or other digits in its numeric headers) is what parseRequestHead gives for it", (t) => {
  const next = rng(SEED ^ 0x5eed);
  const digits = () => Array.from({ length: Math.floor(next() * 18) }, () => String(Math.floor(next() * 10))).join("");
  let reused = 0;
  let compared = 0;
  const failures: string[] = [];
  for (let i = 0; i < CASES && failures.length < 5; i++) {
    const a = mutate(next, { seeds: HEADS, alphabet: HEAD_BYTES, lines: HEAD_LINES }).text;
    const parsedA = parseRequestHead(a);
    if (!parsedA) continue;
    const kept = keepHead(Buffer.from(a, "latin1"), a, parsedA);
    // Other digits (none, 1 to 17 of them) in some of its numeric header values, then the same with one more mutation anywhere, then A itself.
    let other = a;
    for (const n of kept.numbers.toReversed()) if (next() < 0.6) other = other.slice(0, n.at) + digits() + other.slice(n.end);
    for (const b of [other, mutate(next, { seeds: [other], alphabet: HEAD_BYTES, lines: HEAD_LINES }).text, a]) {
      compared++;
      const bytes = Buffer.from(b, "latin1");
      const got = reuseHead(kept, bytes, bytes.length);
      if (got === undefined) continue;
      reused++;
      const want = parseRequestHead(b);
      if (JSON.stringify(plain(got)) !== JSON.stringify(plain(want))) {
        failures.push(`case ${i} (TB_FUZZ_SEED=${SEED} TB_FUZZ_CASES=${i + 1}): kept ${JSON.stringify(a)}, head ${JSON.stringify(b)}: reused ${JSON.stringify(plain(got))}, parsed ${JSON.stringify(plain(want))}`);
      }
    }
  }
  t.deepEqual(failures, []);
  // Not vacuous: many heads are served from a kept parse.
  t.true(reused >= compared / 4, `only ${reused} of ${compared} heads were served from a kept parse`);
  t.log(`${reused} of ${compared} heads served from a kept parse, each as parseRequestHead reads it (seed ${SEED})`);
});

/** JSON bodies: perf_analyzer's, every JSON-typed dtype family, parameters and ids. */
const JSON_BODIES = [
  '{"id":"","inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]},{"name":"INPUT1","datatype":"FP32","shape":[1,4],"data":[4,3,2,1]}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":false}},{"name":"OUTPUT1","parameters":{"binary_data":false}}]}',
  '{ "parameters": {"binary_data_output": true, "p": "data"}, "inputs": [ {"name": "A", "datatype": "INT64", "shape": [4], "data": [ 1, -2, 9007199254740993, 4 ]}, {"name": "B", "datatype": "UINT8", "shape": [2, 2], "data" : [[1, 2], [3, 255]]} ] }',
  '{"inputs":[{"name":"H","datatype":"FP16","shape":[4],"data":[0.5,-0,65504,1e-7]},{"name":"D","datatype":"FP64","shape":[4],"data":[1.5,2,3,4],"parameters":{"x":1}}],"id":"q"}',
  '{"inputs":[{"name":"S","datatype":"BYTES","shape":[2],"data":["ab","\\u00e9"]},{"name":"T","datatype":"BOOL","shape":[2],"data":[true,false]}]}',
  '{"inputs":[{"name":"L","datatype":"INT64","shape":[2],"data":[5,-6]},{"name":"U","datatype":"UINT64","shape":[1],"data":[7]}]}',
  '{"inputs":[{"name":"Z","datatype":"BF16","shape":[0],"data":[]},{"name":"I","datatype":"INT8","shape":[],"data":[-128]}],"outputs":[{"name":"O"}]}',
];
const JSON_BYTES = ["{", "}", "[", "]", ",", ":", '"', "\\", "0", "1", "-", ".", "e", "E", "+", " ", "\n", "true", "null", "1e400", "-0", "[1]", '"data"', '"shape"', "\u00e9"];

/** Numbers at the edges of the JSON dtypes, and tokens that are not numbers. */
const JSON_NUMBERS = ["0", "-0", "255", "256", "-129", "65504", "65520", "1e400", "-1e400", "1.5", "0.1", "01", "1e", "-", "9007199254740993", "-9223372036854775809", "18446744073709551615", "18446744073709551616", "NaN", "true", "null", '"1"', "[]"];

/** Binary bodies: a JSON header, then the tensors' bytes (16 per input). */
const BINARY_HEADERS = [
  '{"inputs":[{"name":"INPUT0","shape":[4],"datatype":"FP32","parameters":{"binary_data_size":16}},{"name":"INPUT1","shape":[4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},{"name":"OUTPUT1","parameters":{"binary_data":true}}]}',
  '{"inputs":[{"name":"A","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}},{"name":"S","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":16}}]}',
];
/** 16 bytes of FP32 and INT64 values, and two BYTES elements of 4 and 4 bytes. */
const PAYLOAD = Buffer.from("0000803f00000040000040400000804004000000616263640400000065666768", "hex");

test("decode plans: a body like one seen before decodes as the full path does, or fails with the same ServingError", (t) => {
  const next = rng(SEED ^ 0x5a5a5a5a);
  const failures: string[] = [];
  let decoded = 0;
  let viaPlan = 0;
  for (let i = 0; i < CASES && failures.length < 5; i++) {
    let seedBody: Buffer;
    let seedHl: string | undefined;
    let sent: Buffer;
    let hl: string | undefined;
    if (next() < 0.6) {
      const m = mutate(next, { seeds: JSON_BODIES, alphabet: JSON_BYTES, numbers: JSON_NUMBERS });
      seedBody = Buffer.from(m.seed);
      sent = Buffer.from(m.text);
    } else {
      const header = BINARY_HEADERS[Math.floor(next() * BINARY_HEADERS.length)]!;
      seedBody = Buffer.concat([Buffer.from(header), PAYLOAD]);
      seedHl = String(header.length);
      const r = next();
      if (r < 0.25) {
        // the same header (the kept plan serves it) over fewer or more bytes
        const cut = Math.floor(next() * (PAYLOAD.length + 8));
        sent = Buffer.concat([Buffer.from(header), PAYLOAD.subarray(0, cut), Buffer.alloc(Math.max(0, cut - PAYLOAD.length), 7)]);
        hl = seedHl;
      } else if (r < 0.4) {
        // the same header over other bytes: BYTES length prefixes that run short, long or past the end
        const payload = Buffer.from(PAYLOAD);
        for (let k = 1 + Math.floor(next() * 3); k > 0; k--) payload[Math.floor(next() * payload.length)] = [0, 1, 3, 4, 5, 8, 0x7f, 0xff][Math.floor(next() * 8)]!;
        sent = Buffer.concat([Buffer.from(header), payload]);
        hl = seedHl;
      } else {
        const h = mutate(next, { seeds: [header], alphabet: JSON_BYTES }).text;
        sent = Buffer.concat([Buffer.from(h), PAYLOAD]);
        // mostly the header's own length; sometimes one that cuts it or runs into the tensors
        hl = String(r < 0.85 ? Buffer.byteLength(h) : Math.max(0, Buffer.byteLength(h) + Math.floor(next() * 9) - 4));
      }
    }
    const warm = () => {
      forgetDecodePlans();
      decodeOutcome(seedBody, seedHl); // keeps the seed's plan
    };
    // A plan's output list is frozen, the full path's is not.
    warm();
    const viaKept = safeDecode(sent, hl);
    if (viaKept !== undefined && Object.isFrozen(viaKept.outputs)) viaPlan++;
    warm();
    const got = decodeOutcome(sent, hl) as { error?: string; serving?: boolean };
    forgetDecodePlans();
    const want = decodeOutcome(sent, hl);
    const why = (msg: string) => failures.push(`case ${i} (TB_FUZZ_SEED=${SEED} TB_FUZZ_CASES=${i + 1}): ${msg}\n  body: ${JSON.stringify(sent.toString("latin1"))} hl=${hl}`);
    if (got.serving === false) why(`not a ServingError: ${JSON.stringify(got)}`);
    else if (JSON.stringify(got) !== JSON.stringify(want)) why(`plan ${JSON.stringify(got)}\n  full ${JSON.stringify(want)}`);
    if (got.error === undefined) decoded++;
  }
  t.deepEqual(failures, []);
  t.true(decoded >= CASES / 10, `only ${decoded} of ${CASES} mutated bodies decoded`);
  t.true(viaPlan >= CASES / 10, `a kept plan served only ${viaPlan} of ${CASES} bodies`);
  t.log(`${CASES} mutated bodies: ${decoded} decoded, ${viaPlan} through a kept plan, the rest refused alike (seed ${SEED})`);
});

/** The decode, or undefined where it throws. */
function safeDecode(sent: Buffer, hl: string | undefined): ReturnType<typeof decodeInferRequest> | undefined {
  try {
    return decodeInferRequest(sent, hl);
  } catch {
    return undefined;
  }
}
