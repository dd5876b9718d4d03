/**
 * The container and Kubernetes/KServe files (Dockerfile, Dockerfile.alpine,
 * deploy/): every manifest validates, offline, against the pinned schemas in
 * deploy/schemas (KServe's CRDs, Kubernetes v1.33), and the image, ports,
 * protocols, model paths and probes agree with one another, with the
 * Dockerfiles and with the CLI (its parser reads the same arguments). There is
 * no container engine or cluster here: nothing is built or applied (README,
 * "Container and Kubernetes/KServe").
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

import test from "ava";
import { Ajv, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parseAllDocuments, parse as parseYaml } from "yaml";

import { USAGE, parseCli } from "../src/cli.js";
import { ROOT, http, makeRepo, cleanupRepos, startTestServer } from "./server-helpers.js";

type Obj = Record<string, any>;

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
const IMAGE = `tensorbridge/tensorbridge:${pkg.version}`;
const SCHEMAS = join(ROOT, "deploy/schemas");

// ---- schemas ---------------------------------------------------------------

const K8S_KEYWORDS = [
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-validations",
  "x-kubernetes-patch-merge-key",
  "x-kubernetes-embedded-resource",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-int-or-string",
  "x-kubernetes-patch-strategy",
  "x-kubernetes-unions",
  "x-kubernetes-group-version-kind",
];
const FORMATS = ["int32", "int64", "double", "byte", "date-time"];

function configure<T extends Ajv>(ajv: T): T {
  for (const keyword of K8S_KEYWORDS) ajv.addKeyword({ keyword });
  // Formats are annotations to the API server for these; types are checked.
  for (const f of FORMATS) ajv.addFormat(f, true);
  return ajv;
}

/**
 * A CRD's openAPIV3Schema made strict as `kubectl apply`'s default field
 * validation is: an object that declares properties rejects others, unless
 * it says x-kubernetes-preserve-unknown-fields.
 */
function strictFields(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strictFields);
  if (typeof node !== "object" || node === null) return node;
  const out: Obj = {};
  for (const [k, v] of Object.entries(node)) out[k] = k === "properties" ? Object.fromEntries(Object.entries(v as Obj).map(([p, s]) => [p, strictFields(s)])) : strictFields(v);
  if (out["properties"] && out["additionalProperties"] === undefined && out["x-kubernetes-preserve-unknown-fields"] !== true) {
    out["additionalProperties"] = false;
  }
  return out;
}

const validators = new Map<string, ValidateFunction>();
const crdAjv = configure(new Ajv({ allErrors: true, strict: true, strictTypes: false, strictRequired: false, strictTuples: false }));
const k8sAjv = configure(new Ajv2020({ allErrors: true, strict: false }));

function crd(file: string): void {
  const doc = parseYaml(readFileSync(join(SCHEMAS, "kserve", file), "utf8")) as Obj;
  for (const v of doc["spec"].versions as Obj[]) {
    if (!v["served"]) continue;
    const key = `${doc["spec"].group}/${v["name"]} ${doc["spec"].names.kind}`;
    validators.set(key, crdAjv.compile(strictFields(v["schema"].openAPIV3Schema) as Obj));
  }
}
crd("serving.kserve.io_servingruntimes.yaml");
crd("serving.kserve.io_inferenceservices.yaml");
for (const [key, file] of [
  ["apps/v1 Deployment", "deployment-apps-v1.json"],
  ["v1 Service", "service-v1.json"],
  ["v1 PersistentVolumeClaim", "persistentvolumeclaim-v1.json"],
  ["batch/v1 Job", "job-batch-v1.json"],
] as const) {
  validators.set(key, k8sAjv.compile(JSON.parse(readFileSync(join(SCHEMAS, "kubernetes", file), "utf8")) as Obj));
}

/** Schema errors of one manifest; a kind with no pinned schema is an error too. */
function validate(doc: Obj): string[] {
  const key = `${doc["apiVersion"]} ${doc["kind"]}`;
  const v = validators.get(key);
  if (!v) return [`no pinned schema for ${key}`];
  return v(doc) ? [] : (v.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""} ${JSON.stringify(e.params)}`);
}

// ---- the files -------------------------------------------------------------

function manifests(): { file: string; doc: Obj }[] {
  const out: { file: string; doc: Obj }[] = [];
  for (const dir of ["deploy/kserve", "deploy/kubernetes"]) {
    for (const f of readdirSync(join(ROOT, dir)).filter((n) => n.endsWith(".yaml")).sort()) {
      for (const d of parseAllDocuments(readFileSync(join(ROOT, dir, f), "utf8"))) {
        if (d.errors.length > 0) throw new Error(`${dir}/${f}: ${d.errors[0]!.message}`);
        out.push({ file: `${dir}/${f}`, doc: d.toJSON() as Obj });
      }
    }
  }
  return out;
}
const ALL = manifests();
function one(kind: string): Obj {
  const found = ALL.filter((m) => m.doc["kind"] === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0]!.doc;
}

/** A Dockerfile's instructions by stage: continuation lines joined, comments dropped. */
function dockerfile(name: string): { instr: string; args: string }[][] {
  const text = readFileSync(join(ROOT, name), "utf8").replace(/\\\n/g, " ");
  const stages: { instr: string; args: string }[][] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    if (m[1] === "FROM" || stages.length === 0) stages.push([]);
    stages.at(-1)!.push({ instr: m[1]!, args: m[2]!.trim() });
  }
  return stages;
}

function only(stage: { instr: string; args: string }[], instr: string): string {
  const found = stage.filter((i) => i.instr === instr);
  if (found.length !== 1) throw new Error(`expected one ${instr}, found ${found.length}`);
  return found[0]!.args;
}

// ---- tests -----------------------------------------------------------------

test("every manifest in deploy/ validates against the pinned KServe or Kubernetes schema", (t) => {
  t.true(ALL.length >= 6, `manifests found: ${ALL.map((m) => `${m.file} ${m.doc["kind"]}`).join(", ")}`);
  for (const { file, doc } of ALL) t.deepEqual(validate(doc), [], `${file} ${doc["kind"]} ${doc["metadata"]?.name}`);
});

test("the validators reject what a cluster would: unknown fields, wrong types, missing required fields", (t) => {
  const sr = structuredClone(one("ServingRuntime"));
  sr["spec"].protocolVersion = ["v2"]; // typo of protocolVersions
  t.true(validate(sr).some((e) => e.includes("additionalProperty") && e.includes("protocolVersion")));
  const sr2 = structuredClone(one("ServingRuntime"));
  sr2["spec"].containers[0].ports[0].containerPort = "8000";
  t.true(validate(sr2).some((e) => e.includes("containerPort")));
  const sr3 = structuredClone(one("ServingRuntime"));
  delete sr3["spec"].containers[0].name;
  t.notDeepEqual(validate(sr3), []);
  const isvc = structuredClone(one("InferenceService"));
  isvc["spec"].predictor.model.storageURI = isvc["spec"].predictor.model.storageUri;
  t.true(validate(isvc).some((e) => e.includes("storageURI")));
  const dep = structuredClone(one("Deployment"));
  dep["spec"].template.spec.containers[0].readinessProbe.httpGet.paht = "/v2/health/ready";
  t.true(validate(dep).some((e) => e.includes("paht")));
  const svc = structuredClone(one("Service"));
  svc["spec"].ports[0].port = "eight thousand";
  t.notDeepEqual(validate(svc), []);
  t.deepEqual(validate({ apiVersion: "serving.kserve.io/v1", kind: "Predictor" }), ["no pinned schema for serving.kserve.io/v1 Predictor"]);
});

test("the CLI's defaults are the ports the image exposes: HTTP 8000, gRPC 8001", (t) => {
  t.regex(USAGE, /--http-port <port>\s+HTTP port \(default 8000;/);
  t.regex(USAGE, /--grpc-port <port>\s+gRPC port \(default 8001;/);
});

for (const file of ["Dockerfile", "Dockerfile.alpine"]) {
  test(`${file}: multi-stage; the runtime stage serves /models on 8000/8001 as a non-root user with a readiness HEALTHCHECK`, (t) => {
    const stages = dockerfile(file);
    t.true(stages.length >= 2, "a build stage and a runtime stage");
    const build = stages.find((s) => s.some((i) => i.instr === "RUN" && i.args.includes("npm run build")));
    t.truthy(build, "a stage runs the package's own build (the addon and dist/)");
    const runtime = stages.at(-1)!;
    t.false(runtime.some((i) => i.instr === "RUN" && /cargo|npm run build/.test(i.args)), "the runtime stage builds nothing");
    const user = only(runtime, "USER");
    t.not(user, "root");
    t.not(user, "0");
    t.deepEqual(only(runtime, "EXPOSE").split(/\s+/), ["8000", "8001"]);
    t.deepEqual(JSON.parse(only(runtime, "ENTRYPOINT")) as string[], ["node", "/app/dist/cli.js"]);
    const cmd = parseCli(JSON.parse(only(runtime, "CMD")) as string[]);
    t.is(cmd.command, "serve");
    t.like(cmd.options, { repository: "/models", host: "0.0.0.0", port: 8000, grpcPort: 8001 });
    t.true(runtime.some((i) => i.instr === "COPY" && i.args.endsWith("examples/models /models")), "the examples are the default /models");
    t.regex(only(runtime, "HEALTHCHECK"), /CMD .*http:\/\/127\.0\.0\.1:8000\/v2\/health\/ready/);
    t.regex(readFileSync(join(ROOT, file), "utf8"), new RegExp(`docker build .*-t ${IMAGE.replace(/[.]/g, "\\.")}`));
  });
}

/** What a stage COPYs from the build context (not --from=another stage). */
function fromContext(stage: { instr: string; args: string }[]): string[] {
  return stage.filter((i) => i.instr === "COPY" && !i.args.startsWith("--from")).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
}

test("Dockerfiles: the build stage has what npm run build reads, the runtime stage what the npm package ships, and .dockerignore keeps none of it out", (t) => {
  const pkgJson = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files: string[]; scripts: Record<string, string> };
  const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  for (const file of ["Dockerfile", "Dockerfile.alpine"]) {
    const stages = dockerfile(file);
    const build = stages.find((s) => s.some((i) => i.instr === "RUN" && i.args.includes("npm run build")))!;
    const copied = fromContext(build);
    // What `npm run build` names (napi's manifest, tsc's project) and what those read.
    for (const path of ["package.json", "package-lock.json", "Cargo.toml", "Cargo.lock", "crates", "src", "tsconfig.json", "tsconfig.build.json", "index.js", "index.d.ts"]) {
      t.true(copied.includes(path), `${file}: the build stage copies ${path}`);
    }
    for (const m of pkgJson.scripts["build"]!.matchAll(/(?:--manifest-path|-p)\s+(\S+)/g)) {
      t.true(copied.some((c) => m[1] === c || m[1]!.startsWith(`${c}/`)), `${file}: the build stage copies ${m[1]}`);
    }
    // The runtime stage's /app holds every path of package.json's files, as the published package does.
    const runtime = stages.at(-1)!;
    const app = runtime.filter((i) => i.instr === "COPY").map((i) => i.args);
    for (const f of pkgJson.files.filter((x) => !x.startsWith("!") && !x.startsWith("examples"))) {
      t.true(app.some((a) => a.split(/\s+/).some((w) => w === f || w.endsWith(`/${f}`))), `${file}: the runtime stage copies ${f}`);
    }
    for (const src of [...copied, ...fromContext(runtime)]) {
      const top = src.split("/")[0]!;
      t.false(ignored.includes(top) || ignored.includes(src), `${file}: .dockerignore keeps ${src} out of the context`);
    }
  }
  for (const never of [".git", "node_modules", "target", "dist", "*.node"]) t.true(ignored.includes(never), `.dockerignore leaves out ${never}`);
});

test("every manifest runs the image of this package version", (t) => {
  const images = ALL.flatMap(({ doc }) => {
    const spec = doc["kind"] === "ServingRuntime" ? doc["spec"] : doc["spec"]?.template?.spec;
    return ((spec?.containers ?? []) as Obj[]).map((c) => c["image"] as string);
  });
  t.true(images.length >= 3);
  for (const image of images) t.is(image, IMAGE);
});

test("ServingRuntime: v2 and grpc-v2; its args, port, probes and metrics agree with one another and with KServe's /mnt/models", (t) => {
  const sr = one("ServingRuntime");
  t.deepEqual(sr["spec"].protocolVersions, ["v2", "grpc-v2"]);
  const [c, ...more] = sr["spec"].containers as Obj[];
  t.is(more.length, 0);
  t.is(c!["name"], "kserve-container");
  const { options } = parseCli(c!["args"] as string[]);
  t.like(options, { repository: "/mnt/models", host: "0.0.0.0", port: 8000, grpcPort: 8001 });
  // KServe serves the first port on the Service's 80 and marks one named *grpc*/*h2c* as h2c.
  t.deepEqual(c!["ports"], [
    { name: "http1", containerPort: options.port, protocol: "TCP" },
    { name: "grpc", containerPort: options.grpcPort, protocol: "TCP" },
  ]);
  t.is(c!["readinessProbe"].httpGet.path, "/v2/health/ready");
  t.is(c!["livenessProbe"].httpGet.path, "/v2/health/live");
  for (const p of ["readinessProbe", "livenessProbe", "startupProbe"]) t.is(c![p].httpGet.port, options.port, p);
  t.is(sr["spec"].annotations["prometheus.kserve.io/port"], String(options.port));
  t.is(sr["spec"].annotations["prometheus.kserve.io/path"], "/metrics");
  t.true(c!["securityContext"].runAsNonRoot);
  t.truthy(c!["resources"].requests.cpu);
  t.truthy(c!["resources"].limits.memory);
});

test("InferenceService: the runtime's format, name and protocol; the storage URI is the PVC the copy Job fills", (t) => {
  const sr = one("ServingRuntime");
  const isvc = one("InferenceService");
  const model = isvc["spec"].predictor.model as Obj;
  t.is(model["runtime"], sr["metadata"].name);
  t.true((sr["spec"].supportedModelFormats as Obj[]).some((f) => f["name"] === model["modelFormat"].name && f["version"] === model["modelFormat"].version));
  t.true((sr["spec"].protocolVersions as string[]).includes(model["protocolVersion"]));
  const m = /^pvc:\/\/([^/]+)\/(.+)$/.exec(model["storageUri"] as string);
  t.truthy(m, "a pvc:// storage URI");
  const pvc = one("PersistentVolumeClaim");
  t.is(m![1], pvc["metadata"].name);
  const job = one("Job")["spec"].template.spec as Obj;
  const vol = (job["volumes"] as Obj[]).find((v) => v["persistentVolumeClaim"]?.claimName === pvc["metadata"].name);
  t.truthy(vol);
  const mount = (job["containers"][0].volumeMounts as Obj[]).find((v) => v["name"] === vol!["name"]);
  // The Job copies the image's /models to <mount>/<path of the URI>.
  t.regex(job["containers"][0].command.join(" "), new RegExp(`cp -R /models ${mount!["mountPath"]}/${m![2]}`));
});

test("Deployment + Service: the image's /models, named ports the Service targets, probes on the HTTP port", (t) => {
  const dep = one("Deployment");
  const svc = one("Service");
  const pod = dep["spec"].template.spec as Obj;
  const c = pod["containers"][0] as Obj;
  const { options } = parseCli(c["args"] as string[]);
  const fromDockerfile = parseCli(JSON.parse(only(dockerfile("Dockerfile").at(-1)!, "CMD")) as string[]).options;
  t.deepEqual(options, fromDockerfile, "the Deployment runs what the image runs by default");
  const ports = Object.fromEntries((c["ports"] as Obj[]).map((p) => [p["name"], p["containerPort"]]));
  t.deepEqual(ports, { http: options.port, grpc: options.grpcPort });
  t.deepEqual(dep["spec"].selector.matchLabels, svc["spec"].selector);
  t.like(dep["spec"].template.metadata.labels, svc["spec"].selector);
  for (const p of svc["spec"].ports as Obj[]) t.is(p["port"], ports[p["targetPort"]], `service port ${p["name"]}`);
  t.is(c["readinessProbe"].httpGet.path, "/v2/health/ready");
  t.is(c["readinessProbe"].httpGet.port, "http");
  t.is(pod["securityContext"].runAsUser, 1000);
  t.true(pod["securityContext"].runAsNonRoot);
});

test.after.always(cleanupRepos);

test("the paths the probes, the HEALTHCHECK and the metrics scrape use answer 200 on a running server", async (t) => {
  const paths = new Set<string>(["/metrics"]);
  for (const { doc } of ALL) {
    const spec = doc["kind"] === "ServingRuntime" ? doc["spec"] : doc["spec"]?.template?.spec;
    for (const c of (spec?.containers ?? []) as Obj[]) {
      for (const p of ["readinessProbe", "livenessProbe", "startupProbe"]) if (c[p]) paths.add(c[p].httpGet.path as string);
    }
  }
  t.deepEqual([...paths].sort(), ["/metrics", "/v2/health/live", "/v2/health/ready"]);
  const server = await startTestServer(makeRepo({}), { defaultMetrics: true });
  try {
    for (const p of paths) t.is((await http(server, "GET", p)).status, 200, p);
  } finally {
    await server.close();
  }
});
