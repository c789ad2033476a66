import { Effect, Either, Layer, Metric, Option, Schedule, Stream } from "effect"
import { TaskEvent } from "@executor/domain"
import { Dispatcher } from "./Dispatcher.js"
import * as Metrics from "./Metrics.js"
import { Readiness } from "./Readiness.js"
import { transientBackoff } from "./Retry.js"
import { type ConsumedMessage, ConsumeError, TaskEventSource } from "./TaskEventSource.js"

const skipped = (why: string) => Metric.increment(Metric.tagged(Metrics.skippedEvents, "why", why))

/**
 * After a broker outage consuming should resume within seconds of the broker's return: the back-off
 * stays short and starts over once a minute has passed, so a failure after days of service does not
 * inherit the delays of an old outage.
 */
const resubscribe = transientBackoff("10 seconds").pipe(Schedule.resetAfter("1 minute"))

/**
 * Consumes task events in partition order. An offset is committed only once its event is handled,
 * that is once every command it caused is known to be in the request topic. A transient failure
 * holds the partition and handles the same event again after a back-off; nothing is dropped.
 */
export const ConsumerLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const source = yield* TaskEventSource
    const dispatcher = yield* Dispatcher
    const readiness = yield* Readiness

    const commit = (message: ConsumedMessage) =>
      source.commit(message.offset).pipe(
        Effect.tapError((error) => Effect.logWarning(`offset commit failed, retrying: ${error.message}`)),
        Effect.retry(transientBackoff())
      )

    const handleMessage = (message: ConsumedMessage) =>
      Effect.gen(function* () {
        const decoded = TaskEvent.decodeTaskEvent(message.value)
        if (Either.isLeft(decoded)) {
          const skip = decoded.left
          yield* skipped(skip._tag)
          yield* Effect.logWarning("task event skipped").pipe(
            Effect.annotateLogs({
              event: "event_skipped",
              why: skip._tag,
              offset: message.offset.offset,
              ...(skip._tag === "NotJson" || skip._tag === "NotATask" ? { error: skip.message.slice(0, 300) } : {})
            })
          )
          return yield* commit(message)
        }
        yield* dispatcher.handle(decoded.right, Option.some(message.offset)).pipe(
          Effect.tapError((error) =>
            Effect.zipRight(
              Metric.increment(Metric.tagged(Metrics.taskEvents, "result", "error")),
              Effect.logWarning(`task event failed at ${error.step}, retrying: ${error.message}`)
            )
          ),
          Effect.retry(transientBackoff())
        )
        yield* commit(message)
      })

    /** A defect while handling one message (a bug, not bad luck) skips it: it never stops the consumer. */
    const handleSafely = (message: ConsumedMessage) =>
      handleMessage(message).pipe(
        Effect.catchAllDefect((defect) =>
          Effect.gen(function* () {
            yield* skipped("Defect")
            yield* Effect.logError("task event could not be handled; skipped").pipe(
              Effect.annotateLogs({ event: "event_skipped", why: "Defect", offset: message.offset.offset, error: String(defect).slice(0, 300) })
            )
            yield* commit(message)
          })
        )
      )

    yield* readiness.markReady
    yield* source.messages.pipe(
      Stream.runForEach(handleSafely),
      // a defect that escapes (in the skip of a defect, say) must not end consuming for good: the
      // subscription starts over from the committed offsets
      Effect.catchAllDefect((defect) => Effect.fail(new ConsumeError({ message: `defect: ${String(defect).slice(0, 300)}` }))),
      Effect.tapError((error) => Effect.logWarning(`task event consumer failed; resubscribing: ${error.message}`)),
      Effect.retry(resubscribe),
      Effect.forkScoped
    )
  }).pipe(Effect.annotateLogs({ service: "Consumer" }))
)
