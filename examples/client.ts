/**
 * A client for the add_sub example, speaking the KServe v2 / Triton HTTP
 * protocol with nothing but fetch: once with JSON tensors, once with the
 * binary tensor extension. It checks the answers and exits non-zero on a
 * mismatch.
 *
 *   npm start                                  # in one terminal
 *   node --import tsx examples/client.ts       # in another
 *   node --import tsx examples/client.ts --url http://127.0.0.1:8000
 */
const urlArg = process.argv.indexOf("--url");
const base = (urlArg >= 0 ? process.argv[urlArg + 1] : undefined) ?? process.env["TENSORBRIDGE_URL"] ?? "http://127.0.0.1:8000";
const model = "add_sub";

const input0 = Float32Array.from({ length: 4 }, () => Math.round(Math.random() * 100) / 4);
const input1 = Float32Array.from({ length: 4 }, () => Math.round(Math.random() * 100) / 4);
const sum = input0.map((x, i) => x + input1[i]!);
const diff = input0.map((x, i) => x - input1[i]!);

function check(label: string, got: ArrayLike<number>, want: Float32Array): void {
  const ok = got.length === want.length && want.every((w, i) => w === got[i]);
  console.log(`${label}: [${Array.from(got).join(", ")}] ${ok ? "ok" : `MISMATCH, expected [${Array.from(want).join(", ")}]`}`);
  if (!ok) process.exitCode = 1;
}

async function json(): Promise<void> {
  const res = await fetch(`${base}/v2/models/${model}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      id: "json-1",
      inputs: [
        { name: "INPUT0", shape: [4], datatype: "FP32", data: Array.from(input0) },
        { name: "INPUT1", shape: [4], datatype: "FP32", data: Array.from(input1) },
      ],
      outputs: [{ name: "OUTPUT0" }, { name: "OUTPUT1" }],
    }),
  });
  if (!res.ok) throw new Error(`JSON request failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { outputs: { name: string; data: number[] }[] };
  console.log(`INPUT0 (${Array.from(input0).join(", ")}) + - INPUT1 (${Array.from(input1).join(", ")})`);
  check("JSON   OUTPUT0 = INPUT0 + INPUT1", body.outputs.find((o) => o.name === "OUTPUT0")!.data, sum);
  check("JSON   OUTPUT1 = INPUT0 - INPUT1", body.outputs.find((o) => o.name === "OUTPUT1")!.data, diff);
}

async function binary(): Promise<void> {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: "INPUT0", shape: [4], datatype: "FP32", parameters: { binary_data_size: 16 } },
        { name: "INPUT1", shape: [4], datatype: "FP32", parameters: { binary_data_size: 16 } },
      ],
      outputs: [
        { name: "OUTPUT0", parameters: { binary_data: true } },
        { name: "OUTPUT1", parameters: { binary_data: true } },
      ],
    }),
  );
  const body = Buffer.concat([header, Buffer.from(input0.buffer), Buffer.from(input1.buffer)]);
  const res = await fetch(`${base}/v2/models/${model}/infer`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(header.length) },
    body,
  });
  if (!res.ok) throw new Error(`binary request failed: ${res.status} ${await res.text()}`);
  const raw = new Uint8Array(await res.arrayBuffer());
  const hlen = Number(res.headers.get("inference-header-content-length"));
  const head = JSON.parse(Buffer.from(raw.subarray(0, hlen)).toString("utf8")) as {
    outputs: { name: string; parameters: { binary_data_size: number } }[];
  };
  let offset = hlen;
  const out = new Map<string, Float32Array>();
  for (const o of head.outputs) {
    const size = o.parameters.binary_data_size;
    out.set(o.name, new Float32Array(raw.slice(offset, offset + size).buffer));
    offset += size;
  }
  check("binary OUTPUT0 = INPUT0 + INPUT1", out.get("OUTPUT0")!, sum);
  check("binary OUTPUT1 = INPUT0 - INPUT1", out.get("OUTPUT1")!, diff);
}

try {
  const ready = await fetch(`${base}/v2/models/${model}/ready`);
  if (!ready.ok) throw new Error(`model ${model} is not ready at ${base} (HTTP ${ready.status}); start the server with \`npm start\``);
  await json();
  await binary();
} catch (e) {
  console.error(`client: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
