#!/usr/bin/env bash
# smoke.sh RUN_DIR - check the servers started by up.sh (reads RUN_DIR/state.json):
#   kube-apiserver: /readyz, create a namespace, a batch/v1 Job, a Pod, merge-PATCH the pod's
#   /status to phase Running, delete the Job with propagationPolicy=Background (and a second one
#   with no policy: must be gone too, as --enable-garbage-collector=false adds no finalizers);
#   kafka: produce and consume one message with the Java console tools (kafka-tools jar).
# Prints "N passed, N failed" and exits non-zero if anything failed.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 RUN_DIR" >&2; exit 2; }
RUN=$(cd "$1" && pwd)
CACHE=${INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-executor-infra}
[ -n "${KAFKA_LIBS:-}" ] && [ -n "${JAVA_BIN:-}" ] || . "$CACHE/env.sh"

st() { node -e 'const s=require(process.argv[1]); console.log(process.argv[2].split(".").reduce((o,k)=>o[k],s))' "$RUN/state.json" "$1"; }
URL=$(st kubeApiserverUrl); TOKEN=$(st token); CA=$(st caFile); BROKERS=$(st kafkaBrokers)
K=(curl -sS --max-time 10 --cacert "$CA" -H "Authorization: Bearer $TOKEN")
pass=0 fail=0
check() { # name expected actual
  if [ "$2" = "$3" ]; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1: expected '$2', got '$3'"; fi
}
code() { # method path [body] [content-type] -> http code, body in $RESP
  local m=$1 p=$2 body=${3:-} ct=${4:-application/json}
  if [ -n "$body" ]; then
    "${K[@]}" -X "$m" -H "Content-Type: $ct" -d "$body" -o /tmp/smoke.$$ -w '%{http_code}' "$URL$p"
  else
    "${K[@]}" -X "$m" -o /tmp/smoke.$$ -w '%{http_code}' "$URL$p"
  fi
}
trap 'rm -f /tmp/smoke.$$' EXIT
field() { node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(process.argv[2].split(".").reduce((x,k)=>x==null?x:x[k],o))' /tmp/smoke.$$ "$1"; }

NS=smoke-$(date +%s)-$$
check "readyz" ok "$("${K[@]}" "$URL/readyz")"
check "create namespace $NS" 201 "$(code POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}")"
JOB='{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"NAME"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox","command":["true"]}]}}}}'
check "create job j1" 201 "$(code POST "/apis/batch/v1/namespaces/$NS/jobs" "${JOB/NAME/j1}")"
check "create job j2" 201 "$(code POST "/apis/batch/v1/namespaces/$NS/jobs" "${JOB/NAME/j2}")"
check "create pod p1" 201 "$(code POST "/api/v1/namespaces/$NS/pods" '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"smoke"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}')"
check "pod p1 starts Pending" Pending "$(field status.phase)"
check "patch pod p1 /status" 200 "$(code PATCH "/api/v1/namespaces/$NS/pods/p1/status" '{"status":{"phase":"Running"}}' application/merge-patch+json)"
check "pod p1 phase after patch" Running "$(field status.phase)"
code GET "/api/v1/namespaces/$NS/pods/p1" >/dev/null
check "pod p1 phase on GET" Running "$(field status.phase)"
check "delete job j1 (Background)" 200 "$(code DELETE "/apis/batch/v1/namespaces/$NS/jobs/j1" '{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}')"
check "job j1 gone" 404 "$(code GET "/apis/batch/v1/namespaces/$NS/jobs/j1")"
check "delete job j2 (no policy)" 200 "$(code DELETE "/apis/batch/v1/namespaces/$NS/jobs/j2")"
check "job j2 gone" 404 "$(code GET "/apis/batch/v1/namespaces/$NS/jobs/j2")"
check "delete pod p1" 200 "$(code DELETE "/api/v1/namespaces/$NS/pods/p1")"
check "pod p1 gone" 404 "$(code GET "/api/v1/namespaces/$NS/pods/p1")"

# ---- kafka: one message through the console tools
TOPIC=smoke-$$-$(date +%s)
L4J=$RUN/tools-log4j2.properties
printf 'status = warn\nappender.e.type = Console\nappender.e.name = E\nappender.e.target = SYSTEM_ERR\nappender.e.layout.type = PatternLayout\nappender.e.layout.pattern = %%p %%m%%n\nrootLogger.level = WARN\nrootLogger.appenderRef.e.ref = E\n' >"$L4J"
J=("$JAVA_BIN" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.configurationFile="$L4J" -cp "$KAFKA_LIBS/*")
t=$(date +%s.%N)
MSG="hello-$$"
echo "$MSG" | "${J[@]}" org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BROKERS" --topic "$TOPIC" \
  --producer-property acks=all 2>"$RUN/smoke-producer.log" || true
GOT=$("${J[@]}" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BROKERS" --topic "$TOPIC" \
  --from-beginning --max-messages 1 --timeout-ms 60000 --group "smoke-$$" 2>"$RUN/smoke-consumer.log" || true)
check "kafka produce+consume ($(awk -v s="$t" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}') s)" "$MSG" "$GOT"

echo "smoke: $pass passed, $fail failed"
[ "$fail" = 0 ]
