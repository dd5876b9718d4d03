/**
 * Putting the requests of one `execute()` together along dim 0 and taking
 * the batched result apart again: what `InferenceRequest.concat` and
 * `InferenceResponse.split` do.
 *
 * Host memory only: a tensor on a device is read through `toCpu()` (one
 * more copy, said in the JSDoc of both). A numeric concat makes one copy,
 * or none when the pieces are adjacent views of one ArrayBuffer (then the
 * batch is a view over them); a split makes none (each piece is a view of
 * the batch). BYTES tensors share their elements (no element is copied).
 *
 * @module
 */
import { viewClass, type TypedArray } from "../dtype.js";
import { Tensor } from "../tensor.js";
import { ServingError } from "./errors.js";

function mismatch(message: string): never {
  throw new ServingError("ERR_BATCH_MISMATCH", message);
}

const fmt = (s: readonly number[]): string => `[${s.join(",")}]`;

/**
 * One tensor, `name`, holding `parts` one after the other along dim 0.
 *
 * @param what - names each part in messages (`request 2`).
 * @throws {ServingError} `ERR_BATCH_MISMATCH` for no parts, a part without a
 * dim 0, or parts that differ in dtype or in their shape after dim 0.
 */
export function concatAlongBatch(parts: readonly Tensor[], name: string, what: (i: number) => string): Tensor {
  if (parts.length === 0) mismatch(`nothing to put together for '${name}': no requests`);
  const first = parts[0]!;
  const dtype = first.dtype;
  const rest = first.shape.slice(1);
  let rows = 0;
  for (let i = 0; i < parts.length; i++) {
    const t = parts[i]!;
    const shape = t.shape;
    if (shape.length === 0) mismatch(`'${name}' of ${what(i)} is a scalar: it has no dim 0 to batch along`);
    if (t.dtype !== dtype) mismatch(`'${name}' of ${what(i)} is ${t.dtype}, but of ${what(0)} ${dtype}: a batch has one data type`);
    if (shape.length !== rest.length + 1 || shape.some((d, k) => k > 0 && d !== rest[k - 1])) {
      mismatch(`'${name}' of ${what(i)} has shape ${fmt(shape)}, but of ${what(0)} ${fmt(first.shape)}: a batch's tensors differ in dim 0 only`);
    }
    rows += shape[0]!;
  }
  const shape = [rows, ...rest];
  if (dtype === "BYTES") {
    const elements: Uint8Array[] = [];
    for (const t of parts) elements.push(...t.toCpu().bytes());
    return Tensor.fromBytes(elements, { shape, name });
  }
  const views = parts.map((t) => (t.isCpu() ? t : t.toCpu()).data());
  // Adjacent views of one buffer, in order: the batch is a view over them all.
  let adjacent = true;
  for (let i = 1; i < views.length && adjacent; i++) {
    const a = views[i - 1]!;
    const b = views[i]!;
    adjacent = a.buffer === b.buffer && a.byteOffset + a.byteLength === b.byteOffset;
  }
  const Ctor = viewClass(dtype)!;
  let total = 0;
  for (const v of views) total += v.length;
  if (adjacent) return Tensor.from(new Ctor(views[0]!.buffer, views[0]!.byteOffset, total), { shape, name, dtype });
  const out = new Ctor(new ArrayBuffer(total * Ctor.BYTES_PER_ELEMENT));
  let at = 0;
  for (const v of views) {
    (out as { set(a: ArrayLike<number | bigint>, o: number): void }).set(v, at);
    at += v.length;
  }
  return Tensor.from(out, { shape, name, dtype });
}

/**
 * `batched` cut along dim 0 into pieces of `rows[i]` rows, each a view of
 * it (no copy), named as it is.
 *
 * @throws {ServingError} `ERR_BATCH_MISMATCH` for a tensor without a dim 0,
 * or one whose dim 0 is not the sum of `rows`.
 */
export function splitAlongBatch(batched: Tensor, rows: readonly number[]): Tensor[] {
  const name = batched.name ?? "";
  const shape = batched.shape;
  let total = 0;
  for (const r of rows) total += r;
  if (shape.length === 0) mismatch(`output '${name}' is a scalar: it has no dim 0 to split along`);
  if (shape[0] !== total) mismatch(`output '${name}' has shape ${fmt(shape)}; its dim 0 must be the requests' total batch size ${total} (${rows.join(" + ")})`);
  const rest = shape.slice(1);
  let per = 1;
  for (const d of rest) per *= d;
  const out: Tensor[] = [];
  if (batched.dtype === "BYTES") {
    const elements = batched.toCpu().bytes();
    let at = 0;
    for (const r of rows) {
      out.push(Tensor.fromBytes(elements.slice(at, at + r * per), { shape: [r, ...rest], name }));
      at += r * per;
    }
    return out;
  }
  const all: TypedArray = (batched.isCpu() ? batched : batched.toCpu()).data();
  const Ctor = viewClass(batched.dtype)!;
  let at = 0;
  for (const r of rows) {
    const n = r * per;
    out.push(Tensor.from(new Ctor(all.buffer, all.byteOffset + at * Ctor.BYTES_PER_ELEMENT, n), { shape: [r, ...rest], name, dtype: batched.dtype }));
    at += n;
  }
  return out;
}
