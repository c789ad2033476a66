import * as k8s from "@kubernetes/client-node"
import {
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberSet,
  Metric,
  Option,
  ParseResult,
  PubSub,
  Queue,
  Schedule,
  type Scope,
  Stream
} from "effect"
import type { Kube } from "@executor/domain"
import type { WatchEvent } from "@executor/executor"
import { classify, KubeApiError } from "./Api.js"

/** Anything the informer caches: it is keyed by `metadata.name` (one namespace per informer). */
export interface Named {
  readonly metadata: Kube.ObjectMeta
}

/** Watched objects that failed to decode and were skipped, by kind. */
export const decodeFailures = Metric.counter("agent_executor_watch_decode_failures_total", {
  description: "Watched objects skipped because they did not decode (by kind)"
})

/** Informer (re)starts after a failure, by kind. */
export const informerRestarts = Metric.counter("agent_executor_watch_restarts_total", {
  description: "Informer restarts after a list or watch failure (by kind)"
})

/** Why an informer session ended badly; the input of the restart schedule. */
export class InformerFailure extends Data.TaggedError("InformerFailure")<{
  readonly kind: string
  readonly message: string
  readonly status: number | undefined
  /** How long the failed session had been serving a listed cache (zero if it never listed). */
  readonly healthyFor: Duration.Duration
}> {}

/**
 * Restart policy: capped, jittered exponential back-off that starts over once a session had been
 * healthy (listed and watching) for `healthyAfter`, so one blip after hours of service restarts fast.
 */
export const restartSchedule = (options: {
  readonly base?: Duration.DurationInput
  readonly cap?: Duration.DurationInput
  readonly healthyAfter?: Duration.DurationInput
} = {}): Schedule.Schedule<unknown, InformerFailure> => {
  const healthyAfter = Duration.decode(options.healthyAfter ?? "1 minute")
  return Schedule.exponential(options.base ?? "500 millis", 2).pipe(
    Schedule.union(Schedule.spaced(options.cap ?? "30 seconds")),
    Schedule.jittered,
    Schedule.intersect(Schedule.identity<InformerFailure>()),
    Schedule.resetWhen(([, failure]) => Duration.greaterThanOrEqualTo(failure.healthyFor, healthyAfter))
  )
}

export interface InformerOptions<A extends Named> {
  /** For logs and metrics: `Job`, `Pod`, `Config`. */
  readonly kind: string
  /** The collection path that is watched, e.g. `/apis/batch/v1/namespaces/<ns>/jobs`. */
  readonly path: string
  /** Applied to both LIST and WATCH. */
  readonly labelSelector?: string | undefined
  /** Applied to both LIST and WATCH. */
  readonly fieldSelector?: string | undefined
  /** The LIST of `path` (same selector). */
  readonly list: Effect.Effect<k8s.KubernetesListObject<k8s.KubernetesObject>, KubeApiError>
  /**
   * Back to wire JSON: client-node deserialises listed objects into model classes (timestamps
   * become `Date`s) while watched ones arrive as plain JSON; e.g. `ObjectSerializer.serialize(o, "V1Job")`.
   */
  readonly toWire: (object: k8s.KubernetesObject) => unknown
  readonly decode: (wire: unknown) => Either.Either<A, ParseResult.ParseError>
  readonly restartSchedule?: Schedule.Schedule<unknown, InformerFailure> | undefined
  /** A full relist this often (diffed: only changes are emitted); guards against a silently stuck watch. */
  readonly resyncInterval?: Duration.DurationInput | undefined
  /**
   * Keys under which `byIndex` finds a cached object (e.g. a pod's owner Jobs), kept up to date
   * with the cache, so a lookup costs the objects found, not a scan of the whole cache.
   */
  readonly indexBy?: ((object: A) => ReadonlyArray<string>) | undefined
  /** The first list waits for this (e.g. the API server check of `run`); default: at once. */
  readonly startAfter?: Effect.Effect<void> | undefined
}

export interface InformerShape<A extends Named> {
  /**
   * Per subscriber: the cache as `Upsert`s, then `Synced`, then live changes, with no gap and no
   * duplicate between replay and live. Waits for the first list before replaying.
   */
  readonly events: Stream.Stream<WatchEvent<A>>
  /** Completes once the first list has been applied to the cache. */
  readonly synced: Effect.Effect<void>
  readonly get: (name: string) => Effect.Effect<Option.Option<A>>
  readonly list: Effect.Effect<ReadonlyArray<A>>
  /** The cached objects that `indexBy` files under `key` (none without `indexBy`). */
  readonly byIndex: (key: string) => Effect.Effect<ReadonlyArray<A>>
  /** Restarts list+watch now and completes once the new list has been applied (diffed) to the cache. */
  readonly relist: Effect.Effect<void>
}

type RawEvent =
  | {
    readonly _tag: "Listed"
    readonly items: ReadonlyArray<k8s.KubernetesObject>
    readonly waiters: ReadonlyArray<Deferred.Deferred<void>>
  }
  | { readonly _tag: "Upsert"; readonly object: k8s.KubernetesObject }
  | { readonly _tag: "Delete"; readonly object: k8s.KubernetesObject }

interface Sequenced<A> {
  readonly seq: number
  readonly event: WatchEvent<A>
}

const nameOf = (object: k8s.KubernetesObject): string => object.metadata?.name ?? ""

/**
 * client-node's ListWatch keeps every object it saw (model classes, every field) in a cache of its
 * own, which only decides add/update/delete: beside our decoded cache it doubled the memory of the
 * caches (10k Jobs + 10k pods: ~185 MB of heap). Its entry is replaced by the name, namespace and
 * resourceVersion, all it compares; its delete events then carry the watch's object, or (on a
 * relist) the stub of an object whose delete the diff of our own list has already emitted.
 * `objects` is a private field of client-node 1.x: if it is not there, nothing is changed.
 */
const slimEntry = (informer: k8s.ListWatch<k8s.KubernetesObject>, object: k8s.KubernetesObject): void => {
  const stored: unknown = (informer as unknown as { readonly objects?: unknown }).objects
  if (!(stored instanceof Map)) return
  const name = object.metadata?.name ?? ""
  const namespace = object.metadata?.namespace ?? ""
  const byName: unknown = stored.get(namespace)
  if (!(byName instanceof Map) || byName.get(name) !== object) return
  byName.set(name, { metadata: { name, namespace, resourceVersion: object.metadata?.resourceVersion } })
}

const issuePaths = (error: unknown): string => {
  if (!ParseResult.isParseError(error)) return "<not serialisable>"
  try {
    const paths = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) =>
      issue.path.length === 0 ? "<root>" : issue.path.map(String).join(".")
    )
    return [...new Set(paths)].join(", ")
  } catch {
    return "<unknown>"
  }
}

/**
 * A client-node informer (`makeInformer`: LIST, then WATCH from its resourceVersion) behind a
 * decoded cache and a replaying event stream. Each session runs one informer instance; a failure
 * (client-node stops the informer on any `error`) ends the session and a new one starts after the
 * restart schedule. Every session begins with a fresh LIST that is diffed against the cache:
 * unchanged objects (same resourceVersion) emit nothing, changed ones an `Upsert`, vanished ones a
 * `Delete`. A `410 Gone` inside a session makes client-node relist by itself; that list is diffed
 * the same way. Objects that fail to decode are skipped, logged (paths only, never values) and counted.
 */
export const make = <A extends Named>(
  kubeConfig: k8s.KubeConfig,
  options: InformerOptions<A>
): Effect.Effect<InformerShape<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { kind } = options
    const clock = yield* Effect.clock
    const runPromise = yield* FiberSet.makeRuntimePromise<never>()
    const raw = yield* Effect.acquireRelease(Queue.unbounded<RawEvent>(), Queue.shutdown)
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<Sequenced<A>>(), PubSub.shutdown)
    const relistRequests = yield* Effect.acquireRelease(Queue.unbounded<Deferred.Deferred<void>>(), Queue.shutdown)
    const synced = yield* Deferred.make<void>()
    const failureCounter = Metric.tagged(decodeFailures, "kind", kind)
    const restartCounter = Metric.tagged(informerRestarts, "kind", kind)

    // Written only by the processing fiber, each change in one synchronous step with its `seq`.
    const cache = new Map<string, A>()
    // key -> name -> object, for `byIndex`; changed together with `cache`.
    const index = new Map<string, Map<string, A>>()
    const indexBy = options.indexBy
    const unindex = (object: A): void => {
      if (indexBy === undefined) return
      for (const key of indexBy(object)) {
        const entries = index.get(key)
        if (entries === undefined) continue
        entries.delete(object.metadata.name)
        if (entries.size === 0) index.delete(key)
      }
    }
    const reindex = (previous: A | undefined, next: A): void => {
      if (indexBy === undefined) return
      if (previous !== undefined) {
        const keep = new Set(indexBy(next))
        for (const key of indexBy(previous)) {
          if (keep.has(key)) continue
          const entries = index.get(key)
          entries?.delete(previous.metadata.name)
          if (entries?.size === 0) index.delete(key)
        }
      }
      for (const key of indexBy(next)) {
        const entries = index.get(key) ?? new Map<string, A>()
        entries.set(next.metadata.name, next)
        index.set(key, entries)
      }
    }
    const remove = (name: string): A | undefined => {
      const last = cache.get(name)
      if (last === undefined) return undefined
      cache.delete(name)
      unindex(last)
      return last
    }
    // The resourceVersion of each object whose current version failed to decode: counted once.
    const rejected = new Map<string, string | undefined>()
    let seq = 0
    // Relist requests waiting for the next session's list.
    const awaitingList: Array<Deferred.Deferred<void>> = []

    const emit = (event: WatchEvent<A>): void => {
      seq++
      pubsub.unsafeOffer({ seq, event })
    }

    const rvOf = (object: k8s.KubernetesObject): string | undefined => object.metadata?.resourceVersion

    /** Same name and resourceVersion as what we hold (or already refused): nothing to do. */
    const known = (object: k8s.KubernetesObject): boolean => {
      const name = nameOf(object)
      const rv = rvOf(object)
      if (rv === undefined) return false
      return cache.get(name)?.metadata.resourceVersion === rv || (rejected.has(name) && rejected.get(name) === rv)
    }

    const decode = (object: k8s.KubernetesObject): Effect.Effect<Option.Option<A>> =>
      Either.match(Either.flatMap(Either.try(() => options.toWire(object)), options.decode), {
        onRight: (value) => Effect.sync(() => rejected.delete(nameOf(object))).pipe(Effect.as(Option.some(value))),
        onLeft: (error) =>
          Effect.sync(() => rejected.set(nameOf(object), rvOf(object))).pipe(
            Effect.zipRight(Metric.increment(failureCounter)),
            Effect.zipRight(
              Effect.logWarning(`skipped a ${kind} that does not decode`).pipe(
                Effect.annotateLogs({ event: "watch_decode_failed", kind, name: nameOf(object), fields: issuePaths(error) })
              )
            ),
            Effect.as(Option.none())
          )
      })

    const upsert = (value: A): void => {
      const previous = cache.get(value.metadata.name)
      const rv = value.metadata.resourceVersion
      if (previous !== undefined && rv !== undefined && previous.metadata.resourceVersion === rv) return
      cache.set(value.metadata.name, value)
      reindex(previous, value)
      emit({ _tag: "Upsert", object: value })
    }

    const handle = (event: RawEvent): Effect.Effect<void> => {
      switch (event._tag) {
        case "Upsert":
          if (known(event.object)) return Effect.void
          return Effect.flatMap(decode(event.object), (decoded) =>
            Effect.sync(() => Option.map(decoded, upsert)))
        case "Delete": {
          const name = nameOf(event.object)
          rejected.delete(name)
          if (!cache.has(name)) return Effect.void
          return Effect.flatMap(decode(event.object), (decoded) =>
            Effect.sync(() => {
              const cached = remove(name)
              const last = Option.getOrUndefined(decoded) ?? cached
              if (last === undefined || cached === undefined) return
              emit({ _tag: "Delete", object: last })
            }))
        }
        case "Listed":
          return Effect.gen(function*() {
            const decoded: Array<A> = []
            for (const item of event.items) {
              if (known(item)) continue
              const value = yield* decode(item)
              if (Option.isSome(value)) decoded.push(value.value)
            }
            yield* Effect.sync(() => {
              // Present but undecodable objects keep their last good version: they still exist.
              const present = new Set(event.items.map(nameOf))
              for (const name of [...rejected.keys()]) if (!present.has(name)) rejected.delete(name)
              for (const name of [...cache.keys()]) {
                if (present.has(name)) continue
                const last = remove(name)
                if (last !== undefined) emit({ _tag: "Delete", object: last })
              }
              for (const value of decoded) upsert(value)
            })
            yield* Deferred.succeed(synced, undefined)
            for (const waiter of event.waiters) yield* Deferred.succeed(waiter, undefined)
          })
      }
    }

    yield* Queue.take(raw).pipe(
      Effect.flatMap(handle),
      Effect.catchAllCause((cause) => Effect.logError(`${kind} informer: event handling failed`, cause)),
      Effect.forever,
      Effect.forkScoped
    )

    const failure = (error: unknown, listedAt: number | undefined) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const classified = error instanceof InformerFailure
          ? undefined
          : error instanceof KubeApiError
          ? error
          : classify(`watch ${kind}`, options.path, error)
        // the API server's own 404 text ("404 page not found") does not say what was not found
        const message = classified?.status === 404 ? `${options.path} is not served (404)` : classified?.message
        return new InformerFailure({
          kind,
          message: message ?? String(error),
          status: classified?.status,
          healthyFor: Duration.millis(listedAt === undefined ? 0 : Math.max(0, now - listedAt))
        })
      })

    /** One informer instance: ends normally on a relist request or resync, fails on an informer error. */
    const session: Effect.Effect<void, InformerFailure> = Effect.scoped(
      Effect.gen(function*() {
        const failed = yield* Deferred.make<void, unknown>()
        const state = { closed: false, listedAt: undefined as number | undefined }
        // Requests made while no session ran are satisfied by this session's list.
        awaitingList.push(...(yield* Queue.takeAll(relistRequests)))

        const listOnce: Effect.Effect<k8s.KubernetesListObject<k8s.KubernetesObject>, KubeApiError> = options.list.pipe(
          Effect.flatMap((list) =>
            Effect.suspend(() => {
              // A list that returns after the session closed must not let the stopped informer watch.
              if (state.closed) return Effect.interrupt
              state.listedAt ??= clock.unsafeCurrentTimeMillis()
              raw.unsafeOffer({ _tag: "Listed", items: list.items, waiters: awaitingList.splice(0) })
              return Effect.succeed(list)
            })
          )
        )

        yield* Effect.acquireRelease(
          Effect.sync(() => {
            // what `makeInformer` builds, with the field selector it cannot pass
            const informer = new k8s.ListWatch<k8s.KubernetesObject>(
              options.path,
              new k8s.Watch(kubeConfig),
              () => runPromise(listOnce),
              false,
              options.labelSelector,
              options.fieldSelector
            )
            const offer = (tag: "Upsert" | "Delete") => (object: k8s.KubernetesObject) => {
              if (tag === "Upsert") slimEntry(informer, object)
              if (!state.closed) raw.unsafeOffer({ _tag: tag, object })
            }
            informer.on("add", offer("Upsert"))
            informer.on("update", offer("Upsert"))
            informer.on("delete", offer("Delete"))
            informer.on("error", (error: unknown) => {
              if (!state.closed) Deferred.unsafeDone(failed, Exit.fail(error))
            })
            // start() resolves once the watch is connected; failures arrive through `error` (or a rejection).
            const started = informer.start().then(undefined, (error: unknown) => {
              if (!state.closed) Deferred.unsafeDone(failed, Exit.fail(error))
            })
            return { informer, started }
          }),
          ({ informer, started }) =>
            Effect.sync(() => {
              // Stopping aborts the watch request, which client-node reports as an `error`: ignore it.
              state.closed = true
              // stop() cannot abort a watch request that is still connecting: stop again once it has.
              void started.then(() => informer.stop())
            }).pipe(Effect.zipRight(Effect.promise(() => informer.stop())))
        )

        const failedSession = Deferred.await(failed).pipe(
          Effect.catchAll((error) => Effect.flatMap(failure(error, state.listedAt), Effect.fail))
        )
        const relistRequested = Effect.flatMap(Queue.take(relistRequests), (waiter) =>
          Effect.sync(() => void awaitingList.push(waiter)))
        const resync = options.resyncInterval === undefined ? Effect.never : Effect.sleep(options.resyncInterval)
        yield* Effect.raceFirst(failedSession, Effect.race(relistRequested, resync))
      })
    )

    const schedule = options.restartSchedule ?? restartSchedule()
    yield* session.pipe(
      // A defect (a throwing callback, a bug) must not end the informer for good: restart it too.
      Effect.catchAllDefect((defect) => Effect.flatMap(failure(defect, undefined), Effect.fail)),
      Effect.tapError((failure) =>
        Effect.zipRight(
          Metric.increment(restartCounter),
          Effect.logWarning(`${kind} informer failed; restarting with back-off`).pipe(
            Effect.annotateLogs({
              event: "watch_restart",
              kind,
              status: failure.status ?? "none",
              error: failure.message
            })
          )
        )
      ),
      Effect.retry(schedule),
      Effect.forever,
      (sessions) => Effect.zipRight(options.startAfter ?? Effect.void, sessions),
      Effect.forkScoped
    )

    const events: Stream.Stream<WatchEvent<A>> = Stream.unwrapScoped(
      Effect.gen(function*() {
        yield* Deferred.await(synced)
        const subscription = yield* PubSub.subscribe(pubsub)
        // Everything up to `at` is in the snapshot; later changes come through the subscription.
        const { at, objects } = yield* Effect.sync(() => ({ at: seq, objects: [...cache.values()] }))
        const replay: Array<WatchEvent<A>> = [
          ...objects.map((object): WatchEvent<A> => ({ _tag: "Upsert", object })),
          { _tag: "Synced" }
        ]
        const live = Stream.fromQueue(subscription).pipe(
          Stream.filter((item) => item.seq > at),
          Stream.map((item) => item.event)
        )
        return Stream.concat(Stream.fromIterable(replay), live)
      })
    )

    const shape: InformerShape<A> = {
      events,
      synced: Deferred.await(synced),
      get: (name) => Effect.sync(() => Option.fromNullable(cache.get(name))),
      list: Effect.sync(() => [...cache.values()]),
      byIndex: (key) => Effect.sync(() => {
        const entries = index.get(key)
        return entries === undefined ? [] : [...entries.values()]
      }),
      relist: Effect.flatMap(Deferred.make<void>(), (waiter) =>
        Effect.zipRight(Queue.offer(relistRequests, waiter), Deferred.await(waiter)))
    }
    return shape
  }).pipe(Effect.annotateLogs({ service: "Informer", kind: options.kind }))
