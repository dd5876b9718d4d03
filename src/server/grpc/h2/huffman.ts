/**
 * HPACK's Huffman code (RFC 7541, Appendix B), decoding only: this server
 * sends its header values as plain literals, but must read whatever a
 * client's encoder chose.
 *
 * The code is canonical (codes of one length are consecutive, in symbol
 * order, and each length's first code follows from the previous length's
 * last), so the table is just each symbol's code length; the codes are
 * rebuilt from them at load. A test checks the result against the RFC's
 * examples (Appendix C.4).
 *
 * @module
 */

/** Code length in bits of each symbol 0..255, then EOS (256). */
const LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const MAX_LEN = 30;

/** Per length: the first code of that length, how many codes have it, and where its symbols start in SYMBOLS. */
const FIRST = new Int32Array(MAX_LEN + 1);
const COUNT = new Int32Array(MAX_LEN + 1);
const OFFSET = new Int32Array(MAX_LEN + 1);
/** Symbols in canonical order (by length, then value). */
const SYMBOLS = new Uint16Array(LENGTHS.length);

{
  for (const l of LENGTHS) COUNT[l]!++;
  let code = 0;
  let at = 0;
  for (let l = 1; l <= MAX_LEN; l++) {
    FIRST[l] = code;
    OFFSET[l] = at;
    at += COUNT[l]!;
    code = (code + COUNT[l]!) << 1;
  }
  const fill = new Int32Array(MAX_LEN + 1);
  for (let s = 0; s < LENGTHS.length; s++) {
    const l = LENGTHS[s]!;
    SYMBOLS[OFFSET[l]! + fill[l]!++] = s;
  }
}

/**
 * Decodes a Huffman-coded string literal into its octets.
 *
 * @returns the decoded octets, or undefined when the input is not valid
 * HPACK Huffman (a code longer than 30 bits, the EOS symbol, or padding
 * that is longer than 7 bits or not all ones): a COMPRESSION_ERROR.
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number): Buffer | undefined {
  // Every symbol is at least 5 bits: the output is at most 8/5 of the input.
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 8) / 5));
  let n = 0;
  let code = 0;
  let len = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    for (let b = 7; b >= 0; b--) {
      code = (code << 1) | ((byte >> b) & 1);
      len++;
      const k = code - FIRST[len]!;
      if (k < COUNT[len]!) {
        const sym = SYMBOLS[OFFSET[len]! + k]!;
        if (sym === EOS) return undefined;
        out[n++] = sym;
        code = 0;
        len = 0;
      } else if (len === MAX_LEN) {
        return undefined;
      }
    }
  }
  // What is left must be a prefix of EOS (all ones), shorter than a byte.
  if (len > 7 || code !== (1 << len) - 1) return undefined;
  return out.subarray(0, n);
}
