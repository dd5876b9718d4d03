/**
 * A streaming client for the decoupled `repeat` example: the same request
 * over gRPC (`ModelStreamInfer`, with `@grpc/grpc-js` and Triton's own
 * `grpc_service.proto`) and over HTTP (`/generate_stream`, server-sent
 * events, with nothing but fetch). It prints each response as it arrives,
 * checks that both streams carry every element in order, and exits
 * non-zero on a mismatch.
 *
 *   npm start                                   # in one terminal
 *   node --import tsx examples/stream.ts        # in another
 *   node --import tsx examples/stream.ts --http http://127.0.0.1:8000 --grpc 127.0.0.1:8001
 *
 * The same stream with curl:
 *   curl -N localhost:8000/v2/models/repeat/generate_stream -d '{"IN":[4,5,6],"DELAY":100}'
 */
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return (i >= 0 ? process.argv[i + 1] : undefined) ?? fallback;
}
const httpUrl = arg("http", "http://127.0.0.1:8000");
const grpcUrl = arg("grpc", "127.0.0.1:8001");
const values = [4, 5, 6, 7];
const delayMs = 50;
const t0 = Date.now();
const stamp = (): string => `+${String(Date.now() - t0).padStart(4)} ms`;

function check(label: string, got: number[]): void {
  const ok = got.length === values.length && values.every((v, i) => v === got[i]);
  console.log(`${label}: [${got.join(", ")}] ${ok ? "ok" : `MISMATCH, expected [${values.join(", ")}]`}`);
  if (!ok) process.exitCode = 1;
}

/** HTTP: one `data: {json}` event per response, separated by blank lines. */
async function overHttp(): Promise<void> {
  const res = await fetch(`${httpUrl}/v2/models/repeat/generate_stream`, { method: "POST", body: JSON.stringify({ IN: values, DELAY: delayMs }) });
  if (res.status !== 200) throw new Error(`generate_stream answered ${res.status}: ${await res.text()}`);
  const got: number[] = [];
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body!) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = JSON.parse(buffered.slice(0, end).replace(/^data: /, "")) as { OUT?: number; error?: string };
      buffered = buffered.slice(end + 2);
      if (event.error !== undefined) throw new Error(event.error);
      console.log(`${stamp()} HTTP event ${JSON.stringify(event)}`);
      got.push(event.OUT!);
    }
  }
  check("generate_stream", got);
}

/** gRPC: one ModelStreamInfer message per response; the last one is the empty final response we asked for. */
async function overGrpc(): Promise<void> {
  const def = protoLoader.loadSync(fileURLToPath(new URL("../proto/triton/grpc_service.proto", import.meta.url)), { keepCase: true, longs: Number, defaults: true });
  const { inference } = grpc.loadPackageDefinition(def) as unknown as {
    inference: { GRPCInferenceService: new (url: string, creds: grpc.ChannelCredentials) => grpc.Client & { ModelStreamInfer(): grpc.ClientDuplexStream<unknown, StreamResponse> } };
  };
  const client = new inference.GRPCInferenceService(grpcUrl, grpc.credentials.createInsecure());
  const got: number[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const call = client.ModelStreamInfer();
      call.on("data", (m: StreamResponse) => {
        if (m.error_message) return reject(new Error(m.error_message));
        const r = m.infer_response!;
        const final = r.parameters["triton_final_response"]?.bool_param === true;
        if (r.outputs.length > 0) {
          const i = r.outputs.findIndex((o) => o.name === "OUT");
          const out = r.raw_output_contents[i]!.readInt32LE(0);
          console.log(`${stamp()} gRPC response id=${r.id} OUT=${out} final=${final}`);
          got.push(out);
        }
        if (final) call.end();
      });
      call.on("error", reject);
      call.on("end", resolve);
      const delay = Buffer.alloc(4);
      delay.writeUInt32LE(delayMs);
      call.write({
        model_name: "repeat",
        id: "stream-1",
        inputs: [
          { name: "IN", datatype: "INT32", shape: [values.length] },
          { name: "DELAY", datatype: "UINT32", shape: [1] },
        ],
        raw_input_contents: [Buffer.from(Int32Array.from(values).buffer), delay],
        parameters: { triton_enable_empty_final_response: { bool_param: true } },
      });
    });
  } finally {
    client.close();
  }
  check("ModelStreamInfer", got);
}

interface StreamResponse {
  error_message: string;
  infer_response?: {
    id: string;
    outputs: { name: string }[];
    raw_output_contents: Buffer[];
    parameters: Record<string, { bool_param?: boolean }>;
  };
}

await overGrpc();
await overHttp();
