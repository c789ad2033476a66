/**
 * The in-memory cluster against what a real node wrote for each failure mode
 * (`fixtures/real-node/*.json`, recorded on the real node by test/node/record-fixtures.test.ts).
 * For every mode: the fixture's objects decode with the executor's schemas (nulls and all), the
 * classifier judges them as the executor must (and no step on the way for another reason), and
 * the in-memory cluster passes through the same Job conditions and pod phases, reasons, container
 * states and exit codes, in the same order, with the same Events the executor reads.
 */
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { AgentConfig, Classifier, type JobBuilder, Kube, Labels, Time, ZombieReason } from "@executor/domain"
import type { WatchEvent } from "@executor/executor"
import { Chunk, DateTime, Deferred, Effect, Either, Option, Ref, Schema, Stream, TestClock } from "effect"
import * as InMemoryCluster from "../src/InMemoryCluster.js"
import * as PodBehaviour from "../src/PodBehaviour.js"

const fixturesDir = fileURLToPath(new URL("./fixtures/real-node/", import.meta.url))

const Fixture = Schema.Struct({
  mode: Schema.String,
  origin: Schema.String,
  summary: Schema.String,
  steps: Schema.NonEmptyArray(Schema.Struct({ at: Schema.Number, job: Schema.NullOr(Schema.Unknown), pods: Schema.Array(Schema.Unknown) })),
  events: Schema.Array(Schema.Unknown),
  verdict: Schema.Struct({
    /** The step judged (default: the last). */
    step: Schema.optional(Schema.Int),
    /** null: a success. */
    reason: Schema.NullOr(ZombieReason),
    /** Seconds after the step's time at which it is judged (a grace). */
    after: Schema.Number,
    detail: Schema.optional(Schema.String)
  })
})
type Fixture = typeof Fixture.Type

/**
 * A process that exits at once is a race on the real node: the kubelet may report it Running
 * first, or not at all (Pending, then the end). The in-memory run plays what was recorded.
 */
const quickExit = (exitCode: number) => (steps: ReadonlyArray<{ readonly pods: ReadonlyArray<Kube.Pod> }>) => {
  const seenRunning = steps.some((step) => step.pods.some((pod) => pod.status?.phase === "Running"))
  const after = seenRunning ? "1 second" : 0
  return exitCode === 0 ? PodBehaviour.succeed(after) : PodBehaviour.fail(after, { exitCode })
}

type Play = PodBehaviour.PodBehaviour | ReturnType<typeof quickExit>

/** How the in-memory cluster plays each mode. */
const modes: Readonly<Record<string, { readonly behaviour: Play; readonly deadline?: number; readonly ttl?: number }>> = {
  "image-pull-unreachable": { behaviour: PodBehaviour.imagePullFails },
  "invalid-image": { behaviour: PodBehaviour.invalidImage },
  "missing-secret": { behaviour: PodBehaviour.configError },
  oom: { behaviour: PodBehaviour.fail("2 seconds", { exitCode: 137, reason: "OOMKilled" }) },
  "exit-1": { behaviour: quickExit(1) },
  "deadline-exit-0": { behaviour: PodBehaviour.hangUntilSigterm(0), deadline: 30 },
  "deadline-ignores-sigterm": { behaviour: PodBehaviour.hang, deadline: 30 },
  unschedulable: { behaviour: PodBehaviour.unschedulable },
  "quota-no-pod": { behaviour: PodBehaviour.noPod },
  "evicted-ignores-sigterm": { behaviour: PodBehaviour.evicted("3 seconds") },
  "evicted-exit-0": { behaviour: PodBehaviour.evicted("3 seconds", { exitCode: 0 }) },
  "evicted-exit-0-lost": { behaviour: PodBehaviour.evicted("3 seconds", { exitCode: 0, lost: true }) },
  "exit-0-ttl": { behaviour: quickExit(0), ttl: 5 },
  "pull-stuck-past-deadline": { behaviour: PodBehaviour.imagePullFails, deadline: 30 }
}

/** Events the executor reads (the others, such as Pulling or FailedScheduling, are not modelled). */
const readEvents = new Set(["Evicted", "Killing", "FailedCreate"])

/** When an Event was first recorded. */
const firstRecorded = (event: Kube.Event): number =>
  Option.getOrElse(
    Option.firstSomeOf([Time.parseTimestamp(event.firstTimestamp), Time.parseTimestamp(event.eventTime), Time.parseTimestamp(event.metadata.creationTimestamp)]),
    () => 0
  )

const decoded = <A>(what: string, result: Either.Either<A, unknown>): A => {
  if (Either.isLeft(result)) throw new Error(`${what} does not decode: ${String(result.left)}`)
  return result.right
}

const load = (file: string) => {
  const fixture = decoded(file, Schema.decodeUnknownEither(Fixture)(JSON.parse(readFileSync(`${fixturesDir}${file}`, "utf8"))))
  const steps = fixture.steps.map((step, i) => ({
    at: step.at,
    job: step.job === null ? undefined : decoded(`${file} steps[${i}].job`, Kube.decodeJob(step.job)),
    pods: step.pods.map((pod, j) => decoded(`${file} steps[${i}].pods[${j}]`, Kube.decodePod(pod)))
  }))
  const events = fixture.events.map((event, i) => decoded(`${file} events[${i}]`, Kube.decodeEvent(event)))
  return { fixture, steps, events }
}

// ---- shapes ----------------------------------------------------------------------------------

const jobShape = (job: Kube.Job | undefined): string =>
  job === undefined
    ? "gone"
    : (job.status?.conditions ?? []).filter((c) => c.status === "True").map((c) => `${c.type}:${c.reason ?? ""}`).join(",") || "-"

const stateShape = (status: Kube.ContainerStatus): string => {
  const state = status.state
  if (state?.terminated !== undefined) return `terminated:${state.terminated.reason ?? ""}:${state.terminated.exitCode}`
  if (state?.running !== undefined) return "running"
  if (state?.waiting !== undefined) return `waiting:${state.waiting.reason ?? ""}`
  return "-"
}

const podShape = (pod: Kube.Pod | undefined): string => {
  if (pod === undefined) return "none"
  const status = pod.status
  const unscheduled = Kube.podCondition(pod, "PodScheduled").pipe(
    Option.filter((c) => c.status === "False"),
    Option.map((c) => `unschedulable:${c.reason ?? ""}`)
  )
  const disrupted = Kube.podCondition(pod, "DisruptionTarget").pipe(
    Option.filter((c) => c.status === "True"),
    Option.as("DisruptionTarget")
  )
  return [
    `${status?.phase ?? "Pending"}${status?.reason === undefined ? "" : `/${status.reason}`}`,
    (status?.containerStatuses ?? []).map(stateShape).join(",") || "-",
    ...Option.toArray(unscheduled),
    ...Option.toArray(disrupted),
    ...(Kube.isDeleting(pod.metadata) ? ["deleting"] : [])
  ].join(" ")
}

const deduped = (shapes: ReadonlyArray<string>): ReadonlyArray<string> => shapes.filter((s, i) => i === 0 || s !== shapes[i - 1])

/** True when `wanted` appears in `seen`, in order (other shapes may come in between). */
const isSubsequence = (wanted: ReadonlyArray<string>, seen: ReadonlyArray<string>): boolean => {
  let i = 0
  for (const shape of seen) if (shape === wanted[i]) i++
  return i === wanted.length
}

// ---- the in-memory run -----------------------------------------------------------------------

const names = Labels.names()
const T0 = DateTime.toEpochMillis(DateTime.unsafeMake("2026-06-01T12:00:00Z"))
const jobName = "claude-agent-4aa57614-1a2b3c4d5e"

const manifest = (mode: { readonly deadline?: number; readonly ttl?: number }): JobBuilder.JobManifest => ({
  apiVersion: "batch/v1",
  kind: "Job",
  metadata: {
    name: jobName,
    namespace: "agents",
    labels: { [names.taskIdLabel]: "4aa57614-8835-4992-87e9-ca483ddbeae6" },
    annotations: {},
    finalizers: []
  },
  spec: {
    backoffLimit: 0,
    completions: 1,
    parallelism: 1,
    completionMode: "NonIndexed",
    podReplacementPolicy: "TerminatingOrFailed",
    ttlSecondsAfterFinished: mode.ttl ?? 1800,
    activeDeadlineSeconds: mode.deadline ?? 3600,
    template: {
      metadata: { labels: { [names.taskIdLabel]: "4aa57614-8835-4992-87e9-ca483ddbeae6" }, annotations: {} },
      spec: {
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        containers: [{
          name: "agent",
          image: "127.0.0.1:5001/agent:test",
          imagePullPolicy: "Always",
          env: [],
          resources: { requests: { cpu: "20m", memory: "20Mi" }, limits: { cpu: "50m", memory: "50Mi" } }
        }]
      }
    }
  }
})

const collect = <A>(stream: Stream.Stream<WatchEvent<A>>, shape: (object: A | undefined) => string) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make(Chunk.empty<string>())
    const synced = yield* Deferred.make<void>()
    yield* Effect.forkScoped(
      Stream.runForEach(stream, (event) =>
        event._tag === "Synced"
          ? Deferred.succeed(synced, undefined)
          : Ref.update(seen, Chunk.append(shape(event._tag === "Delete" ? undefined : event.object))))
    )
    yield* Deferred.await(synced)
    return Effect.map(Ref.get(seen), Chunk.toReadonlyArray)
  })

const playInMemory = (mode: { readonly behaviour: PodBehaviour.PodBehaviour; readonly deadline?: number; readonly ttl?: number }) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const cluster = yield* InMemoryCluster.make({ namespace: "agents", names, podBehaviour: PodBehaviour.always(mode.behaviour) })
    const jobs = yield* collect(cluster.watch.jobEvents, jobShape)
    const pods = yield* collect(cluster.watch.podEvents, podShape)
    yield* cluster.ops.createJob(manifest(mode))
    for (let t = 1; t <= 120; t++) yield* Effect.zipRight(TestClock.setTime(T0 + t * 1000), Effect.yieldNow())
    return {
      jobs: deduped(["gone", ...(yield* jobs)]),
      pods: deduped(["none", ...(yield* pods)]),
      events: (yield* cluster.events).filter((e) => readEvents.has(e.reason)).map((e) => `${e.involvedObject.kind}:${e.reason}`)
    }
  })

// ---- the tests -------------------------------------------------------------------------------

const files = readdirSync(fixturesDir).filter((file) => file.endsWith(".json")).sort()

describe("the in-memory cluster writes what a real node writes", () => {
  it("every fixture has a mode, and every mode a fixture", () => {
    expect(files.map((file) => file.replace(/\.json$/, "")).sort()).toEqual(Object.keys(modes).sort())
  })

  describe.each(files)("%s", (file) => {
    const { events, fixture, steps } = load(file)

    it("judged by the classifier as the executor must, and never for another reason on the way", () => {
      const judged = fixture.verdict.step ?? steps.length - 1
      let firstSeen: Classifier.FirstSeen = new Map()
      const judge = (i: number, now: number) => {
        const step = steps[i]
        if (step === undefined) throw new Error(`${file}: no step ${i}`)
        const classification = Classifier.classify({
          run: { jobName, startedAt: T0 },
          job: Option.fromNullable(step.job),
          pods: step.pods,
          // the Events recorded by then (their times have second precision)
          events: events.filter((event) => firstRecorded(event) <= now),
          graces: AgentConfig.defaultGraces,
          sweeperIntervalSeconds: 60,
          now,
          firstSeen
        })
        firstSeen = classification.firstSeen
        return classification.judgement
      }
      // every step is seen when it happens (a grace counts from there), then judged once the grace ran out
      for (let i = 0; i <= judged; i++) {
        const onTheWay = judge(i, T0 + (steps[i]?.at ?? 0) * 1000)
        if (onTheWay._tag === "Zombie") {
          expect(onTheWay.reason, `${file}: step ${i} (${steps[i]?.at} s) judged ${onTheWay.reason}: ${onTheWay.detail}`).toBe(fixture.verdict.reason)
        }
      }
      const judgement = judge(judged, T0 + ((steps[judged]?.at ?? 0) + fixture.verdict.after) * 1000)
      if (fixture.verdict.reason === null) {
        expect(judgement).toEqual({ _tag: "Succeeded" })
      } else {
        expect(judgement).toMatchObject({ _tag: "Zombie", reason: fixture.verdict.reason })
        if (fixture.verdict.detail !== undefined) {
          expect(judgement._tag === "Zombie" ? judgement.detail : "").toContain(fixture.verdict.detail)
        }
      }
    })

    it.scoped("the in-memory cluster passes through the same shapes, in order, with the same Events", () =>
      Effect.gen(function*() {
        const mode = modes[fixture.mode]
        if (mode === undefined) throw new Error(`${file}: mode ${fixture.mode} has no in-memory behaviour`)
        const behaviour = typeof mode.behaviour === "function" ? mode.behaviour(steps) : mode.behaviour
        const played = yield* playInMemory({ ...mode, behaviour })
        const wantedJobs = deduped(["gone", ...steps.map((s) => jobShape(s.job))])
        const wantedPods = deduped(["none", ...steps.map((s) => podShape(s.pods[0]))])
        expect(isSubsequence(wantedJobs, played.jobs), `Job: real ${JSON.stringify(wantedJobs)}, in memory ${JSON.stringify(played.jobs)}`).toBe(true)
        expect(isSubsequence(wantedPods, played.pods), `pod: real ${JSON.stringify(wantedPods)}, in memory ${JSON.stringify(played.pods)}`).toBe(true)
        const wantedEvents = events.filter((e) => readEvents.has(e.reason ?? "")).map((e) => `${e.involvedObject.kind ?? ""}:${e.reason ?? ""}`)
        expect([...new Set(played.events)].sort()).toEqual([...new Set(wantedEvents)].sort())
      }))
  })
})
