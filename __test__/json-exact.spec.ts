import test from "ava";
import { JsonSyntaxError, mayHoldUnsafeIntegers, parseJsonExact } from "../src/server/json-exact.js";

const SAME_AS_JSON_PARSE = [
  "0", "-0", "1.5", "-1e-7", "1E+300", "123456789012345", "true", "false", "null", '""', '"a\\"b\\\\c\\u00e9\\n"',
  '"\\ud83d\\ude00"', "[]", "{}", ' [1, [2, [3]], {"a": null}] ', '{"a":1,"a":2}',
  '{"__proto__":{"x":1},"y":[1.0,2e3]}', '\t\n{ "k" : [ true , false ] }\r\n', "9007199254740991", "-9007199254740991",
  "1234567890123456.5", "1e400",
];

for (const text of SAME_AS_JSON_PARSE) {
  test(`parses like JSON.parse: ${JSON.stringify(text)}`, (t) => {
    t.deepEqual(parseJsonExact(text), JSON.parse(text));
  });
}

test("integers beyond 2^53 come back as exact bigints", (t) => {
  t.deepEqual(parseJsonExact("[9007199254740993, -9223372036854775808, 18446744073709551615]"), [
    9007199254740993n,
    -9223372036854775808n,
    18446744073709551615n,
  ]);
  t.deepEqual(parseJsonExact('{"data":[12345678901234567890,1]}'), { data: [12345678901234567890n, 1] });
  t.is(parseJsonExact("9007199254740992.0"), 9007199254740992, "a fraction or exponent stays a double");
  t.is(parseJsonExact("1e20"), 1e20);
});

test("a __proto__ key is plain data, as with JSON.parse", (t) => {
  const v = parseJsonExact('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
  t.deepEqual(Object.keys(v), ["__proto__"]);
  t.is(({} as Record<string, unknown>).polluted, undefined);
  t.is(Object.getPrototypeOf(v), Object.prototype);
});

test("malformed JSON is refused with a position", (t) => {
  for (const bad of ["", "[1,]", "{\"a\" 1}", "[1 2]", "01", "1.", "-", "tru", "\"a", "\"\\x\"", "[1]x", "{\"a\":1,}", "\"\u0001\"", "NaN", "[", "{"]) {
    const err = t.throws(() => parseJsonExact(bad), { instanceOf: JsonSyntaxError }, bad);
    t.true(Number.isInteger(err?.position), bad);
    t.throws(() => JSON.parse(bad), undefined, `JSON.parse agrees that ${JSON.stringify(bad)} is bad`);
  }
});

test("deep nesting is refused, not a stack overflow", (t) => {
  t.throws(() => parseJsonExact("[".repeat(100_000) + "]".repeat(100_000)), { instanceOf: JsonSyntaxError, message: /nested deeper/ });
  t.notThrows(() => parseJsonExact("[".repeat(200) + "]".repeat(200)));
});

test("the pre-check spots 16-digit runs only", (t) => {
  t.true(mayHoldUnsafeIntegers('{"data":[9007199254740993]}'));
  t.false(mayHoldUnsafeIntegers('{"data":[900719925474099, 1.5, -3]}'));
});
