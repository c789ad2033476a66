# syntax=docker/dockerfile:1
# The agent task executor's image, for operators (docker build, buildah, kaniko):
#
#   docker build -t <registry>/agent-task-executor:<version> \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE=<URL of this repository> .
#
# The result: node 20 and exactly the shared libraries it links, CA certificates, passwd/group with
# the user executor (10001), /tmp, and the bundle of `pnpm build`; no shell, no package manager.
# Runs as 10001 on a read-only root filesystem; node is PID 1 and handles SIGTERM itself.
# scripts/build-image.sh assembles the same image without Docker or a registry (same rootfs.sh,
# user, entrypoint, env and labels); deploy/README.md says how to install it.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# pnpm as package.json pins it; the lockfile decides every other version
RUN npm install --global pnpm@12.4.2
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build

FROM ${NODE_IMAGE} AS rootfs
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates \
  && rm -rf /var/lib/apt/lists/*
COPY scripts/image/rootfs.sh /rootfs.sh
COPY examples /src/examples
COPY --from=build /src/apps/executor/dist /src/apps/executor/dist
RUN bash /rootfs.sh /rootfs /usr/local/bin/node /src

FROM scratch
ARG VERSION=dev
ARG COMMIT=none
ARG CREATED=
ARG SOURCE=
COPY --from=rootfs /rootfs/ /
LABEL org.opencontainers.image.title="agent-task-executor" \
      org.opencontainers.image.description="Turns Kafka task events into Kubernetes Jobs and detects zombie runs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="scratch"
# BUILD_*: what the build_info metric reports (apps/executor/src/run/RunConfig.ts)
ENV PATH=/usr/local/bin \
    NODE_ENV=production \
    BUILD_GIT_VERSION="${VERSION}" \
    BUILD_GIT_COMMIT="${COMMIT}" \
    BUILD_DATE="${CREATED}"
USER 10001:10001
WORKDIR /app
EXPOSE 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/node", "/app/apps/executor/dist/main.mjs"]
CMD ["run"]
