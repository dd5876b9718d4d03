import test from "ava";

import { ConfigError } from "../src/runtime/errors.js";
import { parsePbtxt, type PbMessage, type PbScalar, type PbValue } from "../src/runtime/pbtxt.js";

/** Plain-data view of a parse tree, for deepEqual. */
function plain(m: PbMessage): unknown {
  const val = (v: PbValue): unknown => {
    if (v.kind === "message") return plain(v);
    if (v.kind === "number") return v.value;
    if (v.kind === "identifier") return { id: v.value };
    return v.value;
  };
  return m.fields.map((f) => [f.name, f.list ? f.values.map(val) : val(f.values[0]!)]);
}

function scalar(src: string): PbScalar {
  const v = parsePbtxt(src).fields[0]!.values[0]!;
  if (v.kind === "message") throw new Error("expected a scalar");
  return v;
}

function syntaxError(t: import("ava").ExecutionContext, src: string, line: number, column: number, includes: string): void {
  const err = t.throws(() => parsePbtxt(src, { file: "models/m/config.pbtxt" }), { instanceOf: ConfigError });
  t.is(err?.code, "ERR_CONFIG_SYNTAX");
  t.is(err?.file, "models/m/config.pbtxt");
  t.is(err?.line, line, err?.message);
  t.is(err?.column, column, err?.message);
  t.true(err?.message.startsWith(`models/m/config.pbtxt:${line}:${column}: `), err?.message);
  t.true(err?.message.includes(includes), err?.message);
}

test("empty input and comments only give an empty message", (t) => {
  t.deepEqual(plain(parsePbtxt("")), []);
  t.deepEqual(plain(parsePbtxt("# nothing\n\n   # here\n")), []);
});

test("scalars: strings, integers, floats, identifiers", (t) => {
  const doc = parsePbtxt('name: "add_sub" max_batch_size: 8 x: 1.5 kind: KIND_CPU b: true');
  t.deepEqual(plain(doc), [
    ["name", "add_sub"],
    ["max_batch_size", 8],
    ["x", 1.5],
    ["kind", { id: "KIND_CPU" }],
    ["b", { id: "true" }],
  ]);
});

test("messages with braces, angle brackets, optional colon and separators", (t) => {
  const doc = parsePbtxt('a { x: 1 } b: { y: 2; } c < z: "s", >');
  t.deepEqual(plain(doc), [
    ["a", [["x", 1]]],
    ["b", [["y", 2]]],
    ["c", [["z", "s"]]],
  ]);
});

test("list syntax for scalars and messages, including empty lists", (t) => {
  const doc = parsePbtxt('dims: [ 4, -1, 0x10 ] input [ { name: "a" }, { name: "b" } ] e: [] m []');
  t.deepEqual(plain(doc), [
    ["dims", [4, -1, 16]],
    ["input", [[["name", "a"]], [["name", "b"]]]],
    ["e", []],
    ["m", []],
  ]);
  t.true(doc.fields[0]!.list);
});

test("repeated fields keep every occurrence in order", (t) => {
  const doc = parsePbtxt("dims: 1 dims: 2\ndims: 3");
  t.deepEqual(
    doc.fields.map((f) => (f.values[0] as { value: number }).value),
    [1, 2, 3],
  );
});

test("numbers: decimal, hex, octal, negative, floats with exponents and f suffix", (t) => {
  t.is(scalar("v: 42").value, 42);
  t.is(scalar("v: 0").value, 0);
  t.is(scalar("v: 0x1F").value, 31);
  t.is(scalar("v: 017").value, 15);
  t.is(scalar("v: -3").value, -3);
  t.is(scalar("v: - 3").value, -3);
  t.is(scalar("v: 2.5e3").value, 2500);
  t.is(scalar("v: .25").value, 0.25);
  t.is(scalar("v: 1E-2").value, 0.01);
  t.is(scalar("v: 3f").value, 3);
  t.is(scalar("v: 1.5F").value, 1.5);
  const n = scalar("v: -7");
  t.true(n.kind === "number" && n.integer && n.text === "-7");
  const f = scalar("v: 7.0");
  t.true(f.kind === "number" && !f.integer);
});

test("inf and nan identifiers, with a sign", (t) => {
  t.deepEqual(scalar("v: inf"), { kind: "identifier", value: "inf", pos: { line: 1, column: 4, offset: 3 } });
  t.is(scalar("v: -inf").value, "-inf");
  t.is(scalar("v: -Infinity").value, "-Infinity");
  t.is(scalar("v: nan").value, "nan");
});

test("strings: both quotes, escapes, adjacent concatenation, UTF-8", (t) => {
  t.is(scalar(`v: 'single "x"'`).value, 'single "x"');
  t.is(scalar(String.raw`v: "a\nb\tc\\d\"e\'f"`).value, "a\nb\tc\\d\"e'f");
  t.is(scalar(String.raw`v: "\101\x42\u00e9\U0001F600"`).value, "ABé😀");
  t.is(scalar(String.raw`v: "\303\251"`).value, "é", "octal escapes are bytes, decoded as UTF-8");
  t.is(scalar(`v: "ab" 'cd'\n "ef"`).value, "abcdef");
  t.is(scalar(`v: "héllo ✓"`).value, "héllo ✓");
  t.is(scalar(String.raw`v: "\a\b\f\v\?"`).value, "\x07\b\f\v?");
});

test("a byte-order mark is ignored", (t) => {
  t.deepEqual(plain(parsePbtxt('\ufeffname: "x"')), [["name", "x"]]);
});

test("positions are 1-based line and column of each field", (t) => {
  const doc = parsePbtxt('name: "a"\n  input {\n    dims: 4\n  }\n');
  t.deepEqual(doc.fields[0]!.pos, { line: 1, column: 1, offset: 0 });
  t.is(doc.fields[1]!.pos.line, 2);
  t.is(doc.fields[1]!.pos.column, 3);
  const inner = doc.fields[1]!.values[0] as PbMessage;
  t.is(inner.fields[0]!.pos.line, 3);
  t.is(inner.fields[0]!.pos.column, 5);
});

test("CRLF line endings count lines correctly", (t) => {
  syntaxError(t, 'name: "a"\r\nmax_batch_size 8\r\n', 2, 16, "expected ':'");
});

test("syntax error: missing colon before a scalar", (t) => {
  syntaxError(t, 'name: "x"\nmax_batch_size 8', 2, 16, `expected ':' after field name "max_batch_size"`);
});

test("syntax error: missing colon before a list of scalars, as protobuf (a list of messages needs none)", (t) => {
  syntaxError(t, "input { dims [ -1, 4 ] }", 1, 16, `expected ':' after field name "dims": a list of scalar values needs one`);
  t.deepEqual(
    parsePbtxt("input [ { name: \"a\" } ]\ndims: [ 4 ]").fields.map((f) => [f.name, f.colon, f.list]),
    [
      ["input", false, true],
      ["dims", true, true],
    ],
  );
});

test("syntax error: unterminated message", (t) => {
  syntaxError(t, 'input {\n  name: "a"\n', 3, 1, "expected '}' to close the message but found end of file");
});

test("syntax error: mismatched closing bracket", (t) => {
  syntaxError(t, "a { x: 1 >", 1, 10, "expected a field name but found '>'");
  syntaxError(t, "a < x: 1 }", 1, 10, "expected a field name but found '}'");
});

test("syntax error: unterminated string, also across a newline", (t) => {
  syntaxError(t, 'name: "abc', 1, 7, "unterminated string");
  syntaxError(t, 'name: "abc\n"', 1, 7, "unterminated string");
});

test("syntax error: bad escapes", (t) => {
  syntaxError(t, String.raw`v: "\q"`, 1, 5, "unknown escape \\q");
  syntaxError(t, String.raw`v: "\x"`, 1, 5, "\\x escape needs hex digits");
  syntaxError(t, String.raw`v: "\u12"`, 1, 5, "\\u escape needs 4 hex digits");
  syntaxError(t, String.raw`v: "\777"`, 1, 5, "out of range");
  syntaxError(t, String.raw`v: "\UFFFFFFFF"`, 1, 5, "not a valid code point");
});

test("syntax error: stray characters and malformed numbers", (t) => {
  syntaxError(t, "name: @", 1, 7, "unexpected character");
  syntaxError(t, "v: 12abc", 1, 4, "malformed number");
  syntaxError(t, "v: 1.2.3", 1, 4, "malformed number");
  syntaxError(t, "v: 09", 1, 4, "invalid octal number 09");
});

test("syntax error: a value where a field name should be", (t) => {
  syntaxError(t, '"x": 1', 1, 1, "expected a field name but found string");
  syntaxError(t, "4: 1", 1, 1, "expected a field name but found number 4");
});

test("syntax error: missing value and bad list", (t) => {
  syntaxError(t, "v: }", 1, 4, `expected a value for "v" but found '}'`);
  syntaxError(t, "v:", 1, 3, "found end of file");
  syntaxError(t, "dims: [1 2]", 1, 10, `expected ',' or ']' in the list of "dims" but found number 2`);
  syntaxError(t, "dims: [1,", 1, 10, "end of file");
  syntaxError(t, "v: -x", 1, 5, "expected a number after '-'");
});

test("syntax error: extension field names are reported as unsupported", (t) => {
  syntaxError(t, "[foo.bar]: 1", 1, 1, "extension and Any field names");
});

test("the default file name is config.pbtxt", (t) => {
  const err = t.throws(() => parsePbtxt("x"), { instanceOf: ConfigError });
  t.true(err?.message.startsWith("config.pbtxt:1:2: "), err?.message);
});

test("a real Triton config parses", (t) => {
  const src = `
# Copyright notice
name: "add_sub"
backend: "python"
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
instance_group [{ kind: KIND_CPU }]
parameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: {string_value:"no"}}
`;
  const doc = parsePbtxt(src);
  t.deepEqual(
    doc.fields.map((f) => f.name),
    ["name", "backend", "input", "output", "instance_group", "parameters"],
  );
});
