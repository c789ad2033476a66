#!/usr/bin/env bash
# prepare.sh - fetch/build the binaries the integration tests need (idempotent).
#
#   Kafka 4.x jars      (Maven, test/infra/kafka/pom.xml)  -> $CACHE/kafka-<v>/libs
#   etcd 3.6.x          (Go module proxy, wrapper module)  -> $CACHE/bin/etcd-v<v>
#   kube-apiserver 1.x  (Go module proxy, wrapper module)  -> $CACHE/bin/kube-apiserver-v<v>
#   $CACHE/env.sh       (KAFKA_LIBS, ETCD_BIN, KUBE_APISERVER_BIN, JAVA_BIN, ... ; source it)
#
# CACHE = ${XDG_CACHE_HOME:-$HOME/.cache}/agent-executor-infra (override: INFRA_CACHE).
# Each artifact is keyed by version and written atomically (.tmp + mv), so a warm run is ~0 s.
# Versions: KAFKA_VERSION / ETCD_VERSION / KUBE_VERSION pick the preferred one; if it cannot be
# fetched or built, the *_FALLBACK_VERSIONS are tried in order (set them to "" to disable).
# A cached version earlier in that order wins. A version that failed is marked in $CACHE/failed/ and
# skipped on later runs (INFRA_RETRY_FAILED=1 retries); details in $CACHE/failures.log.
# Build logs (with /usr/bin/time -v peak RSS): $CACHE/logs/.
# Knobs: GO_BUILD_JOBS (go build -p, default 2), NICE_LEVEL (default 10).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-executor-infra}
LOGS=$CACHE/logs
mkdir -p "$CACHE/bin" "$CACHE/build" "$LOGS"

dedupe() { local out="" x; for x in "$@"; do case " $out " in *" $x "*) ;; *) out="$out $x" ;; esac; done; echo $out; }
KAFKA_VERSIONS=$(dedupe ${KAFKA_VERSION:-4.1.1} ${KAFKA_FALLBACK_VERSIONS-4.1.2 4.2.1 4.0.2})
ETCD_VERSIONS=$(dedupe ${ETCD_VERSION:-3.6.16} ${ETCD_FALLBACK_VERSIONS-3.6.15 3.6.14 3.6.13})
KUBE_VERSIONS=$(dedupe ${KUBE_VERSION:-1.34.4} ${KUBE_FALLBACK_VERSIONS-1.34.3 1.34.2 1.35.4 1.36.3 1.37.2})

if [ -z "${JAVA_BIN:-}" ]; then
  if [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]; then JAVA_BIN=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
  elif [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then JAVA_BIN=$JAVA_HOME/bin/java
  else JAVA_BIN=$(command -v java || true); fi
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
GO_BUILD_JOBS=${GO_BUILD_JOBS:-2}
NICE=(nice -n "${NICE_LEVEL:-10}")
TIMEV=(); [ -x /usr/bin/time ] && TIMEV=(/usr/bin/time -v)   # peak RSS etc. into the build log

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
say() { echo "[prepare $(date +%H:%M:%S)] $*"; }
record_failure() { # what version logfile
  local tail_txt; tail_txt=$(tail -n 25 "$3" 2>/dev/null || true)
  { echo "=== $(date -u +%FT%TZ) $1 $2 FAILED (log: $3)"; echo "$tail_txt"; } >>"$CACHE/failures.log"
  say "FAILED: $1 $2 (log: $3); last lines:"; echo "$tail_txt" | sed 's/^/    /'
}


# ---------------------------------------------------------------- Kafka (Maven) --
kafka_ok() { [ -f "$CACHE/kafka-$1/libs/.complete" ]; }
log4j_for() { # log4j version Kafka itself ships with
  if [ -n "${LOG4J_VERSION:-}" ]; then echo "$LOG4J_VERSION"; return; fi
  case $1 in 4.0.*|4.1.*) echo 2.24.3 ;; *) echo 2.25.3 ;; esac
}
build_kafka() { # version; output -> caller's log
  local v=$1 d=$CACHE/kafka-$1 tmp
  tmp=$d/libs.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  mvn -B -ntp -Dstyle.color=never -f "$HERE/kafka/pom.xml" -Dkafka.version="$v" -Dlog4j.version="$(log4j_for "$v")" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp"
  [ -f "$tmp/kafka_2.13-$v.jar" ] || { echo "kafka_2.13-$v.jar missing after copy-dependencies"; return 1; }
  ls "$tmp" | grep -q '^log4j-slf4j-impl-' || { echo "no SLF4J binding in $tmp"; return 1; }
  [ "$(ls "$tmp" | grep -c '^slf4j-api-')" = 1 ] || { echo "expected exactly one slf4j-api in $tmp"; return 1; }
  touch "$tmp/.complete"
  rm -rf "$d/libs"; mv "$tmp" "$d/libs"
}

# ---------------------------------------------------------------- etcd (Go) --
build_etcd() { # version
  local v=$1 bin=$CACHE/bin/etcd-v$1 w=$CACHE/build/etcd-v$1
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init local.invalid/etcd-build
  go get "go.etcd.io/etcd/server/v3@v$v"
  "${TIMEV[@]}" "${NICE[@]}" go build -p "$GO_BUILD_JOBS" -trimpath -ldflags "-s -w" \
    -o "$bin.tmp" go.etcd.io/etcd/server/v3
  "$bin.tmp" --version
  mv "$bin.tmp" "$bin"
}

# ---------------------------------------------------------------- kube-apiserver (Go) --
build_kube() { # version
  local v=$1 sv minor bin=$CACHE/bin/kube-apiserver-v$1 w=$CACHE/build/kube-apiserver-v$1 kmod m
  sv="0.${v#1.}"; minor=$(echo "$v" | cut -d. -f2)
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init local.invalid/kube-apiserver-build
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...;
  # a consumer must replace each with the published v0.X.Y (kubernetes/kubernetes#79384).
  local dl; dl=$(go mod download -json "k8s.io/kubernetes@v$v" 2>&1 || true)
  kmod=$(echo "$dl" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$kmod" ] && [ -f "$kmod" ] || { echo "cannot download k8s.io/kubernetes@v$v:"; echo "$dl"; return 1; }
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$kmod"); do
    go mod edit -replace="$m=$m@v$sv"
  done
  echo "replaced $(grep -c '=> k8s.io/' go.mod) staging modules with v$sv"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$v"
  local t; t=$(now)
  "${TIMEV[@]}" "${NICE[@]}" go build -p "$GO_BUILD_JOBS" -trimpath -o "$bin.tmp" -ldflags "-s -w \
     -X k8s.io/component-base/version.gitVersion=v$v \
     -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
     -X k8s.io/component-base/version.gitTreeState=clean" \
     k8s.io/kubernetes/cmd/kube-apiserver
  echo "compile+link: $(since "$t") s"
  "$bin.tmp" --version
  mv "$bin.tmp" "$bin"
}

# ---------------------------------------------------------------- version selection --
is_cached() { # kind version
  case $1 in
    kafka) kafka_ok "$2" ;;
    etcd) [ -x "$CACHE/bin/etcd-v$2" ] ;;
    kube-apiserver) [ -x "$CACHE/bin/kube-apiserver-v$2" ] ;;
  esac
}
failed_before() { [ -z "${INFRA_RETRY_FAILED:-}" ] && [ -f "$CACHE/failed/$1-$2" ]; }
# provide KIND VERSION...: first version in order that is cached, or that builds now; versions that
# failed before are skipped (INFRA_RETRY_FAILED=1 retries them). Sets PROVIDED.
# Each build runs as a fresh `bash prepare.sh __step KIND VERSION` so that errexit really applies.
provide() {
  local kind=$1 v t; shift
  PROVIDED=""
  for v in "$@"; do
    if is_cached "$kind" "$v"; then PROVIDED=$v; say "$kind $v: cached (0.0 s)"; return 0; fi
    if failed_before "$kind" "$v"; then
      say "$kind $v: skipped, failed before (see $CACHE/failures.log; INFRA_RETRY_FAILED=1 retries)"; continue
    fi
    t=$(now); say "$kind $v: building (log: $LOGS/$kind-$v.log)"
    bash "$HERE/prepare.sh" __step "$kind" "$v" >"$LOGS/$kind-$v.log" 2>&1 &
    BUILD_PID=$!
    if wait "$BUILD_PID"; then
      BUILD_PID=""; PROVIDED=$v
      say "$kind $v: done in $(since "$t") s$(grep -m1 '^compile+link' "$LOGS/$kind-$v.log" | sed 's/^/ (/; s/$/)/')"
      return 0
    fi
    BUILD_PID=""
    mkdir -p "$CACHE/failed"; touch "$CACHE/failed/$kind-$v"
    record_failure "$kind" "$v" "$LOGS/$kind-$v.log"
  done
  say "$kind: no version could be provided (tried: $*)"
  return 1
}
first_cached() { # kind version...: the version provide would pick without building, if any
  local kind=$1 v; shift
  for v in "$@"; do
    if is_cached "$kind" "$v"; then echo "$v"; return 0; fi
    failed_before "$kind" "$v" || return 0
  done
}

if [ "${1:-}" = __step ]; then # internal: build one artifact (see provide)
  case $2 in kafka) build_kafka "$3" ;; etcd) build_etcd "$3" ;; kube-apiserver) build_kube "$3" ;; esac
  exit 0
fi

# ================================================================= main ==
# Only one prepare at a time per cache (the Go and Maven caches are safe, our .tmp names are not).
exec 9>"$CACHE/.prepare.lock"
flock 9

T_ALL=$(now)
command -v go >/dev/null || { echo "prepare.sh: go not found" >&2; exit 1; }
command -v mvn >/dev/null || { echo "prepare.sh: mvn not found" >&2; exit 1; }
[ -n "$JAVA_BIN" ] && [ -x "$JAVA_BIN" ] || { echo "prepare.sh: java not found" >&2; exit 1; }

BUILD_PID="" KAFKA_PID="" KAFKA_SEL="" ETCD_SEL="" KUBE_SEL=""
kill_tree() { # pid: the process and its descendants, by pid only
  local p c; p=$1
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill_tree "$c"; done
  kill "$p" 2>/dev/null || true
}
cleanup() { # on any exit: stop background steps still running
  local p
  for p in $KAFKA_PID $BUILD_PID; do kill -0 "$p" 2>/dev/null && kill_tree "$p"; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Kafka jars (network-bound): in the background, in parallel with the Go builds.
KAFKA_SEL=$(first_cached kafka $KAFKA_VERSIONS)
if [ -n "$KAFKA_SEL" ]; then
  say "kafka $KAFKA_SEL: cached (0.0 s)"
else
  rm -f "$LOGS/kafka.selected"
  ( provide kafka $KAFKA_VERSIONS; echo "$PROVIDED" >"$LOGS/kafka.selected" ) &
  KAFKA_PID=$!
fi

provide etcd $ETCD_VERSIONS; ETCD_SEL=$PROVIDED
provide kube-apiserver $KUBE_VERSIONS; KUBE_SEL=$PROVIDED

if [ -n "$KAFKA_PID" ]; then
  t=$(now)
  wait "$KAFKA_PID" || { KAFKA_PID=""; exit 1; }
  KAFKA_PID=""
  KAFKA_SEL=$(cat "$LOGS/kafka.selected")
  say "kafka: waited $(since "$t") s for the background fetch"
fi

# ---------------------------------------------------------------- env.sh --
KAFKA_LIBS=$CACHE/kafka-$KAFKA_SEL/libs
ETCD_BIN=$CACHE/bin/etcd-v$ETCD_SEL
KUBE_APISERVER_BIN=$CACHE/bin/kube-apiserver-v$KUBE_SEL
cat >"$CACHE/env.sh.tmp" <<EOF
# written by test/infra/prepare.sh on $(date -u +%FT%TZ); source it
export INFRA_CACHE='$CACHE'
export KAFKA_VERSION='$KAFKA_SEL'
export KAFKA_LIBS='$KAFKA_LIBS'
export ETCD_VERSION='$ETCD_SEL'
export ETCD_BIN='$ETCD_BIN'
export KUBE_VERSION='$KUBE_SEL'
export KUBE_APISERVER_BIN='$KUBE_APISERVER_BIN'
export JAVA_BIN='$JAVA_BIN'
EOF
mv "$CACHE/env.sh.tmp" "$CACHE/env.sh"

say "done in $(since "$T_ALL") s"
echo "KAFKA_LIBS=$KAFKA_LIBS"
echo "ETCD_BIN=$ETCD_BIN"
echo "KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN"
echo "JAVA_BIN=$JAVA_BIN"
echo "ENV_FILE=$CACHE/env.sh"
