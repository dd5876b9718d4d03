# syntax=docker/dockerfile:1
# tensorbridge serving image (glibc, Debian bookworm): builds the native addon
# and dist/ from this checkout, then copies only what `tensorbridge serve`
# needs into a slim Node image.
#
#   docker build -t tensorbridge/tensorbridge:0.1.0 .
#   docker run --rm -p 8000:8000 -p 8001:8001 tensorbridge/tensorbridge:0.1.0
#   docker run --rm -p 8000:8000 -v "$PWD/my-models:/models:ro" tensorbridge/tensorbridge:0.1.0
#
# The model repository is /models (the image ships examples/models there; a
# volume mounted on /models replaces it). HTTP on 8000 (KServe v2 / Triton,
# /metrics too), gRPC on 8001. Packages that models import (the digits
# example's onnxruntime-node) live in /node_modules, where Node's resolution
# from /models finds them. Alpine (musl): Dockerfile.alpine.
# __test__/deploy.spec.ts checks this file against the CLI and deploy/.

ARG NODE_VERSION=20.20.2
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS rust

FROM node:${NODE_VERSION}-bookworm AS build
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
WORKDIR /build
# Dependencies first, so that a source change reuses this layer. No install
# scripts: `prepare` would build the addon before the sources are here.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY tsconfig.json tsconfig.build.json index.js index.d.ts ./
# The package's own build: the release addon (tensorbridge.<platform>.node)
# and dist/.
RUN npm run build
# Production dependencies only; then the models' own dependencies, at the
# versions the repository pins, in a folder of their own (/deps -> /node_modules),
# keeping onnxruntime-node's binaries for this platform only (288 MB -> ~45 MB).
RUN npm prune --omit=dev --no-audit --no-fund \
 && mkdir -p /deps \
 && cd /deps \
 && echo '{"private":true}' > package.json \
 && npm install --ignore-scripts --no-audit --no-fund --save-exact \
      "onnxruntime-node@$(node -p "require('/build/package.json').devDependencies['onnxruntime-node']")" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 \
      ! -path "*/linux/$(node -p process.arch)" -exec rm -rf {} +

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /build/package.json /build/index.js /build/index.d.ts /build/tensorbridge.*.node ./
COPY --from=build /build/dist ./dist
COPY --from=build /build/node_modules ./node_modules
COPY --from=build /deps/node_modules /node_modules
COPY proto ./proto
COPY examples/models /models
# The node image's unprivileged user (uid 1000); the files stay root's, read-only to it.
USER node
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8000/v2/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["serve", "--model-repository=/models", "--host", "0.0.0.0", "--http-port", "8000", "--grpc-port", "8001"]
