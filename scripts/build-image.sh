#!/usr/bin/env bash
# build-image.sh - the executor's container image, built without Docker and without any registry.
#
# Assembles the image the Dockerfile describes (same layout via scripts/image/rootfs.sh, same user,
# entrypoint, env and labels) from this machine's node and its shared libraries, with umoci, and
# writes:
#   $IMAGE_OUT/oci/                                  OCI image layout, tag <version>
#   $IMAGE_OUT/agent-task-executor-<version>.tar     docker-archive named $IMAGE_NAME:<version>
#                                                    (`ctr -n k8s.io images import` accepts it)
#   $IMAGE_OUT/image.env                             IMAGE=, VERSION=, OCI=, ARCHIVE= of the last build
# Idempotent: when neither the root filesystem nor the metadata changed, it stops after a check
# (2-3 s). Installs umoci and skopeo (Debian packages) when they are missing.
#
# Environment (all optional):
#   IMAGE_OUT    output directory            (default: <repo>/.build/image, not committed)
#   IMAGE_NAME   repository of the image     (default: 127.0.0.1:5001/agent-task-executor)
#   VERSION      tag and BUILD_GIT_VERSION   (default: git describe --tags --always --dirty)
#   COMMIT       BUILD_GIT_COMMIT            (default: git rev-parse HEAD)
#   CREATED      BUILD_DATE, RFC 3339 UTC    (default: the commit's time; now for a dirty tree)
#   SOURCE       org.opencontainers.image.source (default: git remote get-url origin, else empty)
#   NODE_BIN     the Node 20 binary to ship  (default: the node on PATH)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${IMAGE_OUT:-$ROOT/.build/image}
IMAGE_NAME=${IMAGE_NAME:-127.0.0.1:5001/agent-task-executor}
NODE_BIN=${NODE_BIN:-$(command -v node)}
say() { echo "[image] $*" >&2; }

git_() { git -C "$ROOT" "$@" 2>/dev/null; }
VERSION=${VERSION:-$(git_ describe --tags --always --dirty || echo dev)}
COMMIT=${COMMIT:-$(git_ rev-parse HEAD || echo none)}
SOURCE=${SOURCE-$(git_ remote get-url origin || true)}
# The created time is part of what decides a rebuild only when it is given or comes from a clean
# commit; a dirty tree's "now" would make every run a rebuild.
CREATED_GIVEN=${CREATED:-}
if [ -z "${CREATED:-}" ]; then
  if [[ $VERSION == *-dirty ]] || ! git_ rev-parse HEAD >/dev/null; then
    CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  else
    CREATED=$(TZ=UTC git_ log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)
    CREATED_GIVEN=$CREATED
  fi
fi
[[ $VERSION =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "build-image.sh: VERSION '$VERSION' is not a valid image tag" >&2; exit 2; }

node_major=$("$NODE_BIN" -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || { echo "build-image.sh: $NODE_BIN is Node $node_major; the image ships Node 20 (set NODE_BIN)" >&2; exit 1; }

# ---- tools (CI runs as root; another process may hold the dpkg lock)
missing=()
command -v umoci >/dev/null || missing+=(umoci)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -o DPkg::Lock::Timeout=600 >&2 && apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >&2; }
fi

# ---- the root filesystem
node "$ROOT/scripts/build.mjs" --if-stale
mkdir -p "$OUT"
ROOTFS=$OUT/rootfs
bash "$HERE/image/rootfs.sh" "$ROOTFS" "$NODE_BIN" "$ROOT"
# one time stamp on every file: the same inputs give the same layer digest
find "$ROOTFS" -exec touch -h -d "$CREATED" {} +

# What the image is made of, besides the files: one line each, in the order they are applied.
config_args=(
  --os linux --architecture amd64
  --created "$CREATED" --author "agent-task-executor build-image.sh"
  --config.user 10001:10001
  --config.workingdir /app
  --config.entrypoint /usr/local/bin/node --config.entrypoint /app/apps/executor/dist/main.mjs
  --config.cmd run
  --config.exposedports 9090/tcp
  --config.stopsignal SIGTERM
  --config.env PATH=/usr/local/bin
  --config.env NODE_ENV=production
  --config.env "BUILD_GIT_VERSION=$VERSION"
  --config.env "BUILD_GIT_COMMIT=$COMMIT"
  --config.env "BUILD_DATE=$CREATED"
)
labels=(
  "org.opencontainers.image.title=agent-task-executor"
  "org.opencontainers.image.description=Turns Kafka task events into Kubernetes Jobs and detects zombie runs"
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$COMMIT"
  "org.opencontainers.image.created=$CREATED"
  "org.opencontainers.image.source=$SOURCE"
  "org.opencontainers.image.base.name=scratch"
)
for label in "${labels[@]}"; do config_args+=(--config.label "$label" --manifest.annotation "$label"); done

ARCHIVE=$OUT/agent-task-executor-$VERSION.tar
OCI=$OUT/oci
inputs=$(
  {
    printf '%s\n' "$IMAGE_NAME" "$VERSION" "$CREATED_GIVEN" "${config_args[@]}"
    sha256sum "$HERE/build-image.sh" "$HERE/image/rootfs.sh" | cut -d' ' -f1
    (cd "$ROOTFS" && find . -printf '%p %m %u %g %l\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$OUT/inputs.sha256" ] && [ "$(cat "$OUT/inputs.sha256")" = "$inputs" ] && [ -f "$ARCHIVE" ] && [ -d "$OCI" ]; then
  say "up to date: $IMAGE_NAME:$VERSION"
  cat "$OUT/image.env"
  exit 0
fi

# ---- the OCI layout: one layer (the root filesystem), then the config
started=$(date +%s)
rm -rf "$OCI" "$OUT/inputs.sha256" "$OUT"/agent-task-executor-*.tar
umoci init --layout "$OCI"
umoci new --image "$OCI:$VERSION"
# unpack (an empty bundle), fill, repack: the layer's paths are relative (app/..., etc/...)
rm -rf "$OUT/bundle"
umoci unpack --image "$OCI:$VERSION" "$OUT/bundle" >/dev/null
cp -a "$ROOTFS/." "$OUT/bundle/rootfs/"
touch -h -d "$CREATED" "$OUT/bundle/rootfs"
umoci repack --image "$OCI:$VERSION" --history.created "$CREATED" --history.created_by "scripts/image/rootfs.sh" \
  --history.comment "node $("$NODE_BIN" --version), its shared libraries, the executor's bundle" "$OUT/bundle"
rm -rf "$OUT/bundle"
umoci config --image "$OCI:$VERSION" --history.created "$CREATED" --history.created_by "scripts/build-image.sh" "${config_args[@]}"
umoci gc --layout "$OCI"

# ---- the docker-archive (what `ctr images import` and `docker load` read)
skopeo --insecure-policy copy --quiet "oci:$OCI:$VERSION" "docker-archive:$ARCHIVE:$IMAGE_NAME:$VERSION" >&2

cat >"$OUT/image.env" <<EOF
IMAGE=$IMAGE_NAME:$VERSION
VERSION=$VERSION
OCI=$OCI:$VERSION
ARCHIVE=$ARCHIVE
EOF
echo "$inputs" >"$OUT/inputs.sha256"

manifest=$(skopeo --insecure-policy inspect --raw "oci:$OCI:$VERSION")
compressed=$(node -e 'const m=JSON.parse(process.argv[1]);console.log(m.layers.reduce((s,l)=>s+l.size,0)+m.config.size)' "$manifest")
uncompressed=$(du -sb "$ROOTFS" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
say "built $IMAGE_NAME:$VERSION in $(($(date +%s) - started)) s: $(mib "$compressed") compressed (layer + config), $(mib "$uncompressed") uncompressed, archive $(mib "$(stat -c %s "$ARCHIVE")")"
cat "$OUT/image.env"
