/**
 * HPACK (RFC 7541), the header compression of HTTP/2, as this gRPC server
 * needs it: a full decoder (static and dynamic tables, Huffman strings,
 * table size updates) for what clients send, and an encoder that writes
 * only literals "without indexing" (RFC 7541 §6.2.2), so the server keeps
 * no encoder state and its constant header blocks can be built once.
 *
 * Names and values are kept as latin1 strings: one character per octet,
 * so a string's length is its size in the table (RFC 7541 §4.1) and any
 * octet a client sends survives a round trip.
 *
 * @module
 */
import { huffmanDecode } from "./huffman.js";

/** The static table (RFC 7541, Appendix A), index 1 first. */
const STATIC: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** A header block that cannot be decoded: the connection must end with COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = "HpackError";
}

/** The headers of one block, by name (a repeated name keeps every value, joined by ", " as Node does, except `cookie`). */
export type HeaderMap = Map<string, string>;

/** One entry's size in the dynamic table (RFC 7541 §4.1). */
const entrySize = (name: string, value: string): number => name.length + value.length + 32;

/**
 * The decoder of one connection's request headers: its dynamic table
 * lives as long as the connection.
 */
export class HpackDecoder {
  /** Dynamic table, newest first. */
  readonly #table: [string, string][] = [];
  #size = 0;
  /** The current table size limit (changed by the encoder's size updates). */
  #max: number;

  /**
   * @param maxTableSize the SETTINGS_HEADER_TABLE_SIZE this side announced:
   * the most a size update may ask for.
   * @param maxListSize the largest header list accepted (names + values + 32
   * per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts), against memory abuse.
   */
  constructor(
    readonly maxTableSize = 4096,
    readonly maxListSize = 65536,
  ) {
    this.#max = maxTableSize;
  }

  /**
   * Decodes one complete header block.
   *
   * @throws {HpackError} on anything malformed (the connection is then unusable).
   */
  decode(block: Uint8Array): HeaderMap {
    const headers: HeaderMap = new Map();
    let listSize = 0;
    let pos = 0;
    let fieldsSeen = false;
    const end = block.length;
    while (pos < end) {
      const b = block[pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        // Indexed header field (§6.1).
        const [index, next] = readInt(block, pos, 7);
        pos = next;
        [name, value] = this.#entry(index);
      } else if (b & 0x40 || (b & 0xf0) === 0 || (b & 0xf0) === 0x10) {
        // Literal with incremental indexing (§6.2.1, 6-bit index), without
        // indexing (§6.2.2) or never indexed (§6.2.3) (4-bit index).
        const indexing = (b & 0x40) !== 0;
        const [index, next] = readInt(block, pos, indexing ? 6 : 4);
        pos = next;
        if (index === 0) {
          [name, pos] = readString(block, pos);
        } else {
          name = this.#entry(index)[0];
        }
        [value, pos] = readString(block, pos);
        if (indexing) this.#add(name, value);
      } else {
        // Dynamic table size update (§6.3): only before the first field.
        if (fieldsSeen) throw new HpackError("a dynamic table size update after a header field");
        const [size, next] = readInt(block, pos, 5);
        pos = next;
        if (size > this.maxTableSize) throw new HpackError(`a dynamic table size update to ${size} exceeds the announced ${this.maxTableSize}`);
        this.#max = size;
        this.#evict(0);
        continue;
      }
      fieldsSeen = true;
      listSize += entrySize(name, value);
      if (listSize > this.maxListSize) throw new HpackError(`the header list exceeds ${this.maxListSize} octets`);
      const had = headers.get(name);
      headers.set(name, had === undefined ? value : `${had}${name === "cookie" ? "; " : ", "}${value}`);
    }
    return headers;
  }

  #entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("header index 0");
    if (index <= STATIC.length) return STATIC[index - 1]!;
    const e = this.#table[index - STATIC.length - 1];
    if (e === undefined) throw new HpackError(`header index ${index} is past the dynamic table`);
    return e;
  }

  #add(name: string, value: string): void {
    const size = entrySize(name, value);
    if (size > this.#max) {
      // An entry larger than the table empties it and is not added (§4.4).
      this.#table.length = 0;
      this.#size = 0;
      return;
    }
    this.#evict(size);
    this.#table.unshift([name, value]);
    this.#size += size;
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  #evict(room: number): void {
    while (this.#size + room > this.#max && this.#table.length > 0) {
      const [n, v] = this.#table.pop()!;
      this.#size -= entrySize(n, v);
    }
  }
}

/** Reads an HPACK integer with an `n`-bit prefix at `pos` (§5.1). */
function readInt(buf: Uint8Array, pos: number, n: number): [number, number] {
  const mask = (1 << n) - 1;
  let v = buf[pos]! & mask;
  pos++;
  if (v < mask) return [v, pos];
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new HpackError("a truncated integer");
    const b = buf[pos++]!;
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) break;
    // Nothing here needs more than 2^32; longer encodings are abuse.
    if (shift > 28) throw new HpackError("an integer too large");
  }
  return [v, pos];
}

/** Reads a string literal at `pos` (§5.2), Huffman-coded or not. */
function readString(buf: Uint8Array, pos: number): [string, number] {
  if (pos >= buf.length) throw new HpackError("a truncated string");
  const huffman = (buf[pos]! & 0x80) !== 0;
  const [len, start] = readInt(buf, pos, 7);
  const end = start + len;
  if (end > buf.length) throw new HpackError("a string past the end of the block");
  if (!huffman) return [latin1(buf, start, end), end];
  const s = huffmanDecode(buf, start, end);
  if (s === undefined) throw new HpackError("an invalid Huffman-coded string");
  return [s.toString("latin1"), end];
}

function latin1(buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString("latin1");
}

/** Writes an HPACK integer with an `n`-bit prefix whose other bits are `flags` (§5.1). */
function writeInt(out: number[], flags: number, n: number, v: number): void {
  const mask = (1 << n) - 1;
  if (v < mask) {
    out.push(flags | v);
    return;
  }
  out.push(flags | mask);
  v -= mask;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** The static index of a name (the first entry with it), or 0. */
function staticNameIndex(name: string): number {
  for (let i = 0; i < STATIC.length; i++) if (STATIC[i]![0] === name) return i + 1;
  return 0;
}

/**
 * Encodes a header block of literals without indexing (names from the
 * static table where it has them; `:status 200` fully indexed). Values are
 * latin1 strings (each character one octet), written without Huffman.
 */
export function encodeHeaders(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    if (name === ":status" && value === "200") {
      out.push(0x88);
      continue;
    }
    const idx = staticNameIndex(name);
    writeInt(out, 0x00, 4, idx);
    if (idx === 0) {
      writeInt(out, 0x00, 7, name.length);
      for (let i = 0; i < name.length; i++) out.push(name.charCodeAt(i) & 0xff);
    }
    writeInt(out, 0x00, 7, value.length);
    for (let i = 0; i < value.length; i++) out.push(value.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}
