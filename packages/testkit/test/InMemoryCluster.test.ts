import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, DateTime, Deferred, Effect, Exit, Fiber, Option, Ref, Stream, TestClock } from "effect"
import { type JobBuilder, Kube, Labels } from "@executor/domain"
import { ClusterError, ClusterOps, ClusterWatch, type WatchEvent } from "@executor/executor"
import * as InMemoryCluster from "../src/InMemoryCluster.js"
import * as PodBehaviour from "../src/PodBehaviour.js"

const names = Labels.names()
const T0 = DateTime.toEpochMillis(DateTime.unsafeMake("2026-01-05T00:00:00Z"))
const ts = (seconds: number) => InMemoryCluster.formatTimestamp(T0 + seconds * 1000)
const image = "registry.example/agent-claude:v1"

interface JobOptions {
  readonly taskId?: string
  readonly finalizers?: ReadonlyArray<string>
  readonly activeDeadlineSeconds?: number
  readonly ttlSecondsAfterFinished?: number
}

const manifest = (name: string, options: JobOptions = {}): JobBuilder.JobManifest => {
  const taskId = options.taskId ?? "4aa57614-8835-4992-87e9-ca483ddbeae6"
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: "agents",
      labels: { [names.taskIdLabel]: taskId, [names.assigneeLabel]: "claude-agent" },
      annotations: {},
      finalizers: options.finalizers ?? []
    },
    spec: {
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      completionMode: "NonIndexed",
      podReplacementPolicy: "TerminatingOrFailed",
      ttlSecondsAfterFinished: options.ttlSecondsAfterFinished ?? 1800,
      activeDeadlineSeconds: options.activeDeadlineSeconds ?? 3600,
      template: {
        metadata: { labels: { [names.taskIdLabel]: taskId, app: "agent" }, annotations: {} },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          imagePullSecrets: [],
          containers: [
            {
              name: "agent",
              image,
              imagePullPolicy: "Always",
              env: [{ name: "TASK_ID", value: taskId }],
              resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "1", memory: "1Gi" } }
            }
          ]
        }
      }
    }
  }
}

const setup = (podBehaviour: PodBehaviour.Resolver) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    return yield* InMemoryCluster.make({ namespace: "agents", names, podBehaviour })
  })

/** Moves the test clock to `seconds` after T0, running every timer due on the way. */
const until = (seconds: number) => Effect.zipRight(TestClock.setTime(T0 + seconds * 1000), Effect.yieldNow())

const jobOf = (cluster: InMemoryCluster.InMemoryClusterShape, name: string) =>
  Effect.flatMap(cluster.watch.job(name), (job) =>
    Option.isSome(job) ? Effect.succeed(job.value) : Effect.dieMessage(`Job ${name} is missing`))

const onlyPod = (cluster: InMemoryCluster.InMemoryClusterShape, jobName: string) =>
  Effect.flatMap(cluster.watch.podsOfJob(jobName), (pods) => {
    const [pod, ...rest] = pods
    return pod !== undefined && rest.length === 0
      ? Effect.succeed(pod)
      : Effect.dieMessage(`expected one pod of ${jobName}, found ${pods.length}`)
  })

const conditionsOf = (job: Kube.Job) => (job.status?.conditions ?? []).map((c) => `${c.type}=${c.status}:${c.reason ?? ""}`)
const condition = (job: Kube.Job, type: string) => job.status?.conditions?.find((c) => c.type === type)
const tagOf = (behaviour: PodBehaviour.PodBehaviour | PodBehaviour.Manual) =>
  behaviour === "manual" ? behaviour : behaviour._tag
const container = (pod: Kube.Pod) => pod.status?.containerStatuses?.[0]?.state

/** Records every watch event with the clock time it was seen at (seconds since T0); returns once subscribed. */
const recordEvents = <A>(stream: Stream.Stream<WatchEvent<A>>) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make(Chunk.empty<readonly [number, WatchEvent<A>]>())
    const synced = yield* Deferred.make<void>()
    yield* Effect.forkScoped(
      Stream.runForEach(stream, (event) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => Ref.update(seen, Chunk.append([(now - T0) / 1000, event] as const))).pipe(
          Effect.zipRight(event._tag === "Synced" ? Deferred.succeed(synced, undefined) : Effect.void)
        ))
    )
    yield* Deferred.await(synced)
    return Effect.map(Ref.get(seen), Chunk.toReadonlyArray)
  })

describe("InMemoryCluster", () => {
  describe("job controller and kubelet", () => {
    it.scoped("creates the pod 1 s after the Job; ContainerCreating 0.3 s later; the pod is Running 5 s after its creation", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.succeed("5 minutes")))
        assert.strictEqual(yield* cluster.ops.createJob(manifest("job-a")), "created")
        const created = yield* jobOf(cluster, "job-a")
        assert.strictEqual(created.metadata.uid, "uid-1")
        assert.strictEqual(created.metadata.creationTimestamp, "2026-01-05T00:00:00Z")
        assert.strictEqual(created.status?.startTime, ts(0))

        yield* until(0.999)
        assert.deepStrictEqual(yield* cluster.watch.podsOfJob("job-a"), [])

        yield* until(1)
        const pending = yield* onlyPod(cluster, "job-a")
        assert.match(pending.metadata.name, /^job-a-[bcdfghjklmnpqrstvwxz2456789]{5}$/)
        assert.strictEqual(pending.metadata.creationTimestamp, ts(1))
        assert.strictEqual(pending.status?.phase, "Pending")
        assert.strictEqual(pending.metadata.labels?.["job-name"], "job-a")
        assert.strictEqual(pending.metadata.labels?.[names.taskIdLabel], "4aa57614-8835-4992-87e9-ca483ddbeae6")
        assert.strictEqual(pending.metadata.labels?.["app"], "agent")
        assert.deepStrictEqual(
          pending.metadata.ownerReferences?.map((ref) => [ref.kind, ref.name, ref.uid, ref.controller]),
          [["Job", "job-a", created.metadata.uid, true]]
        )
        assert.deepStrictEqual(pending.spec?.containers?.map((c) => [c.name, c.image]), [["agent", image]])
        assert.strictEqual((yield* jobOf(cluster, "job-a")).status?.active, 1)

        yield* until(1.299)
        assert.isUndefined(container(yield* onlyPod(cluster, "job-a")))
        yield* until(1.3)
        const creating = yield* onlyPod(cluster, "job-a")
        assert.deepStrictEqual(container(creating), { waiting: { reason: "ContainerCreating" } })
        assert.strictEqual(Kube.podCondition(creating, "PodScheduled").pipe(Option.map((c) => c.status), Option.getOrNull), "True")
        yield* until(5.999)
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Pending")
        yield* until(6)
        const running = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(running.status?.phase, "Running")
        assert.strictEqual(Kube.podCondition(running, "PodScheduled").pipe(Option.map((c) => c.status), Option.getOrNull), "True")
        assert.deepStrictEqual(container(running), { running: { startedAt: ts(6) } })
      }))

    it.scoped("succeed: the container exits 0 while the phase says Running, the pod Succeeded 1 s later, the Job completes, and TTL deletes it with its pods", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.succeed("2 minutes")))
        const notices = yield* Effect.forkScoped(Stream.runCollect(Stream.take(cluster.notices, 2)))
        yield* cluster.ops.createJob(manifest("job-a", { ttlSecondsAfterFinished: 600 }))

        yield* until(125.999)
        assert.deepStrictEqual(container(yield* onlyPod(cluster, "job-a")), { running: { startedAt: ts(6) } })
        yield* until(126)
        const ended = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(ended.status?.phase, "Running")
        assert.deepStrictEqual(container(ended)?.terminated, { exitCode: 0, reason: "Completed", finishedAt: ts(126) })
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), [])
        yield* until(127)
        const pod = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(pod.status?.phase, "Succeeded")
        assert.deepStrictEqual(container(pod)?.terminated, { exitCode: 0, reason: "Completed", finishedAt: ts(126) })
        const job = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(conditionsOf(job), [
          "SuccessCriteriaMet=True:CompletionsReached",
          "Complete=True:CompletionsReached"
        ])
        assert.strictEqual(job.status?.succeeded, 1)
        assert.strictEqual(job.status?.active, 0)
        assert.strictEqual(job.status?.completionTime, ts(127))
        assert.isTrue(Kube.jobSucceeded(job))

        yield* until(726.999)
        assert.isTrue(Option.isSome(yield* cluster.watch.job("job-a")))
        yield* until(727)
        assert.isTrue(Option.isNone(yield* cluster.watch.job("job-a")))
        assert.deepStrictEqual(yield* cluster.podsSnapshot, [])
        const [createdNotice, deletedNotice] = Chunk.toReadonlyArray(yield* Fiber.join(notices))
        assert.deepStrictEqual(createdNotice, {
          _tag: "JobCreated",
          taskId: "4aa57614-8835-4992-87e9-ca483ddbeae6",
          jobName: "job-a",
          jobUid: "uid-1",
          attempt: 1,
          at: T0
        })
        assert.deepStrictEqual(deletedNotice, {
          _tag: "JobDeleted",
          taskId: "4aa57614-8835-4992-87e9-ca483ddbeae6",
          jobName: "job-a",
          jobUid: "uid-1",
          at: T0 + 727_000
        })
      }))

    it.scoped("fail with exit 137 OOMKilled: the container ends while the phase says Running, then the pod fails; FailureTarget, then Failed", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.fail("30 seconds", { exitCode: 137, reason: "OOMKilled" })))
        const jobEvents = yield* recordEvents(cluster.watch.jobEvents)
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(36)
        const ended = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(ended.status?.phase, "Running")
        assert.deepStrictEqual(container(ended)?.terminated, { exitCode: 137, reason: "OOMKilled", finishedAt: ts(36) })
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), [])
        yield* until(37)
        const pod = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(pod.status?.phase, "Failed")
        // the container's end keeps its time as the phase follows
        assert.deepStrictEqual(container(pod)?.terminated, { exitCode: 137, reason: "OOMKilled", finishedAt: ts(36) })
        const job = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(conditionsOf(job), [
          "FailureTarget=True:BackoffLimitExceeded",
          "Failed=True:BackoffLimitExceeded"
        ])
        assert.strictEqual(job.status?.failed, 1)
        assert.strictEqual(job.status?.active, 0)
        assert.strictEqual(condition(job, "Failed")?.lastTransitionTime, ts(37))
        const upserts = (yield* jobEvents).flatMap(([, event]) => (event._tag === "Upsert" ? [conditionsOf(event.object)] : []))
        assert.deepStrictEqual(upserts.slice(-2), [
          ["FailureTarget=True:BackoffLimitExceeded"],
          ["FailureTarget=True:BackoffLimitExceeded", "Failed=True:BackoffLimitExceeded"]
        ])
      }))

    it.scoped("fail with exit code 0 behaves like succeed", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.fail("10 seconds", { exitCode: 0 })))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(17)
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Succeeded")
        assert.isTrue(Kube.jobSucceeded(yield* jobOf(cluster, "job-a")))
      }))

    it.scoped("activeDeadlineSeconds, PID 1 ignores SIGTERM: FailureTarget at the deadline, the pod dies with 137 after the 30 s grace, then Failed", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        const podEvents = yield* recordEvents(cluster.watch.podEvents)
        yield* cluster.ops.createJob(manifest("job-a", { activeDeadlineSeconds: 600 }))

        yield* until(599.999)
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Running")
        assert.isTrue(Kube.jobActive(yield* jobOf(cluster, "job-a")))

        yield* until(600)
        const terminating = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(terminating.status?.phase, "Running")
        assert.strictEqual(terminating.metadata.deletionTimestamp, ts(600))
        const target = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(conditionsOf(target), ["FailureTarget=True:DeadlineExceeded"])
        assert.strictEqual(condition(target, "FailureTarget")?.lastTransitionTime, ts(600))

        yield* until(629.999)
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), ["FailureTarget=True:DeadlineExceeded"])
        yield* until(630)
        const job = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(conditionsOf(job), ["FailureTarget=True:DeadlineExceeded", "Failed=True:DeadlineExceeded"])
        assert.strictEqual(condition(job, "Failed")?.lastTransitionTime, ts(630))
        assert.strictEqual(job.status?.failed, 1)
        assert.strictEqual(job.status?.active, 0)
        // the pod ended (no pod-level reason: the job controller deleted it) and then went
        assert.deepStrictEqual(yield* cluster.watch.podsOfJob("job-a"), [])
        const last = (yield* podEvents).flatMap(([t, event]) => (event._tag === "Synced" ? [] : [[t, event] as const])).slice(-2)
        assert.deepStrictEqual(last.map(([t, e]) => `${t} ${e._tag} ${e.object.status?.phase}`), ["630 Upsert Failed", "630 Delete Failed"])
        const killed = last[0]?.[1]
        assert.isUndefined(killed?._tag === "Upsert" ? killed.object.status?.reason : "")
        assert.deepStrictEqual(killed?._tag === "Upsert" ? container(killed.object)?.terminated : undefined, {
          exitCode: 137,
          reason: "Error",
          finishedAt: ts(630)
        })
      }))

    it.scoped("activeDeadlineSeconds, the process exits 0 on SIGTERM: the pod ends Succeeded at once, counted failed when it was deleted; the Job fails DeadlineExceeded", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hangUntilSigterm(0)))
        const podEvents = yield* recordEvents(cluster.watch.podEvents)
        yield* cluster.ops.createJob(manifest("job-a", { activeDeadlineSeconds: 20 }))
        yield* until(20)
        const job = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(conditionsOf(job), ["FailureTarget=True:DeadlineExceeded", "Failed=True:DeadlineExceeded"])
        // as the real job controller counts it: a pod it deleted before it ended failed, whatever its phase
        assert.strictEqual(job.status?.failed, 1)
        assert.isUndefined(job.status?.succeeded)
        assert.isFalse(Kube.jobSucceeded(job))
        const ended = (yield* podEvents).flatMap(([, e]) => (e._tag === "Upsert" && e.object.status?.phase === "Succeeded" ? [e.object] : []))
        assert.deepStrictEqual(ended.map((p) => container(p)?.terminated), [{ exitCode: 0, reason: "Completed", finishedAt: ts(20) }])
        assert.isTrue(yield* cluster.wasSignalled(ended[0]?.metadata.uid ?? ""))
      }))

    it.scoped("activeDeadlineSeconds while the image pull fails: the container that never started shows ContainerCreating, then ends ContainerStatusUnknown, exit 137, no times", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.imagePullFails))
        const podEvents = yield* recordEvents(cluster.watch.podEvents)
        yield* cluster.ops.createJob(manifest("job-a", { activeDeadlineSeconds: 60 }))
        yield* until(60)
        const deleting = yield* onlyPod(cluster, "job-a")
        assert.isDefined(deleting.metadata.deletionTimestamp)
        assert.deepStrictEqual(container(deleting), { waiting: { reason: "ContainerCreating" } })
        assert.strictEqual((yield* jobOf(cluster, "job-a")).status?.failed, 1)
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), ["FailureTarget=True:DeadlineExceeded"])
        yield* until(61)
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), [
          "FailureTarget=True:DeadlineExceeded",
          "Failed=True:DeadlineExceeded"
        ])
        const failed = (yield* podEvents).flatMap(([, e]) => (e._tag === "Upsert" && e.object.status?.phase === "Failed" ? [e.object] : []))
        assert.deepStrictEqual(failed.map((p) => container(p)?.terminated), [
          { exitCode: 137, reason: "ContainerStatusUnknown", message: "The container could not be located when the pod was terminated" }
        ])
      }))

    it.scoped("image-pull-fails: ErrImagePull at 5 s, ImagePullBackOff only 13 s later, retries after 10, 20, 40 ... 300 s, each ErrImagePull for 12 s", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.imagePullFails))
        const podEvents = yield* recordEvents(cluster.watch.podEvents)
        yield* cluster.ops.createJob(manifest("job-a", { activeDeadlineSeconds: 7200 }))
        yield* until(1000)

        const waiting = (yield* podEvents).flatMap(([t, event]) => {
          const reason = event._tag === "Upsert" ? container(event.object)?.waiting?.reason : undefined
          return reason === undefined || reason === "ContainerCreating" ? [] : [`${t - 1}s ${reason}`] // relative to the pod's creation
        })
        assert.deepStrictEqual(waiting, [
          "5s ErrImagePull",
          "18s ImagePullBackOff",
          "28s ErrImagePull",
          "40s ImagePullBackOff",
          "60s ErrImagePull",
          "72s ImagePullBackOff",
          "112s ErrImagePull",
          "124s ImagePullBackOff",
          "204s ErrImagePull",
          "216s ImagePullBackOff",
          "376s ErrImagePull",
          "388s ImagePullBackOff",
          "688s ErrImagePull",
          "700s ImagePullBackOff"
        ])
        const pod = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(pod.status?.phase, "Pending")
        assert.strictEqual(container(pod)?.waiting?.reason, "ImagePullBackOff")
        assert.match(container(pod)?.waiting?.message ?? "", new RegExp(`^Back-off pulling image "${image}": ErrImagePull: failed to pull and unpack image "${image}"`))
        assert.isTrue(Kube.jobActive(yield* jobOf(cluster, "job-a")))
        assert.strictEqual(Kube.podCondition(pod, "PodScheduled").pipe(Option.map((c) => c.status), Option.getOrNull), "True")
      }))

    it.scoped("image-pull-recovers: pull failures for D after the first one, then Running, exit 0 a minute later", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.imagePullRecovers("30 seconds")))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(6)
        assert.strictEqual(container(yield* onlyPod(cluster, "job-a"))?.waiting?.reason, "ErrImagePull")
        yield* until(35.999)
        assert.strictEqual(container(yield* onlyPod(cluster, "job-a"))?.waiting?.reason, "ErrImagePull")
        yield* until(36)
        const running = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(running.status?.phase, "Running")
        assert.deepStrictEqual(container(running), { running: { startedAt: ts(36) } })
        yield* until(97)
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Succeeded")
        assert.isTrue(Kube.jobSucceeded(yield* jobOf(cluster, "job-a")))
      }))

    it.scoped("invalid-image and config-error: Pending with the waiting reason from 5 s on", () =>
      Effect.gen(function*() {
        const cluster = yield* setup((job) =>
          job.jobName === "job-invalid" ? PodBehaviour.invalidImage : PodBehaviour.configError
        )
        yield* cluster.ops.createJob(manifest("job-invalid", { taskId: "t1" }))
        yield* cluster.ops.createJob(manifest("job-config", { taskId: "t2" }))
        yield* until(5.999)
        assert.deepStrictEqual(container(yield* onlyPod(cluster, "job-invalid")), { waiting: { reason: "ContainerCreating" } })
        yield* until(600)
        const invalid = yield* onlyPod(cluster, "job-invalid")
        assert.strictEqual(invalid.status?.phase, "Pending")
        assert.strictEqual(container(invalid)?.waiting?.reason, "InvalidImageName")
        const config = yield* onlyPod(cluster, "job-config")
        assert.strictEqual(config.status?.phase, "Pending")
        assert.deepStrictEqual(container(config)?.waiting, {
          reason: "CreateContainerConfigError",
          message: `secret "agent-secrets" not found`
        })
        assert.isTrue(Kube.jobActive(yield* jobOf(cluster, "job-config")))
      }))

    it.scoped("unschedulable: Pending with PodScheduled=False reason Unschedulable", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.unschedulable))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(300)
        const pod = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(pod.status?.phase, "Pending")
        const scheduled = Option.getOrUndefined(Kube.podCondition(pod, "PodScheduled"))
        assert.strictEqual(scheduled?.status, "False")
        assert.strictEqual(scheduled?.reason, "Unschedulable")
        assert.strictEqual(scheduled?.lastTransitionTime, ts(1))
        assert.include(scheduled?.message ?? "", "nodes are available")
        assert.isUndefined(pod.status?.containerStatuses)
      }))

    it.scoped("evicted, PID 1 ignores SIGTERM: Events Evicted and Killing, the pod fails with reason Evicted and 137, no DisruptionTarget; the Job fails", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.evicted("2 minutes")))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(125.999)
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Running")
        yield* until(126)
        const pod = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(pod.status?.phase, "Failed")
        assert.strictEqual(pod.status?.reason, "Evicted")
        assert.strictEqual(pod.status?.message, PodBehaviour.evictedMessage)
        assert.strictEqual(container(pod)?.terminated?.exitCode, 137)
        assert.isTrue(Option.isNone(Kube.podCondition(pod, "DisruptionTarget")))
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), [
          "FailureTarget=True:BackoffLimitExceeded",
          "Failed=True:BackoffLimitExceeded"
        ])
        const events = yield* cluster.events
        assert.deepStrictEqual(events.map((e) => [e.involvedObject.kind, e.involvedObject.name, e.reason, e.type, e.source, e.at - T0]), [
          ["Pod", pod.metadata.name, "Evicted", "Warning", "kubelet", 126_000],
          ["Pod", pod.metadata.name, "Killing", "Normal", "kubelet", 126_000]
        ])
      }))

    it.scoped("evicted, the process exits 0 on SIGTERM: pod Succeeded with no reason, Job Complete; only the Evicted Event tells", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.evicted("2 minutes", { exitCode: 0 })))
        const evictions = yield* recordEvents(cluster.watch.evictionEvents)
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(126)
        const pod = yield* onlyPod(cluster, "job-a")
        assert.strictEqual(pod.status?.phase, "Succeeded")
        assert.isUndefined(pod.status?.reason)
        assert.deepStrictEqual(container(pod)?.terminated, { exitCode: 0, reason: "Completed", finishedAt: ts(126) })
        const job = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(conditionsOf(job), ["SuccessCriteriaMet=True:CompletionsReached", "Complete=True:CompletionsReached"])
        assert.isTrue(Kube.jobSucceeded(job))
        assert.isTrue(yield* cluster.wasSignalled(pod.metadata.uid ?? ""))
        // the eviction watch (field selector involvedObject.kind=Pod,reason=Evicted) and the live read see the Event
        const seen = (yield* evictions).flatMap(([t, e]) => (e._tag === "Upsert" ? [[t, e.object] as const] : []))
        assert.deepStrictEqual(seen.map(([t, e]) => [t, e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid, e.reason, e.message]), [
          [126, "Pod", pod.metadata.name, pod.metadata.uid, "Evicted", PodBehaviour.evictedMessage]
        ])
        assert.deepStrictEqual((yield* cluster.watch.evictions).map((e) => e.reason), ["Evicted"])
        const live = yield* cluster.watch.readEvents(Kube.podEvictionSelector)
        assert.deepStrictEqual(live.map((e) => [e.involvedObject.name, e.source?.component, e.lastTimestamp]), [[pod.metadata.name, "kubelet", ts(126)]])
        assert.deepStrictEqual(
          (yield* cluster.watch.readEvents(`involvedObject.kind=Pod,involvedObject.name=${pod.metadata.name},reason=Killing`)).map((e) => e.reason),
          ["Killing"]
        )
      }))

    it.scoped("no-pod: no pod ever; the job controller's FailedCreate Event for each try (1 s doubling to 60 s), combined after ten", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.noPod))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(600)
        assert.deepStrictEqual(yield* cluster.podsSnapshot, [])
        const events = yield* cluster.events
        // 1, 2, 4, 8, 16, 32, 64, then every 60 s: 124 ... 544; each names the pod name the API
        // server generated, so each is an Event of its own until client-go combines the 11th on
        const tries = [1, 2, 4, 8, 16, 32, 64, 124, 184, 244]
        assert.deepStrictEqual(events.map((e) => [e.involvedObject.name, e.involvedObject.uid, e.reason, e.type, e.source, e.at, e.count, e.lastAt]), [
          ...tries.map((t) => ["job-a", "uid-1", "FailedCreate", "Warning", "job-controller", T0 + t * 1000, 1, T0 + t * 1000]),
          ["job-a", "uid-1", "FailedCreate", "Warning", "job-controller", T0 + 304_000, 5, T0 + 544_000]
        ])
        const messages = events.map((e) => e.message)
        assert.strictEqual(new Set(messages).size, 11)
        for (const message of messages.slice(0, 10)) {
          assert.match(message, /^Error creating: pods "job-a-[bcdfghjklmnpqrstvwxz2456789]{5}" is forbidden: exceeded quota: agent-quota, requested: pods=1, used: pods=0, limited: pods=0$/)
        }
        assert.match(messages[10] ?? "", /^\(combined from similar events\): Error creating: pods "job-a-[a-z0-9]{5}" is forbidden: exceeded quota: /)
        const live = yield* cluster.watch.readEvents(Kube.jobCreateFailureSelector("job-a"))
        assert.match(live[0]?.message ?? "", /^Error creating: pods "job-a-[a-z0-9]{5}" is forbidden: exceeded quota: /)
        assert.deepStrictEqual(yield* cluster.watch.readEvents(Kube.jobCreateFailureSelector("job-b")), [])
        const job = yield* jobOf(cluster, "job-a")
        assert.isTrue(Kube.jobActive(job))
        assert.strictEqual(job.status?.active, undefined)
      }))

    it.scoped("manual: the pod stays Pending until the test drives it", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always("manual"))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(300)
        const pod = yield* onlyPod(cluster, "job-a")
        assert.deepStrictEqual(pod.status, { phase: "Pending" })
        yield* cluster.patchPodStatus(pod.metadata.name, {
          phase: "Succeeded",
          containerStatuses: [{ name: "agent", state: { terminated: { exitCode: 0, reason: "Completed" } } }]
        })
        const job = yield* jobOf(cluster, "job-a")
        assert.isTrue(Kube.jobSucceeded(job))
        assert.strictEqual(job.status?.completionTime, ts(300))
      }))

    it.scoped("backoffLimit above 0: a failed pod is replaced after the back-off, until the limit", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.fail("4 seconds")))
        const base = manifest("job-a")
        yield* cluster.createJob({ ...base, spec: { ...base.spec, backoffLimit: 1 } })
        // Running at 6 s, the container ends at 10 s, the phase follows at 11 s
        yield* until(11)
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Failed")
        const retrying = yield* jobOf(cluster, "job-a")
        assert.strictEqual(retrying.status?.failed, 1)
        assert.deepStrictEqual(conditionsOf(retrying), [])
        yield* until(21)
        const pods = yield* cluster.watch.podsOfJob("job-a")
        assert.deepStrictEqual(pods.map((p) => p.status?.phase), ["Failed", "Pending"])
        assert.strictEqual(pods[1]?.metadata.creationTimestamp, ts(21))
        yield* until(31)
        const failed = yield* jobOf(cluster, "job-a")
        assert.strictEqual(failed.status?.failed, 2)
        assert.deepStrictEqual(conditionsOf(failed), ["FailureTarget=True:BackoffLimitExceeded", "Failed=True:BackoffLimitExceeded"])
      }))
  })

  describe("API server", () => {
    it.scoped("createJob twice answers exists and changes nothing", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        assert.strictEqual(yield* cluster.ops.createJob(manifest("job-a")), "created")
        const first = yield* jobOf(cluster, "job-a")
        yield* until(1)
        assert.strictEqual(yield* cluster.ops.createJob(manifest("job-a", { taskId: "other" })), "exists")
        const jobs = yield* cluster.jobsSnapshot
        assert.strictEqual(jobs.length, 1)
        assert.strictEqual(jobs[0]?.metadata.uid, first.metadata.uid)
        assert.strictEqual(Kube.label(jobs[0]?.metadata ?? { name: "" }, names.taskIdLabel), "4aa57614-8835-4992-87e9-ca483ddbeae6")
        assert.strictEqual((yield* cluster.watch.podsOfJob("job-a")).length, 1)
      }))

    it.scoped("createJob keeps the manifest, strips status, sets server fields; invalid names are permanent errors", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.createJob({ ...manifest("job-a"), status: { succeeded: 1 } })
        const job = yield* jobOf(cluster, "job-a")
        assert.deepStrictEqual(job.status, { startTime: ts(0) })
        assert.deepStrictEqual(job.metadata.labels, manifest("job-a").metadata.labels)
        assert.strictEqual(job.metadata.namespace, "agents")
        assert.strictEqual(job.metadata.resourceVersion, "1")
        assert.deepStrictEqual((job as unknown as { readonly spec: { readonly template: unknown } }).spec.template, manifest("job-a").spec.template)

        const error = yield* Effect.flip(cluster.ops.createJob(manifest("Not_A_Name")))
        assert.instanceOf(error, ClusterError)
        assert.isFalse(error.transient)
      }))

    it.scoped("watch streams replay the current objects, then Synced, then live Upsert/Delete", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* cluster.ops.createJob(manifest("job-b"))
        yield* cluster.applyConfig("claude", { assignee: "claude-agent" })
        const jobEvents = yield* recordEvents(cluster.watch.jobEvents)
        const configEvents = yield* recordEvents(cluster.watch.configEvents)
        yield* cluster.ops.createJob(manifest("job-c"))
        yield* cluster.ops.annotateJob("job-a", names.verdictAnnotation, "pod_evicted")
        yield* cluster.ops.deleteJob("job-b")
        yield* cluster.applyConfig("claude", { assignee: "claude-agent" }) // unchanged: no event
        yield* cluster.applyConfig("claude", { assignee: "other" })
        yield* cluster.deleteConfig("claude")
        yield* Effect.yieldNow()

        const summary = (yield* jobEvents).map(([, event]) =>
          event._tag === "Synced" ? "Synced" : `${event._tag} ${event.object.metadata.name}`
        )
        assert.deepStrictEqual(summary, [
          "Upsert job-a",
          "Upsert job-b",
          "Synced",
          "Upsert job-c",
          "Upsert job-a",
          "Delete job-b"
        ])
        const configs = (yield* configEvents).map(([, event]) =>
          event._tag === "Synced" ? "Synced" : `${event._tag} ${JSON.stringify(event.object.spec)}`
        )
        assert.deepStrictEqual(configs, [
          `Upsert {"assignee":"claude-agent"}`,
          "Synced",
          `Upsert {"assignee":"other"}`,
          `Delete {"assignee":"other"}`
        ])
        yield* cluster.watch.synced
        assert.deepStrictEqual((yield* cluster.watch.jobs).map((j) => j.metadata.name), ["job-a", "job-c"])
        assert.strictEqual((yield* jobOf(cluster, "job-a")).metadata.annotations?.[names.verdictAnnotation], "pod_evicted")
      }))

    it.scoped("deletion with a finalizer: Terminating until the finalizer goes, then Job and pods are deleted", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a", { finalizers: [names.finalizer], activeDeadlineSeconds: 60 }))
        yield* until(10)
        const podName = (yield* onlyPod(cluster, "job-a")).metadata.name
        const jobEvents = yield* recordEvents(cluster.watch.jobEvents)
        const podEvents = yield* recordEvents(cluster.watch.podEvents)

        yield* cluster.ops.deleteJob("job-a")
        const terminating = yield* jobOf(cluster, "job-a")
        assert.strictEqual(terminating.metadata.deletionTimestamp, ts(10))
        assert.isTrue(Kube.isDeleting(terminating.metadata))
        yield* cluster.ops.deleteJob("job-a") // a repeated delete changes nothing

        // The controller no longer drives a Terminating Job: its deadline passes without effect.
        yield* until(120)
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), [])
        assert.strictEqual((yield* onlyPod(cluster, "job-a")).status?.phase, "Running")
        const adding = yield* Effect.flip(cluster.ops.addJobFinalizer("job-a", "example.com/other"))
        assert.instanceOf(adding, ClusterError)

        yield* cluster.ops.removeJobFinalizer("job-a", names.finalizer)
        assert.isTrue(Option.isNone(yield* cluster.watch.job("job-a")))
        assert.deepStrictEqual(yield* cluster.watch.podsOfJob("job-a"), [])
        yield* Effect.yieldNow()
        const jobSummary = (yield* jobEvents).flatMap(([t, event]) =>
          event._tag === "Synced" ? [] : [`${t} ${event._tag} ${event.object.metadata.deletionTimestamp ?? "-"}`]
        )
        assert.deepStrictEqual(jobSummary, [`10 Upsert -`, `10 Upsert ${ts(10)}`, `120 Delete ${ts(10)}`])
        const podSummary = (yield* podEvents).flatMap(([t, event]) =>
          event._tag === "Synced" ? [] : [`${t} ${event._tag} ${event.object.metadata.name}`]
        )
        assert.deepStrictEqual(podSummary, [`10 Upsert ${podName}`, `120 Delete ${podName}`])
        assert.deepStrictEqual(
          (yield* Stream.runCollect(Stream.take(cluster.notices, 2))).pipe(Chunk.map((n) => `${n._tag} ${n.at - T0}`), Chunk.toReadonlyArray),
          ["JobCreated 0", "JobDeleted 120000"]
        )
      }))

    it.scoped("deletion without finalizers removes the Job at once; a missing Job is NotFound", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(10)
        yield* cluster.ops.deleteJob("job-a")
        assert.deepStrictEqual(yield* cluster.jobsSnapshot, [])
        assert.deepStrictEqual(yield* cluster.podsSnapshot, [])
        const missing = yield* Effect.flip(cluster.ops.deleteJob("job-a"))
        assert.strictEqual(missing._tag, "NotFound")
        assert.strictEqual((yield* Effect.flip(cluster.ops.annotateJob("job-a", "k", "v")))._tag, "NotFound")
      }))

    it.scoped("TTL deletion is in the foreground (the pods go first) and honours finalizers", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.succeed("10 seconds")))
        const jobEvents = yield* recordEvents(cluster.watch.jobEvents)
        yield* cluster.ops.createJob(manifest("job-a", { finalizers: [names.finalizer], ttlSecondsAfterFinished: 60 }))
        yield* until(77)
        const job = yield* jobOf(cluster, "job-a")
        assert.strictEqual(job.metadata.deletionTimestamp, ts(77))
        assert.deepStrictEqual(job.metadata.finalizers, [names.finalizer])
        const finalizers = (yield* jobEvents).flatMap(([, e]) => (e._tag === "Upsert" && e.object.metadata.deletionTimestamp !== undefined ? [e.object.metadata.finalizers] : []))
        assert.deepStrictEqual(finalizers, [[names.finalizer, "foregroundDeletion"], [names.finalizer]])
        assert.deepStrictEqual(yield* cluster.watch.podsOfJob("job-a"), [])
        yield* cluster.clearJobFinalizers("job-a")
        assert.deepStrictEqual(yield* cluster.jobsSnapshot, [])
        assert.deepStrictEqual(yield* cluster.podsSnapshot, [])
      }))

    it.scoped("deleting a running pod counts as a pod failure", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* until(10)
        yield* cluster.deletePod((yield* onlyPod(cluster, "job-a")).metadata.name)
        assert.deepStrictEqual(conditionsOf(yield* jobOf(cluster, "job-a")), [
          "FailureTarget=True:BackoffLimitExceeded",
          "Failed=True:BackoffLimitExceeded"
        ])
      }))

    it.scoped("Events: repeats aggregate, the executor's own stay separate, an hour later they are gone; unknown field selectors fail", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.noPod))
        yield* cluster.ops.createJob(manifest("job-a", { activeDeadlineSeconds: 7200 }))
        const zombie = { jobName: "job-a", jobUid: "uid-1", reason: "ZombieDetected", message: "job_pod_create_failed: x", type: "Warning" } as const
        yield* cluster.ops.recordJobEvent(zombie)
        yield* cluster.ops.recordJobEvent(zombie)
        yield* until(100)
        assert.deepStrictEqual((yield* cluster.events).map((e) => `${e.reason} ${e.source} ${e.count}`), [
          "ZombieDetected executor 1",
          "ZombieDetected executor 1",
          ...Array.from({ length: 7 }, () => "FailedCreate job-controller 1")
        ])
        const executorOnes = yield* cluster.watch.readEvents("involvedObject.kind=Job,source=agent-task-executor")
        assert.deepStrictEqual(executorOnes.map((e) => e.reason), ["ZombieDetected", "ZombieDetected"])
        // the executor's expire an hour after they were written, the job controller's an hour after
        // their last repeat; the combined FailedCreate Event keeps being bumped
        yield* until(3601)
        assert.deepStrictEqual((yield* cluster.events).map((e) => e.reason), Array.from({ length: 11 }, () => "FailedCreate"))
        yield* until(3845)
        assert.deepStrictEqual((yield* cluster.events).map((e) => [e.reason, e.count]), [["FailedCreate", 60]])
        const bad = yield* Effect.flip(cluster.watch.readEvents("metadata.labels=x"))
        assert.isFalse(bad.transient)
        yield* cluster.setApiDown(true)
        assert.isTrue((yield* Effect.flip(cluster.watch.readEvents(Kube.podEvictionSelector))).transient)
      }))

    it.scoped("recordJobEvent keeps the executor's Events", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.recordJobEvent({
          jobName: "job-a",
          jobUid: "uid-9",
          reason: "ZombieDetected",
          message: "pod_evicted: evicted",
          type: "Warning"
        })
        const [event] = yield* cluster.events
        assert.strictEqual(event?.reason, "ZombieDetected")
        assert.strictEqual(event?.source, "executor")
        assert.strictEqual(event?.timestamp, ts(0))
        assert.deepStrictEqual(event?.involvedObject, { kind: "Job", namespace: "agents", name: "job-a", uid: "uid-9" })
      }))
  })

  describe("layers", () => {
    it.scoped("layer provides the cluster and the ClusterWatch / ClusterOps ports it backs", () =>
      Effect.gen(function*() {
        const ops = yield* ClusterOps
        const watch = yield* ClusterWatch
        const cluster = yield* InMemoryCluster.InMemoryCluster
        assert.strictEqual(yield* ops.createJob(manifest("job-a")), "created")
        assert.strictEqual((yield* watch.jobs).length, 1)
        assert.strictEqual((yield* cluster.jobsSnapshot).length, 1)
        const again = yield* Effect.provide(ClusterOps, cluster.layer)
        assert.strictEqual(yield* again.createJob(manifest("job-a")), "exists")
      }).pipe(
        Effect.provide(
          InMemoryCluster.layer({ namespace: "agents", names, podBehaviour: PodBehaviour.always(PodBehaviour.hang) })
        )
      ))
  })

  describe("failure injection", () => {
    it.scoped("failNext injects a ClusterError for the next call of that operation only", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* cluster.failNext("annotateJob")
        const error = yield* Effect.flip(cluster.ops.annotateJob("job-a", "k", "v"))
        assert.instanceOf(error, ClusterError)
        assert.isTrue(error instanceof ClusterError && error.transient)
        assert.isUndefined((yield* jobOf(cluster, "job-a")).metadata.annotations?.["k"])
        yield* cluster.ops.annotateJob("job-a", "k", "v")
        assert.strictEqual((yield* jobOf(cluster, "job-a")).metadata.annotations?.["k"], "v")

        const permanent = new ClusterError({ operation: "deleteJob", target: "job-a", transient: false, message: "403" })
        yield* cluster.failNext("deleteJob", permanent, 2)
        // Spans copy failures, so compare fields rather than identity.
        for (let i = 0; i < 2; i++) {
          const injected = yield* Effect.flip(cluster.ops.deleteJob("job-a"))
          assert.deepStrictEqual([injected._tag, injected.message], ["ClusterError", "403"])
        }
        yield* cluster.ops.deleteJob("job-a")
        assert.deepStrictEqual(
          (yield* cluster.writes).map((w) => `${w.operation} ${w.outcome}`),
          [
            "createJob ok",
            "annotateJob failed",
            "annotateJob ok",
            "deleteJob failed",
            "deleteJob failed",
            "deleteJob ok"
          ]
        )
      }))

    it.scoped("API down: writes fail transiently, caches stay readable", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a"))
        yield* cluster.setApiDown(true)
        const error = yield* Effect.flip(cluster.ops.createJob(manifest("job-b")))
        assert.isTrue(error.transient)
        assert.isTrue(Option.isSome(yield* cluster.watch.job("job-a")))
        assert.strictEqual((yield* cluster.watch.jobs).length, 1)
        yield* cluster.setApiDown(false)
        assert.strictEqual(yield* cluster.ops.createJob(manifest("job-b")), "created")
      }))

    it.scoped("a before-write hook that interrupts stops the write (an executor crash at that step)", () =>
      Effect.gen(function*() {
        const cluster = yield* setup(PodBehaviour.always(PodBehaviour.hang))
        yield* cluster.ops.createJob(manifest("job-a", { finalizers: [names.finalizer] }))
        yield* cluster.setBeforeWrite((write) => (write.operation === "removeJobFinalizer" ? Effect.interrupt : Effect.void))
        const exit = yield* Effect.exit(cluster.ops.removeJobFinalizer("job-a", names.finalizer))
        assert.isTrue(Exit.isInterrupted(exit))
        assert.deepStrictEqual((yield* jobOf(cluster, "job-a")).metadata.finalizers, [names.finalizer])
        yield* cluster.setBeforeWrite(undefined)
        yield* cluster.ops.removeJobFinalizer("job-a", names.finalizer)
        assert.isUndefined((yield* jobOf(cluster, "job-a")).metadata.finalizers)
        assert.deepStrictEqual((yield* cluster.writes).map((w) => w.outcome), ["ok", "interrupted", "ok"])
      }))
  })

  describe("pod behaviours per attempt", () => {
    it.scoped("attempt counts the Jobs of the same task created before; plan repeats the last behaviour", () =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const plan = PodBehaviour.plan({
          default: [PodBehaviour.succeed("1 minute")],
          byTask: { t1: [PodBehaviour.imagePullFails, PodBehaviour.hang] }
        })
        const cluster = yield* setup((job, attempt) => {
          seen.push(`${job.taskId}#${attempt} ${job.jobName}`)
          return plan(job, attempt)
        })
        yield* cluster.ops.createJob(manifest("t1-a", { taskId: "t1" }))
        yield* cluster.ops.createJob(manifest("t2-a", { taskId: "t2" }))
        yield* cluster.ops.createJob(manifest("t1-a", { taskId: "t1" })) // exists: not an attempt
        yield* cluster.ops.deleteJob("t1-a")
        yield* cluster.ops.createJob(manifest("t1-b", { taskId: "t1" }))
        yield* cluster.ops.createJob(manifest("t1-c", { taskId: "t1" }))
        assert.deepStrictEqual(seen, ["t1#1 t1-a", "t2#1 t2-a", "t1#2 t1-b", "t1#3 t1-c"])
        assert.deepStrictEqual(
          [1, 2, 3].map((attempt) => tagOf(plan({ taskId: "t1", jobName: "" }, attempt))),
          ["ImagePullFails", "Hang", "Hang"]
        )
        assert.strictEqual(plan({ taskId: "t9", jobName: "" }, 4), plan({ taskId: "t9", jobName: "" }, 1))
        const current = yield* cluster.currentJobOfTask("t1")
        assert.strictEqual(Option.map(current, (j) => j.metadata.name).pipe(Option.getOrNull), "t1-c")
        const created = (yield* Stream.runCollect(Stream.take(cluster.notices, 5))).pipe(
          Chunk.filter((n) => n._tag === "JobCreated"),
          Chunk.map((n) => (n._tag === "JobCreated" ? `${n.jobName}#${n.attempt}` : "")),
          Chunk.toReadonlyArray
        )
        assert.deepStrictEqual(created, ["t1-a#1", "t2-a#1", "t1-b#2", "t1-c#3"])
      }))

    it("kubelet steps: image-pull back-off doubles from 10 s and caps at 300 s", () => {
      const pulls: Array<number> = []
      for (const { at, step } of PodBehaviour.kubeletSteps(PodBehaviour.imagePullFails)) {
        if (step._tag === "Waiting" && step.reason === "ErrImagePull") pulls.push(at / 1000)
        if (pulls.length === 9) break
      }
      assert.deepStrictEqual(pulls, [5, 28, 60, 112, 204, 376, 688, 1000, 1312])
    })
  })
})
