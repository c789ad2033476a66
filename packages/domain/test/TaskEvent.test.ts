import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeTaskEvent, type EventSkip, type TaskEvent } from "../src/TaskEvent.js"

const skipOf = (value: string | null | undefined): EventSkip["_tag"] | "Task" => {
  const result = decodeTaskEvent(value)
  return Either.isLeft(result) ? result.left._tag : "Task"
}

const taskOf = (value: string): TaskEvent => {
  const result = decodeTaskEvent(value)
  if (Either.isLeft(result)) throw new Error(`expected a task, got ${JSON.stringify(result.left)}`)
  return result.right
}

/** The example of executor.md §3.1. */
const example = `{
  "identifier": "9d1f6e0a-0a4b-4e51-9a77-1f2f1c1b2c3d",
  "created": "2026-06-01T11:59:58Z",
  "modified": "2026-06-01T11:59:58Z",
  "taskIdentifier": "4aa57614-8835-4992-87e9-ca483ddbeae6",
  "frontmatter": {
    "status": "in_progress", "phase": "planning", "assignee": "claude-agent",
    "task_type": "llm", "stage": "dev", "trigger_count": 1, "max_triggers": 3,
    "current_job": "", "clone_url": "https://github.com/org/repo.git"
  },
  "content": "# Review PR 42\\n\\nPlease review …"
}`

describe("TaskEvent: skips", () => {
  it("empty, whitespace-only, null and undefined ⇒ Empty", () => {
    for (const value of ["", " ", "   \n\t\r\n", null, undefined]) expect(skipOf(value)).toBe("Empty")
  })

  it("non-JSON ⇒ NotJson with a message", () => {
    for (const value of ["not json", "{", "{'taskIdentifier': 'x'}", "taskIdentifier=x", "\u0000", "{\"a\":1,}"]) {
      const result = decodeTaskEvent(value)
      expect(Either.isLeft(result) && result.left._tag).toBe("NotJson")
      if (Either.isLeft(result) && result.left._tag === "NotJson") expect(result.left.message).not.toBe("")
    }
  })

  it("a JSON array, number, string, boolean or null ⇒ NotATask", () => {
    for (const value of ["[]", "[{\"taskIdentifier\":\"x\"}]", "42", "\"task\"", "true", "null"]) {
      expect(skipOf(value)).toBe("NotATask")
    }
  })

  it("a missing taskIdentifier ⇒ NotATask", () => {
    expect(skipOf("{}")).toBe("NotATask")
    expect(skipOf('{"identifier":"x","frontmatter":{},"content":"c"}')).toBe("NotATask")
  })

  it("a taskIdentifier that is not a string ⇒ NotATask", () => {
    for (const id of ["5", "null", "true", "{}", "[\"x\"]"]) {
      expect(skipOf(`{"taskIdentifier":${id}}`)).toBe("NotATask")
    }
  })

  it("an empty taskIdentifier ⇒ NoTaskId", () => {
    expect(skipOf('{"taskIdentifier":""}')).toBe("NoTaskId")
    expect(skipOf('{"taskIdentifier":"","frontmatter":{"status":"in_progress"},"content":"x"}')).toBe("NoTaskId")
  })

  it("a NotATask skip carries a readable message", () => {
    const result = decodeTaskEvent('{"taskIdentifier":5}')
    expect(Either.isLeft(result) && result.left._tag === "NotATask" && result.left.message).toContain("taskIdentifier")
  })
})

describe("TaskEvent: decoding", () => {
  it("decodes the executor.md §3.1 example", () => {
    const task = taskOf(example)
    expect(task.identifier).toBe("9d1f6e0a-0a4b-4e51-9a77-1f2f1c1b2c3d")
    expect(task.created).toBe("2026-06-01T11:59:58Z")
    expect(task.modified).toBe("2026-06-01T11:59:58Z")
    expect(task.taskIdentifier).toBe("4aa57614-8835-4992-87e9-ca483ddbeae6")
    expect(task.frontmatter).toEqual({
      status: "in_progress",
      phase: "planning",
      assignee: "claude-agent",
      task_type: "llm",
      stage: "dev",
      trigger_count: 1,
      max_triggers: 3,
      current_job: "",
      clone_url: "https://github.com/org/repo.git"
    })
    expect(task.content).toBe("# Review PR 42\n\nPlease review …")
  })

  it("only taskIdentifier is required: identifier, frontmatter and content default to empty", () => {
    const task = taskOf('{"taskIdentifier":"t-1"}')
    expect(task.taskIdentifier).toBe("t-1")
    expect(task.identifier).toBe("")
    expect(task.frontmatter).toEqual({})
    expect(task.content).toBe("")
  })

  it("surrounding whitespace is fine", () => {
    expect(taskOf('\n  {"taskIdentifier":"t-1"}  \n').taskIdentifier).toBe("t-1")
  })

  it("unknown top-level keys are ignored, frontmatter values of any type pass through", () => {
    const task = taskOf(
      '{"taskIdentifier":"t","extra":{"x":1},"frontmatter":{"n":1.5,"b":true,"nil":null,"list":[1,"a"],"map":{"k":"v"}}}'
    )
    expect(task.frontmatter).toEqual({ n: 1.5, b: true, nil: null, list: [1, "a"], map: { k: "v" } })
  })

  it("a huge event (1 MB of content) decodes", () => {
    const content = "x".repeat(1024 * 1024)
    const task = taskOf(JSON.stringify({ taskIdentifier: "big", frontmatter: { status: "in_progress" }, content }))
    expect(task.content).toHaveLength(1024 * 1024)
    expect(task.taskIdentifier).toBe("big")
  })
})

describe("TaskEvent: never throws", () => {
  const junk: ReadonlyArray<string> = [
    "\uFEFF{\"taskIdentifier\":\"t\"}",
    "{\"taskIdentifier\":\"t\",\"frontmatter\":null}",
    "{\"taskIdentifier\":\"t\",\"frontmatter\":[]}",
    "{\"taskIdentifier\":\"t\",\"frontmatter\":\"status: todo\"}",
    "{\"taskIdentifier\":\"t\",\"content\":42}",
    "{\"taskIdentifier\":\"t\",\"__proto__\":{\"polluted\":true}}",
    "{\"taskIdentifier\":\"t\",\"frontmatter\":{\"__proto__\":{\"status\":\"in_progress\"}}}",
    "1e999",
    "-",
    "\"\\ud800\"",
    "[[[[[[[[[[]]]]]]]]]]",
    "{\"taskIdentifier\":\"" + "a".repeat(100_000) + "\"}",
    "\u0000\u0001\u0002",
    "]}{[",
    Array.from({ length: 200 }, (_, i) => String.fromCharCode((i * 7919) % 65_536)).join("")
  ]
  for (const [index, value] of junk.entries()) {
    it(`junk #${index} is decoded or skipped, never thrown`, () => {
      let result: ReturnType<typeof decodeTaskEvent> | undefined
      expect(() => {
        result = decodeTaskEvent(value)
      }).not.toThrow()
      expect(result === undefined ? false : Either.isEither(result)).toBe(true)
    })
  }

  it("prototype keys never leak into the decoded task", () => {
    const result = decodeTaskEvent(
      '{"taskIdentifier":"t","frontmatter":{"__proto__":{"status":"in_progress"}}}'
    )
    if (Either.isRight(result)) expect(result.right.frontmatter["status"]).toBeUndefined()
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
    expect(({} as Record<string, unknown>)["status"]).toBeUndefined()
  })

  it("a deeply nested JSON value (a ~20 KB message) is skipped, not a stack overflow", () => {
    const depth = 10_000
    const values = [
      "[".repeat(depth) + "]".repeat(depth),
      `{"taskIdentifier":${"[".repeat(depth)}${"]".repeat(depth)}}`,
      `{"taskIdentifier":"t","content":${'{"a":'.repeat(depth)}1${"}".repeat(depth)}}`
    ]
    for (const value of values) {
      let result: ReturnType<typeof decodeTaskEvent> | undefined
      expect(() => {
        result = decodeTaskEvent(value)
      }).not.toThrow()
      expect(result !== undefined && Either.isLeft(result) && result.left._tag).toBe("NotATask")
    }
  })
})
