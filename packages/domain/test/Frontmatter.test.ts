import { describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import {
  assignee,
  currentJob,
  type Frontmatter,
  jobStartedAt,
  maxTriggers,
  normalisePhase,
  normaliseStatus,
  phase,
  stage,
  status,
  taskType,
  triggerCount
} from "../src/Frontmatter.js"

const fm = (values: Record<string, unknown>): Frontmatter => values

describe("Frontmatter: status (§2.2)", () => {
  const aliases: ReadonlyArray<readonly [string, string]> = [
    ["todo", "next"],
    ["current", "in_progress"],
    ["done", "completed"],
    ["deferred", "hold"]
  ]
  for (const [alias, canonical] of aliases) {
    it(`${alias} ⇒ ${canonical}`, () => {
      expect(status(fm({ status: alias }))).toBe(canonical)
      expect(normaliseStatus(alias)).toBe(canonical)
    })
  }

  it("canonical statuses stay as they are", () => {
    for (const s of ["next", "in_progress", "backlog", "completed", "hold", "aborted"]) {
      expect(status(fm({ status: s }))).toBe(s)
    }
  })

  it("unknown strings pass through unnormalised (case-sensitive)", () => {
    for (const s of ["blocked", "TODO", "Done", "in-progress", " todo"]) expect(status(fm({ status: s }))).toBe(s)
  })

  it("unknown strings that are names of Object.prototype members pass through as strings", () => {
    for (const s of ["constructor", "toString", "valueOf", "hasOwnProperty", "__proto__"]) {
      expect(status(fm({ status: s }))).toBe(s)
    }
  })

  it("missing or non-string ⇒ \"\"", () => {
    for (const value of [undefined, null, 1, true, ["todo"], { s: "todo" }]) {
      expect(status(fm(value === undefined ? {} : { status: value }))).toBe("")
    }
  })
})

describe("Frontmatter: phase (§2.2)", () => {
  it("legacy in_progress ⇒ execution", () => {
    expect(phase(fm({ phase: "in_progress" }))).toEqual(Option.some("execution"))
    expect(normalisePhase("in_progress")).toBe("execution")
  })

  it("canonical phases stay as they are", () => {
    for (const p of ["todo", "planning", "execution", "ai_review", "human_review", "done"]) {
      expect(phase(fm({ phase: p }))).toEqual(Option.some(p))
    }
  })

  it("missing, non-string or empty ⇒ None", () => {
    for (const value of [undefined, "", null, 0, 1, false, ["execution"], { p: "execution" }]) {
      expect(phase(fm(value === undefined ? {} : { phase: value }))).toEqual(Option.none())
    }
  })

  it("unknown strings pass through", () => {
    expect(phase(fm({ phase: "future_enum_value_not_in_v0.64.0" }))).toEqual(
      Option.some("future_enum_value_not_in_v0.64.0")
    )
    expect(phase(fm({ phase: "Execution" }))).toEqual(Option.some("Execution"))
  })

  it("unknown strings that are names of Object.prototype members pass through as strings", () => {
    for (const p of ["constructor", "toString", "__proto__"]) {
      expect(phase(fm({ phase: p }))).toEqual(Option.some(p))
    }
  })
})

describe("Frontmatter: string fields", () => {
  it("assignee, task_type and current_job: strings as given, missing or non-string ⇒ \"\"", () => {
    const full = fm({ assignee: "claude-agent", task_type: "llm", current_job: "job-1" })
    expect(assignee(full)).toBe("claude-agent")
    expect(taskType(full)).toBe("llm")
    expect(currentJob(full)).toBe("job-1")
    for (const bad of [fm({}), fm({ assignee: 1, task_type: null, current_job: false })]) {
      expect(assignee(bad)).toBe("")
      expect(taskType(bad)).toBe("")
      expect(currentJob(bad)).toBe("")
    }
  })

  it("stage: default prod when missing, empty or not a string", () => {
    expect(stage(fm({}))).toBe("prod")
    expect(stage(fm({ stage: "" }))).toBe("prod")
    expect(stage(fm({ stage: 5 }))).toBe("prod")
    expect(stage(fm({ stage: null }))).toBe("prod")
    expect(stage(fm({ stage: "dev" }))).toBe("dev")
    expect(stage(fm({ stage: "prod" }))).toBe("prod")
  })
})

describe("Frontmatter: numbers (§2.1, §2.2)", () => {
  it("trigger_count defaults to 0; max_triggers defaults to 3", () => {
    expect(triggerCount(fm({}))).toBe(0)
    expect(maxTriggers(fm({}))).toBe(3)
  })

  it("integers are taken as they are, max_triggers 0 included", () => {
    expect(triggerCount(fm({ trigger_count: 2 }))).toBe(2)
    expect(maxTriggers(fm({ max_triggers: 0 }))).toBe(0)
    expect(maxTriggers(fm({ max_triggers: 5 }))).toBe(5)
  })

  it("floats are truncated", () => {
    expect(triggerCount(fm({ trigger_count: 2.9 }))).toBe(2)
    expect(maxTriggers(fm({ max_triggers: 3.99 }))).toBe(3)
    expect(triggerCount(fm({ trigger_count: -1.5 }))).toBe(-1)
    expect(maxTriggers(fm({ max_triggers: 0.5 }))).toBe(0)
  })

  it("numeric strings and other types fall back to the default", () => {
    for (const value of ["3", "1", "", null, true, [1], { n: 1 }]) {
      expect(triggerCount(fm({ trigger_count: value }))).toBe(0)
      expect(maxTriggers(fm({ max_triggers: value }))).toBe(3)
    }
  })

  it("non-finite numbers fall back to the default", () => {
    for (const value of [Number.NaN, Infinity, -Infinity]) {
      expect(triggerCount(fm({ trigger_count: value }))).toBe(0)
      expect(maxTriggers(fm({ max_triggers: value }))).toBe(3)
    }
  })
})

describe("Frontmatter: job_started_at", () => {
  it("missing, empty or not a string ⇒ Absent", () => {
    for (const value of [undefined, "", null, 0, 1780315200]) {
      expect(jobStartedAt(fm(value === undefined ? {} : { job_started_at: value }))).toEqual({ _tag: "Absent" })
    }
  })

  it("unparseable ⇒ Invalid with the raw value", () => {
    expect(jobStartedAt(fm({ job_started_at: "not-a-valid-timestamp" }))).toEqual({
      _tag: "Invalid",
      raw: "not-a-valid-timestamp"
    })
    expect(jobStartedAt(fm({ job_started_at: "2026-13-01T00:00:00Z" }))).toMatchObject({ _tag: "Invalid" })
  })

  it("UTC second precision ⇒ At", () => {
    expect(jobStartedAt(fm({ job_started_at: "2026-06-01T12:00:00Z" }))).toEqual({
      _tag: "At",
      at: Date.parse("2026-06-01T12:00:00Z")
    })
  })

  it("fractional seconds ⇒ At with the milliseconds", () => {
    expect(jobStartedAt(fm({ job_started_at: "2026-06-01T12:00:00.5Z" }))).toEqual({
      _tag: "At",
      at: Date.parse("2026-06-01T12:00:00Z") + 500
    })
    expect(jobStartedAt(fm({ job_started_at: "2026-06-01T12:00:00.123456789Z" }))).toEqual({
      _tag: "At",
      at: Date.parse("2026-06-01T12:00:00Z") + 123
    })
  })

  it("a numeric offset is honoured", () => {
    expect(jobStartedAt(fm({ job_started_at: "2026-06-01T14:00:00+02:00" }))).toEqual({
      _tag: "At",
      at: Date.parse("2026-06-01T12:00:00Z")
    })
  })
})
