#!/usr/bin/env bash
# prepare.sh - fetch/build the binaries the integration tests need (idempotent).
#
#   Kafka 4.x jars      (Maven, test/infra/kafka/pom.xml)  -> $CACHE/kafka-<v>/libs
#   etcd 3.6.x          (Go module proxy, wrapper module)  -> $CACHE/bin/etcd-v<v>
#   kube-apiserver 1.x  (Go module proxy, wrapper module)  -> $CACHE/bin/kube-apiserver-v<v>
#   and for the real node of test/infra/node-up.sh (PREPARE_NODE=0 skips these):
#   containerd, runc, CNI plugins, umoci, skopeo, busybox-static (Debian, installed when missing)
#   kubelet, kube-controller-manager, kube-scheduler, kubectl (same version as kube-apiserver, one
#                       go build in one wrapper module)         -> $CACHE/bin/kube-node-v<v>/
#   the pause and agent images (test/infra/images/build.sh, keyed by a hash of its inputs)
#                                                               -> $CACHE/images-<hash>/
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
# kube_module DIR VERSION CMD...: a fresh wrapper module in DIR (cwd afterwards) that requires
# k8s.io/kubernetes at VERSION and the commands k8s.io/kubernetes/cmd/CMD
kube_module() {
  local w=$1 v=$2 sv kmod m c
  shift 2
  sv="0.${v#1.}"
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init "local.invalid/$(basename "$w")-build"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...;
  # a consumer must replace each with the published v0.X.Y (kubernetes/kubernetes#79384).
  local dl; dl=$(go mod download -json "k8s.io/kubernetes@v$v" 2>&1 || true)
  kmod=$(echo "$dl" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$kmod" ] && [ -f "$kmod" ] || { echo "cannot download k8s.io/kubernetes@v$v:"; echo "$dl"; return 1; }
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$kmod"); do
    go mod edit -replace="$m=$m@v$sv"
  done
  echo "replaced $(grep -c '=> k8s.io/' go.mod) staging modules with v$sv"
  for c in "$@"; do go get "k8s.io/kubernetes/cmd/$c@v$v"; done
}
# kube_build VERSION OUT CMD...: go build of k8s.io/kubernetes/cmd/CMD... to OUT (a file for one
# command, a directory ending in / for several), version stamped like an upstream build
kube_build() {
  local v=$1 out=$2 minor c t pkgs=()
  shift 2
  minor=$(echo "$v" | cut -d. -f2)
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  t=$(now)
  "${TIMEV[@]}" "${NICE[@]}" go build -p "$GO_BUILD_JOBS" -trimpath -o "$out" -ldflags "-s -w \
     -X k8s.io/component-base/version.gitVersion=v$v \
     -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
     -X k8s.io/component-base/version.gitTreeState=clean" \
     "${pkgs[@]}"
  echo "compile+link: $(since "$t") s"
}
build_kube() { # version
  local v=$1 bin=$CACHE/bin/kube-apiserver-v$1
  kube_module "$CACHE/build/kube-apiserver-v$v" "$v" kube-apiserver
  kube_build "$v" "$bin.tmp" kube-apiserver
  "$bin.tmp" --version
  mv "$bin.tmp" "$bin"
}

# ---------------------------------------------------------------- node binaries (Go) --
KUBE_NODE_CMDS="kubelet kube-controller-manager kube-scheduler kubectl"
build_kube_node() { # version: one build of all, into a directory renamed when complete
  local v=$1 d=$CACHE/bin/kube-node-v$1 c
  # shellcheck disable=SC2086
  kube_module "$CACHE/build/kube-node-v$v" "$v" $KUBE_NODE_CMDS
  rm -rf "$d.tmp"; mkdir -p "$d.tmp"
  # shellcheck disable=SC2086
  kube_build "$v" "$d.tmp/" $KUBE_NODE_CMDS
  for c in $KUBE_NODE_CMDS; do
    if [ "$c" = kubectl ]; then "$d.tmp/$c" version --client; else "$d.tmp/$c" --version; fi
  done
  rm -rf "$d"; mv "$d.tmp" "$d"
}

# ---------------------------------------------------------------- node packages (Debian) --
# what:package pairs, what being a command or an absolute path
DEB_NEEDS="containerd:containerd ctr:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins
  /usr/lib/cni/host-local:containernetworking-plugins /usr/lib/cni/loopback:containernetworking-plugins
  umoci:umoci skopeo:skopeo /bin/busybox:busybox-static gcc:gcc /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev
  unshare:util-linux nsenter:util-linux ip:iproute2 openssl:openssl"
debs_missing() {
  local need what pkg out=""
  for need in $DEB_NEEDS; do
    what=${need%%:*}; pkg=${need#*:}
    case $what in
      /*) [ -e "$what" ] ;;
      *) command -v "$what" >/dev/null 2>&1 ;;
    esac || out="$out $pkg"
  done
  # the /bin/busybox of the dynamically linked busybox package is no use in an image
  if [ -e /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then out="$out busybox-static"; fi
  # shellcheck disable=SC2086
  dedupe $out
}
ensure_debs() { # install what is missing; apt-get update only then
  local missing t; missing=$(debs_missing)
  if [ -z "$missing" ]; then say "debian packages: all present (0.0 s)"; return 0; fi
  [ "$(id -u)" = 0 ] || { say "debian packages missing ($missing) and not root: install them, or PREPARE_NODE=0"; return 1; }
  t=$(now); say "debian packages: installing $missing (log: $LOGS/apt.log)"
  # shellcheck disable=SC2086
  {
    apt-get -o DPkg::Lock::Timeout=600 update &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing
  } >"$LOGS/apt.log" 2>&1 || { record_failure debian-packages "$missing" "$LOGS/apt.log"; return 1; }
  missing=$(debs_missing)
  [ -z "$missing" ] || { say "debian packages: still missing after install: $missing"; return 1; }
  say "debian packages: installed in $(since "$t") s"
}

# ---------------------------------------------------------------- node images --
images_key() { # what the images are made of: the build files, busybox and gcc
  { cat "$HERE/images/build.sh" "$HERE/images/pause.c" "$HERE/images/agent.sh"
    dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || true
    gcc -dumpfullversion 2>/dev/null || true
  } | sha256sum | cut -c1-12
}
build_images() { # key
  local d=$CACHE/images-$1
  rm -rf "$d.tmp"
  bash "$HERE/images/build.sh" "$d.tmp"
  rm -rf "$d"; mv "$d.tmp" "$d"
}

# ---------------------------------------------------------------- version selection --
is_cached() { # kind version
  case $1 in
    kafka) kafka_ok "$2" ;;
    etcd) [ -x "$CACHE/bin/etcd-v$2" ] ;;
    kube-apiserver) [ -x "$CACHE/bin/kube-apiserver-v$2" ] ;;
    kube-node) [ -d "$CACHE/bin/kube-node-v$2" ] ;;
    images) [ -f "$CACHE/images-$2/images.env" ] ;;
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
  case $2 in
    kafka) build_kafka "$3" ;; etcd) build_etcd "$3" ;; kube-apiserver) build_kube "$3" ;;
    kube-node) build_kube_node "$3" ;; images) build_images "$3" ;;
  esac
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

PREPARE_NODE=${PREPARE_NODE:-1}
BUILD_PID="" KAFKA_PID="" KAFKA_SEL="" ETCD_SEL="" KUBE_SEL="" NODE_PID="" IMAGES_KEY=""
kill_tree() { # pid: the process and its descendants, by pid only
  local p c; p=$1
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill_tree "$c"; done
  kill "$p" 2>/dev/null || true
}
cleanup() { # on any exit: stop background steps still running
  local p
  for p in $KAFKA_PID $NODE_PID $BUILD_PID; do kill -0 "$p" 2>/dev/null && kill_tree "$p"; done
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

# The node's Debian packages (network-bound) and then its images: in the background too.
if [ "$PREPARE_NODE" = 1 ]; then
  ( ensure_debs && provide images "$(images_key)" ) &
  NODE_PID=$!
fi

provide etcd $ETCD_VERSIONS; ETCD_SEL=$PROVIDED
provide kube-apiserver $KUBE_VERSIONS; KUBE_SEL=$PROVIDED
# the node binaries at the API server's version (a kubelet may not be newer than its API server)
if [ "$PREPARE_NODE" = 1 ]; then provide kube-node "$KUBE_SEL"; fi

if [ -n "$NODE_PID" ]; then
  t=$(now)
  wait "$NODE_PID" || { NODE_PID=""; say "the node's packages or images failed"; exit 1; }
  NODE_PID=""
  IMAGES_KEY=$(images_key)
  say "node packages + images: waited $(since "$t") s for the background step"
fi

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
if [ "$PREPARE_NODE" = 1 ]; then
  KUBE_NODE_DIR=$CACHE/bin/kube-node-v$KUBE_SEL
  NODE_IMAGES_DIR=$CACHE/images-$IMAGES_KEY
  cat >>"$CACHE/env.sh.tmp" <<EOF
export KUBE_NODE_DIR='$KUBE_NODE_DIR'
export KUBELET_BIN='$KUBE_NODE_DIR/kubelet'
export KUBE_CONTROLLER_MANAGER_BIN='$KUBE_NODE_DIR/kube-controller-manager'
export KUBE_SCHEDULER_BIN='$KUBE_NODE_DIR/kube-scheduler'
export KUBECTL_BIN='$KUBE_NODE_DIR/kubectl'
export NODE_IMAGES_DIR='$NODE_IMAGES_DIR'
EOF
fi
mv "$CACHE/env.sh.tmp" "$CACHE/env.sh"

say "done in $(since "$T_ALL") s"
echo "KAFKA_LIBS=$KAFKA_LIBS"
echo "ETCD_BIN=$ETCD_BIN"
echo "KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN"
echo "JAVA_BIN=$JAVA_BIN"
if [ "$PREPARE_NODE" = 1 ]; then
  echo "KUBE_NODE_DIR=$KUBE_NODE_DIR"
  echo "KUBECTL_BIN=$KUBE_NODE_DIR/kubectl"
  echo "NODE_IMAGES_DIR=$NODE_IMAGES_DIR"
fi
echo "ENV_FILE=$CACHE/env.sh"
