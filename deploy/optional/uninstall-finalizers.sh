#!/usr/bin/env bash
# Before uninstalling the executor: release the run-settled finalizer of every agent Job, so that
# Jobs deleted afterwards do not stay Terminating (decisions D6.3).
set -euo pipefail
namespace=${1:?usage: uninstall-finalizers.sh NAMESPACE [API_GROUP]}
group=${2:-agent.benjamin-borbe.de}
for job in $(kubectl -n "$namespace" get jobs -l "$group/task-id" -o name); do
  kubectl -n "$namespace" patch "$job" --type=json \
    -p '[{"op":"remove","path":"/metadata/finalizers"}]' 2>/dev/null || true
done
