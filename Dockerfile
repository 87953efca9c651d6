# streamgate gateway image. Build: docker build -t streamgate .
# Run with Kafka: docker compose up (docker-compose.yml, docs/kafka.md).

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 downloads a prebuilt binary; the toolchain is the fallback when none matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY bench ./bench
COPY device-sim ./device-sim
COPY config ./config
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    STREAMGATE_DATA_DIR=/data \
    STREAMGATE_MQTT_HOST=0.0.0.0 \
    STREAMGATE_HTTP_HOST=0.0.0.0
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# MQTT over TCP; HTTP API, /metrics, /readyz and MQTT over WebSocket.
EXPOSE 1883 8080
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["start"]
