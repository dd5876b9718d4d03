/**
 * A complete parser for the protobuf text format (the syntax of Triton's
 * `config.pbtxt`), producing a schema-free syntax tree with positions.
 *
 * No npm package fits: the registry's only text-format parser
 * (`prototxt-parser`) is unmaintained, untyped and reports no positions, and
 * `@bufbuild/protobuf` / `protobufjs` read the binary and JSON forms only. So
 * this is a small hand-written one, following the grammar of
 * https://protobuf.dev/reference/protobuf/textformat-spec/ :
 *
 * - `#` comments, any whitespace, `,` or `;` after a field;
 * - `name: scalar`, `name { ... }`, `name: { ... }`, `name < ... >`;
 * - list values `name: [1, 2]` and `name [{...}, {...}]`;
 * - strings in `'` or `"` with C escapes (`\n`, octal `\101`, `\x41`,
 *   `\u00e9`, `\U0001F600`), adjacent strings concatenated;
 * - integers (decimal, `0x` hex, `0` octal, signed), floats (`1.5`, `.5`,
 *   `1e-3`, `2f`), `inf`/`nan` identifiers.
 *
 * Extension and `Any` field names (`[pkg.ext]`) are reported as unsupported.
 * Typing against a message schema happens in `config.ts`.
 *
 * @module
 */
import { ConfigError } from "./errors.js";

/** A position in the source text (1-based line and column, 0-based offset). */
export interface PbPosition {
  /** 1-based line. */
  line: number;
  /** 1-based column (in UTF-16 code units). */
  column: number;
  /** 0-based offset into the source. */
  offset: number;
}

/** A scalar value in protobuf text format. */
export type PbScalar =
  | {
      /** A quoted string. */
      kind: "string";
      /** The string, escapes decoded. */
      value: string;
      /** Where it starts. */
      pos: PbPosition;
    }
  | {
      /** A number. */
      kind: "number";
      /** source text, sign included */
      text: string;
      /** The number's value. */
      value: number;
      /** true when written as an integer */
      integer: boolean;
      /** Where it starts. */
      pos: PbPosition;
    }
  | {
      /** A bare identifier (an enum value, `true`, `false`, `inf`, `nan`). */
      kind: "identifier";
      /** The identifier as written. */
      value: string;
      /** Where it starts. */
      pos: PbPosition;
    };

/** A message value: its fields in source order. */
export interface PbMessage {
  /** Always `"message"`: tells a message from a scalar. */
  kind: "message";
  /** Fields in source order; a field may repeat. */
  fields: PbField[];
  /** Position of the opening brace (or of the document start). */
  pos: PbPosition;
}

/** Any value. */
export type PbValue = PbScalar | PbMessage;

/** One `name: value` (or `name: [v1, v2]`) occurrence. */
export interface PbField {
  /** The field name as written. */
  name: string;
  /** Position of the field name. */
  pos: PbPosition;
  /** One value, or several when written with list syntax. */
  values: PbValue[];
  /** True when the value(s) were written with `[...]` list syntax. */
  list: boolean;
  /**
   * True when a `:` followed the name. Protobuf makes it optional before a
   * message (or a list of messages) only, so a schema check refuses a
   * colon-less empty list `dims []` of a scalar field.
   */
  colon: boolean;
}

type TokKind = "ident" | "number" | "string" | "symbol" | "eof";
interface Token {
  kind: TokKind;
  text: string;
  /** decoded value for strings */
  str?: string;
  pos: PbPosition;
}

/** Options of {@link parsePbtxt}. */
export interface ParsePbtxtOptions {
  /** File name used in error messages (default `config.pbtxt`). */
  file?: string;
}

const IDENT_START = /[A-Za-z_]/;
const IDENT_PART = /[A-Za-z0-9_]/;
const DIGIT = /[0-9]/;

class Lexer {
  private i = 0;
  private line = 1;
  private col = 1;
  constructor(
    private readonly src: string,
    private readonly file: string,
  ) {}

  private fail(pos: PbPosition, message: string): never {
    throw new ConfigError("ERR_CONFIG_SYNTAX", this.file, pos.line, pos.column, message);
  }

  private here(): PbPosition {
    return { line: this.line, column: this.col, offset: this.i };
  }

  private advance(n = 1): void {
    for (let k = 0; k < n; k++) {
      const c = this.src[this.i];
      this.i++;
      if (c === "\n") {
        this.line++;
        this.col = 1;
      } else {
        this.col++;
      }
    }
  }

  private skipSpace(): void {
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined) return;
      if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v") {
        this.advance();
      } else if (c === "#") {
        while (this.i < this.src.length && this.src[this.i] !== "\n") this.advance();
      } else {
        return;
      }
    }
  }

  tokens(): Token[] {
    const out: Token[] = [];
    for (;;) {
      this.skipSpace();
      const pos = this.here();
      const c = this.src[this.i];
      if (c === undefined) {
        out.push({ kind: "eof", text: "", pos });
        return out;
      }
      if (IDENT_START.test(c)) {
        let j = this.i;
        while (j < this.src.length && IDENT_PART.test(this.src[j]!)) j++;
        const text = this.src.slice(this.i, j);
        this.advance(j - this.i);
        out.push({ kind: "ident", text, pos });
      } else if (DIGIT.test(c) || (c === "." && DIGIT.test(this.src[this.i + 1] ?? ""))) {
        out.push(this.number(pos));
      } else if (c === '"' || c === "'") {
        out.push(this.string(pos, c));
      } else if ("{}<>[]:,;-/.".includes(c)) {
        this.advance();
        out.push({ kind: "symbol", text: c, pos });
      } else {
        this.fail(pos, `unexpected character ${JSON.stringify(c)}`);
      }
    }
  }

  private number(pos: PbPosition): Token {
    const rest = this.src.slice(this.i);
    const m =
      /^0[xX][0-9A-Fa-f]+/.exec(rest) ??
      /^(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?/.exec(rest);
    if (!m) this.fail(pos, "malformed number");
    const text = m[0];
    const next = this.src[this.i + text.length];
    if (next !== undefined && (IDENT_PART.test(next) || next === ".")) {
      this.fail(pos, `malformed number ${JSON.stringify(text + next)}`);
    }
    this.advance(text.length);
    return { kind: "number", text, pos };
  }

  private string(pos: PbPosition, quote: string): Token {
    const bytes: number[] = [];
    const enc = new TextEncoder();
    this.advance(); // opening quote
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined || c === "\n") this.fail(pos, "unterminated string");
      if (c === quote) {
        this.advance();
        break;
      }
      if (c !== "\\") {
        const cp = this.src.codePointAt(this.i)!;
        const ch = String.fromCodePoint(cp);
        for (const b of enc.encode(ch)) bytes.push(b);
        this.advance(ch.length);
        continue;
      }
      const escPos = this.here();
      this.advance();
      const e = this.src[this.i];
      if (e === undefined) this.fail(escPos, "unterminated string");
      const simple: Record<string, number> = { n: 10, t: 9, r: 13, a: 7, b: 8, f: 12, v: 11, "\\": 92, "'": 39, '"': 34, "?": 63 };
      if (e in simple) {
        bytes.push(simple[e]!);
        this.advance();
      } else if (/[0-7]/.test(e)) {
        const m = /^[0-7]{1,3}/.exec(this.src.slice(this.i))![0];
        const v = parseInt(m, 8);
        if (v > 255) this.fail(escPos, `octal escape \\${m} is out of range`);
        bytes.push(v);
        this.advance(m.length);
      } else if (e === "x" || e === "X") {
        const m = /^[0-9A-Fa-f]{1,2}/.exec(this.src.slice(this.i + 1));
        if (!m) this.fail(escPos, "\\x escape needs hex digits");
        bytes.push(parseInt(m[0], 16));
        this.advance(1 + m[0].length);
      } else if (e === "u" || e === "U") {
        const n = e === "u" ? 4 : 8;
        const hex = this.src.slice(this.i + 1, this.i + 1 + n);
        if (!new RegExp(`^[0-9A-Fa-f]{${n}}$`).test(hex)) this.fail(escPos, `\\${e} escape needs ${n} hex digits`);
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) this.fail(escPos, `\\${e}${hex} is not a valid code point`);
        for (const b of enc.encode(String.fromCodePoint(cp))) bytes.push(b);
        this.advance(1 + n);
      } else {
        this.fail(escPos, `unknown escape \\${e}`);
      }
    }
    const str = new TextDecoder("utf-8", { fatal: false }).decode(new Uint8Array(bytes));
    return { kind: "string", text: this.src.slice(pos.offset, this.i), str, pos };
  }
}

function describe(t: Token): string {
  switch (t.kind) {
    case "eof":
      return "end of file";
    case "string":
      return `string ${t.text}`;
    case "number":
      return `number ${t.text}`;
    case "ident":
      return `"${t.text}"`;
    default:
      return `'${t.text}'`;
  }
}

class Parser {
  private k = 0;
  constructor(
    private readonly toks: Token[],
    private readonly file: string,
  ) {}

  private peek(o = 0): Token {
    return this.toks[Math.min(this.k + o, this.toks.length - 1)]!;
  }
  private next(): Token {
    const t = this.peek();
    if (t.kind !== "eof") this.k++;
    return t;
  }
  private isSym(t: Token, s: string): boolean {
    return t.kind === "symbol" && t.text === s;
  }
  private fail(t: Token, message: string): never {
    throw new ConfigError("ERR_CONFIG_SYNTAX", this.file, t.pos.line, t.pos.column, message);
  }
  private expectSym(s: string, context: string): Token {
    const t = this.next();
    if (!this.isSym(t, s)) this.fail(t, `expected '${s}' ${context} but found ${describe(t)}`);
    return t;
  }

  document(): PbMessage {
    const fields = this.fields(null);
    return { kind: "message", fields, pos: { line: 1, column: 1, offset: 0 } };
  }

  /** Fields until `close` (or EOF at top level). */
  private fields(close: string | null): PbField[] {
    const out: PbField[] = [];
    for (;;) {
      const t = this.peek();
      if (close === null && t.kind === "eof") return out;
      if (close !== null && this.isSym(t, close)) return out;
      if (t.kind === "eof") this.fail(t, `expected '${close}' to close the message but found end of file`);
      out.push(this.field());
      const sep = this.peek();
      if (this.isSym(sep, ",") || this.isSym(sep, ";")) this.next();
    }
  }

  private field(): PbField {
    const t = this.next();
    if (this.isSym(t, "[")) this.fail(t, "extension and Any field names ([...]) are not supported");
    if (t.kind !== "ident") this.fail(t, `expected a field name but found ${describe(t)}`);
    const name = t.text;
    const colon = this.isSym(this.peek(), ":");
    if (colon) this.next();
    const v = this.peek();
    if (this.isSym(v, "[")) {
      this.next();
      const values: PbValue[] = [];
      if (!this.isSym(this.peek(), "]")) {
        for (;;) {
          values.push(this.value(name, colon, true));
          const s = this.next();
          if (this.isSym(s, "]")) break;
          if (!this.isSym(s, ",")) this.fail(s, `expected ',' or ']' in the list of "${name}" but found ${describe(s)}`);
        }
      } else {
        this.next();
      }
      return { name, pos: t.pos, values, list: true, colon };
    }
    return { name, pos: t.pos, values: [this.value(name, colon, false)], list: false, colon };
  }

  private value(name: string, colon: boolean, inList: boolean): PbValue {
    const t = this.peek();
    if (this.isSym(t, "{") || this.isSym(t, "<")) {
      this.next();
      const close = t.text === "{" ? "}" : ">";
      const fields = this.fields(close);
      this.expectSym(close, `to close "${name}"`);
      return { kind: "message", fields, pos: t.pos };
    }
    // As protobuf: the colon is optional before messages only, in a list too ("dims [4]" is refused).
    if (!colon) {
      this.fail(t, inList ? `expected ':' after field name "${name}": a list of scalar values needs one` : `expected ':' after field name "${name}" but found ${describe(t)}`);
    }
    return this.scalar(name);
  }

  private scalar(name: string): PbScalar {
    const t = this.next();
    if (t.kind === "string") {
      let value = t.str!;
      while (this.peek().kind === "string") value += this.next().str!;
      return { kind: "string", value, pos: t.pos };
    }
    if (this.isSym(t, "-")) {
      const n = this.next();
      if (n.kind === "number") return this.numberValue(n, true, t.pos);
      if (n.kind === "ident" && /^(inf|infinity|nan)$/i.test(n.text)) {
        return { kind: "identifier", value: "-" + n.text, pos: t.pos };
      }
      this.fail(n, `expected a number after '-' but found ${describe(n)}`);
    }
    if (t.kind === "number") return this.numberValue(t, false, t.pos);
    if (t.kind === "ident") return { kind: "identifier", value: t.text, pos: t.pos };
    this.fail(t, `expected a value for "${name}" but found ${describe(t)}`);
  }

  private numberValue(t: Token, negative: boolean, pos: PbPosition): PbScalar {
    const raw = t.text;
    let value: number;
    let integer = false;
    if (/^0[xX]/.test(raw)) {
      value = parseInt(raw.slice(2), 16);
      integer = true;
    } else if (/^0[0-7]+$/.test(raw)) {
      value = parseInt(raw.slice(1), 8);
      integer = true;
    } else if (/^0[0-9]+$/.test(raw)) {
      this.fail(t, `invalid octal number ${raw}`);
    } else if (/^[0-9]+$/.test(raw)) {
      value = Number(raw);
      integer = true;
    } else {
      value = Number(raw.replace(/[fF]$/, ""));
    }
    return { kind: "number", text: (negative ? "-" : "") + raw, value: negative ? -value : value, integer, pos };
  }
}

/**
 * Parses protobuf text format into a schema-free tree.
 *
 * @param source - the text (e.g. a config.pbtxt's content).
 * @param options - `file` names the source in error messages.
 * @returns the top-level message.
 * @throws {ConfigError} `ERR_CONFIG_SYNTAX` with `file:line:column` when the
 * text is not valid protobuf text format.
 * @example
 * ```ts
 * const doc = parsePbtxt('name: "add_sub"\ninput [{ name: "INPUT0" dims: [4] }]', { file: "config.pbtxt" });
 * doc.fields[0].name; // "name"
 * ```
 */
export function parsePbtxt(source: string, options: ParsePbtxtOptions = {}): PbMessage {
  const file = options.file ?? "config.pbtxt";
  const text = source.charCodeAt(0) === 0xfeff ? source.slice(1) : source;
  const toks = new Lexer(text, file).tokens();
  return new Parser(toks, file).document();
}
