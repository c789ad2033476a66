import { describe, expect, it } from "@effect/vitest"
import { KubeConfig } from "@executor/kube"
import { ConfigProvider, Effect } from "effect"

const kubeconfig = (namespace?: string) =>
  KubeConfig.options({
    clusters: [{ name: "c", server: "https://127.0.0.1:6443", skipTLSVerify: false }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "ctx", cluster: "c", user: "u", ...(namespace === undefined ? {} : { namespace }) }],
    currentContext: "ctx"
  })

const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("KubeConfig", () => {
  it.effect("takes the namespace from the context, an override, or `default`", () =>
    Effect.gen(function*() {
      expect((yield* KubeConfig.load(kubeconfig("agents"))).namespace).toBe("agents")
      expect((yield* KubeConfig.load(kubeconfig("agents"), "other")).namespace).toBe("other")
      const plain = yield* KubeConfig.load(kubeconfig())
      expect(plain).toMatchObject({ namespace: "default", server: "https://127.0.0.1:6443" })
    }))

  it.effect("in-cluster outside a pod is a KubeConfigError, not a crash", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(KubeConfig.load(KubeConfig.InCluster))
      expect(error).toMatchObject({ _tag: "KubeConfigError", source: "InCluster" })
    }))

  it.effect("the source follows KUBECONFIG, then KUBERNETES_SERVICE_HOST, then the default chain", () =>
    Effect.gen(function*() {
      expect(yield* KubeConfig.sourceFromEnv.pipe(withEnv({ KUBECONFIG: "/run/kubeconfig" }))).toEqual(KubeConfig.file("/run/kubeconfig"))
      expect(yield* KubeConfig.sourceFromEnv.pipe(withEnv({ KUBECONFIG: "/a:/b" }))).toEqual(KubeConfig.Default)
      expect(yield* KubeConfig.sourceFromEnv.pipe(withEnv({ KUBERNETES_SERVICE_HOST: "10.0.0.1" }))).toEqual(KubeConfig.InCluster)
      expect(yield* KubeConfig.sourceFromEnv.pipe(withEnv({}))).toEqual(KubeConfig.Default)
    }))
})
