# copy-to-s3-proxy image: build with the dev toolchain, ship only dist/ and production deps.
#   docker build -t copy-to-s3-proxy .
#   docker run -p 6877:6877 copy-to-s3-proxy --upstream postgres://db.example:6875
#   docker run -p 6877:6877 copy-to-s3-proxy        # the embedded demo (exports in the container's /tmp)
# All dependencies are JavaScript or WebAssembly (no native addons), so the slim image needs no
# compiler, and no install script runs: the build is the explicit step below (package.json's
# `prepare` would run it before src/ is copied).
# Node 24 is the current Active LTS (Node 20's life ended in April 2026; the AWS SDK drops it in
# January 2027). The admin listener (docs/metrics.md) serves /metrics, /healthz and /readyz on
# 6879; the HEALTHCHECK asks /healthz with Node's own fetch (the slim image has no curl).
#   docker run -p 6877:6877 -p 127.0.0.1:6879:6879 copy-to-s3-proxy --upstream ...

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-slim
# MALLOC_ARENA_MAX: two glibc malloc arenas instead of one per allocating thread (up to 8 per
# core), which each kept their thread's freed memory: up to ~30 MB of an export's peak RSS
# (docs/decisions.md, "Peak RSS: malloc arenas and young generations").
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    C2S_LISTEN=0.0.0.0:6877 \
    C2S_ADMIN_LISTEN=0.0.0.0:6879
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The node image's unprivileged user (uid 1000); the app files stay root-owned and read-only to it.
USER node
EXPOSE 6877 6879
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/metrics/healthcheck.js"]
ENTRYPOINT ["node", "--single-threaded-gc", "--v8-pool-size=1", "dist/cli.js"]
