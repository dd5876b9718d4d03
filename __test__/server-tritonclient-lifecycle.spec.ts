/**
 * The official Python `tritonclient[http]` against models that use the
 * load-time toolbox (__test__/fixtures/lifecycle): a config completed by
 * the model's `autoCompleteConfig` (no config.pbtxt), `model_warmup`
 * samples run before READY, and a thread instance restarted after its
 * worker exited. Needs bench/.work/venv-client (`bash bench/serving/setup.sh
 * client`); without it the test is skipped with that reason in its title.
 */
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import test from "ava";

import { CLIENT_VENV, ROOT, clientSitePackages, runCommand, startTestServer } from "./server-helpers.js";

const PYTHON = join(CLIENT_VENV, "bin/python");
const missing =
  existsSync(PYTHON) && clientSitePackages().some((d) => existsSync(join(d, "tritonclient/http")))
    ? undefined
    : `tritonclient[http] is not installed (${CLIENT_VENV}); run bash bench/serving/setup.sh client`;

(missing ? test.skip : test)(`tritonclient[http]: auto-completed config, warm-up, a restarted thread instance${missing ? ` (skipped: ${missing})` : ""}`, async (t) => {
  const repo = mkdtempSync(join(tmpdir(), "tb-lifecycle-"));
  cpSync(join(ROOT, "__test__/fixtures/lifecycle"), repo, { recursive: true });
  const server = await startTestServer(repo);
  try {
    const { host, port } = server.address;
    const r = await runCommand(PYTHON, [join(ROOT, "__test__/python/tritonclient_lifecycle.py"), `${host}:${port}`]);
    t.is(r.code, 0, r.out);
    t.regex(r.out, /PASS: auto-complete, warm-up and a restarted instance with tritonclient/);
    t.regex(r.out, /warm-up: requests before the client's = 6/);
  } finally {
    await server.close();
    rmSync(repo, { recursive: true, force: true });
  }
});
