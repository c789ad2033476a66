#!/usr/bin/env bash
# down.sh RUN_DIR - stop what test/infra/up.sh started in RUN_DIR (idempotent).
# Signals only the recorded pids / their process groups (up.sh starts each server with setsid, so
# pid == pgid), never by name; and only if the process still looks like ours (its command line
# mentions RUN_DIR), so a recycled pid is left alone. SIGTERM, wait up to STOP_TIMEOUT (20) s, SIGKILL.
# Order: kafka and kube-apiserver first (in parallel), then etcd.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 RUN_DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "[down] $1: no such dir, nothing to stop"; exit 0; }
RUN=$(cd "$1" && pwd)
STOP_TIMEOUT=${STOP_TIMEOUT:-20}

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
say() { echo "[down $(date +%H:%M:%S)] $*"; }

ours() { # pid: alive and its command line mentions RUN
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$RUN/"
}
live() { # pid: exists and is not a zombie
  local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}
group_alive() { # pgid: any non-zombie process left in that group?
  ps -o stat= -g "$1" 2>/dev/null | grep -qv '^Z'
}
signal() { # sig pid: the group if pid leads one, else just the pid
  if [ "$(ps -o pgid= -p "$2" 2>/dev/null | tr -d ' ')" = "$2" ]; then kill -s "$1" -- "-$2" 2>/dev/null
  else kill -s "$1" "$2" 2>/dev/null; fi
}

stop() { # names...: TERM all, wait, KILL leftovers
  local n pid pids=() names=() t i
  for n in "$@"; do
    [ -f "$RUN/$n.pid" ] || continue
    pid=$(cat "$RUN/$n.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && ours "$pid"; then
      signal TERM "$pid"; pids+=("$pid"); names+=("$n")
    else
      rm -f "$RUN/$n.pid"
    fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  t=$(now)
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}; n=${names[$i]}
    while group_alive "$pid" || live "$pid"; do
      if awk -v s="$t" -v e="$(date +%s.%N)" -v m="$STOP_TIMEOUT" 'BEGIN { exit !(e - s >= m) }'; then
        say "$n (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
        signal KILL "$pid"; sleep 0.2; break
      fi
      sleep 0.1
    done
    say "$n (pid $pid) stopped after $(since "$t") s"
    rm -f "$RUN/$n.pid"
  done
}

T0=$(now)
stop kafka kube-apiserver
stop etcd
say "done in $(since "$T0") s"
