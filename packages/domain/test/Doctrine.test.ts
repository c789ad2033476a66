import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { type Command, type IncrementFrontmatter, type UpdateFrontmatter, validateCommand } from "../src/Commands.js"
import { spawnCommands, typeMismatchDetail, typeMismatchFailure, zombieFailure } from "../src/Doctrine.js"
import type { Millis } from "../src/Time.js"
import { type ZombieReason, zombieReasons } from "../src/ZombieReason.js"

const AT: Millis = Date.parse("2026-06-01T12:00:00Z")
const TASK = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const JOB = "claude-agent-4aa57614-1a2b3c4d"

const verdict = (over: { reason?: ZombieReason; detail?: string; at?: Millis; jobName?: string } = {}) => ({
  taskId: TASK,
  jobName: over.jobName ?? JOB,
  reason: over.reason ?? "pod_crash_no_stdout",
  detail: over.detail ?? "OOMKilled, exit 137",
  at: over.at ?? AT
})

const update = (command: Command | undefined): UpdateFrontmatter => {
  expect(command?._tag).toBe("update-frontmatter")
  return command?.data as UpdateFrontmatter
}
const increment = (command: Command | undefined): IncrementFrontmatter => {
  expect(command?._tag).toBe("increment-frontmatter")
  return command?.data as IncrementFrontmatter
}
const expectValid = (commands: ReadonlyArray<Command>) => {
  for (const command of commands) {
    const result = validateCommand(command)
    expect(Either.isRight(result), Either.isLeft(result) ? result.left.message : "").toBe(true)
  }
}
const forbiddenUpdateKeys = ["status", "phase", "assignee", "previous_assignee", "trigger_count"]

describe("Doctrine: zombieFailure (D5)", () => {
  it("gives exactly two commands: update-frontmatter, then increment-frontmatter", () => {
    const commands = zombieFailure(verdict())
    expect(commands.map((c) => c._tag)).toEqual(["update-frontmatter", "increment-frontmatter"])
    expect(commands.map((c) => c.data.taskIdentifier)).toEqual([TASK, TASK])
  })

  it("the update is exactly {current_job: \"\"} with a ## Failure body in the exact form", () => {
    const data = update(zombieFailure(verdict({ reason: "image_pull_backoff", detail: "ImagePullBackOff (image x:v1)" }))[0])
    expect(data.updates).toStrictEqual({ current_job: "" })
    expect(data.body).toStrictEqual({
      heading: "## Failure",
      section:
        "## Failure\n\n" +
        "- **Timestamp:** 2026-06-01T12:00:00Z\n" +
        `- **Job:** ${JOB}\n` +
        "- **Reason:** image_pull_backoff\n" +
        "- **Detail:** ImagePullBackOff (image x:v1)\n"
    })
  })

  it("never writes status, phase, assignee, previous_assignee or trigger_count via updates", () => {
    for (const reason of zombieReasons) {
      const data = update(zombieFailure(verdict({ reason }))[0])
      for (const key of forbiddenUpdateKeys) expect(data.updates).not.toHaveProperty(key)
    }
  })

  it("the increment is trigger_count +1", () => {
    expect(increment(zombieFailure(verdict())[1])).toStrictEqual({
      taskIdentifier: TASK,
      field: "trigger_count",
      delta: 1
    })
  })

  it("carries every reason token verbatim on the Reason line", () => {
    for (const reason of zombieReasons) {
      const section = update(zombieFailure(verdict({ reason }))[0]).body?.section ?? ""
      expect(section.split("\n")).toContain(`- **Reason:** ${reason}`)
    }
  })

  it("keeps the seven reference reason strings", () => {
    expect(zombieReasons).toEqual(
      expect.arrayContaining([
        "image_pull_backoff",
        "pod_evicted",
        "deadline_exceeded",
        "pod_not_scheduled",
        "pod_crash_no_stdout",
        "executor_watch_lost",
        "type_mismatch"
      ])
    )
  })

  it("the timestamp is UTC with second precision (fractional milliseconds dropped)", () => {
    const section = update(zombieFailure(verdict({ at: AT + 999 }))[0]).body?.section ?? ""
    expect(section).toContain("- **Timestamp:** 2026-06-01T12:00:00Z\n")
  })

  it("a multi-line detail stays on one line", () => {
    const detail = "OOMKilled\nexit 137\n\n  node pressure\r\nretrying"
    const section = update(zombieFailure(verdict({ detail }))[0]).body?.section ?? ""
    const lines = section.split("\n")
    expect(lines).toHaveLength(7)
    expect(lines.slice(0, 5)).toEqual([
      "## Failure",
      "",
      "- **Timestamp:** 2026-06-01T12:00:00Z",
      `- **Job:** ${JOB}`,
      "- **Reason:** pod_crash_no_stdout"
    ])
    expect(lines[5]).toMatch(/^- \*\*Detail:\*\* OOMKilled exit 137 node pressure retrying$/)
    expect(lines[6]).toBe("")
    expect(section).not.toContain("\r")
  })

  it("a detail cannot forge a second Reason line", () => {
    const detail = "boom\n- **Reason:** deadline_exceeded"
    const lines = (update(zombieFailure(verdict({ detail }))[0]).body?.section ?? "").split("\n")
    expect(lines.filter((l) => l.startsWith("- **Reason:**"))).toEqual(["- **Reason:** pod_crash_no_stdout"])
  })

  it("every produced command passes validateCommand", () => {
    for (const reason of zombieReasons) expectValid(zombieFailure(verdict({ reason })))
  })
})

describe("Doctrine: typeMismatchFailure (D5, §5.8)", () => {
  const mismatch = (priorAssignee: string, taskType: string, accepted: ReadonlyArray<string>) => ({
    taskId: TASK,
    priorAssignee,
    taskType,
    accepted,
    at: AT
  })

  it("with a prior assignee ⇒ one update, exactly {assignee: \"\", current_job: \"\", previous_assignee: prior}", () => {
    const command = typeMismatchFailure(mismatch("agent-pr-reviewer", "code-review", ["pr-review", "healthcheck"]))
    const data = update(command)
    expect(data.taskIdentifier).toBe(TASK)
    expect(data.updates).toStrictEqual({ assignee: "", current_job: "", previous_assignee: "agent-pr-reviewer" })
  })

  it("with an empty prior assignee ⇒ exactly {assignee: \"\", current_job: \"\"}", () => {
    const data = update(typeMismatchFailure(mismatch("", "code-review", ["pr-review"])))
    expect(data.updates).toStrictEqual({ assignee: "", current_job: "" })
  })

  it("does not touch status, phase or trigger_count", () => {
    const data = update(typeMismatchFailure(mismatch("a", "x", ["y"])))
    for (const key of ["status", "phase", "trigger_count"]) expect(data.updates).not.toHaveProperty(key)
  })

  it("the ## Failure body has the timestamp, the assignee, Reason type_mismatch and the detail", () => {
    const data = update(typeMismatchFailure(mismatch("a", "code-review", ["pr-review", "healthcheck"])))
    expect(data.body?.heading).toBe("## Failure")
    const section = data.body?.section ?? ""
    expect(section.startsWith("## Failure\n\n- **Timestamp:** 2026-06-01T12:00:00Z\n")).toBe(true)
    expect(section.endsWith("\n")).toBe(true)
    const lines = section.split("\n")
    expect(lines).toContain("- **Assignee:** a")
    expect(lines).toContain("- **Reason:** type_mismatch")
    expect(lines).toContain(
      '- **Detail:** task_type "code-review" not in effective set [pr-review healthcheck] of agent "a"'
    )
    expect(lines.indexOf("- **Reason:** type_mismatch")).toBeLessThan(
      lines.findIndex((l) => l.startsWith("- **Detail:**"))
    )
  })

  it("detail for a task without task_type", () => {
    expect(typeMismatchDetail({ priorAssignee: "a", taskType: "", accepted: ["x", "y"] })).toBe(
      'task has no task_type; agent "a" accepts [x y]'
    )
    const section = update(typeMismatchFailure(mismatch("a", "", ["x", "y"]))).body?.section ?? ""
    expect(section.split("\n")).toContain('- **Detail:** task has no task_type; agent "a" accepts [x y]')
  })

  it("detail for another task type", () => {
    expect(typeMismatchDetail({ priorAssignee: "a", taskType: "code-review", accepted: ["pr-review", "healthcheck"] })).toBe(
      'task_type "code-review" not in effective set [pr-review healthcheck] of agent "a"'
    )
  })

  it("the produced command passes validateCommand", () => {
    expectValid([typeMismatchFailure(mismatch("a", "x", ["y"])), typeMismatchFailure(mismatch("", "", ["y"]))])
  })
})

describe("Doctrine: spawnCommands (D5, D6.1)", () => {
  it("increment trigger_count +1, then the spawn notification", () => {
    const commands = spawnCommands({ taskId: TASK, jobName: JOB, at: AT })
    expect(commands.map((c) => c._tag)).toEqual(["increment-frontmatter", "update-frontmatter"])
    expect(increment(commands[0])).toStrictEqual({ taskIdentifier: TASK, field: "trigger_count", delta: 1 })
  })

  it("the notification updates exactly current_job, job_started_at (second precision, Z) and spawn_notification", () => {
    const at = Date.parse("2026-04-18T12:00:00.987Z")
    const data = update(spawnCommands({ taskId: TASK, jobName: "claude-20260418120000", at })[1])
    expect(data).toStrictEqual({
      taskIdentifier: TASK,
      updates: { current_job: "claude-20260418120000", job_started_at: "2026-04-18T12:00:00Z", spawn_notification: true }
    })
    expect(data.body).toBeUndefined()
  })

  it("every produced command passes validateCommand", () => {
    expectValid(spawnCommands({ taskId: TASK, jobName: JOB, at: AT }))
  })
})
