/**
 * The request/response codec without HTTP: binary inputs are views of the
 * request body (no copy when aligned), binary outputs are views of the
 * tensors' memory, and FP16/BF16 JSON conversions round correctly.
 */
import test from "ava";

import { Tensor } from "../src/tensor.js";
import {
  decodeInferRequest,
  encodeInferResponse,
  forgetDecodePlans,
  jsonData,
  parseBytesElements,
  serializeBytesElements,
} from "../src/server/codec.js";
import { bf16BitsToFloat, floatToBf16Bits, floatToHalfBits, halfBitsToFloat } from "../src/server/half.js";
import { LONG_INTEGER_PATTERN, mayHoldUnsafeIntegers } from "../src/server/json-exact.js";
import { ServingError } from "../src/runtime/errors.js";
import { decodeOutcome } from "./server-helpers.js";

function body(header: object, ...tensors: Uint8Array[]): { buf: Buffer; hl: string } {
  const h = Buffer.from(JSON.stringify(header));
  // pad the header to 8 bytes so that the tensors are aligned in this body
  const pad = (8 - (h.length % 8)) % 8;
  const hp = Buffer.concat([h, Buffer.from(" ".repeat(pad))]);
  const total = hp.length + tensors.reduce((n, t) => n + t.length, 0);
  const buf = Buffer.from(new ArrayBuffer(total));
  hp.copy(buf, 0);
  let off = hp.length;
  for (const t of tensors) {
    buf.set(t, off);
    off += t.length;
  }
  return { buf, hl: String(hp.length) };
}

test("aligned binary inputs are zero-copy views of the request body", (t) => {
  const a = new Float32Array([1, 2, 3, 4]);
  const { buf, hl } = body(
    { inputs: [{ name: "A", datatype: "FP32", shape: [4], parameters: { binary_data_size: 16 } }] },
    new Uint8Array(a.buffer),
  );
  const d = decodeInferRequest(buf, hl);
  const x = d.input.inputs[0]!;
  t.is(x.name, "A");
  const view = x.data() as Float32Array;
  t.deepEqual(Array.from(view), [1, 2, 3, 4]);
  t.is(view.buffer, buf.buffer, "same ArrayBuffer as the body");
  t.is(view.byteOffset, Number(hl));
  buf.writeFloatLE(42, Number(hl));
  t.is(view[0], 42, "writes to the body show through");
});

test("unaligned binary inputs are copied once into aligned memory", (t) => {
  const h = Buffer.from(JSON.stringify({ inputs: [{ name: "A", datatype: "FP64", shape: [1], parameters: { binary_data_size: 8 } }] }) + " ");
  const payload = new Float64Array([2.5]);
  const buf = Buffer.concat([h, Buffer.from(payload.buffer)]);
  const d = decodeInferRequest(buf, String(h.length));
  const view = d.input.inputs[0]!.data() as Float64Array;
  t.deepEqual(Array.from(view), [2.5]);
  t.is(view.byteOffset % 8, 0);
});

test("unaligned binary inputs of every width get aligned copies of their own, apart from the body and from each other", (t) => {
  for (const [dtype, Ctor, values] of [
    ["FP32", Float32Array, [1.5, -2, 3]],
    ["FP64", Float64Array, [2.5, -0, 1e300]],
    ["INT64", BigInt64Array, [1n, -(2n ** 63n), 2n ** 62n]],
    ["INT16", Int16Array, [1, -2, 3]],
  ] as const) {
    const a = new (Ctor as new (v: readonly unknown[]) => ArrayBufferView)(values);
    const b = new (Ctor as new (v: readonly unknown[]) => ArrayBufferView)(values);
    const n = a.byteLength;
    const header = JSON.stringify({
      inputs: [
        { name: "A", datatype: dtype, shape: [3], parameters: { binary_data_size: n } },
        { name: "B", datatype: dtype, shape: [3], parameters: { binary_data_size: n } },
      ],
    });
    const h = Buffer.from(header + " ".repeat((8 - (header.length % 8)) % 8 + 1)); // one byte past alignment
    const buf = Buffer.concat([h, Buffer.from(a.buffer), Buffer.from(b.buffer)]);
    const d = decodeInferRequest(buf, String(h.length));
    const [x, y] = d.input.inputs.map((i) => i.data());
    t.deepEqual(Array.from(x as Iterable<unknown>), [...values], dtype);
    t.is(x!.byteOffset % (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT, 0, dtype);
    t.is(y!.byteOffset % (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT, 0, dtype);
    // Copies: writing one changes neither the other nor the body.
    const before = Buffer.from(buf);
    new Uint8Array(x!.buffer, x!.byteOffset, x!.byteLength).fill(0x7f);
    t.deepEqual(Array.from(y as Iterable<unknown>), [...values], dtype);
    t.true(buf.equals(before), dtype);
  }
});

test("an output's JSON head follows its name, dtype and shape from one response to the next", (t) => {
  const dec = decodeInferRequest(Buffer.from(JSON.stringify({ inputs: [], parameters: { binary_data_output: true } })), undefined);
  const head = (out: Tensor) =>
    (JSON.parse(Buffer.from(encodeInferResponse({ modelName: "m", modelVersion: 1, id: "", outputs: [out] }, dec).chunks[0]!).toString()) as { outputs: unknown[] }).outputs[0];
  const seq: [Tensor, object][] = [
    [Tensor.from(new Float32Array(4), { name: "Y" }), { name: "Y", datatype: "FP32", shape: [4], parameters: { binary_data_size: 16 } }],
    [Tensor.from(new Float32Array(4), { name: "Y" }), { name: "Y", datatype: "FP32", shape: [4], parameters: { binary_data_size: 16 } }],
    [Tensor.from(new Float32Array(4), { name: "Y", shape: [2, 2] }), { name: "Y", datatype: "FP32", shape: [2, 2], parameters: { binary_data_size: 16 } }],
    [Tensor.from(new Int32Array(4), { name: "Y", shape: [2, 2] }), { name: "Y", datatype: "INT32", shape: [2, 2], parameters: { binary_data_size: 16 } }],
    [Tensor.from(new Int32Array(4), { name: "Y", shape: [4, 1] }), { name: "Y", datatype: "INT32", shape: [4, 1], parameters: { binary_data_size: 16 } }],
    [Tensor.from(new Int32Array(4), { name: 'Z"\\' }), { name: 'Z"\\', datatype: "INT32", shape: [4], parameters: { binary_data_size: 16 } }],
    [Tensor.from(new Float32Array(5), { name: "Y" }), { name: "Y", datatype: "FP32", shape: [5], parameters: { binary_data_size: 20 } }],
  ];
  for (const [out, want] of seq) t.deepEqual(head(out), want);
});

test("binary outputs are sent from the tensors' own memory", (t) => {
  const out = Tensor.from(new Float32Array([1, 2, 3]), { name: "Y" });
  const dec = decodeInferRequest(Buffer.from(JSON.stringify({ inputs: [], parameters: { binary_data_output: true } })), undefined);
  const enc = encodeInferResponse({ modelName: "m", modelVersion: 1, id: "", outputs: [out] }, dec);
  t.is(enc.chunks.length, 2);
  t.is(enc.chunks[1]!.buffer, (out.data() as Float32Array).buffer, "no copy of the output");
  t.is(enc.length, enc.chunks[0]!.length + 12);
  t.deepEqual(JSON.parse(Buffer.from(enc.chunks[0]!).toString()), {
    model_name: "m",
    model_version: "1",
    outputs: [{ name: "Y", datatype: "FP32", shape: [3], parameters: { binary_data_size: 12 } }],
  });
});

test("a JSON-only body comes as its text too: its chunk is the text's UTF-8 bytes, its length their count; a binary body has no text", (t) => {
  const out = Tensor.from(new Float32Array([0.1, -2]), { name: "Y" });
  const dec = decodeInferRequest(Buffer.from('{"inputs":[]}'), undefined);
  const enc = encodeInferResponse({ modelName: "m", modelVersion: 1, id: "é😀", outputs: [out] }, dec);
  t.is(typeof enc.text, "string");
  t.is(enc.chunks.length, 1);
  t.deepEqual(Buffer.from(enc.chunks[0]!), Buffer.from(enc.text!, "utf8"));
  t.is(enc.chunks[0], enc.chunks[0], "the bytes are made once");
  t.is(enc.length, Buffer.byteLength(enc.text!, "utf8"));
  t.true(enc.length > enc.text!.length, "non-ASCII: more bytes than characters");
  t.deepEqual(JSON.parse(enc.text!).id, "é😀");
  const bin = decodeInferRequest(Buffer.from(JSON.stringify({ inputs: [], parameters: { binary_data_output: true } })), undefined);
  t.is(encodeInferResponse({ modelName: "m", modelVersion: 1, id: "", outputs: [out] }, bin).text, undefined);
});

test("JSON outputs: INT64/UINT64 beyond 2^53 keep every digit; non-finite floats become null", (t) => {
  const big = Tensor.from(new BigInt64Array([2n ** 62n + 1n, -(2n ** 63n)]), { name: "I" });
  const ubig = Tensor.from(new BigUint64Array([2n ** 64n - 1n]), { name: "U" });
  const f = Tensor.from(new Float32Array([NaN, Infinity, 1.5]), { name: "F" });
  const dec = decodeInferRequest(Buffer.from('{"inputs":[]}'), undefined);
  const enc = encodeInferResponse({ modelName: "m", modelVersion: 1, id: "x", outputs: [big, ubig, f] }, dec);
  const text = Buffer.from(enc.chunks[0]!).toString();
  t.true(text.includes('"data":[4611686018427387905,-9223372036854775808]'), text);
  t.true(text.includes('"data":[18446744073709551615]'), text);
  t.true(text.includes('"data":[null,null,1.5]'), text);
  t.true(text.startsWith('{"id":"x",'), text);
});

test("BYTES wire form: parse and serialize round trip; elements are views", (t) => {
  const wire = serializeBytesElements([Buffer.from("ab"), new Uint8Array(0), Buffer.from("é")]);
  t.deepEqual(Array.from(wire), [2, 0, 0, 0, 97, 98, 0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9]);
  const els = parseBytesElements(wire, 3, "X");
  t.deepEqual(els.map((e) => Buffer.from(e).toString()), ["ab", "", "é"]);
  t.is(els[0]!.buffer, wire.buffer);
  t.throws(() => parseBytesElements(wire, 2, "X"), { instanceOf: ServingError, message: /expected 2 BYTES elements/ });
});

test("FP16 and BF16 conversions: exact values, rounding to nearest even, specials", (t) => {
  for (const v of [0, -0, 1, -2, 0.5, 65504, 2 ** -14, 2 ** -24, 1.5, 1024]) t.is(halfBitsToFloat(floatToHalfBits(v)), v, String(v));
  t.is(floatToHalfBits(1), 0x3c00);
  t.is(floatToHalfBits(65520), 0x7c00, "overflow rounds to infinity");
  t.is(floatToHalfBits(1 + 2 ** -11), 0x3c00, "tie rounds to even");
  t.is(floatToHalfBits(1 + 3 * 2 ** -11), 0x3c02);
  t.is(floatToHalfBits(2 ** -26), 0, "underflow to zero");
  t.is(halfBitsToFloat(floatToHalfBits(Infinity)), Infinity);
  t.true(Number.isNaN(halfBitsToFloat(floatToHalfBits(NaN))));
  for (const v of [0, 1, -2, 0.5, 256, 3.140625, -1.5 * 2 ** 100]) t.is(bf16BitsToFloat(floatToBf16Bits(v)), v, String(v));
  t.is(floatToBf16Bits(1), 0x3f80);
  t.is(floatToBf16Bits(1 + 2 ** -8), 0x3f80, "tie rounds to even");
  t.is(floatToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  t.true(Number.isNaN(bf16BitsToFloat(floatToBf16Bits(NaN))));
  t.is(bf16BitsToFloat(floatToBf16Bits(-Infinity)), -Infinity);
});

test("the exact-integer JSON path is taken for long integer tokens only, not for full-precision floats", (t) => {
  // perf_analyzer and Python print float64 values with 16-17 digits after the point
  t.false(mayHoldUnsafeIntegers('{"data":[1.8521564417127638e31,-9.816348528062273e26,-1.3273038267438975e-12,29181.97265625]}'));
  t.false(mayHoldUnsafeIntegers("[0.12345678901234567, 1e1234567890123456, 1E-1234567890123456, 1234567890123456.5]"));
  for (const s of ["[9007199254740993]", "[-9007199254740993]", '{"a":1234567890123456}', "[ 12345678901234567890\n]", "1234567890123456"]) {
    t.true(mayHoldUnsafeIntegers(s), s);
  }
  // and such integers still decode exactly
  const exact = Buffer.from(JSON.stringify({ inputs: [{ name: "X", datatype: "INT64", shape: [1], data: [0] }] }).replace("[0]", "[9007199254740993]"));
  const d = decodeInferRequest(exact, undefined);
  t.is((d.input.inputs[0]!.data() as BigInt64Array)[0], 9007199254740993n);
});

test("a binary header seen before decodes to the same request, with this body's data and this body's errors", (t) => {
  const header = {
    id: "r1",
    parameters: { binary_data_output: true, p: "x" },
    inputs: [
      { name: "A", datatype: "FP32", shape: [2], parameters: { binary_data_size: 8 } },
      { name: "S", datatype: "BYTES", shape: [1], parameters: { binary_data_size: 7 } },
    ],
    outputs: [{ name: "Y", parameters: { binary_data: false } }, { name: "Z" }],
  };
  const s = serializeBytesElements([Buffer.from("abc")]);
  const decode = (a: number[]) => decodeInferRequest(...(Object.values(body(header, new Uint8Array(new Float32Array(a).buffer), s)) as [Buffer, string]));
  const first = decode([1, 2]);
  for (const v of [[3, 4], [5, 6]]) {
    const again = decode(v);
    t.deepEqual(Array.from(again.input.inputs[0]!.data() as Float32Array), v, "this body's data");
    t.is(new TextDecoder().decode(again.input.inputs[1]!.bytes()[0]!), "abc");
    t.deepEqual(again.outputs, first.outputs);
    t.deepEqual(again.input.outputs, ["Y", "Z"]);
    t.deepEqual(again.input.parameters, { binary_data_output: true, p: "x" });
    t.is(again.input.id, "r1");
    t.true(again.binaryDefault);
    // Each request gets its own list of output names.
    again.input.outputs!.push("W");
  }
  t.deepEqual(decode([7, 8]).input.outputs, ["Y", "Z"]);
  // Body-dependent errors come out the same way for a known header.
  const short = body(header, new Uint8Array(8));
  for (let i = 0; i < 2; i++) {
    t.throws(() => decodeInferRequest(short.buf, short.hl), { instanceOf: ServingError, message: /input 'S': binary_data_size 7 goes past the end of the request body \(0 binary bytes left\)/ });
  }
  const long = body(header, new Uint8Array(8), s, new Uint8Array(3));
  t.throws(() => decodeInferRequest(long.buf, long.hl), { message: /3 bytes of binary data that no input claims/ });
});

test("a shared-memory header seen by a server with shared memory is still refused by one without", (t) => {
  const header = { inputs: [{ name: "A", datatype: "FP32", shape: [1], parameters: { shared_memory_region: "r", shared_memory_byte_size: 4 } }] };
  const { buf, hl } = body(header);
  const shm = { read: () => new Uint8Array(new Float32Array([9]).buffer), write: () => {} };
  for (let i = 0; i < 2; i++) t.deepEqual(Array.from(decodeInferRequest(buf, hl, shm).input.inputs[0]!.data() as Float32Array), [9]);
  t.throws(() => decodeInferRequest(buf, hl), { message: /input 'A': shared memory is not available on this server/ });
});

test("a JSON body seen before with other numbers decodes as the full path does: values, errors and their order", (t) => {
  const templates = [
    // perf_analyzer's add_sub_batched body
    (a: string, b: string) =>
      `{"id":"","inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[${a}]},{"name":"INPUT1","datatype":"FP32","shape":[1,4],"data":[${b}]}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":false}},{"name":"OUTPUT1","parameters":{"binary_data":false}}]}`,
    (a: string, b: string) =>
      `{ "parameters": {"binary_data_output": true, "p": "data"}, "inputs": [ {"name": "A", "datatype": "INT64", "shape": [4], "data": [ ${a} ]}, {"name": "B", "datatype": "UINT8", "shape": [2, 2], "data" : [${b}]} ] }`,
    (a: string, b: string) => `{"inputs":[{"name":"H","datatype":"FP16","shape":[4],"data":[${a}]},{"name":"D","datatype":"FP64","shape":[4],"data":[${b}],"parameters":{"x":1}}],"id":"q"}`,
  ];
  const values = [
    "1,2,3,4",
    "-0,0,1e400,-1e400",
    "1.8521564417127638e31,-9.816348528062273e26,-1.3273038267438975e-12,29181.97265625",
    " 5 , 6\n,\t7 ,8 ",
    "255,0,256,1",
    "1.5,2,3,4",
    "1,2,3",
    "1,2,3,4,5",
    "",
    "1,,2,3",
    "1,2,3,4e",
    "--1,2,3,4",
    "9007199254740993,1,2,3",
    "-9223372036854775808,18446744073709551615,1,2",
    "1E2,+1,2,3",
    "01,2,3,4",
    // Runs of 16+ digits that are integers (kept exact: the full parse) and that are not (fractions, exponents).
    "-12345678901234567,1,2,3",
    "1,-9007199254740993 ,2,3",
    "0.12345678901234567,1e-12345678901234567,2,1.5E+12345678901234567",
    "12345678901234567.5,12345678901234567e0,-12345678901234567E1,3",
    "1234567890123456,-1234567890123456,1,2",
  ];
  let viaPlan = 0;
  for (const tpl of templates) {
    for (const a of values) {
      for (const b of values) {
        forgetDecodePlans();
        decodeOutcome(Buffer.from(tpl("1,2,3,4", "4,3,2,1"))); // keeps the plan
        const sent = Buffer.from(tpl(a, b));
        const got = decodeOutcome(sent, String(sent.length));
        if (decodeInferRequestFrozenOutputs(sent)) viaPlan++;
        forgetDecodePlans();
        const want = decodeOutcome(sent, String(sent.length));
        t.deepEqual(got, want, `${tpl("A", "B")}: [${a}] [${b}]`);
      }
    }
  }
  t.true(viaPlan > 50, `the plan served ${viaPlan} bodies`);
  // Only bodies whose every "data" array is one input's are kept; others always take the full path.
  for (const odd of [
    '{"inputs":[{"name":"A","datatype":"FP32","shape":[1],"data":[1]}],"data":[1]}',
    '{"inputs":[{"name":"A","datatype":"FP32","shape":[1],"data":[1],"d\\u0061ta":[1]}]}',
    '{"inputs":[{"name":"A","datatype":"FP32","shape":[1],"data":[[1]]}]}',
    '{"inputs":[{"name":"A","datatype":"BOOL","shape":[1],"data":[true]}]}',
    '{"id":"é","inputs":[{"name":"A","datatype":"FP32","shape":[1],"data":[1]}]}',
  ]) {
    forgetDecodePlans();
    decodeOutcome(Buffer.from(odd));
    t.false(decodeInferRequestFrozenOutputs(Buffer.from(odd)), odd);
  }
});

/** Decodes `body` and says whether a kept plan served it (a plan's output list is frozen; the full path's is not). */
function decodeInferRequestFrozenOutputs(sent: Buffer): boolean {
  try {
    return Object.isFrozen(decodeInferRequest(sent, undefined).outputs);
  } catch {
    return false;
  }
}

/** add_sub-like results with a JSON, a binary FP32 (n elements) and a binary BYTES output. */
const result = (n: number) => ({
  modelName: "m",
  modelVersion: 2,
  id: "é-1",
  outputs: [
    Tensor.from(new Int32Array([1, -2]), { name: "J" }),
    Tensor.from(new Float32Array(n).fill(1.5), { name: "Y" }),
    Tensor.fromBytes(["ab", "ü"], { name: "S" }),
  ],
});

const joinedBytes = (enc: { chunks: Uint8Array[] }) => Buffer.concat(enc.chunks);

test("joinBelow: a short binary response is one chunk with the same bytes; a long one keeps the tensors' memory", (t) => {
  const header = {
    id: "é-1",
    parameters: { binary_data_output: true },
    inputs: [],
    outputs: [{ name: "J", parameters: { binary_data: false } }, { name: "Y" }, { name: "S" }],
  };
  const dec = decodeInferRequest(Buffer.from(JSON.stringify(header)), undefined);
  const small = encodeInferResponse(result(3), dec, undefined, 1024);
  const apart = encodeInferResponse(result(3), dec);
  t.is(small.chunks.length, 1);
  t.is(apart.chunks.length, 3);
  t.deepEqual(joinedBytes(small), joinedBytes(apart));
  t.is(small.length, apart.length);
  t.is(small.headerLength, apart.headerLength);
  t.deepEqual(JSON.parse(joinedBytes(small).subarray(0, small.headerLength).toString()).outputs[0], { name: "J", datatype: "INT32", shape: [2], data: [1, -2] });
  const big = result(1000);
  const large = encodeInferResponse(big, dec, undefined, 1024);
  t.is(large.chunks.length, 3);
  t.is(large.chunks[1]!.buffer, (big.outputs[1]!.data() as Float32Array).buffer, "no copy of a long output");
  // A JSON-only response is one chunk whatever joinBelow says.
  const json = decodeInferRequest(Buffer.from(JSON.stringify({ inputs: [] })), undefined);
  t.is(encodeInferResponse(result(3), json, undefined, 1024).headerLength, undefined);
});

test("joinBelow: a joined binary body has every dtype's exact bytes (NaN payloads, -0, 64-bit integers), small and large outputs alike", (t) => {
  const nan = new Float32Array(new Uint32Array([0x7fc00001, 0xffbadbad]).buffer);
  const nan64 = new Float64Array(new BigUint64Array([0x7ff8000000000123n]).buffer);
  const outputs = (n: number): Tensor[] => {
    const f32 = new Float32Array(n).map((_, i) => (i % 3 === 0 ? -0 : i / 7));
    f32[0] = nan[0]!;
    if (n > 1) f32[1] = nan[1]!;
    const f64 = new Float64Array(n).map((_, i) => i * 1e300);
    f64[0] = nan64[0]!;
    return [
      Tensor.from(f32, { name: "F32" }),
      Tensor.from(f64, { name: "F64" }),
      Tensor.from(new BigInt64Array(n).map((_, i) => -(2n ** 63n) + BigInt(i)), { name: "I64" }),
      Tensor.from(new BigUint64Array(n).fill(2n ** 64n - 1n), { name: "U64" }),
      Tensor.from(new Int8Array(n).fill(-128), { name: "I8" }),
      Tensor.from(new Uint8Array(n).fill(255), { name: "U8" }),
      Tensor.from(new Uint8Array(n).fill(1), { name: "B", dtype: "BOOL" }),
      Tensor.from(new Int16Array(n).fill(-2), { name: "I16" }),
      Tensor.from(new Uint16Array(n).fill(floatToHalfBits(NaN)), { name: "F16", dtype: "FP16" }),
      Tensor.from(new Uint16Array(n).fill(floatToBf16Bits(-0)), { name: "BF", dtype: "BF16" }),
      Tensor.from(new Int32Array(n).fill(-2147483648), { name: "I32" }),
      Tensor.from(new Uint32Array(n).fill(4294967295), { name: "U32" }),
      Tensor.fromBytes(Array.from({ length: n }, (_, i) => `é${i}`), { name: "S" }),
    ];
  };
  const dec = decodeInferRequest(Buffer.from('{"inputs":[],"parameters":{"binary_data_output":true}}'), undefined);
  // 1, 8 and 16 elements of 4 or 8 bytes straddle the 64-byte scratch copy; 100 is beyond it.
  for (const n of [1, 2, 8, 9, 16, 17, 100]) {
    const out = outputs(n);
    const joined = encodeInferResponse({ modelName: "m", modelVersion: 1, id: "", outputs: out }, dec, undefined, 1 << 20);
    const apart = encodeInferResponse({ modelName: "m", modelVersion: 1, id: "", outputs: out }, dec);
    t.is(joined.chunks.length, 1);
    t.deepEqual(joinedBytes(joined), joinedBytes(apart), `${n} elements`);
    // Each output's bytes, in order, after the header: its own memory's bytes.
    let off = joined.headerLength!;
    for (const o of out) {
      const want = o.dtype === "BYTES" ? Buffer.from(serializeBytesElements(o.bytes())) : Buffer.from(new Uint8Array((o.data() as Float32Array).buffer, (o.data() as Float32Array).byteOffset, o.byteLength));
      t.deepEqual(joined.chunks[0]!.subarray(off, off + want.length), want, `${o.name}, ${n} elements`);
      off += want.length;
    }
    t.is(off, joined.length);
  }
});

test("mayHoldUnsafeIntegers answers as its regular expression does, on random and hand-picked texts", (t) => {
  const cases = [
    "1234567890123456", "-1234567890123456", "x-1234567890123456", "1-1234567890123456", "e-1234567890123456", "--1234567890123456",
    ".1234567890123456", "1.8521564417127638e31", "1234567890123456.5", "1234567890123456e3", "1234567890123456E3", "+1234567890123456",
    "e1234567890123456", "E1234567890123456", '"1234567890123456"', "[1234567890123456]", "123456789012345", "a1234567890123456b",
    "-", "", "1234567890123456-", "12345678901234567890123", '{"data":[9007199254740993]}', "-1.3273038267438975e-12",
  ];
  let x = 7;
  const alphabet = "0123456789012345678901234567890123456789.eE+- x[]\"";
  for (let k = 0; k < 4000; k++) {
    let s = "";
    const len = 10 + (k % 40);
    for (let i = 0; i < len; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      s += alphabet[x % alphabet.length];
    }
    cases.push(s);
  }
  const re = new RegExp(LONG_INTEGER_PATTERN.source);
  let matches = 0;
  for (const s of cases) {
    const want = re.test(s);
    if (want) matches++;
    if (mayHoldUnsafeIntegers(s) !== want) t.fail(`${JSON.stringify(s)}: expected ${want}`);
  }
  t.true(matches > 50, `the random texts hit the pattern too (${matches})`);
});

test("decoded tensors (Tensor.fromChecked): frozen shapes, the same answers with and without a kept plan, a native handle on demand, and too many dimensions refused as Tensor.from refuses them", (t) => {
  forgetDecodePlans();
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const { buf, hl } = body({ inputs: [{ name: "A", datatype: "FP32", shape: [2, 3], parameters: { binary_data_size: 24 } }] }, new Uint8Array(a.buffer));
  const json = Buffer.from(JSON.stringify({ inputs: [{ name: "J", datatype: "INT32", shape: [1, 3], data: [[7, 8, 9]] }] }));
  for (const round of ["parsed", "from the kept plan"]) {
    const x = decodeInferRequest(buf, hl).input.inputs[0]!;
    t.deepEqual([...x.shape], [2, 3], round);
    t.true(Object.isFrozen(x.shape), round);
    t.throws(() => (x.shape as number[]).push(1), { instanceOf: TypeError }, round);
    t.is(x.dtype, "FP32");
    t.false(x.readOnly);
    t.deepEqual(Array.from(x.data() as Float32Array), [1, 2, 3, 4, 5, 6]);
    // The native handle is made on demand over the body's bytes (no copy).
    t.is(x.byteLength, 24);
    t.is(x.dataPtr > 0n, true);
    const j = decodeInferRequest(json, undefined).input.inputs[0]!;
    t.deepEqual([...j.shape], [1, 3], round);
    t.true(Object.isFrozen(j.shape));
    t.is(j.dtype, "INT32");
    t.deepEqual(Array.from(j.data() as Int32Array), [7, 8, 9]);
  }
  const deep = Array.from({ length: 65 }, () => 1);
  const d65 = body({ inputs: [{ name: "A", datatype: "FP32", shape: deep, parameters: { binary_data_size: 4 } }] }, new Uint8Array(4));
  const viaFrom = t.throws(() => Tensor.from(new Float32Array(1), { shape: deep }));
  t.like(t.throws(() => decodeInferRequest(d65.buf, d65.hl)), { code: (viaFrom as { code?: string }).code });
  const j65 = Buffer.from(JSON.stringify({ inputs: [{ name: "A", datatype: "FP32", shape: deep, data: [1] }] }));
  t.like(t.throws(() => decodeInferRequest(j65, undefined)), { code: (viaFrom as { code?: string }).code });
});

test("responses of different models and versions, one after another, each name their own (the encoder keeps the last one's text)", (t) => {
  const req = decodeInferRequest(Buffer.from(JSON.stringify({ inputs: [{ name: "A", datatype: "FP32", shape: [2], data: [1, 2] }] })), undefined);
  const out = (modelName: string, modelVersion: number, id = "") => {
    const enc = encodeInferResponse({ modelName, modelVersion, id, outputs: [Tensor.from(new Float32Array([0.5, -1]), { name: "Y" })] }, req);
    return JSON.parse(Buffer.concat(enc.chunks).toString()) as Record<string, unknown>;
  };
  for (const [m, v, id] of [["a", 1, ""], ["a", 2, "x"], ['b"q', 2, ""], ["a", 1, "y"], ["a", 1, ""]] as const) {
    t.like(out(m, v, id), { model_name: m, model_version: String(v), outputs: [{ name: "Y", datatype: "FP32", shape: [2], data: [0.5, -1] }] });
    t.is(out(m, v, id)["id"], id === "" ? undefined : id);
  }
});

test("scheduling parameters (priority, timeout, sequence keys) leave the model's parameters and reach the request, parsed or from a kept plan, binary or JSON", (t) => {
  forgetDecodePlans();
  const a = new Float32Array([1, 2]);
  const parameters = { priority: 2, timeout: 100, sequence_id: 5, x: "y" };
  const bin = body({ parameters, inputs: [{ name: "A", datatype: "FP32", shape: [2], parameters: { binary_data_size: 8 } }] }, new Uint8Array(a.buffer));
  const json = Buffer.from(JSON.stringify({ parameters, inputs: [{ name: "A", datatype: "FP32", shape: [2], data: [1, 2] }] }));
  const plain = Buffer.from(JSON.stringify({ parameters: { x: "y" }, inputs: [{ name: "A", datatype: "FP32", shape: [2], data: [1, 2] }] }));
  for (const round of ["parsed", "from the kept plan"]) {
    for (const [what, d] of [["binary", decodeInferRequest(bin.buf, bin.hl)], ["JSON", decodeInferRequest(json, undefined)]] as const) {
      t.is(d.input.priority, 2, `${what}, ${round}`);
      t.is(d.input.timeoutUs, 100, `${what}, ${round}`);
      t.deepEqual({ ...d.input.parameters }, { x: "y" }, `${what}, ${round}`);
    }
    const p = decodeInferRequest(plain, undefined).input;
    t.is(p.priority, undefined);
    t.is(p.timeoutUs, undefined);
    t.deepEqual({ ...p.parameters }, { x: "y" }, round);
  }
});

/** A decoded request asking for every output (or the named ones) as binary data. */
const binaryOutputsRequest = (outputs?: string[]) =>
  decodeInferRequest(
    Buffer.from(JSON.stringify({ inputs: [{ name: "A", datatype: "FP32", shape: [1], data: [1] }], parameters: { binary_data_output: true }, ...(outputs ? { outputs: outputs.map((name) => ({ name })) } : {}) })),
    undefined,
  );
const f32 = (name: string, v: number[], shape = [v.length]) => Tensor.from(new Float32Array(v), { name, shape });
const i64 = (name: string, v: bigint[]) => Tensor.from(new BigInt64Array(v), { name });

test("all-binary responses one after another (the header kept while outputs stay the same): each body is what its outputs say, joined or in chunks", (t) => {
  const req = binaryOutputsRequest;
  const all = req();
  // Splits a binary body into its header and each output's values, as a client reads it.
  const read = (enc: ReturnType<typeof encodeInferResponse>) => {
    const whole = Buffer.concat(enc.chunks);
    t.is(whole.length, enc.length);
    const header = JSON.parse(whole.subarray(0, enc.headerLength).toString()) as { model_name: string; model_version: string; outputs: { name: string; datatype: string; shape: number[]; parameters: { binary_data_size: number } }[] };
    let off = enc.headerLength!;
    const values = header.outputs.map((o) => {
      const bytes = Buffer.from(whole.subarray(off, off + o.parameters.binary_data_size));
      off += o.parameters.binary_data_size;
      return o.datatype === "INT64" ? [...new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8)].map(String) : [...new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)];
    });
    t.is(off, whole.length);
    return { header, values };
  };
  const kept: ReturnType<typeof encodeInferResponse>[] = [];
  const cases = [
    { m: "a", outputs: [f32("X", [1, 2]), f32("Y", [3])], want: [[1, 2], [3]] },
    { m: "a", outputs: [f32("X", [4, 5]), f32("Y", [6])], want: [[4, 5], [6]] },
    { m: "a", outputs: [f32("X", [4, 5, 6]), f32("Y", [6])], want: [[4, 5, 6], [6]] },
    { m: "a", outputs: [f32("X", [4, 5, 6], [3, 1]), f32("Y", [6])], want: [[4, 5, 6], [6]] },
    { m: "b", outputs: [f32("X", [7, 8, 9], [3, 1]), f32("Y", [1])], want: [[7, 8, 9], [1]] },
    { m: "b", outputs: [f32("Y", [1]), f32("X", [7, 8, 9], [3, 1])], want: [[1], [7, 8, 9]] },
    { m: "b", outputs: [f32("Y", [2])], want: [[2]] },
    { m: "b", outputs: [i64("Y", [2n ** 62n])], want: [[String(2n ** 62n)]] },
    { m: "b", outputs: [f32("Y", [2])], want: [[2]] },
  ];
  for (const joinBelow of [0, 1 << 16]) {
    for (const { m, outputs, want } of cases) {
      const enc = encodeInferResponse({ modelName: m, modelVersion: 3, id: "", outputs }, all, undefined, joinBelow);
      kept.push(enc);
      const { header, values } = read(enc);
      t.like(header, { model_name: m, model_version: "3" });
      t.deepEqual(header.outputs.map((o) => [o.name, o.datatype, o.shape]), outputs.map((o) => [o.name, o.dtype, [...o.shape]]));
      t.deepEqual(values, want);
    }
  }
  // Bodies encoded earlier are unchanged by later ones (a kept header is never written to).
  for (const [i, enc] of kept.entries()) t.deepEqual(read(enc).values, cases[i % cases.length]!.want);
  // A request for some outputs as JSON, or an id, takes the general path: the same bytes as before for the binary ones.
  const mixed = decodeInferRequest(Buffer.from(JSON.stringify({ inputs: [{ name: "A", datatype: "FP32", shape: [1], data: [1] }], outputs: [{ name: "X", parameters: { binary_data: true } }, { name: "Y" }] })), undefined);
  const enc = encodeInferResponse({ modelName: "a", modelVersion: 3, id: "q", outputs: [f32("X", [1]), f32("Y", [2])] }, mixed);
  const joined = Buffer.concat(enc.chunks);
  t.like(JSON.parse(joined.subarray(0, enc.headerLength).toString()), { id: "q", outputs: [{ name: "X", parameters: { binary_data_size: 4 } }, { name: "Y", data: [2] }] });
  t.is(joined.readFloatLE(enc.headerLength!), 1);
});

test("binary inputs from a kept header plan are what the full parse makes: values, alignment, views of the body where aligned, errors", (t) => {
  const inputs: [string, string, number[], Uint8Array][] = [
    ["I8", "INT8", [3], new Uint8Array([1, 2, 255])],
    ["F32", "FP32", [2], new Uint8Array(new Float32Array([1.5, -2]).buffer)],
    ["F64", "FP64", [1], new Uint8Array(new Float64Array([1e300]).buffer)],
    ["S", "BYTES", [2], Buffer.from([1, 0, 0, 0, 0x61, 2, 0, 0, 0, 0x62, 0x63])],
    ["I16", "INT16", [3], new Uint8Array(new Int16Array([1, -2, 3]).buffer)],
  ];
  const orders = [[1], [1, 4], [0, 1, 2], [2, 0, 1], [3, 1], [1, 3, 2], [4, 1, 0, 2, 3]];
  for (const order of orders) {
    for (let pad = 0; pad < 8; pad++) {
      for (const extra of [0, -1, 1]) {
        const chosen = order.map((k) => inputs[k]!);
        const header = JSON.stringify({ inputs: chosen.map(([name, datatype, shape, b]) => ({ name, datatype, shape, parameters: { binary_data_size: b.length } })) });
        const h = Buffer.from(header + " ".repeat(pad));
        const data = Buffer.concat(chosen.map((c) => c[3]));
        const full = Buffer.concat([h, extra < 0 ? data.subarray(0, data.length - 1) : data, Buffer.alloc(Math.max(extra, 0))]);
        // A body whose bytes sit at an odd place in their ArrayBuffer too.
        const buf = Buffer.from(new ArrayBuffer(full.length + 8), pad % 3, full.length);
        full.copy(buf);
        const outcome = () => {
          try {
            const d = decodeInferRequest(buf, String(h.length));
            return d.input.inputs.map((x) => {
              const v = x.dtype === "BYTES" ? undefined : x.data();
              return {
                name: x.name,
                shape: [...x.shape],
                data: x.dtype === "BYTES" ? x.bytes().map((e) => [...e]) : Array.from(v as ArrayLike<number | bigint>, String),
                aligned: v === undefined || v.byteOffset % (v as { BYTES_PER_ELEMENT: number } & ArrayBufferView).BYTES_PER_ELEMENT === 0,
                viewOfBody: v !== undefined && v.buffer === buf.buffer,
              };
            });
          } catch (e) {
            return { code: (e as { code?: string }).code, message: (e as Error).message };
          }
        };
        forgetDecodePlans();
        const want = outcome();
        // The full parse keeps the plan only for a body it decoded.
        if (extra !== 0) decodeInferRequest(Buffer.concat([h, data]), String(h.length));
        const got = outcome();
        t.deepEqual(got, want, `${order.join(",")} pad ${pad} extra ${extra}`);
        if (extra === 0) for (const x of got as { aligned: boolean }[]) t.true(x.aligned);
      }
    }
  }
});

test("JSON output data: floats short (one string) and long (joined) alike, non-finite values as null", (t) => {
  for (const [dtype, Ctor] of [["FP32", Float32Array], ["FP64", Float64Array]] as const) {
    for (const n of [0, 1, 4, 255, 256, 257, 1000]) {
      const v = new Ctor(n);
      for (let i = 0; i < n; i++) v[i] = [NaN, Infinity, -Infinity, -0, 1.5e-7, 3.25, -1e30, i / 7][i % 8]!;
      const out = jsonData(Tensor.from(v, { dtype }));
      const want = Array.from(v, (x) => (Number.isFinite(x) ? x + 0 : null)); // -0 is written "0"
      t.deepEqual(JSON.parse(out), want, `${dtype} [${n}]`);
      t.is(out, `[${want.map((x) => (x === null ? "null" : String(x))).join(",")}]`, `${dtype} [${n}] text`);
    }
  }
});
