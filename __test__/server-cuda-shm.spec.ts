/**
 * Triton's CUDA shared-memory extension (`/v2/cudasharedmemory/*`). Without a
 * GPU (this machine, CI): every endpoint answers the right JSON error and the
 * server stays up; malformed register bodies are 400 before any CUDA call.
 * With one: regions made from another process's IPC handle, zero-copy GPU
 * inputs (FORCE_CPU_ONLY_INPUT_TENSORS "no" keeps them on the GPU, "yes"
 * moves them to the host), and outputs copied into a region.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface, type Interface } from "node:readline";

import anyTest, { type TestFn } from "ava";

import { ErrorCode, Tensor, cuda } from "../src/index.js";
import type { InferenceServer } from "../src/server/server.js";
import { ADD_SUB, ROOT, cleanupRepos, http, makeRepo, parseBinaryResponse, startTestServer, type TestModel } from "./server-helpers.js";

const test = anyTest as TestFn<{ server: InferenceServer; closed: InferenceServer }>;

const available = cuda.isAvailable();
/** GPU-only tests run with a GPU and are skipped, visibly, without one. */
const gpu = available ? test.serial : test.skip;
const needsGpu = available ? "" : ` [skipped: needs a CUDA GPU; ${cuda.unavailableReason()}]`;
/** Tests of the no-CUDA behaviour are skipped, visibly, where CUDA works. */
const noGpu = available ? test.skip : test;
const withoutGpu = available ? " [skipped: CUDA is available here]" : "";

const FORCE_CPU_NO: TestModel = {
  config: readFileSync(join(ROOT, "examples/models/force_cpu_no/config.pbtxt"), "utf8"),
  model: readFileSync(join(ROOT, "examples/models/force_cpu_no/1/model.ts"), "utf8"),
};
const FORCE_CPU_YES: TestModel = {
  config: FORCE_CPU_NO.config.replace('name: "force_cpu_no"', 'name: "force_cpu_yes"').replace('string_value: "no"', 'string_value: "yes"'),
  model: FORCE_CPU_NO.model!,
};

const b64 = (n: number): string => Buffer.alloc(n, 7).toString("base64");
/** A well-formed register body (the handle is 64 bytes, but not a real one). */
const BODY = { raw_handle: { b64: b64(64) }, device_id: 0, byte_size: 16 };

test.before(async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, force_cpu_no: FORCE_CPU_NO, force_cpu_yes: FORCE_CPU_YES });
  t.context.server = await startTestServer(repo, { allowClientShm: true });
  t.context.closed = await startTestServer(repo);
});

test.after.always(async (t) => {
  await t.context.server?.close();
  await t.context.closed?.close();
  cleanupRepos();
});

test("GET /v2 lists cuda_shared_memory exactly when CUDA is available", async (t) => {
  const { json } = await http(t.context.server, "GET", "/v2");
  t.true(json.extensions.includes("system_shared_memory"));
  t.is(json.extensions.includes("cuda_shared_memory"), available);
});

test("without --allow-client-shm, registering and unregistering are 403; status is empty", async (t) => {
  const s = t.context.closed;
  for (const path of ["/v2/cudasharedmemory/region/r0/register", "/v2/cudasharedmemory/region/r0/unregister", "/v2/cudasharedmemory/unregister"]) {
    const a = await http(s, "POST", path, path.endsWith("/register") ? BODY : undefined);
    t.is(a.status, 403, path);
    t.regex(a.json.error, /--allow-client-shm=true/);
  }
  t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  t.is((await http(s, "GET", "/v2/cudasharedmemory/region/r0/status")).status, 404);
});

noGpu(`without CUDA, registering a well-formed region is a 400 saying CUDA is not available${withoutGpu}`, async (t) => {
  const s = t.context.server;
  const a = await http(s, "POST", "/v2/cudasharedmemory/region/r0/register", BODY);
  t.is(a.status, 400);
  t.is(a.headers["content-type"], "application/json; charset=utf-8");
  t.regex(a.json.error, /failed to register CUDA shared memory region 'r0': CUDA is not available/);
  t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  t.is((await http(s, "GET", "/v2/health/live")).status, 200);
});

test("malformed register bodies are 400 before any CUDA call", async (t) => {
  const s = t.context.server;
  const cases: Array<[string, unknown, RegExp]> = [
    ["not JSON", "{", /failed to parse the request JSON/],
    ["an array", [1], /must be a JSON object/],
    ["no raw_handle", { device_id: 0, byte_size: 16 }, /'raw_handle' must be an object/],
    ["raw_handle a string", { ...BODY, raw_handle: b64(64) }, /'raw_handle' must be an object/],
    ["no b64", { ...BODY, raw_handle: {} }, /'raw_handle.b64' must be a base64 string/],
    ["b64 a number", { ...BODY, raw_handle: { b64: 5 } }, /base64 string/],
    ["bad base64", { ...BODY, raw_handle: { b64: "!!!not base64!!!" } }, /base64 string/],
    ["bad padding", { ...BODY, raw_handle: { b64: `${b64(64)}=` } }, /base64 string/],
    ["empty handle", { ...BODY, raw_handle: { b64: "" } }, /64 bytes of a cudaIpcMemHandle_t, not 0/],
    ["63-byte handle", { ...BODY, raw_handle: { b64: b64(63) } }, /not 63/],
    ["65-byte handle", { ...BODY, raw_handle: { b64: b64(65) } }, /not 65/],
    ["no device_id", { raw_handle: BODY.raw_handle, byte_size: 16 }, /'device_id' must be a non-negative integer/],
    ["negative device_id", { ...BODY, device_id: -1 }, /'device_id'/],
    ["fractional device_id", { ...BODY, device_id: 0.5 }, /'device_id'/],
    ["string device_id", { ...BODY, device_id: "0" }, /'device_id'/],
    ["no byte_size", { raw_handle: BODY.raw_handle, device_id: 0 }, /'byte_size' must be a non-negative integer/],
    ["negative byte_size", { ...BODY, byte_size: -16 }, /'byte_size'/],
    ["fractional byte_size", { ...BODY, byte_size: 1.5 }, /'byte_size'/],
    ["huge byte_size", { ...BODY, byte_size: 2 ** 60 }, /'byte_size'/],
  ];
  for (const [what, body, message] of cases) {
    const a = await http(s, "POST", "/v2/cudasharedmemory/region/bad/register", body as object);
    t.is(a.status, 400, what);
    t.regex(a.json.error, message, what);
    t.notRegex(a.json.error, /CUDA is not available|failed to register/, what);
  }
  const reserved = await http(s, "POST", "/v2/cudasharedmemory/region/triton_x/register", BODY);
  t.is(reserved.status, 400);
  t.regex(reserved.json.error, /reserved/);
  t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  t.is((await http(s, "GET", "/v2/health/live")).status, 200);
});

test("status of an unknown region is 404; unregistering unknown regions is a no-op", async (t) => {
  const s = t.context.server;
  const one = await http(s, "GET", "/v2/cudasharedmemory/region/nope/status");
  t.is(one.status, 404);
  t.regex(one.json.error, /^Unable to find shared memory region: 'nope'$/);
  t.is((await http(s, "POST", "/v2/cudasharedmemory/region/nope/unregister")).status, 200);
  t.is((await http(s, "POST", "/v2/cudasharedmemory/unregister")).status, 200);
  t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
});

test("an input naming an unregistered region is a 400; the server stays up", async (t) => {
  const s = t.context.server;
  const r = await http(s, "POST", "/v2/models/force_cpu_no/infer", {
    inputs: [{ name: "INPUT0", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "gpu_in", shared_memory_byte_size: 16 } }],
  });
  t.is(r.status, 400);
  t.regex(r.json.error, /Unable to find shared memory region: 'gpu_in'/);
  t.is((await http(s, "GET", "/v2/health/ready")).status, 200);
});

test.serial("names are shared with system shared memory: a CUDA region can't reuse a system region's name", async (t) => {
  if (!existsSync("/dev/shm")) return t.pass("no /dev/shm on this machine");
  const s = t.context.server;
  const key = `tb_cuda_test_${process.pid}`;
  const file = join("/dev/shm", key);
  writeFileSync(file, Buffer.alloc(64));
  try {
    t.is((await http(s, "POST", "/v2/systemsharedmemory/region/both/register", { key: `/${key}`, byte_size: 64 })).status, 200);
    const dup = await http(s, "POST", "/v2/cudasharedmemory/region/both/register", BODY);
    t.is(dup.status, 400);
    t.regex(dup.json.error, /'both' is already registered/);
    t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  } finally {
    await http(s, "POST", "/v2/systemsharedmemory/unregister");
    rmSync(file, { force: true });
  }
});

test("cuda.ipcHandle refuses host and BYTES tensors", (t) => {
  const host = t.throws(() => cuda.ipcHandle(Tensor.zeros([4], "FP32")));
  t.is((host as { code?: string }).code, ErrorCode.DEVICE_UNSUPPORTED);
  const bytes = t.throws(() => cuda.ipcHandle(Tensor.fromBytes(["a"])));
  t.is((bytes as { code?: string }).code, ErrorCode.DTYPE_UNSUPPORTED);
});

// ---------------------------------------------------------------- with a GPU

/** The exporting client: another process (CUDA won't open a handle in the process that made it). */
interface Exporter {
  child: ChildProcess;
  b64: string;
  byteSize: number;
  read: () => Promise<number[]>;
  close: () => void;
}

async function startExporter(values: number[]): Promise<Exporter> {
  const script = join(ROOT, "__test__/fixtures/cuda-ipc-exporter.ts");
  const child = spawn(process.execPath, [...process.execArgv, script, JSON.stringify(values)], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const lines: Interface = createInterface({ input: child.stdout! });
  const iterator = lines[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const { value, done } = await iterator.next();
    if (done) throw new Error("the CUDA IPC exporter exited early");
    return value as string;
  };
  const first = JSON.parse(await next()) as { b64: string; byteSize: number };
  return {
    child,
    ...first,
    read: async () => {
      child.stdin!.write("read\n");
      return JSON.parse(await next()) as number[];
    },
    close: () => {
      child.stdin!.write("exit\n");
    },
  };
}

gpu(`a region from another process's IPC handle: zero-copy GPU inputs, outputs copied in, status, unregister${needsGpu}`, async (t) => {
  const s = t.context.server;
  const exporter = await startExporter([1, 2, 3, 4, 10, 20, 30, 40, 0, 0, 0, 0]);
  try {
    t.is(exporter.byteSize, 48);
    const reg = await http(s, "POST", "/v2/cudasharedmemory/region/gpu/register", {
      raw_handle: { b64: exporter.b64 },
      device_id: 0,
      byte_size: 48,
    });
    t.is(reg.status, 200, reg.body.toString());
    t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, [{ name: "gpu", device_id: 0, byte_size: 48 }]);
    t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/region/gpu/status")).json, [{ name: "gpu", device_id: 0, byte_size: 48 }]);
    const dup = await http(s, "POST", "/v2/cudasharedmemory/region/gpu/register", { raw_handle: { b64: exporter.b64 }, device_id: 0, byte_size: 48 });
    t.is(dup.status, 400);

    const input = { name: "INPUT0", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "gpu", shared_memory_byte_size: 16 } };
    const no = await http(s, "POST", "/v2/models/force_cpu_no/infer", { inputs: [input] });
    t.is(no.status, 200, no.body.toString());
    t.deepEqual(no.json.outputs.find((o: { name: string }) => o.name === "IS_CPU").data, [false]);
    t.regex(no.json.outputs.find((o: { name: string }) => o.name === "DEVICES").data[0], /^INPUT0=cuda:0$/);
    const yes = await http(s, "POST", "/v2/models/force_cpu_yes/infer", { inputs: [input] });
    t.is(yes.status, 200, yes.body.toString());
    t.deepEqual(yes.json.outputs.find((o: { name: string }) => o.name === "IS_CPU").data, [true]);

    const sum = await http(s, "POST", "/v2/models/add_sub/infer", {
      inputs: [input, { ...input, name: "INPUT1", parameters: { ...input.parameters, shared_memory_offset: 16 } }],
      outputs: [
        { name: "OUTPUT0", parameters: { shared_memory_region: "gpu", shared_memory_byte_size: 16, shared_memory_offset: 32 } },
        { name: "OUTPUT1", parameters: { binary_data: true } },
      ],
    });
    t.is(sum.status, 200, sum.body.toString());
    const { header, outputs } = parseBinaryResponse(sum);
    t.deepEqual(header.outputs[0].parameters, { shared_memory_region: "gpu", shared_memory_byte_size: 16, shared_memory_offset: 32 });
    t.deepEqual(await exporter.read(), [1, 2, 3, 4, 10, 20, 30, 40, 11, 22, 33, 44]);
    t.deepEqual(Array.from(new Float32Array(new Uint8Array(outputs.get("OUTPUT1")!).buffer)), [-9, -18, -27, -36]);

    const past = await http(s, "POST", "/v2/models/force_cpu_no/infer", {
      inputs: [{ ...input, parameters: { ...input.parameters, shared_memory_offset: 40 } }],
    });
    t.is(past.status, 400);
    t.regex(past.json.error, /past its size 48/);

    t.is((await http(s, "POST", "/v2/cudasharedmemory/region/gpu/unregister")).status, 200);
    t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  } finally {
    await http(s, "POST", "/v2/cudasharedmemory/unregister");
    exporter.close();
  }
});

gpu(`a handle the driver refuses is a 400 naming the failure; the server stays up${needsGpu}`, async (t) => {
  const s = t.context.server;
  const a = await http(s, "POST", "/v2/cudasharedmemory/region/bogus/register", BODY);
  t.is(a.status, 400);
  t.regex(a.json.error, /failed to register CUDA shared memory region 'bogus'/);
  const big = await http(s, "POST", "/v2/cudasharedmemory/region/bogus/register", { ...BODY, device_id: 4096 });
  t.is(big.status, 400);
  t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  t.is((await http(s, "GET", "/v2/health/live")).status, 200);
});
