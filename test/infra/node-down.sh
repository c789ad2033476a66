#!/usr/bin/env bash
# node-down.sh RUN_DIR - stop the node of test/infra/node-up.sh RUN_DIR (idempotent), then check
# that nothing is left: exits 1 (listing what) if a process of the node's mount namespace or pod
# network namespaces, one of its cgroups, one of its mounts or one of its links is still there, or
# if containerd's log shows a pull of an image from anywhere but the node's registry (127.0.0.1:5001)
# or the unreachable one (127.0.0.1:5999).
#
# By pid only, never by name: the recorded pids (each checked to be in the node's mount namespace,
# so a recycled pid is left alone), the processes in the node's cgroups (its containers), and the
# processes of its mount namespace (the containerd shims). Order: controller manager, scheduler and
# registry, kubelet, containers (SIGKILL), containerd, shims; then down.sh (Kafka, kube-apiserver,
# etcd); last the holder of the mount namespace, whose mounts go with it; then the cgroups and links.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 RUN_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -d "$1" ] || { echo "[node-down] $1: no such dir, nothing to stop"; exit 0; }
RUN=$(cd "$1" && pwd)
N=$RUN/node
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
[ -d "$N" ] || { bash "$HERE/down.sh" "$RUN"; exit $?; }

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
say() { echo "[node-down $(date +%H:%M:%S)] $*"; }
T0=$(now)

MNTNS=$(cat "$N/mntns" 2>/dev/null || true)
CGROUP_ROOT=$(cat "$N/cgroup-root" 2>/dev/null || true)
HIERARCHIES=$(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts)

in_mntns() { [ -n "$MNTNS" ] && [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$MNTNS" ]; }
live() { # pid: exists and is not a zombie
  local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}
mntns_pids() { # every process of the node's mount namespace, but the holder
  local d p holder; holder=$(cat "$N/holder.pid" 2>/dev/null || echo 0)
  [ -n "$MNTNS" ] || return 0
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" != "$holder" ] && [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$MNTNS" ] && echo "$p"
  done
}
cgroup_pids() { # every process in the node's cgroups
  local h
  [ -n "$CGROUP_ROOT" ] || return 0
  for h in $HIERARCHIES; do
    [ -d "$h/$CGROUP_ROOT" ] && find "$h/$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}
wait_gone() { # seconds pid...: until none is alive; 1 if some still are
  local limit=$1 t p left; shift
  t=$(now)
  while :; do
    left=""
    for p in "$@"; do live "$p" && left="$left $p"; done
    [ -z "$left" ] && return 0
    awk -v s="$t" -v e="$(date +%s.%N)" -v m="$limit" 'BEGIN { exit !(e - s >= m) }' && return 1
    sleep 0.1
  done
}
stop() { # names...: the recorded pids of N/NAME.pid: SIGTERM, wait, SIGKILL
  local n pid pids=() t
  for n in "$@"; do
    pid=$(cat "$N/$n.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && in_mntns "$pid"; then kill -TERM "$pid" 2>/dev/null && pids+=("$pid"); fi
  done
  t=$(now)
  if [ ${#pids[@]} -gt 0 ] && ! wait_gone "$STOP_TIMEOUT" "${pids[@]}"; then
    say "$* still running after ${STOP_TIMEOUT}s: SIGKILL"
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    wait_gone 5 "${pids[@]}"
  fi
  [ ${#pids[@]} -gt 0 ] && say "$* stopped in $(since "$t") s"
  for n in "$@"; do rm -f "$N/$n.pid"; done
}
kill_all() { # label pid...: SIGKILL, wait
  local label=$1; shift
  [ $# -gt 0 ] || return 0
  kill -KILL "$@" 2>/dev/null
  wait_gone 10 "$@" || say "$label: still alive after SIGKILL: $*"
  say "$label: killed $#"
}

# the pod network namespaces, to check afterwards that nothing is left in them
POD_NETNS=""
if [ -f "$N/holder.pid" ] && live "$(cat "$N/holder.pid")"; then
  POD_NETNS=$(for f in $(find "/proc/$(cat "$N/holder.pid")/root/run/containerd" -path '*/netns*' -type f 2>/dev/null); do
    stat -L -c 'net:[%i]' "$f" 2>/dev/null; done | sort -u)
fi

stop kube-controller-manager kube-scheduler registry
stop kubelet
# shellcheck disable=SC2046
kill_all containers $(cgroup_pids)
stop containerd
# shellcheck disable=SC2046
kill_all "containerd shims" $(mntns_pids)
bash "$HERE/down.sh" "$RUN"
# anything else that was started into the namespace; a process can outlive one SIGKILL round (one
# that was being forked or was in an uninterruptible wait), so look again a few times
for _ in 1 2 3; do
  leftover=$(mntns_pids)
  [ -n "$leftover" ] || break
  # shellcheck disable=SC2086
  ps -o pid=,stat=,args= -p "$(echo $leftover | tr ' ' ',')" 2>/dev/null | sed 's/^/    still there: /' | cut -c1-200
  # shellcheck disable=SC2086
  kill_all "other processes of the mount namespace" $leftover
done
stop holder

# cgroups: deepest first; an empty cgroup is removed with rmdir
if [ -n "$CGROUP_ROOT" ]; then
  for h in $HIERARCHIES; do
    [ -d "$h/$CGROUP_ROOT" ] && find "$h/$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null
  done
fi
# links: the node's veth pair and the pods' bridge (in the namespace node-up.sh ran in)
for l in an0 cni0; do ip link show "$l" >/dev/null 2>&1 && ip link del "$l" 2>/dev/null; done

# ------------------------------------------------------------------ nothing left? --
problems=()
left=$(mntns_pids); h=$(cat "$N/holder.pid" 2>/dev/null || true)
[ -n "$h" ] && live "$h" && in_mntns "$h" && left="$left $h"
# what each left process is, for the post-mortem
describe() { local p; for p in "$@"; do ps -o pid=,ppid=,stat=,etime=,args= -p "$p" 2>/dev/null | sed 's/^/      /'; done; }
[ -z "${left// /}" ] || problems+=("processes in the mount namespace $MNTNS:$left"$'\n'"$(describe $left)")
if [ -n "$POD_NETNS" ]; then
  for d in /proc/[0-9]*; do
    ns=$(readlink "$d/ns/net" 2>/dev/null) || continue
    case " $(echo $POD_NETNS) " in *" $ns "*) problems+=("process ${d#/proc/} in pod network namespace $ns"$'\n'"$(describe "${d#/proc/}")") ;; esac
  done
fi
if [ -n "$CGROUP_ROOT" ]; then
  for h in $HIERARCHIES; do [ -e "$h/$CGROUP_ROOT" ] && problems+=("cgroup $h/$CGROUP_ROOT: $(find "$h/$CGROUP_ROOT" -type d | wc -l) dirs"); done
fi
if grep -qF " $RUN/" /proc/self/mountinfo; then problems+=("mounts under $RUN: $(grep -cF " $RUN/" /proc/self/mountinfo)"); fi
for l in an0 an0-peer cni0; do ip link show "$l" >/dev/null 2>&1 && problems+=("link $l"); done
# containerd logs `PullImage "REF"` for every pull the kubelet asks for
others=$(grep -o 'msg="PullImage \\"[^\\]*' "$N/containerd.log" 2>/dev/null | sed 's/.*\\"//' |
  grep -v -e '^127\.0\.0\.1:5001/' -e '^127\.0\.0\.1:5999/' | sort -u | tr '\n' ' ' || true)
[ -z "$others" ] || problems+=("pulls of images from outside the node's registry (they only reached 127.0.0.1:1, see hosts.toml): $others")

if [ ${#problems[@]} -gt 0 ]; then
  say "LEFT BEHIND after $(since "$T0") s:"
  printf '    %s\n' "${problems[@]}"
  exit 1
fi
rm -f "$N/holder.pid"
say "done in $(since "$T0") s; nothing left (processes, cgroups under $CGROUP_ROOT, mounts, links)"
