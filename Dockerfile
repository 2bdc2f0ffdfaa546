# copy-to-s3-proxy image: build with the dev toolchain, ship only dist/ and production deps.
#   docker build -t copy-to-s3-proxy .
#   docker run -p 6877:6877 copy-to-s3-proxy --upstream db.example:6875
# All dependencies are JavaScript or WebAssembly (no native addons), so the slim image needs no
# compiler, and the production install runs no install scripts.

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-slim
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
