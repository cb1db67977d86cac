# syntax=docker/dockerfile:1
# One image for the four services. Pick the service with `command:` (docker-compose.yml does) or
# with the SERVICE build argument / environment variable:
#   docker build -t order-pipeline .
#   docker run -e SERVICE=order-processor order-pipeline

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency, then tsc -b (shared first, then each service into <service>/dist)
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# The manifests alone first, so the npm ci layer is reused until a dependency changes.
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY api-gateway/package.json api-gateway/
COPY order-processor/package.json order-processor/
COPY notifier/package.json notifier/
COPY dashboard/package.json dashboard/
RUN npm ci --no-audit --no-fund

COPY tsconfig.base.json tsconfig.json ./
COPY shared/tsconfig.json shared/
COPY shared/src shared/src
COPY shared/lua shared/lua
COPY shared/openapi.json shared/
COPY api-gateway/tsconfig.json api-gateway/
COPY api-gateway/src api-gateway/src
COPY order-processor/tsconfig.json order-processor/
COPY order-processor/src order-processor/src
COPY notifier/tsconfig.json notifier/
COPY notifier/src notifier/src
COPY dashboard/tsconfig.json dashboard/
COPY dashboard/src dashboard/src
RUN npm run build

# ---- runtime: production dependencies and the build output only
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY api-gateway/package.json api-gateway/
COPY order-processor/package.json order-processor/
COPY notifier/package.json notifier/
COPY dashboard/package.json dashboard/
# npm links the workspace packages (node_modules/@order-pipeline/shared -> shared), so the
# services import the built shared package from shared/dist.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY --from=build /app/shared/dist shared/dist
# Read at run time relative to shared/dist (../lua), so it sits next to it.
COPY --from=build /app/shared/lua shared/lua
# The HTTP contract, read at run time relative to shared/dist (../openapi.json) like the Lua scripts.
COPY --from=build /app/shared/openapi.json shared/openapi.json
COPY --from=build /app/api-gateway/dist api-gateway/dist
COPY --from=build /app/order-processor/dist order-processor/dist
COPY --from=build /app/notifier/dist notifier/dist
COPY --from=build /app/dashboard/dist dashboard/dist

# Root owns the files and the service runs as the unprivileged user of the Node image: the
# process cannot rewrite its own code.
USER node

ARG SERVICE=api-gateway
ENV SERVICE=${SERVICE}
# No HEALTHCHECK here: each service listens on its own port, so docker-compose.yml defines one
# per service (GET /healthz).

# exec replaces the shell, so node itself receives SIGTERM on `docker stop` and the service's
# graceful shutdown runs.
CMD ["sh", "-c", "exec node \"$SERVICE/dist/main.js\""]
