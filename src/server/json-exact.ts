/**
 * A JSON parser that keeps 64-bit integers exact.
 *
 * `JSON.parse` turns every number into a double, so an INT64 or UINT64 input
 * sent as JSON (as tritonclient does) loses digits above 2^53. Node 20 has no
 * `JSON.parse` source access, so requests whose header holds a long digit run
 * are parsed again here: integer literals outside the safe range become
 * `bigint`s, everything else is what `JSON.parse` gives. Most requests never
 * get here (see {@link mayHoldUnsafeIntegers}).
 * @module
 */

/** Deepest nesting accepted, so that hostile input can't overflow the stack. */
const MAX_DEPTH = 256;

/** Syntax error of {@link parseJsonExact}, with the position it stopped at. */
export class JsonSyntaxError extends SyntaxError {
  /** Offset (in UTF-16 code units) where parsing failed. */
  readonly position: number;

  constructor(message: string, position: number) {
    super(`${message} at position ${position}`);
    this.name = "JsonSyntaxError";
    this.position = position;
  }
}

// 16 or more digits that make a whole integer token: not the digits of a
// fraction or an exponent (not after a digit, '.', 'e', 'E', '+' or a '-'
// that follows one of those), not followed by a fraction or an exponent.
// Float64 values printed in full (1.8521564417127638e31, as perf_analyzer
// and Python send them) have 16-17 digits after the point and are not it.
const LONG_INTEGER = /(?<![\d.eE+-])-?\d{16,}(?![\d.eE])/;

/**
 * Whether `text` may hold an integer literal beyond 2^53 (an integer token
 * of 16 or more digits; digits inside strings count too). A cheap
 * pre-check: when false, `JSON.parse` is exact.
 */
export function mayHoldUnsafeIntegers(text: string): boolean {
  // What LONG_INTEGER matches, by one pass over the characters (the regular
  // expression tries its lookbehind at every position: ~1 µs per
  // perf_analyzer request). A match is a maximal run of 16+ digits not
  // followed by '.', 'e' or 'E', and preceded by none of `.eE+` (a '-'
  // right before it counts if what precedes the '-' is none of `0-9.eE+-`).
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    const start = i;
    while (i < n && isDigit(text.charCodeAt(i))) i++;
    if (i - start < 16) continue;
    const next = i < n ? text.charCodeAt(i) : 0;
    if (next === DOT || next === LOWER_E || next === UPPER_E) continue;
    const before = start > 0 ? text.charCodeAt(start - 1) : 0;
    if (before === MINUS) {
      if (!isBoundary(start > 1 ? text.charCodeAt(start - 2) : 0)) continue;
    } else if (before === DOT || before === LOWER_E || before === UPPER_E || before === PLUS) {
      continue;
    }
    return true;
  }
  return false;
}

const DOT = 0x2e;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const PLUS = 0x2b;
const MINUS = 0x2d;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
/** Not one of `0-9.eE+-` (0: the start of the text). */
const isBoundary = (c: number): boolean => !isDigit(c) && c !== DOT && c !== LOWER_E && c !== UPPER_E && c !== PLUS && c !== MINUS;

/** The regular expression {@link mayHoldUnsafeIntegers} implements (tests compare the two). */
export const LONG_INTEGER_PATTERN: RegExp = LONG_INTEGER;

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// oxlint-disable-next-line no-control-regex -- RFC 8259 forbids raw control characters in strings: matching them is the point.
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const WHITESPACE = /[ \t\n\r]*/y;

/**
 * Parses `text` as JSON (RFC 8259), returning integers outside
 * `Number.MIN_SAFE_INTEGER..MAX_SAFE_INTEGER` as `bigint`.
 * @throws {JsonSyntaxError} for anything that is not exactly one JSON value.
 */
export function parseJsonExact(text: string): unknown {
  let pos = 0;

  const skip = (): void => {
    WHITESPACE.lastIndex = pos;
    WHITESPACE.exec(text);
    pos = WHITESPACE.lastIndex;
  };

  const fail = (what: string): never => {
    throw new JsonSyntaxError(pos >= text.length ? "unexpected end of JSON input" : what, pos);
  };

  const literal = (word: string, value: unknown): unknown => {
    if (text.startsWith(word, pos)) {
      pos += word.length;
      return value;
    }
    return fail(`unexpected token '${text[pos]}'`);
  };

  const value = (depth: number): unknown => {
    if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
    skip();
    const c = text[pos];
    if (c === "{") {
      pos++;
      const obj: Record<string, unknown> = {};
      skip();
      if (text[pos] === "}") {
        pos++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[pos] !== '"') fail("expected a property name");
        const key = string();
        skip();
        if (text[pos] !== ":") fail("expected ':'");
        pos++;
        const v = value(depth + 1);
        // defineProperty: a "__proto__" key is data, as with JSON.parse.
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        skip();
        if (text[pos] === ",") {
          pos++;
          continue;
        }
        if (text[pos] === "}") {
          pos++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      pos++;
      const arr: unknown[] = [];
      skip();
      if (text[pos] === "]") {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        skip();
        if (text[pos] === ",") {
          pos++;
          continue;
        }
        if (text[pos] === "]") {
          pos++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true", true);
    if (c === "f") return literal("false", false);
    if (c === "n") return literal("null", null);
    return number();
  };

  const string = (): string => {
    STRING.lastIndex = pos;
    const m = STRING.exec(text);
    if (m === null) return fail("bad string");
    pos = STRING.lastIndex;
    // The token is valid JSON: let the engine decode its escapes.
    return JSON.parse(m[0]) as string;
  };

  const number = (): number | bigint => {
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m === null) return fail(`unexpected token '${text[pos]}'`);
    pos = NUMBER.lastIndex;
    const token = m[0];
    const n = Number(token);
    if (Number.isSafeInteger(n) || /[.eE]/.test(token)) return n;
    if (Number.isInteger(n)) return BigInt(token);
    return n;
  };

  const result = value(0);
  skip();
  if (pos !== text.length) fail(`unexpected token '${text[pos]}' after the JSON value`);
  return result;
}
