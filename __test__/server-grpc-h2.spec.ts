// The gRPC server's own HTTP/2 (src/server/grpc/h2/): HPACK against RFC 7541's
// examples, the connection's answers to protocol errors over a raw socket,
// flow control both ways, and the gRPC layer's HTTP-level refusals.
import { connect as netConnect, type Socket } from "node:net";
import { connect, constants } from "node:http2";
import { join } from "node:path";

import { loadSync } from "@grpc/proto-loader";
import anyTest, { type TestFn } from "ava";

import { huffmanDecode } from "../src/server/grpc/h2/huffman.js";
import { HpackDecoder, HpackError, encodeHeaders } from "../src/server/grpc/h2/hpack.js";
import { parseGrpcTimeout } from "../src/server/grpc/h2-server.js";
import { parseCli } from "../src/cli.js";
import { ServingError } from "../src/runtime/errors.js";
import type { InferenceServer } from "../src/server/server.js";
import { rng } from "./fuzz-helpers.js";
import { ADD_SUB, ROOT, cleanupRepos, makeRepo, rawGrpcCall, startTestServer, type TestModel } from "./server-helpers.js";

const ECHO: TestModel = {
  config: `
input { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }
`,
  model: `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class Echo {
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: { OUT: r.inputs()[0]!.toCpu().clone() } }));
  }
}
`,
};

const test = anyTest as TestFn<{ server: InferenceServer; port: number }>;

test.before(async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, echo: ECHO });
  t.context.server = await startTestServer(repo);
  t.context.port = t.context.server.grpcAddress!.port;
});

test.after.always(async (t) => {
  await t.context.server?.close();
  cleanupRepos();
});

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const fields = (m: Map<string, string>): [string, string][] => [...m];

// ------------------------------------------------------------------ HPACK

test("Huffman: RFC 7541 Appendix C.4's strings decode; EOS, over-long padding and non-one padding are refused", (t) => {
  const cases: [string, string][] = [
    ["f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"],
    ["a8eb10649cbf", "no-cache"],
    ["25a849e95ba97d7f", "custom-key"],
    ["25a849e95bb8e8b4bf", "custom-value"],
    ["6402", "302"],
    ["aec3771a4b", "private"],
    ["d07abe941054d444a8200595040b8166e082a62d1bff", "Mon, 21 Oct 2013 20:13:21 GMT"],
    ["9d29ad171863c78f0b97c8e9ae82ae43d3", "https://www.example.com"],
  ];
  for (const [h, want] of cases) {
    const b = hex(h);
    t.is(huffmanDecode(b, 0, b.length)?.toString("latin1"), want, h);
  }
  // '0' is 00000 (5 bits): 0x00 leaves 3 zero bits of padding (not ones).
  t.is(huffmanDecode(Buffer.from([0x00]), 0, 1), undefined);
  // a whole byte of ones after a symbol is padding longer than 7 bits
  t.is(huffmanDecode(Buffer.from([0x07, 0xff]), 0, 2), undefined);
  // EOS itself (30 ones)
  t.is(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xfc]), 0, 4), undefined);
});

test("HPACK decoder: RFC 7541 C.3 and C.4 (three requests sharing a dynamic table, without and with Huffman)", (t) => {
  for (const blocks of [
    [
      "828684410f7777772e6578616d706c652e636f6d",
      "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ],
    ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf", "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
  ]) {
    const d = new HpackDecoder();
    t.deepEqual(fields(d.decode(hex(blocks[0]!))), [
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
    t.deepEqual(fields(d.decode(hex(blocks[1]!))), [
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
      ["cache-control", "no-cache"],
    ]);
    t.deepEqual(fields(d.decode(hex(blocks[2]!))), [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
  }
});

test("HPACK: the encoder's blocks decode to what went in (static names, new names, long values, every octet)", (t) => {
  const all = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join("");
  const input: [string, string][] = [
    [":status", "200"],
    [":status", "415"],
    ["content-type", "application/grpc"],
    ["grpc-status", "13"],
    ["grpc-message", "x".repeat(300)],
    ["x-octets", all],
  ];
  t.deepEqual(fields(new HpackDecoder().decode(encodeHeaders(input))), [
    [":status", "200, 415"],
    ["content-type", "application/grpc"],
    ["grpc-status", "13"],
    ["grpc-message", "x".repeat(300)],
    ["x-octets", all],
  ]);
});

test("HPACK decoder: malformed blocks are HpackErrors, never a crash or a read past the block", (t) => {
  const bad = [
    "80", // index 0
    "be", // index 62 with an empty dynamic table
    "3fe21f", // a table size update past the announced 4096
    "8220", // a size update after a field
    "0f", // a truncated integer
    "00 05 61", // a name longer than the block
    "00 81 00 00", // a Huffman name that is bad padding
    "ff ff ff ff ff ff 7f", // an integer too large
  ];
  for (const h of bad) {
    t.throws(() => new HpackDecoder().decode(hex(h)), { instanceOf: HpackError }, h);
  }
  // a header list past the limit
  const big = encodeHeaders([["x-big", "y".repeat(200)]]);
  t.throws(() => new HpackDecoder(4096, 100).decode(big), { instanceOf: HpackError });
  // an entry larger than the table empties it; later references to evicted entries fail
  const d = new HpackDecoder(64);
  d.decode(hex("3f21")); // size update to 64 (31 + 33)
  t.deepEqual(fields(d.decode(hex("40 0161 0162"))), [["a", "b"]]); // indexed: 1 + 1 + 32 = 34 octets
  t.deepEqual(fields(d.decode(hex("be"))), [["a", "b"]]);
  d.decode(hex(`40 0163 20${"64".repeat(32)}`)); // 1 + 32 + 32 = 65 > 64: table emptied
  t.throws(() => d.decode(hex("be")), { instanceOf: HpackError });
});

test("grpc-timeout: every unit; malformed values are ignored (no deadline)", (t) => {
  t.is(parseGrpcTimeout("2H"), 7_200_000);
  t.is(parseGrpcTimeout("3M"), 180_000);
  t.is(parseGrpcTimeout("10S"), 10_000);
  t.is(parseGrpcTimeout("250m"), 250);
  t.is(parseGrpcTimeout("1500u"), 1.5);
  t.is(parseGrpcTimeout("2000000n"), 2);
  for (const v of [undefined, "", "10", "10s", "123456789S", "-1S", "1.5S"]) t.is(parseGrpcTimeout(v), undefined, String(v));
});

// ------------------------------------------------------------------ the connection, over a raw socket

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

function rawFrame(type: number, flags: number, id: number, payload: Buffer | number[] = []): Buffer {
  const p = Buffer.from(payload);
  const h = Buffer.alloc(9);
  h.writeUIntBE(p.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, p]);
}

/** A raw HTTP/2 client socket that collects the server's frames. */
class RawConn {
  readonly frames: Frame[] = [];
  closed = false;
  readonly #sock: Socket;
  #buf = Buffer.alloc(0);
  readonly #waiters: (() => void)[] = [];

  constructor(port: number) {
    this.#sock = netConnect(port, "127.0.0.1");
    this.#sock.on("data", (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        this.frames.push({ type: this.#buf[3]!, flags: this.#buf[4]!, id: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + len) });
        this.#buf = this.#buf.subarray(9 + len);
      }
      this.#wake();
    });
    this.#sock.on("close", () => {
      this.closed = true;
      this.#wake();
    });
    this.#sock.on("error", () => {});
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  write(b: Buffer): void {
    this.#sock.write(b);
  }

  /** Resolves once `pred` holds (checked at each frame and at close), or rejects after `ms`. */
  async until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames.map((f) => [f.type, f.flags, f.id]))}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  goaway(): { last: number; code: number } | undefined {
    const g = this.frames.find((f) => f.type === 7);
    return g && { last: g.payload.readUInt32BE(0), code: g.payload.readUInt32BE(4) };
  }

  destroy(): void {
    this.#sock.destroy();
  }
}

/** A connection that sent the preface and an empty SETTINGS. */
function opened(port: number): RawConn {
  const c = new RawConn(port);
  c.write(Buffer.concat([PREFACE, rawFrame(4, 0, 0)]));
  return c;
}

test("a connection that does not start with HTTP/2's preface is closed (an HTTP/1.1 request to the gRPC port)", async (t) => {
  const c = new RawConn(t.context.port);
  c.write(Buffer.from("POST /inference.GRPCInferenceService/ModelInfer HTTP/1.1\r\nHost: x\r\n\r\n"));
  await c.until(() => c.closed, "the close");
  // the server's own preface (SETTINGS, WINDOW_UPDATE) goes out at once; nothing answers the request
  t.deepEqual(c.frames.map((f) => f.type).filter((ty) => ty !== 4 && ty !== 8), []);
});

test("settings are exchanged and acknowledged; PING is answered with its payload; unknown frame types are ignored", async (t) => {
  const c = opened(t.context.port);
  try {
    await c.until(() => c.frames.some((f) => f.type === 4 && f.flags === 1), "the SETTINGS ack");
    const settings = c.frames.find((f) => f.type === 4 && f.flags === 0)!;
    t.is(settings.payload.length % 6, 0);
    t.true(c.frames.some((f) => f.type === 8 && f.id === 0), "the connection window is raised");
    c.write(rawFrame(0xfa, 0, 0, [1, 2, 3]));
    c.write(rawFrame(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]));
    await c.until(() => c.frames.some((f) => f.type === 6), "the PING ack");
    const ping = c.frames.find((f) => f.type === 6)!;
    t.is(ping.flags, 1);
    t.deepEqual([...ping.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
    t.false(c.closed);
  } finally {
    c.destroy();
  }
});

for (const [what, frames, code] of [
  ["a frame past MAX_FRAME_SIZE", () => Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]), 0x6],
  ["HEADERS opening an even stream", () => rawFrame(1, 0x5, 2, encodeHeaders([[":method", "POST"]])), 0x1],
  ["a header block that is not valid HPACK", () => rawFrame(1, 0x5, 1, [0x80]), 0x9],
  ["DATA on an idle stream", () => rawFrame(0, 0, 7, [1, 2]), 0x1],
  ["a frame between HEADERS and its CONTINUATION", () => Buffer.concat([rawFrame(1, 0, 1, encodeHeaders([[":method", "POST"]])), rawFrame(6, 0, 0, [0, 0, 0, 0, 0, 0, 0, 0])]), 0x1],
  ["SETTINGS of a bad length", () => rawFrame(4, 0, 0, [0, 1, 0]), 0x6],
  ["a WINDOW_UPDATE of 0 on the connection", () => rawFrame(8, 0, 0, [0, 0, 0, 0]), 0x1],
  ["PUSH_PROMISE from a client", () => rawFrame(5, 0x4, 1, [0, 0, 0, 2]), 0x1],
] as const) {
  test(`a protocol error ends the connection with GOAWAY and RFC 9113's code: ${what}`, async (t) => {
    const c = opened(t.context.port);
    try {
      c.write(frames());
      await c.until(() => c.closed, "the close");
      t.is(c.goaway()?.code, code);
    } finally {
      c.destroy();
    }
  });
}

test("a flood of stream resets ends the connection (ENHANCE_YOUR_CALM), as a defence against 'rapid reset'", async (t) => {
  const c = opened(t.context.port);
  try {
    const headers = encodeHeaders([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/inference.GRPCInferenceService/ServerLive"],
      ["content-type", "application/grpc"],
    ]);
    const burst: Buffer[] = [];
    for (let id = 1; id <= 2 * 10_001; id += 2) burst.push(rawFrame(1, 0x4, id, headers), rawFrame(3, 0, id, [0, 0, 0, 8]));
    c.write(Buffer.concat(burst));
    // 20 002 frames: generous on a loaded machine
    await c.until(() => c.closed, "the close", 30_000);
    t.is(c.goaway()?.code, 0xb);
  } finally {
    c.destroy();
  }
});

// ------------------------------------------------------------------ gRPC over it

function inferSerializer(): (r: object) => Buffer {
  const dir = join(ROOT, "proto/triton");
  const pkg = loadSync(join(dir, "grpc_service.proto"), { keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: false, oneofs: true, includeDirs: [dir] });
  return (pkg["inference.GRPCInferenceService"] as unknown as Record<string, { requestSerialize: (v: object) => Buffer }>)["ModelInfer"]!.requestSerialize;
}

function grpcFrame(msg: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

test("flow control both ways: 8 MiB in (past the 4 MiB stream window) and 8 MiB back to a client whose window is 1 KiB", async (t) => {
  const n = 2 * 1024 * 1024;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = i % 1000;
  const raw = Buffer.from(data.buffer);
  const msg = inferSerializer()({ model_name: "echo", inputs: [{ name: "IN", datatype: "FP32", shape: [n] }], raw_input_contents: [raw] });
  const a = await rawGrpcCall(t.context.port, grpcFrame(msg), {}, undefined, { initialWindowSize: 1024 });
  t.is(a.trailers["grpc-status"], "0", String(a.trailers["grpc-message"]));
  t.true(a.body.length > raw.length);
  t.true(a.body.includes(raw), "the tensor came back whole");
});

test("requests that are not gRPC: HTTP 415; an unknown method and an unknown grpc-encoding: UNIMPLEMENTED", async (t) => {
  const port = t.context.port;
  const plain = await rawGrpcCall(port, Buffer.alloc(0), { "content-type": "application/json" });
  t.is(plain.headers[":status"], 415);
  const unknown = await rawGrpcCall(port, grpcFrame(Buffer.alloc(0)), { ":path": "/inference.GRPCInferenceService/Nope" });
  t.is(unknown.headers["grpc-status"], "12");
  t.regex(decodeURIComponent(String(unknown.headers["grpc-message"])), /does not implement the method \/inference.GRPCInferenceService\/Nope/);
  const snappy = await rawGrpcCall(port, grpcFrame(Buffer.alloc(0)), { "grpc-encoding": "snappy" });
  t.is(snappy.headers["grpc-status"], "12");
});

test("a message announced larger than the limit is RESOURCE_EXHAUSTED without its bytes being buffered", async (t) => {
  // 5-byte prefix announcing 3 GiB, then a few bytes: the answer comes without waiting for them.
  const head = Buffer.from([0, 0xc0, 0, 0, 0]);
  const a = await rawGrpcCall(t.context.port, Buffer.concat([head, Buffer.alloc(16)]));
  t.is(a.trailers["grpc-status"] ?? a.headers["grpc-status"], "8");
});

test("a client's GOAWAY and a session closed mid-call leave the server serving", async (t) => {
  const s = connect(`http://127.0.0.1:${t.context.port}`);
  const req = s.request({ ":method": "POST", ":path": "/inference.GRPCInferenceService/ModelInfer", "content-type": "application/grpc" });
  req.on("error", () => {});
  req.write(Buffer.from([0, 0, 0, 1, 0]));
  await new Promise((r) => setTimeout(r, 50));
  s.destroy(undefined, constants.NGHTTP2_CANCEL);
  const msg = inferSerializer()({ model_name: "add_sub", inputs: [
    { name: "INPUT0", datatype: "FP32", shape: [4] },
    { name: "INPUT1", datatype: "FP32", shape: [4] },
  ], raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), Buffer.from(new Float32Array([1, 1, 1, 1]).buffer)] });
  const a = await rawGrpcCall(t.context.port, grpcFrame(msg));
  t.is(a.trailers["grpc-status"], "0");
});

// ------------------------------------------------------------------ fuzzing

test("HPACK decoder under 20 000 random and mutated blocks: a HeaderMap or an HpackError, nothing else", (t) => {
  const r = rng(1);
  const valid = [
    hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
    hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"),
    encodeHeaders([
      [":status", "200"],
      ["content-type", "application/grpc"],
      ["grpc-message", "ünïcode ☃"],
    ]),
  ];
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    let block: Buffer;
    if (i % 2 === 0) {
      block = Buffer.from(Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256)));
    } else {
      block = Buffer.from(valid[i % valid.length]!);
      for (let k = 0; k < 1 + Math.floor(r() * 3); k++) block[Math.floor(r() * block.length)] = Math.floor(r() * 256);
    }
    const d = new HpackDecoder();
    try {
      d.decode(block);
      d.decode(block); // again, against whatever the first left in the table
      ok++;
    } catch (e) {
      if (!(e instanceof HpackError)) t.fail(`seed 1 (fuzz-helpers' rng), block ${i} (${block.toString("hex")}): ${String(e)}`);
      refused++;
    }
  }
  t.true(ok > 100 && refused > 100, `decoded ${ok}, refused ${refused}`);
});

test("300 connections of random frames after the preface: the server stays up and answers the next call", async (t) => {
  const r = rng(2);
  const headers = encodeHeaders([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/inference.GRPCInferenceService/ModelInfer"],
    ["content-type", "application/grpc"],
  ]);
  const conns: RawConn[] = [];
  for (let c = 0; c < 300; c++) {
    const conn = opened(t.context.port);
    conns.push(conn);
    const parts: Buffer[] = [];
    for (let f = 0; f < 1 + Math.floor(r() * 8); f++) {
      const type = Math.floor(r() * 11);
      const flags = Math.floor(r() * 256);
      const id = Math.floor(r() * 6);
      const payload =
        type === 1 && r() < 0.6 ? headers : Buffer.from(Array.from({ length: Math.floor(r() * 24) }, () => Math.floor(r() * 256)));
      parts.push(rawFrame(type, flags, id, payload));
    }
    conn.write(Buffer.concat(parts));
  }
  await new Promise((res) => setTimeout(res, 300));
  for (const c of conns) c.destroy();
  const msg = inferSerializer()({
    model_name: "add_sub",
    inputs: [
      { name: "INPUT0", datatype: "FP32", shape: [4] },
      { name: "INPUT1", datatype: "FP32", shape: [4] },
    ],
    raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), Buffer.from(new Float32Array([1, 1, 1, 1]).buffer)],
  });
  const a = await rawGrpcCall(t.context.port, grpcFrame(msg));
  t.is(a.trailers["grpc-status"], "0");
});

test("--grpc-server picks the HTTP/2 server under gRPC (tensorbridge by default, or grpc-js); other values are ERR_CLI_USAGE", async (t) => {
  t.is(parseCli(["serve", "/m"]).options.grpcServer, undefined);
  t.is(parseCli(["serve", "/m", "--grpc-server", "grpc-js"]).options.grpcServer, "grpc-js");
  t.is(parseCli(["serve", "/m", "--grpc-server=tensorbridge"]).options.grpcServer, "tensorbridge");
  const err = t.throws(() => parseCli(["serve", "/m", "--grpc-server=nghttp2"]), { instanceOf: ServingError });
  t.is(err?.code, "ERR_CLI_USAGE");
  // Each server's own content-type tells them apart (grpc-js answers application/grpc+proto).
  const other = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { grpcServer: "grpc-js", allowGrpc: true });
  try {
    const live = grpcFrame(Buffer.alloc(0));
    const ours = await rawGrpcCall(t.context.port, live, { ":path": "/inference.GRPCInferenceService/ServerLive" });
    const theirs = await rawGrpcCall(other.grpcAddress!.port, live, { ":path": "/inference.GRPCInferenceService/ServerLive" });
    t.is(ours.headers["content-type"], "application/grpc");
    t.is(theirs.headers["content-type"], "application/grpc+proto");
    t.deepEqual(ours.body, theirs.body);
  } finally {
    await other.close();
  }
});

test.serial("a 16 MiB request is joined once, not once per read: the server copies it a few times over, not quadratically", async (t) => {
  // The server runs in this process: every Buffer.concat it makes is counted while one large call goes through.
  const n = 4 * 1024 * 1024;
  const raw = Buffer.from(new Float32Array(n).fill(1.5).buffer);
  const msg = inferSerializer()({ model_name: "echo", inputs: [{ name: "IN", datatype: "FP32", shape: [n] }], raw_input_contents: [raw] });
  const concat = Buffer.concat;
  let copied = 0;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const b = concat(list, total);
    copied += b.length;
    return b;
  }) as typeof Buffer.concat;
  let a;
  try {
    a = await rawGrpcCall(t.context.port, grpcFrame(msg));
  } finally {
    Buffer.concat = concat;
  }
  t.is(a.trailers["grpc-status"], "0");
  // Before the fix a 16 MiB request cost hundreds of MiB of copies (each read joined to all before it).
  t.true(copied < 8 * raw.length, `Buffer.concat copied ${(copied / 2 ** 20).toFixed(0)} MiB for a ${(raw.length / 2 ** 20).toFixed(0)} MiB request`);
});
