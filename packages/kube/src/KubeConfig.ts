import * as k8s from "@kubernetes/client-node"
import { Config, Context, Data, Effect, Layer, Option } from "effect"
import { PooledKubeConfig } from "./PooledKubeConfig.js"

/** Where the API server address and credentials come from. */
export type Source =
  /** The pod's ServiceAccount: `KUBERNETES_SERVICE_HOST/PORT` plus the mounted token, CA and namespace. */
  | { readonly _tag: "InCluster" }
  /** `$KUBECONFIG`, else `~/.kube/config`, else in-cluster (client-node's `loadFromDefault`). */
  | { readonly _tag: "Default" }
  | { readonly _tag: "File"; readonly path: string }
  /** An explicit kubeconfig (`clusters`, `users`, `contexts`, `currentContext`), e.g. for tests. */
  | { readonly _tag: "Options"; readonly options: KubeconfigObject }

/** A kubeconfig as data (what `kc.loadFromOptions` takes). */
export interface KubeconfigObject {
  readonly clusters: ReadonlyArray<k8s.Cluster>
  readonly users: ReadonlyArray<k8s.User>
  readonly contexts: ReadonlyArray<k8s.Context>
  readonly currentContext: string
}

export const InCluster: Source = { _tag: "InCluster" }
export const Default: Source = { _tag: "Default" }
export const file = (path: string): Source => ({ _tag: "File", path })
export const options = (options: KubeconfigObject): Source => ({ _tag: "Options", options })

export class KubeConfigError extends Data.TaggedError("KubeConfigError")<{
  readonly source: Source["_tag"]
  readonly message: string
}> {}

export interface KubeConnectionShape {
  readonly kubeConfig: k8s.KubeConfig
  /** The API server URL of the current context. */
  readonly server: string
  /** The namespace of the current context (in a pod: the ServiceAccount's), else `default`. */
  readonly namespace: string
}

/** A loaded kubeconfig: the one place that knows how to reach the API server. */
export class KubeConnection extends Context.Tag("executor/kube/KubeConnection")<KubeConnection, KubeConnectionShape>() {}

const loadInto = (kc: k8s.KubeConfig, source: Source): void => {
  switch (source._tag) {
    case "InCluster":
      return kc.loadFromCluster()
    case "Default":
      return kc.loadFromDefault()
    case "File":
      return kc.loadFromFile(source.path)
    case "Options":
      return kc.loadFromOptions(source.options)
  }
}

/** Loads a kubeconfig; `namespace` overrides the context's namespace. */
export const load = (source: Source, namespace?: string): Effect.Effect<KubeConnectionShape, KubeConfigError> =>
  Effect.try({
    try: () => {
      const kc = new PooledKubeConfig()
      loadInto(kc, source)
      return kc
    },
    catch: (cause) =>
      new KubeConfigError({ source: source._tag, message: cause instanceof Error ? cause.message : String(cause) })
  }).pipe(
    Effect.flatMap((kc) => {
      const cluster = kc.getCurrentCluster()
      if (cluster === null || cluster.server === "" || cluster.server.includes("undefined")) {
        return Effect.fail(
          new KubeConfigError({
            source: source._tag,
            message: source._tag === "InCluster"
              ? "not running in a cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set"
              : "the kubeconfig has no current cluster"
          })
        )
      }
      const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace?.trim()
      return Effect.succeed<KubeConnectionShape>({
        kubeConfig: kc,
        server: cluster.server,
        namespace: namespace ?? (contextNamespace === undefined || contextNamespace === "" ? "default" : contextNamespace)
      })
    })
  )

export const layer = (source: Source, namespace?: string): Layer.Layer<KubeConnection, KubeConfigError> =>
  Layer.effect(KubeConnection, load(source, namespace))

/**
 * `KUBECONFIG` (a path) when set, else in-cluster when `KUBERNETES_SERVICE_HOST` is set, else the
 * client-node default chain. Read through `Config`, so a `ConfigProvider` drives it in tests.
 */
export const sourceFromEnv: Effect.Effect<Source, never> = Effect.gen(function*() {
  const kubeconfig = yield* Config.option(Config.string("KUBECONFIG")).pipe(Effect.orElseSucceed(() => Option.none()))
  const serviceHost = yield* Config.option(Config.string("KUBERNETES_SERVICE_HOST")).pipe(
    Effect.orElseSucceed(() => Option.none())
  )
  const path = Option.getOrUndefined(Option.filter(kubeconfig, (p) => p.trim() !== ""))
  if (path !== undefined) {
    // Several paths (`a:b`) are merged by client-node's default chain.
    return path.includes(":") ? Default : file(path)
  }
  return Option.isSome(serviceHost) ? InCluster : Default
})

export const layerFromEnv: Layer.Layer<KubeConnection, KubeConfigError> = Layer.effect(
  KubeConnection,
  Effect.flatMap(sourceFromEnv, (source) => load(source))
)
