import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import {
  type Command,
  CommandEnvelope,
  createTask,
  incrementFrontmatter,
  taskIdOf,
  topics,
  toEnvelope,
  updateFrontmatter,
  validateCommand
} from "../src/Commands.js"

const TASK = "4aa57614-8835-4992-87e9-ca483ddbeae6"

const isValid = (command: Command): boolean => Either.isRight(validateCommand(command))
const issuesOf = (command: Command): string => {
  const result = validateCommand(command)
  if (Either.isRight(result)) throw new Error(`expected ${JSON.stringify(command)} to be rejected`)
  return result.left.message
}

describe("Commands: topics (item 69)", () => {
  it("prefix develop ⇒ develop-agent-task-v1-request", () => {
    expect(topics("develop").request).toBe("develop-agent-task-v1-request")
  })

  it("prefix master ⇒ master-agent-task-v1-request", () => {
    expect(topics("master").request).toBe("master-agent-task-v1-request")
  })

  it("empty prefix ⇒ agent-task-v1-request, no leading dash", () => {
    expect(topics("").request).toBe("agent-task-v1-request")
  })

  it("the event topic follows the same rule (§3.1)", () => {
    expect(topics("").event).toBe("agent-task-v1-event")
    expect(topics("develop").event).toBe("develop-agent-task-v1-event")
  })

  it("all topics of a prefix", () => {
    expect(topics("master")).toEqual({
      event: "master-agent-task-v1-event",
      request: "master-agent-task-v1-request",
      result: "master-agent-task-v1-result"
    })
  })
})

describe("Commands: validateCommand (§8.19)", () => {
  const update = updateFrontmatter({
    taskIdentifier: TASK,
    updates: { current_job: "" },
    body: { heading: "## Failure", section: "## Failure\n\n- **Reason:** pod_evicted\n" }
  })
  const increment = incrementFrontmatter({ taskIdentifier: TASK, field: "trigger_count", delta: 1 })
  const create = createTask({ taskIdentifier: TASK, title: "probe-agent-a-dev", frontmatter: { stage: "dev" } })

  it("accepts well-formed commands of every operation", () => {
    for (const command of [update, increment, create]) expect(isValid(command)).toBe(true)
    expect(isValid(updateFrontmatter({ taskIdentifier: TASK, updates: { current_job: "" } }))).toBe(true)
    expect(isValid(createTask({ taskIdentifier: TASK, title: "t", frontmatter: {}, body: "b" }))).toBe(true)
  })

  it("rejects an empty taskIdentifier in every operation", () => {
    expect(issuesOf(updateFrontmatter({ taskIdentifier: "", updates: { current_job: "" } }))).toContain("taskIdentifier")
    expect(issuesOf(incrementFrontmatter({ taskIdentifier: "", field: "trigger_count", delta: 1 }))).toContain(
      "taskIdentifier"
    )
    expect(issuesOf(createTask({ taskIdentifier: "", title: "t", frontmatter: {} }))).toContain("taskIdentifier")
  })

  it("rejects empty updates", () => {
    expect(issuesOf(updateFrontmatter({ taskIdentifier: TASK, updates: {} }))).toContain("updates must not be empty")
  })

  it("rejects an increment with an empty field or a non-integer delta", () => {
    expect(isValid(incrementFrontmatter({ taskIdentifier: TASK, field: "", delta: 1 }))).toBe(false)
    expect(isValid(incrementFrontmatter({ taskIdentifier: TASK, field: "trigger_count", delta: 0.5 }))).toBe(false)
    expect(isValid(incrementFrontmatter({ taskIdentifier: TASK, field: "trigger_count", delta: Number.NaN }))).toBe(false)
  })

  it("rejects a body with an empty heading", () => {
    expect(
      isValid(updateFrontmatter({ taskIdentifier: TASK, updates: { current_job: "" }, body: { heading: "", section: "x" } }))
    ).toBe(false)
  })

  it("rejects a create-task with an empty title or a body over 500 KiB", () => {
    expect(isValid(createTask({ taskIdentifier: TASK, title: "", frontmatter: {} }))).toBe(false)
    expect(
      isValid(createTask({ taskIdentifier: TASK, title: "t", frontmatter: {}, body: "x".repeat(500 * 1024 + 1) }))
    ).toBe(false)
  })

  it("taskIdOf reads the task id of any operation", () => {
    expect([update, increment, create].map(taskIdOf)).toEqual([TASK, TASK, TASK])
  })
})

describe("Commands: envelope (§4.1)", () => {
  it("wraps a command with initiator executor, empty id and empty header", () => {
    const command = incrementFrontmatter({ taskIdentifier: TASK, field: "trigger_count", delta: 1 })
    const envelope = toEnvelope(command, {
      requestId: "0b7c3f5e-5d1e-4a8e-9a51-1c2f8e3a9b10",
      requestTime: "2026-06-01T12:00:00.412Z"
    })
    expect(envelope).toEqual({
      requestID: "0b7c3f5e-5d1e-4a8e-9a51-1c2f8e3a9b10",
      requestTime: "2026-06-01T12:00:00.412Z",
      initiator: "executor",
      operation: "increment-frontmatter",
      id: "",
      data: { taskIdentifier: TASK, field: "trigger_count", delta: 1 },
      header: {}
    })
    expect(Either.isRight(Schema.decodeUnknownEither(CommandEnvelope)(envelope))).toBe(true)
  })

  it("the §4.1 example envelope decodes", () => {
    const example = {
      requestID: "0b7c3f5e-5d1e-4a8e-9a51-1c2f8e3a9b10",
      requestTime: "2026-06-01T12:00:00.412803Z",
      initiator: "executor",
      operation: "update-frontmatter",
      id: "",
      data: {
        taskIdentifier: TASK,
        updates: { current_job: "" },
        body: {
          heading: "## Failure",
          section:
            "## Failure\n\n- **Timestamp:** 2026-06-01T12:00:00Z\n- **Job:** claude-agent-4aa57614-20260601113000\n- **Reason:** image_pull_backoff\n"
        }
      },
      header: {}
    }
    expect(Either.isRight(Schema.decodeUnknownEither(CommandEnvelope)(example))).toBe(true)
  })

  it("an unknown operation or an empty requestID is not an envelope", () => {
    const decode = Schema.decodeUnknownEither(CommandEnvelope)
    const good = { requestID: "r", requestTime: "t", initiator: "executor", operation: "update", id: "", data: {}, header: {} }
    expect(Either.isRight(decode(good))).toBe(true)
    expect(Either.isLeft(decode({ ...good, operation: "delete-task" }))).toBe(true)
    expect(Either.isLeft(decode({ ...good, requestID: "" }))).toBe(true)
  })
})
