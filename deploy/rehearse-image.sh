#!/usr/bin/env bash
# Rehearses ./Dockerfile where there is no Docker daemon: runs its build
# stage's commands on a clean export of HEAD in a scratch folder, lays the
# runtime stage's files out as the image has them (<root>/app, <root>/models,
# <root>/node_modules), starts the server the way the image's ENTRYPOINT and
# CMD do, runs the HEALTHCHECK command, and infers add_sub and digits.
# What it cannot show: the base images, the non-root user, the layer
# contents. Slow (npm ci and a release cargo build): not part of npm test.
#
#   bash deploy/rehearse-image.sh [scratch-dir]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/tb-rehearse-XXXXXX)}
build=$work/build root=$work/root
rm -rf "$build" "$root" && mkdir -p "$build" "$root/app"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/rehearse}

echo "== build stage ($build)"
# The files the build stage COPYs, as committed.
git -C "$repo" archive HEAD package.json package-lock.json Cargo.toml Cargo.lock crates src \
  tsconfig.json tsconfig.build.json index.js index.d.ts | tar -x -C "$build"
cd "$build"
npm ci --ignore-scripts --no-audit --no-fund
npm run build
npm prune --omit=dev --no-audit --no-fund
mkdir -p "$work/deps" && cd "$work/deps" && echo '{"private":true}' > package.json
npm install --ignore-scripts --no-audit --no-fund --save-exact \
  "onnxruntime-node@$(node -p "require('$build/package.json').devDependencies['onnxruntime-node']")"
find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 ! -path "*/linux/$(node -p process.arch)" -exec rm -rf {} +

echo "== runtime stage ($root)"
cp "$build"/package.json "$build"/index.js "$build"/index.d.ts "$build"/tensorbridge.*.node "$root/app/"
cp -R "$build/dist" "$build/node_modules" "$root/app/"
cp -R "$work/deps/node_modules" "$root/node_modules"
git -C "$repo" archive HEAD proto | tar -x -C "$root/app"
git -C "$repo" archive HEAD examples/models | tar -x -C "$work" && mv "$work/examples/models" "$root/models" && rm -rf "$work/examples"
du -sh "$root/app" "$root/node_modules" "$root/models"

echo "== serve (the image's ENTRYPOINT + CMD, /models -> $root/models, free ports)"
http_port=$(node -e 'const s=require("net").createServer().listen(0,()=>{console.log(s.address().port);s.close()})')
grpc_port=$(node -e 'const s=require("net").createServer().listen(0,()=>{console.log(s.address().port);s.close()})')
cd "$root"
# No tsx loader, no repository around it: as in the image.
node "$root/app/dist/cli.js" serve --model-repository="$root/models" --host 127.0.0.1 \
  --http-port "$http_port" --grpc-port "$grpc_port" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  node -e "fetch('http://127.0.0.1:$http_port/v2/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && break
  sleep 0.5
done
echo "HEALTHCHECK: $(node -e "fetch('http://127.0.0.1:$http_port/v2/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && echo healthy || echo UNHEALTHY)"
cat "$work/server.log"
curl -sf "127.0.0.1:$http_port/v2/models/add_sub/infer" -d '{"inputs":[
  {"name":"INPUT0","shape":[4],"datatype":"FP32","data":[1,2,3,4]},
  {"name":"INPUT1","shape":[4],"datatype":"FP32","data":[4,3,2,1]}]}'
echo
(cd "$repo" && node --import tsx examples/digits-client.ts --url "http://127.0.0.1:$http_port")
