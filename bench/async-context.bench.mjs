// What Node 20's AsyncLocalStorage costs every promise in the process, by
// the number of stores that have been run: the reason the runtime keeps one
// store for a model's Logger context and its BLS caller (model-context.ts)
// rather than one each. Each store's promise hook copies its value onto
// every new promise. One process per store count, in alternation.
//
//   node bench/async-context.bench.mjs [--rounds 5] [--iterations 300000]
import { execFileSync } from "node:child_process";
import { AsyncLocalStorage } from "node:async_hooks";
import { loadavg } from "node:os";

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

const f = async () => {
  await Promise.resolve();
};
const med = (x) => [...x].sort((p, q) => p - q)[x.length >> 1];

const child = process.argv.indexOf("--stores");
if (child >= 0) {
  const stores = Number(process.argv[child + 1]);
  const n = Number(arg("iterations", "300000"));
  for (let k = 0; k < stores; k++) new AsyncLocalStorage().run({}, () => {});
  // Three promises an iteration: the new Promise, f()'s, and the one Promise.resolve() makes.
  const loop = async (m) => {
    for (let i = 0; i < m; i++) {
      await new Promise((r) => r());
      await f();
    }
  };
  await loop(n / 5);
  const t0 = process.cpuUsage();
  await loop(n);
  const t = process.cpuUsage(t0);
  console.log(((t.user + t.system) / (3 * n)).toFixed(4));
} else {
  const rounds = Number(arg("rounds", "5"));
  const it = arg("iterations", "300000");
  const res = [[], [], []];
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < 3; k++) {
      res[k].push(Number(execFileSync(process.execPath, [new URL(import.meta.url).pathname, "--stores", String(k), "--iterations", it], { encoding: "utf8" })));
    }
  }
  console.log(`CPU µs per promise (medians of ${rounds} rounds; load average ${loadavg()[0].toFixed(2)})`);
  console.log("| stores run | µs/promise | over none |");
  console.log("|---|---|---|");
  for (let k = 0; k < 3; k++) console.log(`| ${k} | ${med(res[k]).toFixed(3)} | +${(med(res[k]) - med(res[0])).toFixed(3)} |`);
}
