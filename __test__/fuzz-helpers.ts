/**
 * Seeded mutation fuzzing for the differential suites (`server-fuzz`,
 * `runtime-config-fuzz`); not a test file. A failure names its case, and
 * `TB_FUZZ_SEED=<seed> TB_FUZZ_CASES=<n>` replay it or run more.
 */

export const SEED = Number(process.env["TB_FUZZ_SEED"] ?? 0x7e4b1d9);
export const CASES = Number(process.env["TB_FUZZ_CASES"] ?? 1500);

/** xorshift32: small, seeded, the same on every machine. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/** A mutator's material: whole texts to start from, fragments to insert, lines to add (heads), numbers to swap in (bodies). */
export interface Grammar {
  seeds: readonly string[];
  alphabet: readonly string[];
  lines?: readonly string[];
  numbers?: readonly string[];
  /** What `lines` are separated by (default CRLF, as in HTTP heads). */
  lineBreak?: string;
}

/** One to three mutations of a seed: bytes inserted, deleted, replaced or re-cased, a stretch copied, lines added or dropped, a number swapped. */
export function mutate(next: () => number, g: Grammar): { seed: string; text: string } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const seed = pick(g.seeds);
  let text = seed;
  const n = 1 + Math.floor(next() * 3);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(next() * (text.length + 1));
    const end = Math.min(text.length, at + 1 + Math.floor(next() * 12));
    switch (Math.floor(next() * 9)) {
      case 0:
        text = text.slice(0, at) + pick(g.alphabet) + text.slice(at);
        break;
      case 1:
        text = text.slice(0, at) + text.slice(end);
        break;
      case 2:
        text = text.slice(0, at) + pick(g.alphabet) + text.slice(at + 1);
        break;
      case 3: {
        const s = text.slice(at, end);
        text = text.slice(0, at) + (next() < 0.5 ? s.toUpperCase() : s.toLowerCase()) + text.slice(end);
        break;
      }
      case 4: {
        const to = Math.floor(next() * (text.length + 1));
        text = text.slice(0, to) + text.slice(at, end) + text.slice(to);
        break;
      }
      case 5: {
        if (!g.numbers) break;
        const found = [...text.matchAll(/-?[0-9][0-9.eE+-]*/g)];
        if (found.length === 0) break;
        const m = pick(found);
        text = text.slice(0, m.index) + pick(g.numbers) + text.slice(m.index + m[0].length);
        break;
      }
      default: {
        if (!g.lines) break;
        const br = g.lineBreak ?? "\r\n";
        const lines = text.split(br);
        if (next() < 0.7) lines.splice(1 + Math.floor(next() * lines.length), 0, pick(g.lines));
        else if (lines.length > 1) lines.splice(1 + Math.floor(next() * (lines.length - 1)), 1);
        text = lines.join(br);
      }
    }
  }
  return { seed, text };
}
