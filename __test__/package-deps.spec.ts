/**
 * What `npm install tensorbridge` brings, read from package-lock.json (the
 * tree the release job packs and publishes from): nothing a user must act
 * on. No package of the runtime dependency tree has an install script (npm
 * 11 asks users to approve those; npm 12 will block them) except inside the
 * bundled dependencies, which npm neither runs nor asks about; and every
 * package of that tree supports every Node the package's `engines` allows
 * (else npm prints EBADENGINE). `scripts/pack-proof.mjs` checks the same on
 * a real install of the packed tarballs, and that npm prints no warning.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import test from "ava";
import Fastify from "fastify";

import { ROOT } from "./server-helpers.js";

const semver = createRequire(import.meta.url)("semver") as {
  subset(sub: string, dom: string): boolean;
  satisfies(version: string, range: string): boolean;
};

interface LockEntry {
  version?: string;
  dev?: boolean;
  devOptional?: boolean;
  inBundle?: boolean;
  hasInstallScript?: boolean;
  engines?: Record<string, string> | string[];
  dependencies?: Record<string, string>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  engines: { node: string };
  dependencies: Record<string, string>;
  bundleDependencies: string[];
};
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
/** Every package a user installs with tensorbridge, by lock path (the root excluded). */
const runtimeTree = Object.entries(lock.packages).filter(([path, e]) => path !== "" && !e.dev && !e.devOptional);

test("the lock file's runtime tree is the package's dependencies' (a check of what the other tests read)", (t) => {
  for (const name of Object.keys(pkg.dependencies)) {
    t.true(
      runtimeTree.some(([path]) => path === `node_modules/${name}`),
      `${name} in the runtime tree`,
    );
  }
  t.false(
    runtimeTree.some(([path]) => path === "node_modules/tsx" || path === "node_modules/esbuild"),
    "tsx and esbuild are development tools only",
  );
  t.true(runtimeTree.length > 50, `${runtimeTree.length} packages`);
});

test("no package of the runtime tree has an install script, but inside the bundled dependencies", (t) => {
  const scripted = runtimeTree.filter(([, e]) => e.hasInstallScript);
  t.deepEqual(
    scripted.filter(([, e]) => !e.inBundle).map(([path]) => path),
    [],
  );
  // protobufjs (under @grpc/proto-loader) is why gRPC is bundled: the check above can fail.
  t.deepEqual(
    scripted.map(([path]) => path),
    ["node_modules/protobufjs"],
  );
  t.deepEqual(pkg.bundleDependencies, ["@grpc/grpc-js", "@grpc/proto-loader"]);
  for (const name of pkg.bundleDependencies) t.true(lock.packages[`node_modules/${name}`]?.inBundle, `${name} is bundled in the lock`);
});

test("every package of the runtime tree supports every Node version the package's engines allow (no EBADENGINE)", (t) => {
  const narrower = runtimeTree
    .filter(([, e]) => !e.inBundle)
    .flatMap(([path, e]) => {
      const node = Array.isArray(e.engines) ? undefined : e.engines?.node;
      return node === undefined || semver.subset(pkg.engines.node, node) ? [] : [`${path}@${e.version} needs node ${node}`];
    });
  t.deepEqual(narrower, []);
  // light-my-request is a direct dependency only to hold this: 6.8 pulls cookie@2, which needs Node >= 22.
  t.is(lock.packages["node_modules/light-my-request"]?.version, "6.6.0");
  t.falsy(lock.packages["node_modules/fastify/node_modules/light-my-request"], "fastify uses the hoisted copy");
  t.true(semver.satisfies("6.6.0", lock.packages["node_modules/fastify"]!.dependencies!["light-my-request"]!));
});

test("fastify's inject (light-my-request, as pinned) answers", async (t) => {
  const app = Fastify();
  app.get("/ping", async () => ({ ok: true }));
  const res = await app.inject({ method: "GET", url: "/ping", cookies: { a: "b" } });
  t.is(res.statusCode, 200);
  t.deepEqual(res.json(), { ok: true });
  await app.close();
});
