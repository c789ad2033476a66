#!/usr/bin/env bash
# up.sh RUN_DIR - start etcd, kube-apiserver and a KRaft Kafka broker for the integration tests.
#
# Needs the artifacts of test/infra/prepare.sh (read from $CACHE/env.sh unless KAFKA_LIBS,
# ETCD_BIN, KUBE_APISERVER_BIN and JAVA_BIN are already set).
# Each server runs detached (own session; pid == process group id), pid in RUN_DIR/<name>.pid,
# log in RUN_DIR/<name>.log. Data dirs are created fresh under RUN_DIR on every start.
# On success writes RUN_DIR/kubeconfig and RUN_DIR/state.json; stop with test/infra/down.sh RUN_DIR.
# On failure prints the last 60 lines of each log, stops what it started and exits non-zero.
#
# Ports (env): ETCD_PORT=12379 ETCD_PEER_PORT=12380 KUBE_APISERVER_PORT=16443
#              KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093
# Deadlines (s, env): ETCD_READY_TIMEOUT=30 KUBE_READY_TIMEOUT=120 KAFKA_READY_TIMEOUT=90
# Kafka JVM (env): KAFKA_HEAP_OPTS, KAFKA_JVM_OPTS
# UP_PROFILE=node (test/infra/node-up.sh): an API server for a real node: ServiceAccount admission,
#   Node,RBAC authorization, NodeRestriction, the garbage collector, kubelet client certificates; and
#   client certificates (EC P-256) for the controller manager, the scheduler and the kubelet of
#   NODE_NAME at NODE_IP (its serving certificate too) in RUN_DIR/pki; an audit log of the requests
#   of ServiceAccounts outside kube-system in RUN_DIR/audit.log (JSON lines, metadata level).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 RUN_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
RUN=$(cd "$1" && pwd)
CACHE=${INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-executor-infra}

if [ -z "${KAFKA_LIBS:-}" ] || [ -z "${ETCD_BIN:-}" ] || [ -z "${KUBE_APISERVER_BIN:-}" ] || [ -z "${JAVA_BIN:-}" ]; then
  [ -f "$CACHE/env.sh" ] || { echo "up.sh: $CACHE/env.sh missing: run test/infra/prepare.sh first" >&2; exit 1; }
  # shellcheck disable=SC1091
  . "$CACHE/env.sh"
fi
for f in "$ETCD_BIN" "$KUBE_APISERVER_BIN" "$JAVA_BIN"; do [ -x "$f" ] || { echo "up.sh: not executable: $f" >&2; exit 1; }; done
[ -d "$KAFKA_LIBS" ] || { echo "up.sh: KAFKA_LIBS not a directory: $KAFKA_LIBS" >&2; exit 1; }

ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
KUBE_APISERVER_PORT=${KUBE_APISERVER_PORT:-16443}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
ETCD_READY_TIMEOUT=${ETCD_READY_TIMEOUT:-30}
KUBE_READY_TIMEOUT=${KUBE_READY_TIMEOUT:-120}
KAFKA_READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-90}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
UP_PROFILE=${UP_PROFILE:-bare}
case $UP_PROFILE in
  bare) ;;
  node) [ -n "${NODE_NAME:-}" ] && [ -n "${NODE_IP:-}" ] || { echo "up.sh: UP_PROFILE=node needs NODE_NAME and NODE_IP" >&2; exit 2; } ;;
  *) echo "up.sh: unknown UP_PROFILE $UP_PROFILE (bare or node)" >&2; exit 2 ;;
esac
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
HOST=127.0.0.1

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
say() { echo "[up $(date +%H:%M:%S)] $*"; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# refuse to start twice into the same RUN_DIR
for n in etcd kube-apiserver kafka; do
  if alive "$n"; then echo "up.sh: $n already running in $RUN (pid $(cat "$RUN/$n.pid")); run down.sh first" >&2; exit 1; fi
done
for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$KUBE_APISERVER_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
  if port_open "$p"; then echo "up.sh: port $HOST:$p is already in use" >&2; exit 1; fi
done

UP_OK=0
on_exit() {
  local rc=$?
  [ "$UP_OK" = 1 ] && return 0
  echo "up.sh: FAILED (rc=$rc); last 60 lines of each log:" >&2
  local l
  for l in "$RUN"/*.log; do
    [ -f "$l" ] || continue
    echo "----- $l -----" >&2; tail -n 60 "$l" >&2
  done
  "$HERE/down.sh" "$RUN" >&2 || true
  exit $((rc == 0 ? 1 : rc))
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# start_detached NAME CMD...: new session (pid == pgid), stdio to RUN/NAME.log, pid to RUN/NAME.pid
start_detached() {
  local name=$1; shift
  rm -f "$RUN/$name.pid"
  setsid bash -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$RUN/$name.pid" "$@" \
    >"$RUN/$name.log" 2>&1 </dev/null &
  local i
  for i in $(seq 100); do [ -s "$RUN/$name.pid" ] && return 0; sleep 0.05; done
  echo "up.sh: $name did not write its pid file" >&2; return 1
}

T0=$(now)
rm -rf "$RUN/etcd-data" "$RUN/kafka-data" "$RUN/kafka-logs" "$RUN/pki" "$RUN/kafka-config"
rm -f "$RUN"/*.log "$RUN/state.json" "$RUN/kubeconfig"

# ------------------------------------------------------------------ pki + token --
P=$RUN/pki
mkdir -p "$P"; chmod 700 "$P"
(
  cd "$P"
  openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -subj "/CN=agent-executor-test-ca" \
    -keyout ca.key -out ca.crt
  openssl req -new -nodes -newkey rsa:2048 -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' >ext.cnf
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile ext.cnf -out apiserver.crt
  openssl genrsa -out sa.key 2048
  if [ "$UP_PROFILE" = node ]; then
    # cert NAME SUBJECT EXTENSIONS: an EC key (fast to make) and a certificate signed by the CA
    cert() {
      openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "$2" -keyout "$1.key" -out "$1.csr"
      printf '%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' "$3" >"$1.cnf"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.cnf" -out "$1.crt"
    }
    client=extendedKeyUsage=clientAuth
    cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    cert kube-scheduler "/CN=system:kube-scheduler" "$client"
    cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
    cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" \
      "extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  fi
) >"$RUN/pki.log" 2>&1
TOKEN=$(openssl rand -hex 24)
echo "$TOKEN,admin,admin-uid,\"system:masters\"" >"$P/tokens.csv"
chmod 600 "$P"/*.key "$P/tokens.csv"

# ------------------------------------------------------------------ etcd --
T_ETCD=$(now)
# etcd reads every ETCD_* environment variable as a flag (ETCD_VERSION is even "special"): drop them
ETCD_ENV_UNSET=(); for v in $(compgen -e | grep '^ETCD_' || true); do ETCD_ENV_UNSET+=(-u "$v"); done
start_detached etcd env "${ETCD_ENV_UNSET[@]}" "$ETCD_BIN" --name test --data-dir "$RUN/etcd-data" \
  --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
  --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
  --initial-cluster "test=http://$HOST:$ETCD_PEER_PORT" --initial-cluster-state new \
  --unsafe-no-fsync --log-level warn

# ------------------------------------------------------------------ kafka config + format (background) --
KC=$RUN/kafka-config
mkdir -p "$KC" "$RUN/kafka-data" "$RUN/kafka-logs"
cat >"$KC/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN/kafka-data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
num.network.threads=2
num.io.threads=4
EOF
cat >"$KC/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
# cluster id: 16 random bytes, base64url without padding (what StorageTool random-uuid prints); like
# Kafka's own Uuid.randomUuid, never one that starts with "-", which the tool would read as an option
CLUSTER_ID=-
while [ "${CLUSTER_ID#-}" != "$CLUSTER_ID" ]; do
  CLUSTER_ID=$(openssl rand 16 | base64 | tr '+/' '-_' | tr -d '=\n')
done
KAFKA_CP="$KAFKA_LIBS/*"
T_FORMAT=$(now)
"$JAVA_BIN" -cp "$KAFKA_CP" -Dlog4j2.configurationFile="$KC/log4j2.properties" \
  kafka.tools.StorageTool format --standalone -t "$CLUSTER_ID" -c "$KC/server.properties" \
  >"$RUN/kafka-format.log" 2>&1 &
FORMAT_PID=$!

# ------------------------------------------------------------------ wait etcd, start apiserver --
deadline=$(( $(date +%s) + ETCD_READY_TIMEOUT ))
until curl -fsS --max-time 2 "http://$HOST:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
  alive etcd || { echo "up.sh: etcd exited" >&2; exit 1; }
  [ "$(date +%s)" -lt "$deadline" ] || { echo "up.sh: etcd not healthy after ${ETCD_READY_TIMEOUT}s" >&2; exit 1; }
  sleep 0.1
done
S_ETCD=$(since "$T_ETCD"); say "etcd ready in $S_ETCD s (pid $(cat "$RUN/etcd.pid"), http://$HOST:$ETCD_PORT)"

if [ "$UP_PROFILE" = node ]; then
  # The audit log: every request of a ServiceAccount outside kube-system (the executor installed in
  # the cluster, test pods), metadata only (user, verb, resource, response code). The tests fail on
  # a 403 in it and read which verbs and resources the executor used.
  cat >"$P/audit-policy.yaml" <<'EOF_AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF_AUDIT
  PROFILE_ARGS=(
    --audit-policy-file="$P/audit-policy.yaml" --audit-log-path="$RUN/audit.log" --audit-log-format=json
    --authorization-mode=Node,RBAC
    --enable-admission-plugins=NodeRestriction
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$P/ca.crt"
    --kubelet-preferred-address-types=InternalIP
  )
else
  # no controller manager: no service account tokens, no garbage collector
  PROFILE_ARGS=(--authorization-mode=RBAC --disable-admission-plugins=ServiceAccount --enable-garbage-collector=false)
fi
T_KUBE=$(now)
start_detached kube-apiserver "$KUBE_APISERVER_BIN" \
  --etcd-servers="http://$HOST:$ETCD_PORT" \
  --bind-address=$HOST --advertise-address=$HOST --secure-port="$KUBE_APISERVER_PORT" \
  --cert-dir="$P" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" \
  "${PROFILE_ARGS[@]}" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.key" --service-account-signing-key-file="$P/sa.key" \
  --allow-privileged=true \
  --endpoint-reconciler-type=none \
  --v=1

# ------------------------------------------------------------------ start kafka after format --
if ! wait "$FORMAT_PID"; then echo "up.sh: kafka storage format failed (see kafka-format.log)" >&2; cat "$RUN/kafka-format.log" >&2; exit 1; fi
S_FORMAT=$(since "$T_FORMAT"); say "kafka storage formatted in $S_FORMAT s (cluster id $CLUSTER_ID)"
T_KAFKA=$(now)
# shellcheck disable=SC2086
start_detached kafka "$JAVA_BIN" $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS \
  -Dkafka.logs.dir="$RUN/kafka-logs" -Dlog4j2.configurationFile="$KC/log4j2.properties" \
  -cp "$KAFKA_CP" kafka.Kafka "$KC/server.properties"

# ------------------------------------------------------------------ wait for apiserver + kafka --
CURL_K=(curl -sS --max-time 3 --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN")
KURL=https://$HOST:$KUBE_APISERVER_PORT
kube_deadline=$(( $(date +%s) + KUBE_READY_TIMEOUT ))
kafka_deadline=$(( $(date +%s) + KAFKA_READY_TIMEOUT ))
S_KUBE="" S_KAFKA=""
while [ -z "$S_KUBE" ] || [ -z "$S_KAFKA" ]; do
  alive etcd || { echo "up.sh: etcd exited" >&2; exit 1; }
  if [ -z "$S_KUBE" ]; then
    alive kube-apiserver || { echo "up.sh: kube-apiserver exited" >&2; exit 1; }
    if [ "$("${CURL_K[@]}" "$KURL/readyz" 2>/dev/null || true)" = ok ] &&
       [ "$("${CURL_K[@]}" -o /dev/null -w '%{http_code}' "$KURL/api/v1/namespaces/default" 2>/dev/null || true)" = 200 ]; then
      S_KUBE=$(since "$T_KUBE"); say "kube-apiserver ready in $S_KUBE s (pid $(cat "$RUN/kube-apiserver.pid"), $KURL)"
    elif [ "$(date +%s)" -ge "$kube_deadline" ]; then
      echo "up.sh: kube-apiserver not ready after ${KUBE_READY_TIMEOUT}s" >&2; exit 1
    fi
  fi
  if [ -z "$S_KAFKA" ]; then
    alive kafka || { echo "up.sh: kafka exited" >&2; exit 1; }
    if port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$RUN/kafka.log"; then
      S_KAFKA=$(since "$T_KAFKA"); say "kafka ready in $S_KAFKA s (pid $(cat "$RUN/kafka.pid"), $HOST:$KAFKA_PORT)"
    elif [ "$(date +%s)" -ge "$kafka_deadline" ]; then
      echo "up.sh: kafka not ready after ${KAFKA_READY_TIMEOUT}s" >&2; exit 1
    fi
  fi
  sleep 0.2
done

# ------------------------------------------------------------------ kubeconfig + state.json --
cat >"$RUN/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: "$KURL"
    certificate-authority: "$P/ca.crt"
users:
- name: admin
  user:
    token: "$TOKEN"
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
EOF
chmod 600 "$RUN/kubeconfig.tmp"; mv "$RUN/kubeconfig.tmp" "$RUN/kubeconfig"

cat >"$RUN/state.json.tmp" <<EOF
{
  "runDir": "$RUN",
  "pids": { "etcd": $(cat "$RUN/etcd.pid"), "kubeApiserver": $(cat "$RUN/kube-apiserver.pid"), "kafka": $(cat "$RUN/kafka.pid") },
  "ports": { "etcd": $ETCD_PORT, "etcdPeer": $ETCD_PEER_PORT, "kubeApiserver": $KUBE_APISERVER_PORT, "kafka": $KAFKA_PORT, "kafkaController": $KAFKA_CONTROLLER_PORT },
  "kubeconfig": "$RUN/kubeconfig",
  "kubeApiserverUrl": "$KURL",
  "caFile": "$P/ca.crt",
  "token": "$TOKEN",
  "etcdUrl": "http://$HOST:$ETCD_PORT",
  "kafkaBrokers": "$HOST:$KAFKA_PORT",
  "kafkaClusterId": "$CLUSTER_ID",
  "versions": { "kafka": "${KAFKA_VERSION:-}", "etcd": "${ETCD_VERSION:-}", "kubeApiserver": "${KUBE_VERSION:-}" },
  "startupSeconds": { "etcd": $S_ETCD, "kafkaFormat": $S_FORMAT, "kubeApiserver": $S_KUBE, "kafka": $S_KAFKA, "total": $(since "$T0") }
}
EOF
chmod 600 "$RUN/state.json.tmp"; mv "$RUN/state.json.tmp" "$RUN/state.json"

UP_OK=1
say "all ready in $(since "$T0") s; state: $RUN/state.json"
