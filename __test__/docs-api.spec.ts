/**
 * The API reference's checks (scripts/docs.ts): the link checker over the
 * generated HTML, and TypeDoc's configuration against the package. The full
 * TypeDoc run with its validation is npm test's `docs` step.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

import test from "ava";

import { brokenLinks } from "../scripts/docs-links.js";
import { ROOT } from "./server-helpers.js";

function site(pages: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "tb-docs-links-"));
  for (const [name, html] of Object.entries(pages)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), html);
  }
  return dir;
}

test("brokenLinks passes pages whose relative links and anchors all exist", (t) => {
  const dir = site({
    "index.html": '<a href="classes/A.html#run">A.run</a> <a href="#top">top</a> <a href="https://example.com/x.html">x</a><h1 id="top">t</h1>',
    "classes/A.html": '<section id="run"></section><a href="../index.html">home</a><img src="../assets/i.svg">',
    "assets/i.svg": "<svg/>",
  });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.deepEqual(brokenLinks(dir), []);
});

test("brokenLinks reports a missing page, a missing anchor and a missing asset", (t) => {
  const dir = site({
    "index.html": '<a href="classes/B.html">B</a> <a href="classes/A.html#nope">A.nope</a> <a href="#gone">gone</a>',
    "classes/A.html": '<section id="run"></section><img src="../assets/missing.svg">',
  });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.deepEqual(brokenLinks(dir).sort(), [
    "classes/A.html: ../assets/missing.svg (no such file)",
    "index.html: #gone (no such anchor)",
    "index.html: classes/A.html#nope (no such anchor)",
    "index.html: classes/B.html (no such file)",
  ]);
});

test("typedoc.json documents the package's public modules with every validation on, warnings as errors", (t) => {
  // typedoc.json has comments; strip whole-line ones to read it as JSON.
  const text = readFileSync(join(ROOT, "typedoc.json"), "utf8").replace(/^\s*\/\/.*$/gm, "");
  const cfg = JSON.parse(text) as {
    entryPoints: string[];
    validation: Record<string, boolean>;
    treatWarningsAsErrors: boolean;
    treatValidationWarningsAsErrors: boolean;
    out: string;
  };
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { main: string; exports?: unknown };
  // The package's main (dist/index.js) is built from src/index.ts: documented.
  t.true(cfg.entryPoints.includes(pkg.main.replace(/^dist\//, "src/").replace(/\.js$/, ".ts")));
  for (const e of cfg.entryPoints) t.true(existsSync(join(ROOT, e)), `entry point ${e} exists`);
  // Every subpath the package exports (e.g. ./debug) is an entry point too.
  const subpaths = typeof pkg.exports === "object" && pkg.exports !== null ? Object.values(pkg.exports as Record<string, unknown>) : [];
  const exported = new Set<string>();
  for (const target of subpaths.flatMap((v) => (typeof v === "string" ? [v] : Object.values(v as Record<string, unknown>)))) {
    if (typeof target !== "string" || !target.endsWith(".js")) continue;
    exported.add(target.replace(/^\.\/dist\//, "src/").replace(/\.js$/, ".ts"));
  }
  for (const e of exported) t.true(cfg.entryPoints.includes(e), `exported ${e} is documented`);
  // And nothing but the package's modules: an entry point users cannot import would document internals.
  if (exported.size > 0) t.deepEqual([...cfg.entryPoints].sort(), [...exported].sort());
  t.like(cfg.validation, { notExported: true, invalidLink: true, notDocumented: true });
  t.true(cfg.treatWarningsAsErrors);
  t.true(cfg.treatValidationWarningsAsErrors);
  t.is(cfg.out, "docs/api");
  t.true(readFileSync(join(ROOT, ".gitignore"), "utf8").split("\n").includes("/docs/api"), "docs/api is built, not committed");
});

test("relative links in README.md, CHANGELOG.md and docs/*.md name files that exist", (t) => {
  const pages = ["README.md", "CHANGELOG.md", "deploy/schemas/README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
  let links = 0;
  for (const page of pages) {
    const text = readFileSync(join(ROOT, page), "utf8");
    for (const [, target = ""] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) continue;
      links++;
      t.true(existsSync(join(ROOT, dirname(page), decodeURI(target.split("#")[0]!))), `${page}: ${target}`);
    }
  }
  t.true(links >= 5, `relative links checked: ${links}`);
});
