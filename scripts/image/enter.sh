#!/usr/bin/env bash
# enter.sh ROOTFS CWD UID GID ENV_FILE ARGS... - the container part of scripts/verify-image.sh.
# Runs as PID 1 of a fresh PID and mount namespace (unshare --mount --pid --fork), as a container
# runtime would start the image: ROOTFS read-only, /proc, a minimal /dev, then ARGS exec'd inside
# ROOTFS in CWD as UID:GID (no supplementary groups) with exactly the variables of ENV_FILE.
# Optional (env): TMP_WRITABLE=1 mounts a tmpfs on /tmp (the Deployment's emptyDir);
# SA_DIR=<dir> mounts it read-only as the ServiceAccount directory.
set -euo pipefail
PATH=/usr/sbin:/usr/bin:/sbin:/bin
R=$1 CWD=$2 U=$3 G=$4 ENV_FILE=$5
shift 5

mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755,size=64k tmpfs "$R/dev"
for d in null zero random urandom; do
  touch "$R/dev/$d"
  mount --bind "/dev/$d" "$R/dev/$d"
done
if [ -n "${TMP_WRITABLE:-}" ]; then mount -t tmpfs -o mode=1777,size=16m tmpfs "$R/tmp"; fi
if [ -n "${SA_DIR:-}" ]; then mount --bind -o ro "$SA_DIR" "$R/var/run/secrets/kubernetes.io/serviceaccount"; fi
mount -o remount,bind,ro "$R"

mapfile -t vars <"$ENV_FILE"
exec env -i "${vars[@]}" /usr/bin/unshare --root="$R" --wd="$CWD" --setgid="$G" --setuid="$U" -- "$@"
