#!/usr/bin/env bash
# rootfs.sh ROOTFS NODE_BIN SRC - the root filesystem of the executor's image, in ROOTFS (replaced).
#
# Used by the Dockerfile (in a node:20 stage) and by scripts/build-image.sh (on this machine), so both
# images have the same layout:
#   /usr/local/bin/node                 NODE_BIN
#   /lib*/...                           exactly the shared libraries `ldd NODE_BIN` lists, and the loader
#   /etc/passwd, /etc/group             root and executor (10001:10001), no login shell
#   /etc/nsswitch.conf                  passwd, group and hosts from files, then DNS
#   /etc/ssl/certs/ca-certificates.crt  the CA bundle of this system (Debian's ca-certificates)
#   /tmp                                1777 (a read-only root wants an emptyDir here; node writes nothing)
#   /app/apps/executor/dist/            the bundle of `pnpm build` (SRC/apps/executor/dist), source maps
#   /app/examples/                      the scenarios, for `simulate` (and the tour, the default command)
#   /usr/share/doc/*/copyright          the licenses of the shipped binaries, where the system has them
# Everything belongs to root and is read-only for the executor's user.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 ROOTFS NODE_BIN SRC" >&2; exit 2; }
ROOTFS=$1
NODE_BIN=$(readlink -f "$2")
SRC=$(cd "$3" && pwd)
DIST=$SRC/apps/executor/dist
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

[ -x "$NODE_BIN" ] || { echo "rootfs.sh: not executable: $NODE_BIN" >&2; exit 1; }
[ -f "$DIST/main.mjs" ] || { echo "rootfs.sh: $DIST/main.mjs missing: run the build first" >&2; exit 1; }
[ -f "$CA_BUNDLE" ] || { echo "rootfs.sh: no CA bundle at $CA_BUNDLE (Debian: apt-get install ca-certificates)" >&2; exit 1; }

rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"
umask 022

install -D -m 0755 "$NODE_BIN" "$ROOTFS/usr/local/bin/node"

# Each library under the path ldd names (the loader looks there), from its real file.
libs=$(ldd "$NODE_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "rootfs.sh: ldd found no libraries for $NODE_BIN (not a dynamic glibc binary?)" >&2; exit 1; }
for lib in $libs; do
  install -D -m 0755 "$(readlink -f "$lib")" "$ROOTFS$lib"
done

# Licenses of what was copied: node's own, and the Debian packages that own the libraries.
for license in "$(dirname "$NODE_BIN")/../share/doc/node/LICENSE" "$(dirname "$NODE_BIN")/../LICENSE" /usr/share/doc/nodejs/LICENSE; do
  if [ -f "$license" ]; then install -D -m 0644 "$license" "$ROOTFS/usr/local/share/doc/node/LICENSE"; break; fi
done
owners() {
  local lib
  for lib in $libs; do
    { dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true; } | head -n1 | cut -d: -f1
  done
  echo ca-certificates
}
if command -v dpkg >/dev/null; then
  for pkg in $(owners | sort -u); do
    [ ! -f "/usr/share/doc/$pkg/copyright" ] ||
      install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$ROOTFS/usr/share/doc/$pkg/copyright"
  done
fi

install -D -m 0644 "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nexecutor:x:10001:10001:agent task executor:/nonexistent:/sbin/nologin\n' \
  >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nexecutor:x:10001:\n' >"$ROOTFS/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group" "$ROOTFS/etc/nsswitch.conf"
install -d -m 1777 "$ROOTFS/tmp"

mkdir -p "$ROOTFS/app/apps/executor" "$ROOTFS/app/examples"
cp -R "$DIST" "$ROOTFS/app/apps/executor/dist"
rm -f "$ROOTFS/app/apps/executor/dist/build-inputs.json"
find "$SRC/examples" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.json' \) -exec cp {} "$ROOTFS/app/examples/" \;

chown -R 0:0 "$ROOTFS"
find "$ROOTFS" -type d ! -path "$ROOTFS/tmp" -exec chmod 0755 {} +
find "$ROOTFS/app" -type f -exec chmod 0644 {} +
