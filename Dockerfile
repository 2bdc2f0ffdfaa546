# copy-to-s3-proxy image: build with the dev toolchain, ship only dist/ and production deps.
#   docker build -t copy-to-s3-proxy .
#   docker run -p 6877:6877 copy-to-s3-proxy --upstream postgres://db.example:6875
#   docker run -p 6877:6877 copy-to-s3-proxy        # the embedded demo (exports in the container's /tmp)
# All dependencies are JavaScript or WebAssembly (no native addons), so the slim image needs no
# compiler, and no install script runs: the build is the explicit step below (package.json's
# `prepare` would run it before src/ is copied).
# Node 24 is the current Active LTS (Node 20's life ended in April 2026; the AWS SDK drops it in
# January 2027). No HEALTHCHECK yet: the proxy has no health endpoint to ask.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-slim
ENV NODE_ENV=production \
    C2S_LISTEN=0.0.0.0:6877
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The node image's unprivileged user (uid 1000); the app files stay root-owned and read-only to it.
USER node
EXPOSE 6877
ENTRYPOINT ["node", "dist/cli.js"]
