/**
 * The KServe work no Node server can skip for one add_sub request, written
 * as tightly as we know how, and nothing else: parse the JSON (the binary
 * header, or the whole JSON body), view the input tensors (one aligned copy
 * of binary data that is not aligned in the body), add and subtract, write
 * the JSON answer, put the body together. No validation, no model, no
 * statistics. `floor-server.mjs --net --compute` serves it (run.ts's
 * `floor-kserve` row) and `path.bench.ts` runs it in process (`floor-js`):
 * the lower bound of the serving path's own work.
 */

/**
 * Answers an add_sub request (FP32 INPUT0, INPUT1; OUTPUT0 = sum, OUTPUT1 =
 * difference), binary outputs when the request asks for them.
 *
 * @param {string} model - the model name to answer with.
 * @param {Buffer} body - the request body.
 * @param {number | undefined} headerLength - `Inference-Header-Content-Length`, for binary requests.
 * @returns {{ body: Buffer, headerLength: number | undefined }} the response body, and its JSON header's length when binary.
 */
export function addSubKserve(model, body, headerLength) {
  const hl = headerLength ?? body.length;
  const req = JSON.parse(body.toString("utf8", 0, hl));
  const inputs = req.inputs;
  let x;
  let y;
  let shape;
  if (inputs[0].data !== undefined) {
    // JSON tensors (perf_analyzer's JSON requests carry an Inference-Header-Content-Length of the whole body too).
    // It nests the data by the shape: flat values only.
    x = Float32Array.from(inputs[0].data.flat(Infinity));
    y = Float32Array.from(inputs[1].data.flat(Infinity));
  } else {
    const n0 = inputs[0].parameters.binary_data_size;
    const n1 = inputs[1].parameters.binary_data_size;
    // One copy into an aligned Buffer slice (the pool's slices start at multiples of 8).
    const copy = Buffer.allocUnsafe(n0 + n1);
    body.copy(copy, 0, hl, hl + n0 + n1);
    x = new Float32Array(copy.buffer, copy.byteOffset, n0 / 4);
    y = new Float32Array(copy.buffer, copy.byteOffset + n0, n1 / 4);
  }
  shape = inputs[0].shape;
  const n = x.length;
  const outBytes = Buffer.allocUnsafe(8 * n);
  const sum = new Float32Array(outBytes.buffer, outBytes.byteOffset, n);
  const diff = new Float32Array(outBytes.buffer, outBytes.byteOffset + 4 * n, n);
  for (let i = 0; i < n; i++) {
    sum[i] = x[i] + y[i];
    diff[i] = x[i] - y[i];
  }
  const dims = shape.join(",");
  const binary = req.outputs?.[0]?.parameters?.binary_data === true || req.parameters?.binary_data_output === true;
  if (!binary) {
    const text = `{"model_name":"${model}","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[${dims}],"data":[${sum.join(",")}]},{"name":"OUTPUT1","datatype":"FP32","shape":[${dims}],"data":[${diff.join(",")}]}]}`;
    return { body: Buffer.from(text), headerLength: undefined };
  }
  const text = `{"model_name":"${model}","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[${dims}],"parameters":{"binary_data_size":${4 * n}}},{"name":"OUTPUT1","datatype":"FP32","shape":[${dims}],"parameters":{"binary_data_size":${4 * n}}}]}`;
  const textLength = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(textLength + 8 * n);
  out.write(text, 0, "latin1");
  outBytes.copy(out, textLength);
  return { body: out, headerLength: textLength };
}
