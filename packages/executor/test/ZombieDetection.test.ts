import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { PodBehaviour } from "@executor/testkit"
import { failures, makeWorld, published, start, verdicts } from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"

describe("zombie detection end to end (in-memory cluster and broker)", () => {
  it.scoped("a broken image is judged image_pull_backoff one grace after the first pull failure", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.imagePullFails))
      const { spawn } = yield* start(world)
      const handled = yield* spawn(taskId)
      expect(handled.result).toBe("spawned")
      // the pod is created at 1 s and fails its first pull at 6 s: the verdict is due at 66 s
      yield* TestClock.adjust("65 seconds")
      expect(yield* verdicts(world)).toHaveLength(0)
      yield* TestClock.adjust("1 second")
      const judged = yield* verdicts(world)
      expect(judged.map((v) => [v.reason, v.source, v.at])).toEqual([["image_pull_backoff", "pod", 66_000]])
      const commands = yield* published(world)
      expect(commands.map((c) => [c.operation, c.key])).toEqual([
        ["increment-frontmatter", taskId],
        ["update-frontmatter", taskId],
        ["update-frontmatter", taskId],
        ["increment-frontmatter", taskId]
      ])
      expect(yield* world.cluster.jobsSnapshot).toHaveLength(0)
      const events = yield* world.cluster.events
      expect(events.filter((e) => e.reason === "ZombieDetected").map((e) => e.message)).toEqual([
        expect.stringContaining("image_pull_backoff: ")
      ])
      expect(yield* failures(world)).toHaveLength(1)
    }))
})
