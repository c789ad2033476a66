#!/bin/sh
# The test agent (entrypoint of 127.0.0.1:5001/agent:1). Every behaviour comes from the environment,
# so an agent Config's `env` chooses it; the steps run in this order:
#
#   AGENT_STDOUT=text      print text to stdout (nothing is printed otherwise)
#   AGENT_STDERR=text      print text to stderr
#   AGENT_ON_SIGTERM=N     on SIGTERM exit with code N (default 143); "ignore": ignore SIGTERM, so
#                          only SIGKILL after the grace period ends the container
#   AGENT_ALLOC_MIB=M      allocate M MiB and hold it (PID 1 itself: OOM-killed under a smaller limit)
#   AGENT_WRITE_MIB=M      write M MiB to AGENT_WRITE_DIR (default /var/tmp: the container's writable
#                          layer, counted as ephemeral storage; an emptyDir mount path works too)
#   AGENT_SLEEP=S          sleep S seconds (default 0; "forever" never wakes up); SIGTERM interrupts it
#   AGENT_EXIT=N           then exit with code N (default 0)
set -u

[ -n "${AGENT_STDOUT:-}" ] && echo "$AGENT_STDOUT"
[ -n "${AGENT_STDERR:-}" ] && echo "$AGENT_STDERR" >&2

on_sigterm=${AGENT_ON_SIGTERM:-143}
if [ "$on_sigterm" = ignore ]; then
  trap '' TERM
else
  trap 'exit $on_sigterm' TERM
fi

if [ -n "${AGENT_ALLOC_MIB:-}" ]; then
  held=$(head -c "${AGENT_ALLOC_MIB}m" /dev/zero | tr '\0' x)
  echo "agent: holding ${#held} bytes" >&2
fi

if [ -n "${AGENT_WRITE_MIB:-}" ]; then
  dir=${AGENT_WRITE_DIR:-/var/tmp}
  mkdir -p "$dir"
  i=0
  while [ "$i" -lt "$AGENT_WRITE_MIB" ]; do
    dd if=/dev/zero of="$dir/fill.$i" bs=1048576 count=1 2>/dev/null || break
    i=$((i + 1))
  done
  echo "agent: wrote $i MiB to $dir" >&2
fi

seconds=${AGENT_SLEEP:-0}
[ "$seconds" = forever ] && seconds=2147483647
if [ "$seconds" != 0 ]; then
  # in the background, so that a SIGTERM runs the trap at once instead of after the sleep
  sleep "$seconds" &
  wait $!
fi

exit "${AGENT_EXIT:-0}"
