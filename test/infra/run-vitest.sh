#!/usr/bin/env bash
# run-vitest.sh VITEST_ARGS... - how `pnpm test` runs vitest: test/infra/prepare.sh first, in the
# machine's own network namespace (it installs and builds: apt, the Go module proxy, Maven), then
# vitest inside a network namespace of its own (test/infra/in-netns.sh), where the test stacks,
# the real node and every test worker and executor they start talk over 127.0.0.1 only.
#
# SKIP_INTEGRATION=1 (ignored when CI=true or INTEGRATION_REQUIRED=1): no prepare, no namespace;
# the integration and node projects skip.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VITEST=$(cd "$HERE/../.." && pwd)/node_modules/.bin/vitest

required() { [ "${CI:-}" = true ] || [ "${INTEGRATION_REQUIRED:-}" = 1 ]; }
if [ "${SKIP_INTEGRATION:-}" = 1 ] && ! required; then exec "$VITEST" "$@"; fi

T=$(date +%s.%N)
bash "$HERE/prepare.sh" >&2
echo "[run-vitest] prepare.sh took $(awk -v s="$T" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s" >&2
exec bash "$HERE/in-netns.sh" "$VITEST" "$@"
