#!/usr/bin/env bash
# node-up.sh RUN_DIR - a real single-node Kubernetes for the tests: etcd, kube-apiserver, Kafka
# (up.sh, UP_PROFILE=node), kube-controller-manager, kube-scheduler, containerd, the kubelet, and a
# read-only registry of the node's images (test/support/ociRegistry.ts) on 127.0.0.1:5001.
#
# Runs only inside a network namespace of its own (test/infra/in-netns.sh), which it gives a veth
# pair with the node's private address and a default route to an address that does not exist:
# nothing leaves the namespace. On top, a private mount namespace held by one long-lived process
# (RUN_DIR/node/holder.pid) redirects what the binaries hard-code: a tmpfs on /run, RUN_DIR/node/varlog
# on /var/log, an overlay on /var/lib, a resolv.conf of `nameserver 127.0.0.1`. Every node component
# is started with nsenter into it; when its last process is gone, so are its mounts. Pod cgroups go
# under a cgroup root of this node's own (/sys/fs/cgroup/*/an-<id>, in RUN_DIR/node/cgroup-root).
#
# containerd pulls only from the registry inside the namespace: hosts.toml sends docker.io and
# registry.k8s.io to a dead loopback port; 127.0.0.1:5999 is left unused (an unreachable image).
#
# Needs prepare.sh's artifacts ($CACHE/env.sh). Ports inside the namespace: etcd 2379/2380,
# kube-apiserver 6443, Kafka 9092/9093, registry 5001, kubelet 10250 (node IP) and 10248,
# controller manager 10257, scheduler 10259.
# Writes RUN_DIR/node.json (what the tests need) and RUN_DIR/node.env; stop with node-down.sh RUN_DIR.
# The registry serves RUN_DIR/node/registry-root (the node's images, and any OCI layout a test puts
# there as <name>/); the API server's audit log is RUN_DIR/audit.log (up.sh).
# On failure prints the logs' tails, stops what it started and exits non-zero.
# Env: NODE_NAME (agent-executor-node), NODE_IP (10.77.0.2), POD_SUBNET (10.78.0.0/24),
#      NODE_READY_TIMEOUT (120 s), NODE_VERBOSITY (klog -v of the node components, 1).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 RUN_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$1"
RUN=$(cd "$1" && pwd)
N=$RUN/node
CACHE=${INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-executor-infra}
cd "$REPO"   # node --import tsx resolves tsx from here

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
say() { echo "[node-up $(date +%H:%M:%S)] $*"; }
die() { echo "node-up.sh: $*" >&2; exit 1; }
T0=$(now)

# ------------------------------------------------------------------ inputs --
if [ -z "${KUBELET_BIN:-}" ] || [ -z "${NODE_IMAGES_DIR:-}" ] || [ -z "${ETCD_BIN:-}" ]; then
  [ -f "$CACHE/env.sh" ] || die "$CACHE/env.sh missing: run test/infra/prepare.sh first"
  # shellcheck disable=SC1091
  . "$CACHE/env.sh"
fi
[ -n "${KUBELET_BIN:-}" ] || die "$CACHE/env.sh has no node binaries: run test/infra/prepare.sh (without PREPARE_NODE=0)"
for f in "$ETCD_BIN" "$KUBE_APISERVER_BIN" "$KUBELET_BIN" "$KUBE_CONTROLLER_MANAGER_BIN" "$KUBE_SCHEDULER_BIN" "$JAVA_BIN" \
         /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback; do
  [ -x "$f" ] || die "not executable: $f (run test/infra/prepare.sh)"
done
for c in containerd ctr runc unshare nsenter ip openssl curl; do command -v "$c" >/dev/null || die "$c not found (run test/infra/prepare.sh)"; done
[ -f "$NODE_IMAGES_DIR/images.env" ] || die "no images in $NODE_IMAGES_DIR (run test/infra/prepare.sh)"
# shellcheck disable=SC1091
. "$NODE_IMAGES_DIR/images.env"
[ "$(id -u)" = 0 ] || die "needs root"

NODE_NAME=${NODE_NAME:-agent-executor-node}
NODE_IP=${NODE_IP:-10.77.0.2}
NODE_GATEWAY=${NODE_IP%.*}.1   # nothing has this address: the default route leads nowhere
POD_SUBNET=${POD_SUBNET:-10.78.0.0/24}
NODE_READY_TIMEOUT=${NODE_READY_TIMEOUT:-120}
V=${NODE_VERBOSITY:-1}
LINK=an0
HOST=127.0.0.1
REGISTRY=$HOST:5001
UNREACHABLE_IMAGE=$HOST:5999/x:1
export ETCD_PORT=2379 ETCD_PEER_PORT=2380 KUBE_APISERVER_PORT=6443 KAFKA_PORT=9092 KAFKA_CONTROLLER_PORT=9093
KURL=https://$HOST:$KUBE_APISERVER_PORT

# ------------------------------------------------------------------ isolation guard --
[ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
  die "refusing to run in the machine's network namespace: run it through test/infra/in-netns.sh"
others=$(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -vx lo || true)
[ -z "$others" ] || die "this network namespace already has links other than lo ($(echo $others)): one node per namespace"
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for p in 2379 2380 6443 9092 9093 5001 5999 10248 10257 10259; do ! port_open "$p" || die "port $HOST:$p is in use"; done
if [ -f "$N/holder.pid" ] && kill -0 "$(cat "$N/holder.pid")" 2>/dev/null; then die "a node already runs in $RUN (node-down.sh first)"; fi

UP_OK=0 UP_PID=""
on_exit() {
  local rc=$? l
  [ "$UP_OK" = 1 ] && return 0
  # up.sh first (it stops what it started), so that it starts nothing after node-down.sh
  if [ -n "${UP_PID:-}" ] && kill -0 "$UP_PID" 2>/dev/null; then kill -TERM "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
  echo "node-up.sh: FAILED (rc=$rc); last 40 lines of each log:" >&2
  for l in "$RUN"/*.log "$N"/*.log; do
    [ -f "$l" ] || continue
    echo "----- $l -----" >&2; tail -n 40 "$l" >&2
  done
  bash "$HERE/node-down.sh" "$RUN" >&2 || true
  exit $((rc == 0 ? 1 : rc))
}
trap on_exit EXIT
trap 'exit 130' INT TERM

rm -rf "$N" "$RUN/pki" "$RUN/state.json" "$RUN/node.json" "$RUN/node.env" "$RUN/kubeconfig"
mkdir -p "$N"/{varlog,varlib/upper,varlib/work,containerd,cni,certs.d,kubelet,pod-logs,cni-ipam}
P=$RUN/pki
# a failing or dying run is cleaned up by in-netns.sh
[ -n "${INFRA_NETNS_STATE:-}" ] && echo "$RUN" >>"$INFRA_NETNS_STATE/nodes"

# ------------------------------------------------------------------ network --
ip link add "$LINK" type veth peer name "$LINK-peer"
ip addr add "$NODE_IP/24" dev "$LINK"
ip link set "$LINK" up
ip link set "$LINK-peer" up
ip route add default via "$NODE_GATEWAY" dev "$LINK"

# ------------------------------------------------------------------ cgroups --
CGROUP_ROOT=an-$(openssl rand -hex 4)
echo "$CGROUP_ROOT" >"$N/cgroup-root"
for h in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
  mkdir -p "$h/$CGROUP_ROOT"
  # a new cpuset cgroup has no cpus and no memory nodes: nothing could run in it
  if [ -f "$h/cpuset.cpus" ] && [ -f "$h/$CGROUP_ROOT/cpuset.cpus" ]; then
    cat "$h/cpuset.cpus" >"$h/$CGROUP_ROOT/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h/$CGROUP_ROOT/cpuset.mems"
  fi
done

# ------------------------------------------------------------------ configuration --
echo "nameserver 127.0.0.1" >"$N/resolv.conf"

cat >"$N/containerd.toml" <<EOF
version = 2
root = "$N/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$N/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$N/certs.d"
EOF

# the node's registry over plain HTTP; the well-known registries to a port where nothing listens
hosts_toml() { # host server
  mkdir -p "$N/certs.d/$1"
  printf 'server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n' "$2" "$2" >"$N/certs.d/$1/hosts.toml"
}
hosts_toml "$REGISTRY" "http://$REGISTRY"
hosts_toml "${UNREACHABLE_IMAGE%%/*}" "http://${UNREACHABLE_IMAGE%%/*}"
for r in docker.io registry-1.docker.io registry.k8s.io k8s.gcr.io gcr.io quay.io ghcr.io; do hosts_toml "$r" "http://$HOST:1"; done

cat >"$N/cni/10-agent-executor.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "agent-executor-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$POD_SUBNET" }]], "dataDir": "$N/cni-ipam" }
    }
  ]
}
EOF

kubeconfig() { # file user cert key
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: { server: "$KURL", certificate-authority: "$P/ca.crt" }
users:
- name: $2
  user: { client-certificate: "$3", client-key: "$4" }
contexts:
- name: local
  context: { cluster: local, user: $2 }
current-context: local
EOF
  chmod 600 "$1"
}
kubeconfig "$N/kubelet.kubeconfig" "system:node:$NODE_NAME" "$P/kubelet-client.crt" "$P/kubelet-client.key"
kubeconfig "$N/kube-controller-manager.kubeconfig" system:kube-controller-manager "$P/kube-controller-manager.crt" "$P/kube-controller-manager.key"
kubeconfig "$N/kube-scheduler.kubeconfig" system:kube-scheduler "$P/kube-scheduler.crt" "$P/kube-scheduler.key"

cat >"$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $P/ca.crt }
authorization:
  mode: Webhook
podLogsDir: $N/pod-logs
resolvConf: $N/resolv.conf
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 200Mi
  nodefs.available: 3%
  imagefs.available: 3%
  nodefs.inodesFree: 3%
evictionPressureTransitionPeriod: 30s
makeIPTablesUtilChains: false
localStorageCapacityIsolation: true
EOF

# ------------------------------------------------------------------ processes --
# start_in_ns NAME CMD...: in the node's mount namespace, own session (pid == pgid), stdio to
# N/NAME.log, pid to N/NAME.pid
start_in_ns() {
  local name=$1; shift
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec nsenter --target "$1" --mount --wd="$PWD" -- "${@:2}"' \
    "$N/$name.pid" "$HOLDER" "$@" >"$N/$name.log" 2>&1 </dev/null &
  local i
  for i in $(seq 100); do [ -s "$N/$name.pid" ] && return 0; sleep 0.05; done
  die "$name did not write its pid file"
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# wait_for WHAT TIMEOUT PIDFILE CMD...: until CMD succeeds; fails when PIDFILE's process exits
wait_for() {
  local what=$1 timeout=$2 pidfile=$3 deadline
  shift 3
  deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ -z "$pidfile" ] || alive "$pidfile" || die "$what: the process of $pidfile exited"
    [ "$(date +%s)" -lt "$deadline" ] || die "$what: not ready after ${timeout}s"
    sleep 0.1
  done
}

# the mount namespace and its holder
T_NS=$(now)
setsid unshare --mount --propagation private -- bash -c '
  set -e
  N=$0
  mount --bind "$N/resolv.conf" /etc/resolv.conf
  mount -t tmpfs -o mode=0755,size=256m node-run /run
  mount --bind "$N/varlog" /var/log
  mount -t overlay node-var-lib -o "lowerdir=/var/lib,upperdir=$N/varlib/upper,workdir=$N/varlib/work" /var/lib
  echo $$ >"$N/holder.pid.tmp" && mv "$N/holder.pid.tmp" "$N/holder.pid"
  exec sleep infinity' "$N" >"$N/holder.log" 2>&1 </dev/null &
wait_for "the mount namespace" 10 "" test -s "$N/holder.pid"
HOLDER=$(cat "$N/holder.pid")
MNTNS=$(readlink "/proc/$HOLDER/ns/mnt")
echo "$MNTNS" >"$N/mntns"
say "mount namespace $MNTNS held by pid $HOLDER ($(since "$T_NS") s)"

# etcd, kube-apiserver and Kafka: up.sh, in the background (Kafka is the slowest; the node does not need it)
T_UP=$(now)
UP_PROFILE=node NODE_NAME=$NODE_NAME NODE_IP=$NODE_IP bash "$HERE/up.sh" "$RUN" >"$N/up.log" 2>&1 &
UP_PID=$!

# the registry serves a root of this run's own: the node's images (links into the cache) and
# whatever a test adds (the executor's image, test/support/executorInstall.ts)
mkdir -p "$N/registry-root"
for layout in "$NODE_IMAGES_DIR"/registry/*; do ln -s "$layout" "$N/registry-root/$(basename "$layout")"; done
start_in_ns registry node --import tsx "$REPO/test/support/ociRegistry.ts" --root "$N/registry-root" --listen "$REGISTRY"
T_CTD=$(now)
start_in_ns containerd containerd --config "$N/containerd.toml"
wait_for containerd 30 "$N/containerd.pid" test -S "/proc/$HOLDER/root/run/containerd/containerd.sock"
nsenter --target "$HOLDER" --mount -- ctr --address /run/containerd/containerd.sock -n k8s.io images import \
  "$NODE_IMAGES_DIR/pause.tar" >"$N/import.log" 2>&1 || die "ctr images import failed: $(cat "$N/import.log")"
S_CTD=$(since "$T_CTD"); say "containerd ready, pause image imported in $S_CTD s"

wait_for "the PKI" 60 "" test -s "$P/tokens.csv"
TOKEN=$(cut -d, -f1 "$P/tokens.csv")
CURL_K=(curl -fsS --max-time 3 --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN")
apiserver_ready() { [ "$("${CURL_K[@]}" "$KURL/readyz" 2>/dev/null)" = ok ]; }
until apiserver_ready; do
  kill -0 "$UP_PID" 2>/dev/null || { wait "$UP_PID" || true; die "up.sh exited before kube-apiserver was ready"; }
  [ "$(awk -v s="$T_UP" -v e="$(date +%s.%N)" 'BEGIN { print int(e - s) }')" -lt 120 ] || die "kube-apiserver not ready after 120 s"
  sleep 0.1
done
S_API=$(since "$T_UP"); say "kube-apiserver ready $S_API s after up.sh started"

T_KUBE=$(now)
start_in_ns kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
  --kubeconfig="$N/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$N/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$N/kube-controller-manager.kubeconfig" \
  --controllers='*' --use-service-account-credentials=true \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --leader-elect=false --bind-address=$HOST --secure-port=10257 --v="$V"
start_in_ns kube-scheduler "$KUBE_SCHEDULER_BIN" \
  --kubeconfig="$N/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$N/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$N/kube-scheduler.kubeconfig" \
  --leader-elect=false --bind-address=$HOST --secure-port=10259 --v="$V"
start_in_ns kubelet "$KUBELET_BIN" --config="$N/kubelet.yaml" --kubeconfig="$N/kubelet.kubeconfig" \
  --root-dir="$N/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v="$V"

node_ready() { "${CURL_K[@]}" "$KURL/api/v1/nodes/$NODE_NAME" 2>/dev/null | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'; }
wait_for "node $NODE_NAME Ready" "$NODE_READY_TIMEOUT" "$N/kubelet.pid" node_ready
S_NODE=$(since "$T0"); say "node $NODE_NAME Ready $S_NODE s after node-up.sh started ($(since "$T_KUBE") s after the kubelet)"
healthz() { [ "$(curl -ksS --max-time 2 "https://$HOST:$1/healthz" 2>/dev/null)" = ok ]; }
wait_for kube-controller-manager 60 "$N/kube-controller-manager.pid" healthz 10257
wait_for kube-scheduler 60 "$N/kube-scheduler.pid" healthz 10259
# the service account and root CA controllers work once the default namespace has their objects
wait_for "the default ServiceAccount" 60 "$N/kube-controller-manager.pid" "${CURL_K[@]}" "$KURL/api/v1/namespaces/default/serviceaccounts/default"
wait_for "the kube-root-ca.crt ConfigMap" 60 "$N/kube-controller-manager.pid" "${CURL_K[@]}" "$KURL/api/v1/namespaces/default/configmaps/kube-root-ca.crt"
wait_for "the registry" 30 "$N/registry.pid" curl -fsS --max-time 2 "http://$REGISTRY/v2/"

if ! wait "$UP_PID"; then die "up.sh failed (see $N/up.log)"; fi
S_UP=$(since "$T_UP"); say "up.sh done in $S_UP s: $(grep -o 'kafka ready in [0-9.]* s' "$N/up.log" || true)"

# ------------------------------------------------------------------ node.json --
pid_of() { cat "$N/$1.pid"; }
cat >"$RUN/node.json.tmp" <<EOF
{
  "runDir": "$RUN",
  "kubeconfig": "$RUN/kubeconfig",
  "kubeApiserverUrl": "$KURL",
  "kafkaBrokers": "$HOST:$KAFKA_PORT",
  "registry": "$REGISTRY",
  "registryRoot": "$N/registry-root",
  "auditLog": "$RUN/audit.log",
  "nodeName": "$NODE_NAME",
  "nodeIp": "$NODE_IP",
  "podSubnet": "$POD_SUBNET",
  "images": { "agent": "$AGENT_IMAGE", "pause": "$PAUSE_IMAGE", "unreachable": "$UNREACHABLE_IMAGE" },
  "kubectl": "${KUBECTL_BIN:-}",
  "cgroupRoot": "$CGROUP_ROOT",
  "mountNamespace": "$MNTNS",
  "networkNamespace": "$(readlink /proc/self/ns/net)",
  "pids": {
    "holder": $HOLDER, "registry": $(pid_of registry), "containerd": $(pid_of containerd),
    "kubeControllerManager": $(pid_of kube-controller-manager), "kubeScheduler": $(pid_of kube-scheduler),
    "kubelet": $(pid_of kubelet), "etcd": $(cat "$RUN/etcd.pid"), "kubeApiserver": $(cat "$RUN/kube-apiserver.pid"),
    "kafka": $(cat "$RUN/kafka.pid")
  },
  "logs": { "containerd": "$N/containerd.log", "kubelet": "$N/kubelet.log", "registry": "$N/registry.log" },
  "startupSeconds": { "containerd": $S_CTD, "kubeApiserver": $S_API, "nodeReady": $S_NODE, "upSh": $S_UP, "total": $(since "$T0") }
}
EOF
mv "$RUN/node.json.tmp" "$RUN/node.json"
cat >"$RUN/node.env" <<EOF
export KUBECONFIG='$RUN/kubeconfig'
export KAFKA_BROKERS='$HOST:$KAFKA_PORT'
export NODE_REGISTRY='$REGISTRY'
export AGENT_IMAGE='$AGENT_IMAGE'
export KUBECTL_BIN='${KUBECTL_BIN:-}'
EOF

UP_OK=1
say "node up in $(since "$T0") s: $KURL, kafka $HOST:$KAFKA_PORT, registry $REGISTRY, node $NODE_NAME ($NODE_IP); state: $RUN/node.json"
