// Helpers for the suites against a real kube-apiserver: operator-side API calls (what kubectl, the
// job controller or the kubelet would do), event subscriptions and a TCP proxy that can cut the
// connection between the adapter and the API server.
import { createServer, type Server, type Socket, connect } from "node:net"
import * as k8s from "@kubernetes/client-node"
import type { WatchEvent } from "@executor/executor"
import { KubeConfig } from "@executor/kube"
import { Deferred, Duration, Effect, Queue, type Scope, Stream } from "effect"

/** Operator-side calls; a failure is a test failure (the adapter under test classifies errors, not this). */
export const operator = (kc: k8s.KubeConfig) => {
  const core = kc.makeApiClient(k8s.CoreV1Api)
  const batch = kc.makeApiClient(k8s.BatchV1Api)
  const custom = kc.makeApiClient(k8s.CustomObjectsApi)
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api)
  const events = kc.makeApiClient(k8s.CoreV1Api)
  const merge = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
  const p = <A>(f: () => Promise<A>) => Effect.promise(f)
  return {
    core,
    batch,
    custom,
    ext,
    createNamespace: (name: string) =>
      p(() => core.createNamespace({ body: { metadata: { name, labels: { "kube-it": "true" } } } })),
    createJob: (body: k8s.V1Job, namespace: string) => p(() => batch.createNamespacedJob({ namespace, body })),
    readJob: (name: string, namespace: string) => p(() => batch.readNamespacedJob({ name, namespace })),
    patchJob: (name: string, namespace: string, body: object) =>
      p(() => batch.patchNamespacedJob({ name, namespace, body }, merge)),
    deleteJob: (name: string, namespace: string) =>
      p(() => batch.deleteNamespacedJob({ name, namespace, propagationPolicy: "Background" })),
    createPod: (body: k8s.V1Pod, namespace: string) => p(() => core.createNamespacedPod({ namespace, body })),
    patchPodStatus: (name: string, namespace: string, status: object) =>
      p(() => core.patchNamespacedPodStatus({ name, namespace, body: { status } }, merge)),
    /** Rejects like the API server does: the promise's error is returned, not thrown. */
    createConfig: (group: string, namespace: string, name: string, spec: object) =>
      Effect.tryPromise({
        try: (): Promise<unknown> =>
          custom.createNamespacedCustomObject({
            group,
            version: "v1",
            namespace,
            plural: "configs",
            body: { apiVersion: `${group}/v1`, kind: "Config", metadata: { name }, spec }
          }),
        catch: (error) => error
      }),
    listEvents: (namespace: string, involvedName: string) =>
      p(() => events.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${involvedName}` })),
    /** An Event as the kubelet or a controller writes it (core/v1, `eventTime` null). */
    createEvent: (
      namespace: string,
      involved: { readonly kind: string; readonly name: string; readonly uid?: string | undefined },
      event: { readonly reason: string; readonly message: string; readonly type: string; readonly component: string }
    ) =>
      p(() =>
        events.createNamespacedEvent({
          namespace,
          body: {
            metadata: { name: `${involved.name}.${Math.random().toString(16).slice(2, 14)}`, namespace },
            involvedObject: { kind: involved.kind, name: involved.name, namespace, ...(involved.uid === undefined ? {} : { uid: involved.uid }) },
            reason: event.reason,
            message: event.message,
            type: event.type,
            count: 1,
            firstTimestamp: new Date(),
            lastTimestamp: new Date(),
            source: { component: event.component },
            reportingComponent: event.component
          }
        })
      ),
    /** Creates every object of a multi-document manifest in `namespace` (ServiceAccount, Role, RoleBinding). */
    createRbac: (namespace: string, documents: ReadonlyArray<{ readonly kind: string } & Record<string, unknown>>) =>
      p(async () => {
        const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api)
        for (const document of documents) {
          const body = { ...document, metadata: { ...(document["metadata"] as object), namespace } }
          if (document.kind === "ServiceAccount") await core.createNamespacedServiceAccount({ namespace, body: body as k8s.V1ServiceAccount })
          if (document.kind === "Role") await rbac.createNamespacedRole({ namespace, body: body as k8s.V1Role })
          if (document.kind === "RoleBinding") {
            const binding = body as k8s.V1RoleBinding
            await rbac.createNamespacedRoleBinding({
              namespace,
              body: { ...binding, subjects: (binding.subjects ?? []).map((s) => ({ ...s, namespace })) }
            })
          }
        }
      }),
    /** What the API server's authorizer answers for `user` (a SubjectAccessReview, as `kubectl auth can-i --as`). */
    canI: (user: string, attributes: { readonly namespace: string; readonly verb: string; readonly group: string; readonly resource: string }) =>
      p(async () => {
        const authz = kc.makeApiClient(k8s.AuthorizationV1Api)
        const review = await authz.createSubjectAccessReview({
          body: { spec: { user, resourceAttributes: { ...attributes } } }
        })
        return review.status?.allowed === true
      }),
    readCrd: (name: string) => p(() => ext.readCustomResourceDefinition({ name }))
  }
}

export interface Subscription<A> {
  /** Waits for the next event (from now on) that satisfies `predicate`; earlier ones are consumed. */
  readonly next: (
    predicate: (event: WatchEvent<A>) => boolean,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<WatchEvent<A>, Error>
  /** The very next event, whatever it is. */
  readonly take: (timeout?: Duration.DurationInput) => Effect.Effect<WatchEvent<A>, Error>
  /** Everything received and not yet consumed. */
  readonly drain: Effect.Effect<ReadonlyArray<WatchEvent<A>>>
  /** The replay: every event up to and including the first `Synced`. */
  readonly replay: ReadonlyArray<WatchEvent<A>>
}

/** Runs the stream in the scope; returns once its replay (through `Synced`) has arrived. */
export const subscribe = <A>(stream: Stream.Stream<WatchEvent<A>>): Effect.Effect<Subscription<A>, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<WatchEvent<A>>()
    const replay: Array<WatchEvent<A>> = []
    const synced = yield* Deferred.make<void>()
    let replaying = true
    yield* stream.pipe(
      Stream.runForEach((event) =>
        Effect.suspend(() => {
          if (replaying) {
            replay.push(event)
            if (event._tag !== "Synced") return Effect.void
            replaying = false
            return Deferred.succeed(synced, undefined)
          }
          return Queue.offer(queue, event)
        })
      ),
      Effect.forkScoped
    )
    yield* Deferred.await(synced).pipe(
      Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("no Synced within 15 s") })
    )
    return {
      replay,
      next: (predicate, timeout = "10 seconds") =>
        Queue.take(queue).pipe(
          Effect.repeat({ until: predicate }),
          Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`no matching event within ${Duration.format(Duration.decode(timeout))}`) })
        ),
      take: (timeout = "10 seconds") =>
        Queue.take(queue).pipe(
          Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`no event within ${Duration.format(Duration.decode(timeout))}`) })
        ),
      drain: Effect.map(Queue.takeAll(queue), (chunk) => [...chunk])
    }
  })

export const named = (name: string) => <A extends { readonly metadata: { readonly name: string } }>(event: WatchEvent<A>) =>
  event._tag !== "Synced" && event.object.metadata.name === name

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of the API server (TLS passes through; the server certificate is for 127.0.0.1)
// ---------------------------------------------------------------------------------------------

export interface Proxy {
  readonly port: number
  /** Closes every connection and refuses new ones (ECONNREFUSED), like a stopped API server. */
  readonly cut: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
}

export const tcpProxy = (targetHost: string, targetPort: number): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sockets = new Set<Socket>()
    const onConnection = (client: Socket) => {
      const upstream = connect(targetPort, targetHost)
      sockets.add(client)
      sockets.add(upstream)
      const drop = () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      client.on("error", drop).on("close", drop)
      upstream.on("error", drop).on("close", drop)
      client.pipe(upstream).pipe(client)
    }
    const listen = (server: Server, port: number) =>
      Effect.async<number>((resume) => {
        server.listen(port, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : port))
        })
      })
    let server = createServer(onConnection)
    const port = yield* listen(server, 0)
    const close = Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      sockets.clear()
      if (!server.listening) return resume(Effect.void)
      server.close(() => resume(Effect.void))
    })
    yield* Effect.addFinalizer(() => close)
    return {
      port,
      cut: close,
      resume: Effect.suspend(() => {
        server = createServer(onConnection)
        return Effect.asVoid(listen(server, port))
      })
    }
  })

/** The kubeconfig of `connection`, pointed at `server` instead (same credentials and CA). */
export const redirected = (kc: k8s.KubeConfig, server: string): KubeConfig.Source => {
  const cluster = kc.getCurrentCluster()
  const user = kc.getCurrentUser()
  if (cluster === null || user === null) throw new Error("kubeconfig without a current cluster/user")
  return KubeConfig.options({
    clusters: [{ ...cluster, name: "proxied", server }],
    users: [{ ...user, name: "proxied" }],
    contexts: [{ name: "proxied", cluster: "proxied", user: "proxied" }],
    currentContext: "proxied"
  })
}
