// The API reference: TypeDoc (typedoc.json) renders the JSDoc of the package's
// public modules into HTML.
//
//   node --import tsx scripts/docs.ts          build docs/api (not committed: CI builds it)
//   node --import tsx scripts/docs.ts --check  build into a temporary folder and fail on any
//                                              TypeDoc warning (an undocumented export, a
//                                              public type that is not exported, a {@link}
//                                              that resolves nowhere) or on a link in the
//                                              HTML to a page or anchor that does not exist
//
// docs/api is built, not committed: seven engineers edit JSDoc at once, and a
// committed copy would be stale after most commits; the check is what keeps it
// complete, and `npm run docs` makes it in a few seconds.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { brokenLinks, htmlFiles } from "./docs-links.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "tensorbridge-docs-")) : join(root, "docs", "api");

const typedoc = join(root, "node_modules", "typedoc", "bin", "typedoc");
const r = spawnSync(process.execPath, [typedoc, "--out", out], { cwd: root, stdio: "inherit" });
if (r.status !== 0) {
  console.error(`docs: typedoc failed (exit ${r.status ?? r.signal}); every exported symbol needs JSDoc and every {@link} a target`);
  process.exit(1);
}
const broken = brokenLinks(out);
const pages = htmlFiles(out).length;
if (check) rmSync(out, { recursive: true, force: true });
if (broken.length > 0) {
  console.error(`docs: ${broken.length} broken link(s) in the generated HTML:\n  ${broken.join("\n  ")}`);
  process.exit(1);
}
console.log(`docs: ${pages} pages, no warnings, no broken links${check ? "" : ` (${relative(root, out)})`}`);
