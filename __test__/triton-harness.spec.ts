/**
 * The harness that runs real Triton 2.51 beside tensorbridge
 * (bench/serving/triton.ts): a tritonserver that dies leaves nothing
 * behind (no process, no open pipe, no /dev/shm region). Its Python stubs, and whatever a model started, inherit its
 * stdout; left running they held the test process open after its last test
 * (CI, Triton crashing while loading).
 *
 * Needs bench/.work/venv-peers (`bash bench/serving/setup.sh peers`);
 * without it the test is skipped with the reason in its title.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import test from "ava";

import { freePorts, startTriton, tritonMissing } from "../bench/serving/triton.js";

const missing = tritonMissing();
const cmp = missing ? test.skip : test;
const skipped = missing ? ` (skipped: ${missing})` : "";

/** Whether a process runs: one killed but not yet reaped (a zombie) does not. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

cmp(`a tritonserver killed with SIGKILL: stop() takes down what it started, and lets go of its pipes${skipped}`, async (t) => {
  const repo = mkdtempSync(join(tmpdir(), "tb-triton-harness-"));
  t.teardown(() => rmSync(repo, { recursive: true, force: true }));
  const pidFile = join(repo, "orphan.pid");
  mkdirSync(join(repo, "spawner", "1"), { recursive: true });
  writeFileSync(
    join(repo, "spawner", "config.pbtxt"),
    `backend: "python"
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU } ]
`,
  );
  // The child inherits the stub's stdout and stderr: tritonserver's pipes to us.
  writeFileSync(
    join(repo, "spawner", "1", "model.py"),
    `import subprocess
class TritonPythonModel:
    def initialize(self, args):
        p = subprocess.Popen(["sleep", "300"])
        with open(${JSON.stringify(pidFile)}, "w") as f:
            f.write(str(p.pid))
    def execute(self, requests):
        return []
`,
  );
  const [httpPort, grpcPort, metricsPort] = (await freePorts(3)) as [number, number, number];
  const triton = startTriton({ repository: repo, httpPort, grpcPort, metricsPort });
  let orphan = 0;
  try {
    await triton.ready(["spawner"]);
    t.true(existsSync(pidFile), "the model wrote its child's pid");
    orphan = Number(readFileSync(pidFile, "utf8"));
    t.true(alive(orphan), "the model's child runs while tritonserver does");
    process.kill(triton.child.pid!, "SIGKILL");
  } finally {
    await triton.stop();
  }
  t.is(triton.child.signalCode, "SIGKILL");
  t.false(alive(orphan), "the model's child outlived tritonserver");
  t.true(triton.child.stdout!.destroyed && triton.child.stderr!.destroyed, "tritonserver's pipes are still open");
  const prefix = /shm-region-prefix-name=(\S+)/.exec(triton.child.spawnargs.join(" "))?.[1];
  t.truthy(prefix, "each tritonserver gets a /dev/shm prefix of its own");
  t.deepEqual(
    readdirSync("/dev/shm").filter((n) => n.startsWith(prefix!)),
    [],
    "the killed server's shared-memory regions are left",
  );
});
