#!/usr/bin/env bash
# build.sh OUT_DIR - the node's two local images, built from files of this directory and of this
# machine only (no registry is ever contacted):
#
#   OUT_DIR/registry/pause   OCI layout, tag 1: a static pause (pause.c, gcc -static)
#   OUT_DIR/registry/agent   OCI layout, tag 1: busybox-static + agent.sh (behaviour from env)
#   OUT_DIR/pause.tar        docker-archive of 127.0.0.1:5001/pause:1 (ctr images import)
#   OUT_DIR/images.env       the image names
#
# The registry of test/support/ociRegistry.ts serves OUT_DIR/registry as 127.0.0.1:5001/<name>:<tag>.
# Needs gcc with a static libc, umoci, skopeo and /bin/busybox from busybox-static.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$1
REGISTRY_HOST=${REGISTRY_HOST:-127.0.0.1:5001}
TAG=1
BUSYBOX=${BUSYBOX:-/bin/busybox}
W=$OUT/work
rm -rf "$OUT"; mkdir -p "$OUT/registry" "$W"

echo "busybox: $("$BUSYBOX" 2>&1 | sed -n 1p || true)"
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" || { echo "build.sh: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; }

gcc -static -Os -s -o "$W/pause.bin" "$HERE/pause.c"
file_is_static "$W/pause.bin" || { echo "build.sh: pause is not static" >&2; exit 1; }

# image NAME POPULATE ENTRYPOINT...: an OCI layout OUT/registry/NAME with one tag
image() {
  local name=$1 populate=$2 layout=$OUT/registry/$1 bundle=$W/$1 arg
  shift 2
  umoci init --layout "$layout"
  umoci new --image "$layout:$TAG"
  umoci unpack --image "$layout:$TAG" "$bundle"
  "$populate" "$bundle/rootfs"
  umoci repack --image "$layout:$TAG" "$bundle"
  local entry=()
  for arg in "$@"; do entry+=(--config.entrypoint "$arg"); done
  umoci config --image "$layout:$TAG" "${entry[@]}" --config.env PATH=/bin --config.workingdir / \
    --os linux --architecture amd64 --author agent-executor-tests
  umoci gc --layout "$layout"
  rm -rf "$bundle"
}

pause_rootfs() { install -m 0755 "$W/pause.bin" "$1/pause"; }

agent_rootfs() {
  local root=$1 applet
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/var/tmp" "$root/proc" "$root/sys" "$root/dev"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  install -m 0755 "$BUSYBOX" "$root/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  install -m 0755 "$HERE/agent.sh" "$root/agent"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
}

image pause pause_rootfs /pause
image agent agent_rootfs /agent

skopeo copy --quiet "oci:$OUT/registry/pause:$TAG" "docker-archive:$OUT/pause.tar:$REGISTRY_HOST/pause:$TAG"
rm -rf "$W"

cat >"$OUT/images.env" <<ENV
PAUSE_IMAGE=$REGISTRY_HOST/pause:$TAG
AGENT_IMAGE=$REGISTRY_HOST/agent:$TAG
ENV
du -sh "$OUT/registry/pause" "$OUT/registry/agent" "$OUT/pause.tar"
