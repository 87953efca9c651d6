#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker) on 127.0.0.1 for development
# and tests. The broker jars come from Maven Central through Maven and are cached outside the repo.
#
#   scripts/kafka-local.sh fetch              download the jars only (CI does this before the tests)
#   scripts/kafka-local.sh start|stop|status  run / stop / inspect the broker
#
# Environment (all optional):
#   KAFKA_VERSION      org.apache.kafka:kafka_2.13 version        (default 4.1.2)
#   KAFKA_PORT         client port (PLAINTEXT, 127.0.0.1)          (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port                   (default KAFKA_PORT + 1)
#   KAFKA_CACHE_DIR    where the jars go   (default ${XDG_CACHE_HOME:-~/.cache}/streamgate/kafka-<version>)
#   KAFKA_DATA_DIR     log dirs, config, pid file and broker output (default <cache dir>/data-<port>)
#   KAFKA_HEAP         JVM heap                                    (default 512m)
#   KAFKA_START_TIMEOUT seconds to wait for the broker to accept requests (default 120)
#   KAFKA_SASL_PORT    also listen with SASL_PLAINTEXT here (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
#   KAFKA_SSL_PORT     also listen with TLS here; KAFKA_SSL_KEYSTORE is a PEM file holding the
#                      broker's private key (unencrypted PKCS#8) and certificate chain
#   KAFKA_SASL_USERS   user:password,... known to that listener (SCRAM credentials are written when
#                      the storage is formatted, i.e. on the first start of a data dir)
set -euo pipefail

VERSION="${KAFKA_VERSION:-4.1.2}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
CACHE_DIR="${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamgate/kafka-$VERSION}"
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE_DIR/data-$PORT}"
HEAP="${KAFKA_HEAP:-512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
SASL_PORT="${KAFKA_SASL_PORT:-}"
SASL_USERS="${KAFKA_SASL_USERS:-}"
SSL_PORT="${KAFKA_SSL_PORT:-}"
SSL_KEYSTORE="${KAFKA_SSL_KEYSTORE:-}"
LIB_DIR="$CACHE_DIR/libs"
PID_FILE="$DATA_DIR/kafka.pid"
LOG4J_VERSION=2.24.3

die() { echo "kafka-local: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (install a JDK 17+ and Maven, e.g. apt-get install -y openjdk-17-jdk-headless maven)"; }

fetch() {
  if [[ -f "$LIB_DIR/.complete" ]]; then return 0; fi
  need java
  need mvn
  mkdir -p "$CACHE_DIR"
  # A throwaway pom whose only purpose is to let Maven resolve the broker and its runtime
  # dependencies; log4j2 is added because the broker only declares the slf4j API.
  cat >"$CACHE_DIR/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamgate.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  echo "kafka-local: fetching org.apache.kafka:kafka_2.13:$VERSION into $LIB_DIR" >&2
  rm -rf "$LIB_DIR"
  mvn -q -B -f "$CACHE_DIR/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB_DIR" >&2
  touch "$LIB_DIR/.complete"
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$DATA_DIR/logs"
  local listeners="PLAINTEXT://127.0.0.1:$PORT" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ -n "$SASL_PORT" ]]; then
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT"
    protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  if [[ -n "$SSL_PORT" ]]; then
    [[ -f "$SSL_KEYSTORE" ]] || die "KAFKA_SSL_PORT needs KAFKA_SSL_KEYSTORE (a PEM file with key and certificate)"
    listeners="$listeners,SSL://127.0.0.1:$SSL_PORT"
    protocols="$protocols,SSL:SSL"
  fi
  # Settings fit for one node: every internal topic (consumer offsets, transaction state) with
  # replication factor 1 and min ISR 1, and no initial rebalance delay so consumer groups form at once.
  cat >"$DATA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=$listeners,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=$listeners
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
log.dirs=$DATA_DIR/logs
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
PROPS
  if [[ -n "$SSL_PORT" ]]; then
    cat >>"$DATA_DIR/server.properties" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=$SSL_KEYSTORE
ssl.client.auth=none
PROPS
  fi
  if [[ -n "$SASL_PORT" ]]; then
    local plain_users="" pair
    IFS=',' read -ra pairs <<<"$SASL_USERS"
    for pair in "${pairs[@]}"; do plain_users="$plain_users user_${pair%%:*}=\"${pair#*:}\""; done
    cat >>"$DATA_DIR/server.properties" <<PROPS
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  fi
  cat >"$DATA_DIR/log4j2.properties" <<'L4J'
rootLogger.level=WARN
rootLogger.appenderRef.out.ref=out
appender.out.type=Console
appender.out.name=out
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
logger.server.name=kafka.server.KafkaRaftServer
logger.server.level=INFO
L4J
}

java_run() {
  java "-Xmx$HEAP" "-Xms128m" -XX:+UseSerialGC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$DATA_DIR/log4j2.properties" -cp "$LIB_DIR/*" "$@"
}

start() {
  if pid="$(running_pid)"; then echo "kafka-local: already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
  need java
  fetch
  write_config
  if [[ ! -f "$DATA_DIR/logs/meta.properties" ]]; then
    # A Kafka cluster id is 16 random bytes in URL-safe base64. One that begins with "-" would be
    # read as an option by the storage tool (as Kafka's own Uuid.randomUuid avoids), so draw again.
    local cluster_id="-"
    while [[ "$cluster_id" == -* ]]; do
      cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    local scram=() pair mechanism
    if [[ -n "$SASL_PORT" && -n "$SASL_USERS" ]]; then
      IFS=',' read -ra pairs <<<"$SASL_USERS"
      for pair in "${pairs[@]}"; do
        for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do scram+=(--add-scram "$mechanism=[name=${pair%%:*},password=${pair#*:}]"); done
      done
    fi
    java_run kafka.tools.StorageTool format "--cluster-id=$cluster_id" -c "$DATA_DIR/server.properties" "${scram[@]}" >"$DATA_DIR/format.out" 2>&1 \
      || { cat "$DATA_DIR/format.out" >&2; die "formatting KRaft storage failed"; }
  fi
  touch "$DATA_DIR/kafka.out"
  local marker
  marker="$(wc -l <"$DATA_DIR/kafka.out")"
  # setsid: the broker outlives this script and gets its own process group.
  setsid java "-Xmx$HEAP" "-Xms128m" -XX:+UseSerialGC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$DATA_DIR/log4j2.properties" -cp "$LIB_DIR/*" \
    kafka.Kafka "$DATA_DIR/server.properties" >>"$DATA_DIR/kafka.out" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  wait_ready "$marker"
  echo "kafka-local: running (pid $(cat "$PID_FILE")) on 127.0.0.1:$PORT, data in $DATA_DIR"
}

# Ready means the broker logged (after line $1 of its output, i.e. in this run) that it started and its client port takes connections.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) marker="$1"
  while ((SECONDS < deadline)); do
    running_pid >/dev/null || { tail -n 30 "$DATA_DIR/kafka.out" >&2; die "broker exited during start"; }
    if tail -n "+$((marker + 1))" "$DATA_DIR/kafka.out" | grep -q "Kafka Server started" \
      && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$DATA_DIR/kafka.out" >&2
  die "broker did not accept requests within ${START_TIMEOUT}s"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then echo "kafka-local: not running"; rm -f "$PID_FILE"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; echo "kafka-local: stopped"; return 0; }
    sleep 0.1
  done
  echo "kafka-local: no clean exit after 30 s, killing pid $pid" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

status() {
  local pid
  if pid="$(running_pid)"; then echo "kafka-local: running (pid $pid) on 127.0.0.1:$PORT, data in $DATA_DIR"
  else echo "kafka-local: not running (port $PORT)"; return 3; fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
