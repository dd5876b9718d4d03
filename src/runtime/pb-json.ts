/**
 * Schema-driven conversion of a protobuf text-format tree ({@link PbMessage})
 * into the protobuf JSON form with original (snake_case) field names and
 * 64-bit integers as JSON numbers, which is what Triton prints for a model's
 * config and hands to Python models as `args["model_config"]`.
 *
 * @module
 */
import type { PbFieldSchema, PbFieldType, PbMessageSchema, PbScalarType } from "./config-schema.js";
import { ConfigError, ServingError } from "./errors.js";
import type { PbField, PbMessage, PbPosition, PbValue } from "./pbtxt.js";

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const INT_RANGE: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

function typeName(t: PbFieldType): string {
  if (typeof t === "string") return t;
  if ("enum" in t) return "enum";
  if ("message" in t) return "message";
  return "map";
}

class Converter {
  constructor(private readonly file: string) {}

  private fail(pos: PbPosition, message: string): never {
    throw new ConfigError("ERR_CONFIG_INVALID", this.file, pos.line, pos.column, message);
  }

  message(m: PbMessage, schema: PbMessageSchema, path: string): { [key: string]: Json } {
    const out: { [key: string]: Json } = {};
    const seen = new Map<string, PbField>();
    const oneofs = new Map<string, PbField>();
    for (const field of m.fields) {
      const fs: PbFieldSchema | undefined = Object.hasOwn(schema, field.name) ? schema[field.name] : undefined;
      const where = path ? `${path}.${field.name}` : field.name;
      if (!fs) {
        const known = Object.keys(schema);
        this.fail(
          field.pos,
          `unknown field "${field.name}"${path ? ` in "${path}"` : ""}` +
            (known.length ? ` (expected one of: ${known.join(", ")})` : " (this message has no fields)"),
        );
      }
      const isMap = typeof fs.type === "object" && "map" in fs.type;
      // The parser refused colon-less scalar values; an empty list has none, so the field's type decides here.
      if (!field.colon && field.values.length === 0 && !isMap && !(typeof fs.type === "object" && "message" in fs.type)) {
        throw new ConfigError("ERR_CONFIG_SYNTAX", this.file, field.pos.line, field.pos.column, `expected ':' after field name "${field.name}": it is a ${typeName(fs.type)} field`);
      }
      if (!fs.repeated && !isMap) {
        if (seen.has(field.name)) this.fail(field.pos, `non-repeated field "${where}" is specified more than once`);
        if (field.list) this.fail(field.pos, `field "${where}" is not repeated, so it cannot take a [...] list`);
      }
      if (fs.oneof) {
        const other = oneofs.get(fs.oneof);
        if (other && other.name !== field.name) {
          this.fail(
            field.pos,
            `field "${where}" is specified along with "${other.name}", another member of oneof "${fs.oneof}"`,
          );
        }
        oneofs.set(fs.oneof, field);
      }
      seen.set(field.name, field);
      if (isMap) {
        const entries = (out[field.name] ?? {}) as { [key: string]: Json };
        for (const v of field.values) this.mapEntry(v, fs.type as Extract<PbFieldType, { map: unknown }>, where, entries);
        out[field.name] = entries;
      } else if (fs.repeated) {
        const arr = (out[field.name] ?? []) as Json[];
        for (const v of field.values) arr.push(this.value(v, fs.type, where));
        out[field.name] = arr;
      } else {
        out[field.name] = this.value(field.values[0]!, fs.type, where);
      }
    }
    return out;
  }

  private mapEntry(
    v: PbValue,
    type: Extract<PbFieldType, { map: unknown }>,
    where: string,
    into: { [key: string]: Json },
  ): void {
    if (v.kind !== "message") this.fail(v.pos, `map field "${where}" needs entries like { key: ... value: ... }`);
    let key: Json | undefined;
    let value: Json | undefined;
    let keyPos = v.pos;
    for (const fld of v.fields) {
      if (fld.name === "key") {
        if (key !== undefined) this.fail(fld.pos, `map entry of "${where}" has more than one "key"`);
        if (fld.list) this.fail(fld.pos, `"key" of "${where}" cannot be a list`);
        key = this.value(fld.values[0]!, type.map.key, `${where}.key`);
        keyPos = fld.pos;
      } else if (fld.name === "value") {
        if (value !== undefined) this.fail(fld.pos, `map entry of "${where}" has more than one "value"`);
        if (fld.list) this.fail(fld.pos, `"value" of "${where}" cannot be a list`);
        value = this.value(fld.values[0]!, type.map.value, `${where}[${JSON.stringify(key ?? "")}]`);
      } else {
        this.fail(fld.pos, `unknown field "${fld.name}" in a map entry of "${where}" (expected key, value)`);
      }
    }
    if (key === undefined) this.fail(keyPos, `map entry of "${where}" has no "key"`);
    if (value === undefined) value = this.defaultOf(type.map.value);
    void keyPos;
    into[String(key)] = value;
  }

  private defaultOf(t: PbScalarType | { message: PbMessageSchema }): Json {
    if (typeof t === "object") return {};
    return scalarDefault(t);
  }

  value(v: PbValue, type: PbFieldType, where: string): Json {
    if (typeof type === "object" && "message" in type) {
      if (v.kind !== "message") this.fail(v.pos, `field "${where}" is a message: write ${where.split(".").pop()} { ... }`);
      return this.message(v, type.message, where);
    }
    if (v.kind === "message") this.fail(v.pos, `field "${where}" is a ${typeName(type)}, not a message`);
    if (typeof type === "object" && "enum" in type) {
      if (v.kind === "identifier") {
        if (!type.enum.includes(v.value)) {
          this.fail(v.pos, `unknown value ${v.value} for enum field "${where}" (expected one of: ${type.enum.join(", ")})`);
        }
        return v.value;
      }
      if (v.kind === "number" && v.integer && v.value >= 0 && v.value < type.enum.length) return type.enum[v.value]!;
      this.fail(v.pos, `field "${where}" expects one of: ${type.enum.join(", ")}`);
    }
    if (typeof type === "object") this.fail(v.pos, `field "${where}" is a map`);
    switch (type) {
      case "string":
        if (v.kind !== "string") this.fail(v.pos, `field "${where}" expects a quoted string`);
        return v.value;
      case "bool":
        if (v.kind === "identifier") {
          if (["true", "True", "t"].includes(v.value)) return true;
          if (["false", "False", "f"].includes(v.value)) return false;
        }
        if (v.kind === "number" && v.integer && (v.value === 0 || v.value === 1)) return v.value === 1;
        this.fail(v.pos, `field "${where}" expects true or false`);
      // falls through (fail never returns)
      case "float":
      case "double":
        if (v.kind === "number") return v.value;
        if (v.kind === "identifier") {
          const s = v.value.toLowerCase();
          if (s === "inf" || s === "infinity") return "Infinity";
          if (s === "-inf" || s === "-infinity") return "-Infinity";
          if (s === "nan" || s === "-nan") return "NaN";
        }
        this.fail(v.pos, `field "${where}" expects a number`);
      // falls through
      default: {
        if (v.kind !== "number" || !v.integer) this.fail(v.pos, `field "${where}" expects an integer (${type})`);
        const [lo, hi] = INT_RANGE[type]!;
        if (!(v.value >= lo && v.value <= hi)) this.fail(v.pos, `value ${v.text} of field "${where}" is out of range for ${type}`);
        return v.value;
      }
    }
  }
}

/** The proto3 default of a scalar type. */
export function scalarDefault(t: PbScalarType): Json {
  return t === "string" ? "" : t === "bool" ? false : 0;
}

/**
 * Converts a parsed text-format message into JSON according to `schema`.
 *
 * @param m - the parsed message (from `parsePbtxt`).
 * @param schema - the message schema.
 * @param file - file name for error messages.
 * @returns the JSON object, holding only the fields that were set.
 * @throws {ConfigError} `ERR_CONFIG_INVALID` with position for an unknown
 * field, a wrong value type, an out-of-range integer, a non-repeated field
 * given twice, or two members of one oneof.
 */
export function pbMessageToJson(m: PbMessage, schema: PbMessageSchema, file: string): { [key: string]: Json } {
  return new Converter(file).message(m, schema, "");
}

/**
 * Fills proto3 defaults, as protobuf's JSON printer does with
 * `always_print_primitive_fields`: scalars get 0/""/false, enums their first
 * value, repeated fields `[]`, maps `{}`; unset messages and oneof members
 * stay absent. Recurses into messages that are present. Keys come out in
 * schema order.
 *
 * @param obj - a JSON object produced by {@link pbMessageToJson}.
 * @param schema - its schema.
 * @returns a new object with defaults filled in.
 */
export function fillDefaults(obj: { [key: string]: Json }, schema: PbMessageSchema): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const [name, fs] of Object.entries(schema)) {
    const t = fs.type;
    const present = Object.hasOwn(obj, name);
    if (typeof t === "object" && "message" in t) {
      if (fs.repeated) {
        out[name] = present ? (obj[name] as Json[]).map((e) => fillDefaults(e as { [key: string]: Json }, t.message)) : [];
      } else if (present) {
        out[name] = fillDefaults(obj[name] as { [key: string]: Json }, t.message);
      }
      continue;
    }
    if (typeof t === "object" && "map" in t) {
      const m = present ? (obj[name] as { [key: string]: Json }) : {};
      const value = t.map.value;
      out[name] =
        typeof value === "object"
          ? Object.fromEntries(Object.entries(m).map(([k, v]) => [k, fillDefaults(v as { [key: string]: Json }, value.message)]))
          : { ...m };
      continue;
    }
    if (present) out[name] = obj[name]!;
    else if (fs.oneof) continue;
    else if (fs.repeated) out[name] = [];
    else if (typeof t === "object" && "enum" in t) out[name] = t.enum[0]!;
    else out[name] = scalarDefault(t);
  }
  return out;
}

/**
 * Checks a JSON value (e.g. a config sent in a load request) against a
 * message schema and returns a deep copy. Enums may be given by name or
 * number, 64-bit integers as numbers or decimal strings (protobuf JSON).
 *
 * @param value - the JSON value.
 * @param schema - the message schema.
 * @param file - what to call the value in messages.
 * @returns a copy holding the set fields (defaults not filled).
 * @throws {ServingError} `ERR_CONFIG_INVALID` naming the field path.
 */
export function checkJsonAgainstSchema(value: unknown, schema: PbMessageSchema, file: string): { [key: string]: Json } {
  const fail: (path: string, message: string) => never = (path, message) => {
    throw new ServingError("ERR_CONFIG_INVALID", `${file}: ${path ? `field "${path}": ` : ""}${message}`);
  };
  const scalar = (v: unknown, t: PbScalarType, path: string): Json => {
    switch (t) {
      case "string":
        if (typeof v !== "string") fail(path, "expected a string");
        return v as string;
      case "bool":
        if (typeof v !== "boolean") fail(path, "expected true or false");
        return v as boolean;
      case "float":
      case "double":
        if (typeof v === "number" || v === "NaN" || v === "Infinity" || v === "-Infinity") return v;
        return fail(path, "expected a number");
      default: {
        const n = typeof v === "string" && /^-?[0-9]+$/.test(v) ? Number(v) : v;
        if (typeof n !== "number" || !Number.isInteger(n)) fail(path, `expected an integer (${t})`);
        const [lo, hi] = INT_RANGE[t]!;
        if (!((n as number) >= lo && (n as number) <= hi)) fail(path, `${String(v)} is out of range for ${t}`);
        return n as number;
      }
    }
  };
  const one = (v: unknown, t: PbFieldType, path: string): Json => {
    if (typeof t === "string") return scalar(v, t, path);
    if ("enum" in t) {
      if (typeof v === "string" && t.enum.includes(v)) return v;
      if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < t.enum.length) return t.enum[v]!;
      return fail(path, `expected one of: ${t.enum.join(", ")}`);
    }
    if ("message" in t) return msg(v, t.message, path);
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(path, "expected an object (map)");
    const out: { [key: string]: Json } = {};
    for (const [k, x] of Object.entries(v as object)) {
      scalar(t.map.key === "string" ? k : /^-?[0-9]+$/.test(k) ? Number(k) : k, t.map.key, `${path}.${k}`);
      out[k] = typeof t.map.value === "string" ? scalar(x, t.map.value, `${path}.${k}`) : msg(x, t.map.value.message, `${path}.${k}`);
    }
    return out;
  };
  const msg = (v: unknown, s: PbMessageSchema, path: string): { [key: string]: Json } => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(path, "expected an object");
    const out: { [key: string]: Json } = {};
    const oneofs = new Map<string, string>();
    for (const [k, x] of Object.entries(v as object)) {
      const p = path ? `${path}.${k}` : k;
      const fs = Object.hasOwn(s, k) ? s[k]! : undefined;
      if (!fs) return fail(p, "unknown field");
      if (x === null) continue;
      if (fs.oneof) {
        const other = oneofs.get(fs.oneof);
        if (other) fail(p, `set along with "${other}", another member of oneof "${fs.oneof}"`);
        oneofs.set(fs.oneof, k);
      }
      if (fs.repeated) {
        if (!Array.isArray(x)) fail(p, "expected an array");
        out[k] = (x as unknown[]).map((e, i) => one(e, fs.type, `${p}[${i}]`));
      } else {
        out[k] = one(x, fs.type, p);
      }
    }
    return out;
  };
  return msg(value, schema, "");
}
