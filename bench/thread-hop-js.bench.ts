// The JS work of a thread instance's hop, in one thread, without the two
// thread wakes: add_sub's request packed for the wire (its inputs parked),
// encoded and decoded by the ring's codec, unpacked as the worker does,
// read as add_sub reads it (shape, data()), its two outputs packed (small:
// by value), encoded, decoded and unpacked as the serving thread does, and
// read. CPU µs per request, the median of nine batches. Pass another
// checkout with --root (worktree, node_modules and the .node file linked
// into it) and alternate runs to compare two versions; how the hop's JS
// cuts of issue 16 were measured, one against its parent.
//
//   node --import tsx bench/thread-hop-js.bench.ts [--root .] [--requests 10000]
import { loadavg } from "node:os";
import { join, resolve } from "node:path";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const ROOT = resolve(arg("root", new URL("..", import.meta.url).pathname));
const N = Number(arg("requests", "10000"));

/** The checkout's modules (each checkout has its own copy of the classes). */
const wire = (await import(join(ROOT, "src/runtime/thread-wire.ts"))) as typeof import("../src/runtime/thread-wire.js");
const codec = (await import(join(ROOT, "src/runtime/thread-codec.ts"))) as typeof import("../src/runtime/thread-codec.js");
const { Tensor } = (await import(join(ROOT, "src/tensor.ts"))) as typeof import("../src/tensor.js");
const { InferenceRequest } = (await import(join(ROOT, "src/runtime/request.ts"))) as typeof import("../src/runtime/request.js");
const { InferenceResponse } = (await import(join(ROOT, "src/runtime/response.ts"))) as typeof import("../src/runtime/response.js");

const a = Tensor.from(new Float32Array([1, 2, 3, 4]), { name: "INPUT0" });
const b = Tensor.from(new Float32Array([4, 3, 2, 1]), { name: "INPUT1" });
const request = new InferenceRequest({ inputs: [a, b], requestedOutputNames: [], requestId: "", parameters: {}, modelName: "add_sub", modelVersion: 1 });

/** A message through the codec: encoded, then decoded from a copy (the ring's slot). */
const viaCodec = (m: unknown): unknown => codec.decodeMessage(Buffer.from(codec.encodeMessage(m)!), 0);

let sink = 0;
function hop(): void {
  const execute = viaCodec({ op: "execute", id: 1, requests: [wire.requestToWire(request)] }) as { requests: Parameters<typeof wire.requestFromWire>[0][] };
  const r = wire.requestFromWire(execute.requests[0]!);
  const in0 = r.getInputTensorByName("INPUT0")!;
  const x = in0.data() as Float32Array;
  const y = r.getInputTensorByName("INPUT1")!.data() as Float32Array;
  const shape = [...in0.shape];
  const sum = new Float32Array(x.length);
  const diff = new Float32Array(x.length);
  for (let k = 0; k < x.length; k++) {
    sum[k] = x[k]! + y[k]!;
    diff[k] = x[k]! - y[k]!;
  }
  const responses = [new InferenceResponse({ outputTensors: [Tensor.from(sum, { name: "OUTPUT0", shape }), Tensor.from(diff, { name: "OUTPUT1", shape })] })];
  const reply = viaCodec({ id: 1, value: { result: wire.resultToWire(responses, true), open: [] } }) as { value: { result: Parameters<typeof wire.resultFromWire>[0] } };
  const back = wire.resultFromWire(reply.value.result) as InstanceType<typeof InferenceResponse>[];
  for (const t of back[0]!.outputTensors) sink += t.shape[0]! + (t.data() as Float32Array)[0]!;
}

for (let i = 0; i < 2 * N; i++) hop();
const batches: number[] = [];
for (let r = 0; r < 9; r++) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) hop();
  const c = process.cpuUsage(c0);
  batches.push((c.user + c.system) / N);
}
batches.sort((p, q) => p - q);
if (!(sink > 0)) throw new Error("thread-hop-js.bench: the outputs were not read");
console.log(`${ROOT}: the hop's JS work ${batches[4]!.toFixed(2)} µs CPU per request (min ${batches[0]!.toFixed(2)}, max ${batches[8]!.toFixed(2)}); load average ${loadavg()[0]!.toFixed(2)}`);
