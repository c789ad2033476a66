#!/usr/bin/env bash
# in-netns.sh CMD [ARG...] - run CMD inside a network namespace of its own, then make sure that
# nothing it started is left behind.
#
# The namespace holds only `lo` (up) until test/infra/node-up.sh adds the node's veth pair: no
# interface leads out of it, so nothing CMD starts can reach any address but its own. The real node
# (node-up.sh), its Kafka, the registry, and the vitest workers with the executors they start all
# live in it and talk over 127.0.0.1 (and the node's own private address).
#
# After CMD exits: every node CMD registered in $INFRA_NETNS_STATE/nodes and left running is
# stopped with node-down.sh; then any process still in the namespace is listed, stopped (by pid:
# SIGTERM, 10 s, SIGKILL) and the exit status is 1 even if CMD succeeded (IN_NETNS_LEFTOVERS=warn
# only warns). SIGINT/SIGTERM are passed on to CMD.
#
# Needs root (unshare --net). Inside a namespace made by this script it just runs CMD.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ -n "${INFRA_NETNS_STATE:-}" ] && [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ]; then
  exec "$@"
fi
[ "$(id -u)" = 0 ] || { echo "in-netns.sh: needs root (unshare --net)" >&2; exit 1; }

say() { echo "[in-netns $(date +%H:%M:%S)] $*" >&2; }
STATE=$(mktemp -d "${TMPDIR:-/tmp}/agent-executor-netns.XXXXXX")
export INFRA_NETNS_STATE=$STATE

# the child brings lo up, records its pid and namespace, then becomes CMD
unshare --net --fork --kill-child -- bash -c '
  set -e
  ip link set lo up
  readlink /proc/self/ns/net >"$INFRA_NETNS_STATE/netns"
  echo $$ >"$INFRA_NETNS_STATE/pid"
  exec "$@"' in-netns "$@" &
UNSHARE_PID=$!

inner_pid() { cat "$STATE/pid" 2>/dev/null; }
forward() { local p; p=$(inner_pid); [ -n "$p" ] && kill -s "$1" "$p" 2>/dev/null; }
trap 'forward INT' INT
trap 'forward TERM' TERM

rc=0
while :; do
  wait "$UNSHARE_PID"; rc=$?
  # a trapped signal interrupts wait with a status > 128 while CMD still runs
  kill -0 "$UNSHARE_PID" 2>/dev/null || break
done
trap - INT TERM

NETNS=$(cat "$STATE/netns" 2>/dev/null || true)
if [ -z "$NETNS" ]; then
  say "the namespace was not made (exit $rc)"; rm -rf "$STATE"; exit $((rc == 0 ? 1 : rc))
fi

# nodes registered by node-up.sh and still up (a vitest run that died before its teardown)
if [ -f "$STATE/nodes" ]; then
  while read -r node_run; do
    [ -f "$node_run/node/holder.pid" ] || continue
    say "stopping the node of $node_run (still up after the command)"
    bash "$HERE/node-down.sh" "$node_run" >&2 || rc=$((rc == 0 ? 1 : rc))
  done <"$STATE/nodes"
fi

# failures a teardown handed over instead of throwing (test/nodeGlobalSetup.ts)
if [ -s "$STATE/failures" ]; then
  say "a teardown failed:"; sed 's/^/    /' "$STATE/failures" >&2
  rc=$((rc == 0 ? 1 : rc))
fi

in_ns() { # pids of the processes still in the namespace
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$NETNS" ] && echo "$p"
  done
}
left=$(in_ns)
if [ -n "$left" ]; then
  say "LEFT BEHIND in the network namespace $NETNS:"
  for p in $left; do echo "    $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-200)" >&2; done
  for p in $left; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 100); do [ -z "$(in_ns)" ] && break; sleep 0.1; done
  for p in $(in_ns); do kill -KILL "$p" 2>/dev/null; done
  if [ "${IN_NETNS_LEFTOVERS:-fail}" != warn ] && [ "$rc" = 0 ]; then rc=1; fi
fi
rm -rf "$STATE"
exit "$rc"
