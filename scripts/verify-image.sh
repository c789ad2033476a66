#!/usr/bin/env bash
# verify-image.sh [OCI_REF] - proves the image works, without a container runtime (needs root).
#
# Unpacks the image (default: the last one scripts/build-image.sh built) with umoci and starts its
# entrypoint as a container would: PID 1 of its own PID namespace, the root filesystem mounted
# read-only, nothing writable (no /tmp), as the image's user, with only the image's env. Checks:
#   config    user 10001, entrypoint node on the bundle, CMD run, labels = BUILD_* env
#   --help    exit 0 and the usage
#   simulate  an example gives the same JSON Lines as the bundle on this machine; no args: the tour
#   run       without its env: exit 2 naming the missing variables
#   run       with the env of deploy/deployment.yaml against the test stack, in-cluster config from a
#             mounted ServiceAccount directory: /readiness 200, then SIGTERM to PID 1: exit 0
# The last check uses INFRA_RUN_DIR (a stack of test/infra/up.sh), else starts one on free ports and
# stops it by its pids; VERIFY_RUN=0 skips it. VERIFY_CTR=1 also imports the docker-archive into a
# private containerd (needs containerd and runc) and runs --help there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${IMAGE_OUT:-$ROOT/.build/image}
REF=${1:-$(sed -n 's/^OCI=//p' "$OUT/image.env" 2>/dev/null)}
[ -n "$REF" ] || { echo "verify-image.sh: no image: give OCI_REF or run scripts/build-image.sh" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "verify-image.sh: needs root (mount and PID namespaces, chroot)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/verify-image.XXXXXX)
RUN_PID=
OWN_STACK=
cleanup() {
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then kill -KILL "$RUN_PID" 2>/dev/null || true; fi
  if [ -n "$OWN_STACK" ]; then bash "$ROOT/test/infra/down.sh" "$OWN_STACK" >/dev/null 2>&1 || true; rm -rf "$OWN_STACK"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

failures=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

umoci unpack --image "$REF" "$WORK/bundle" >/dev/null
R=$WORK/bundle/rootfs
# mount points, as a runtime creates them before it makes the root read-only
mkdir -p "$R/proc" "$R/dev" "$R/var/run/secrets/kubernetes.io/serviceaccount"

skopeo --insecure-policy inspect --config "oci:$REF" >"$WORK/config.json"
cfg() { node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).config;const v=eval(process.argv[2]);console.log(Array.isArray(v)?v.join("\n"):v)' "$WORK/config.json" "$1"; }
USER_SPEC=$(cfg 'c.User')
IMG_UID=${USER_SPEC%%:*}
IMG_GID=${USER_SPEC#*:}
IMG_CWD=$(cfg 'c.WorkingDir')
mapfile -t ENTRY < <(cfg 'c.Entrypoint')
mapfile -t CMD < <(cfg 'c.Cmd')
cfg 'c.Env' >"$WORK/image.env"
label() { cfg "c.Labels[\"org.opencontainers.image.$1\"]"; }
envvar() { sed -n "s/^$1=//p" "$WORK/image.env"; }

echo "image $REF: user $USER_SPEC, workdir $IMG_CWD, entrypoint ${ENTRY[*]}, cmd ${CMD[*]}"
check "config: a non-root user (10001:10001)" test "$USER_SPEC" = 10001:10001
check "config: entrypoint is node on the bundle, CMD run" \
  test "${ENTRY[*]} | ${CMD[*]}" = "/usr/local/bin/node /app/apps/executor/dist/main.mjs | run"
check "config: labels version/revision/created = BUILD_GIT_VERSION/BUILD_GIT_COMMIT/BUILD_DATE" \
  test "$(label version) $(label revision) $(label created)" = "$(envvar BUILD_GIT_VERSION) $(envvar BUILD_GIT_COMMIT) $(envvar BUILD_DATE)"
check "config: a source label" test -n "$(cfg 'Object.keys(c.Labels).includes("org.opencontainers.image.source")')"

# in_image NAME [VAR=VALUE...] -- ARGS...: the entrypoint with ARGS, output in $WORK/NAME.{out,err}
in_image() {
  local name=$1
  shift
  cp "$WORK/image.env" "$WORK/$name.env"
  while [ "$1" != "--" ]; do echo "$1" >>"$WORK/$name.env"; shift; done
  shift
  unshare --mount --pid --fork --propagation private -- \
    bash "$HERE/image/enter.sh" "$R" "$IMG_CWD" "$IMG_UID" "$IMG_GID" "$WORK/$name.env" "${ENTRY[@]}" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.err"
}

rc=0; in_image help -- --help || rc=$?
check "--help: exit 0, the usage (read-only root, nothing writable)" \
  test "$rc $(head -c 6 "$WORK/help.out")" = "0 usage:"

rc=0; in_image simulate -- simulate /app/examples/succeed.yaml --output jsonl || rc=$?
node "$ROOT/apps/executor/dist/main.mjs" simulate "$ROOT/examples/succeed.yaml" --output jsonl >"$WORK/simulate.host"
check "simulate examples/succeed.yaml: exit 0, the same JSON Lines as on this machine" \
  test "$rc $(sha256sum <"$WORK/simulate.out")" = "0 $(sha256sum <"$WORK/simulate.host")"

rc=0; in_image tour -- || rc=$?
check "no command: the tour from /app/examples, exit 0" grep -q "^task .*status" "$WORK/tour.out"
[ "$rc" = 0 ] || bad "the tour exited $rc: $(tail -n 3 "$WORK/tour.err")"

rc=0; in_image noenv -- "${CMD[@]}" || rc=$?
check "run without its env: exit 2 naming the missing variables" \
  test "$rc $(tr '\n' ' ' <"$WORK/noenv.err")" = "2 invalid configuration:   LISTEN: required   KAFKA_BROKERS: required   BRANCH: required   NAMESPACE: required "

if [ "${VERIFY_RUN:-1}" = 0 ]; then
  echo "skip  run against the test stack (VERIFY_RUN=0)"
else
  stack=${INFRA_RUN_DIR:-}
  if [ -z "$stack" ]; then
    stack=$(mktemp -d /tmp/verify-image-stack.XXXXXX)
    OWN_STACK=$stack
    ports=$(node -e 'const n=require("net");Promise.all([0,1,2,3,4].map(()=>new Promise(r=>{const s=n.createServer();s.listen(0,"127.0.0.1",()=>{const p=s.address().port;s.close(()=>r(p))})}))).then(p=>console.log(p.join(" ")))')
    read -r p1 p2 p3 p4 p5 <<<"$ports"
    echo "      starting the test stack in $stack"
    ETCD_PORT=$p1 ETCD_PEER_PORT=$p2 KUBE_APISERVER_PORT=$p3 KAFKA_PORT=$p4 KAFKA_CONTROLLER_PORT=$p5 \
      bash "$ROOT/test/infra/up.sh" "$stack" >"$WORK/up.log" 2>&1 || { tail -n 20 "$WORK/up.log"; exit 1; }
  fi
  state() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"))[process.argv[2]])' "$stack/state.json" "$1"; }
  api=$(state kubeApiserverUrl)
  brokers=$(state kafkaBrokers)
  prefix=verify-image-$$
  node "$ROOT/scripts/create-topics.mjs" "$brokers" "$prefix"
  mkdir -p "$WORK/sa"
  state token | tr -d '\n' >"$WORK/sa/token"
  cp "$(state caFile)" "$WORK/sa/ca.crt"
  printf default >"$WORK/sa/namespace"
  chmod 0755 "$WORK/sa" && chmod 0644 "$WORK/sa"/*
  port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  hostport=${api#https://}

  SA_DIR=$WORK/sa in_image run \
    "KUBERNETES_SERVICE_HOST=${hostport%:*}" "KUBERNETES_SERVICE_PORT=${hostport##*:}" \
    "LISTEN=127.0.0.1:$port" NAMESPACE=default POD_NAME=verify-image "KAFKA_TRANSACTIONAL_ID=$prefix" \
    "KAFKA_GROUP_ID=$prefix" BRANCH=dev "TOPIC_PREFIX=$prefix" "KAFKA_BROKERS=$brokers" APPLY_CRD=true \
    -- "${CMD[@]}" &
  RUN_PID=$!
  ready=
  for _ in $(seq 600); do
    kill -0 "$RUN_PID" 2>/dev/null || break
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readiness")" = 200 ]; then ready=1; break; fi
    sleep 0.1
  done
  # the host pid of node: below this shell's subshell and the outer unshare
  node_pid=$RUN_PID
  while [ -n "$node_pid" ] && [ "$(readlink "/proc/$node_pid/exe" 2>/dev/null)" != "$R/usr/local/bin/node" ]; do
    node_pid=$(awk '{print $1}' "/proc/$node_pid/task/$node_pid/children" 2>/dev/null)
  done
  check "run: /readiness 200 against the real API server and Kafka (in-cluster config)" test -n "$ready"
  if [ -n "$ready" ] && [ -n "$node_pid" ]; then
    check "run: node is PID 1 of its namespace" test "$(awk '/^NSpid:/ {print $NF}' "/proc/$node_pid/status")" = 1
    check "run: the root filesystem is mounted read-only" \
      test "$(awk '$5 == "/" {print $6}' "/proc/$node_pid/mountinfo" | cut -d, -f1)" = ro
    echo "      RSS of run when ready: $(awk '/^VmRSS:/ {printf "%.0f MiB", $2 / 1024}' "/proc/$node_pid/status")"
    started=$(date +%s%N)
    kill -TERM "$node_pid"
    rc=0
    timeout 20 tail --pid="$RUN_PID" -f /dev/null || true
    wait "$RUN_PID" || rc=$?
    RUN_PID=
    check "run: SIGTERM to PID 1 stops it, exit 0 (in $((($(date +%s%N) - started) / 1000000)) ms)" test "$rc" = 0
  fi
  if [ "$failures" -gt 0 ]; then echo "----- run's output"; tail -n 30 "$WORK/run.out" "$WORK/run.err"; fi
fi

# Optional: the docker-archive into a private containerd (own socket and root under $WORK, stopped by
# its pid), and `ctr run --read-only` of --help: what the lead's node will do with the archive.
if [ "${VERIFY_CTR:-0}" = 1 ]; then
  archive=$(sed -n 's/^ARCHIVE=//p' "$OUT/image.env")
  image=$(sed -n 's/^IMAGE=//p' "$OUT/image.env")
  C=$WORK/containerd
  mkdir -p "$C"
  printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/sock"\n[ttrpc]\n  address = "%s/sock.ttrpc"\n' \
    "$C" "$C" "$C" "$C" >"$C/config.toml"
  setsid containerd --config "$C/config.toml" >"$C/log" 2>&1 </dev/null &
  ctrd=$!
  for _ in $(seq 50); do [ -S "$C/sock" ] && break; sleep 0.1; done
  check "ctr -n k8s.io images import $(basename "$archive")" ctr -a "$C/sock" -n k8s.io images import "$archive"
  out=$(ctr -a "$C/sock" -n k8s.io run --rm --read-only "$image" verify-image /usr/local/bin/node /app/apps/executor/dist/main.mjs --help 2>&1) || true
  check "ctr run --read-only: --help" test "$(head -c 6 <<<"$out")" = usage:
  ctr -a "$C/sock" -n k8s.io images rm "$image" >/dev/null 2>&1 || true
  kill "$ctrd"
  timeout 10 tail --pid="$ctrd" -f /dev/null || kill -KILL "$ctrd"
fi

[ "$failures" = 0 ] && echo "image verified: $REF" || { echo "$failures check(s) failed"; exit 1; }
