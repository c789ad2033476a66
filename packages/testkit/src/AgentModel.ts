import { Clock, Duration, Effect, Option, Stream } from "effect"
import { Commands, Time } from "@executor/domain"
import type { ControllerModel } from "./ControllerModel.js"
import { type InMemoryBus, randomUuidV4 } from "./InMemoryBus.js"
import type { InMemoryClusterShape } from "./InMemoryCluster.js"

export const resultDelayMillis = 1_000

/**
 * The agents: when a pod exits 0 having done its work, its agent publishes its result 1 s later as
 * an `update` command with `status: completed, phase: done` (the result path of a real agent,
 * executor.md §2.5). A pod that exits 0 because it got SIGTERM (evicted, killed at the deadline)
 * publishes nothing.
 */
export const make = (
  bus: InMemoryBus,
  cluster: Pick<InMemoryClusterShape, "watch" | "wasSignalled">,
  controller: ControllerModel,
  options: { readonly topicPrefix: string; readonly taskIdLabel: string }
) =>
  Effect.gen(function* () {
    const request = Commands.topics(options.topicPrefix).request
    // Pods whose result went out (written only by the watch fiber below)
    const reported = new Set<string>()

    const publishResult = (taskId: string) =>
      Effect.gen(function* () {
        yield* Effect.sleep(Duration.millis(resultDelayMillis))
        const task = Option.getOrUndefined(yield* controller.task(taskId))
        const now = Time.formatIso(yield* Clock.currentTimeMillis)
        const data = {
          identifier: yield* randomUuidV4,
          created: now,
          modified: now,
          taskIdentifier: taskId,
          frontmatter: { status: "completed", phase: "done" },
          content: `${task?.content ?? ""}\n\n## Result\n\ndone\n`
        }
        const envelope = {
          requestID: yield* randomUuidV4,
          requestTime: now,
          initiator: "agent",
          operation: "update",
          id: "",
          data,
          header: {}
        }
        yield* bus.produce(request, taskId, JSON.stringify(envelope))
      })

    yield* cluster.watch.podEvents.pipe(
      Stream.runForEach((event) =>
        Effect.gen(function* () {
          if (event._tag !== "Upsert" || event.object.status?.phase !== "Succeeded") return
          const pod = event.object
          const uid = pod.metadata.uid ?? pod.metadata.name
          const first = !reported.has(uid)
          reported.add(uid)
          const taskId = pod.metadata.labels?.[options.taskIdLabel] ?? ""
          if (!first || taskId === "" || (yield* cluster.wasSignalled(uid))) return
          yield* Effect.forkScoped(publishResult(taskId))
        })
      ),
      Effect.forkScoped
    )
  })
