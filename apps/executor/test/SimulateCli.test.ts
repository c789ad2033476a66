/**
 * The `simulate` command (simulation.md "Command"). Most invalid scenarios are checked in-process
 * (`validate`, `runSimulateCommand`); four real child processes, run in parallel, prove what only the
 * process shows: stdout carries JSON Lines alone (a JSON scenario file), the exit codes, one message
 * on stderr, and the table (the tour, with no arguments).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { runSimulateCommand } from "../src/simulate/Command.js"
import { validate } from "../src/simulate/Scenario.js"
import { checkInvariants, formatViolation, parseRun } from "./Invariants.js"
import { type Exit, runNode } from "./NodeProcess.js"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const dir = mkdtempSync(join(tmpdir(), "simulate-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const write = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

const task = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const spec = { assignee: "claude-agent", image: "registry.example/agent-claude:v1", heartbeat: "1h", taskTypes: ["llm"] }
/** A small valid scenario; each case breaks one thing. */
const base = () => ({
  name: "cli",
  duration: "10m",
  agents: [{ name: "claude", spec: { ...spec } }],
  tasks: [
    {
      taskIdentifier: task,
      frontmatter: { status: "in_progress", phase: "execution", assignee: "claude-agent", task_type: "llm", stage: "prod", max_triggers: 3 },
      content: "# A task"
    }
  ],
  pods: { default: [{ succeed: "2m" }] } as Record<string, ReadonlyArray<unknown>>,
  events: [] as Array<Record<string, unknown>>
})

/** The one message of an invalid scenario, or a failed assertion when it is valid. */
const invalid = (input: unknown): string => {
  const result = validate(input)
  if (Either.isRight(result)) throw new Error(`expected an invalid scenario: ${JSON.stringify(input)}`)
  return result.left.message
}

/** One clear message: one line, naming the field first, no stack trace, no type dump. */
const expectClear = (message: string, field: string) => {
  expect(message.split("\n"), message).toHaveLength(1)
  expect(message.startsWith(`${field}:`), `"${message}" names ${field}`).toBe(true)
  expect(message).not.toMatch(/\n\s+at |Error:.*\bat\b.*\(/)
}

describe("simulate: invalid scenarios (in-process)", () => {
  it("the base scenario is valid", () => {
    expect(Either.isRight(validate(base()))).toBe(true)
  })

  it("missing duration", () => {
    const { duration: _, ...rest } = base()
    expectClear(invalid(rest), "duration")
  })

  it("an unknown top-level key", () => {
    const message = invalid({ ...base(), retries: 3 })
    expectClear(message, "retries")
  })

  it("a string max_triggers: tasks[0].frontmatter.max_triggers: expected a number", () => {
    const scenario = base()
    const first = scenario.tasks[0]
    if (first === undefined) throw new Error("no task")
    expect(invalid({ ...scenario, tasks: [{ ...first, frontmatter: { ...first.frontmatter, max_triggers: "3" } }] })).toBe(
      "tasks[0].frontmatter.max_triggers: expected a number"
    )
  })

  it("a Config the API server would reject (zombieJobTimeoutSeconds below its floor), at start and in an event", () => {
    expectClear(invalid({ ...base(), agents: [{ name: "claude", spec: { ...spec, zombieJobTimeoutSeconds: 5 } }] }), "agents[0].spec.zombieJobTimeoutSeconds")
    const later = { ...base(), events: [{ at: "1m", agent: { name: "claude", spec: { ...spec, imagePullGraceSeconds: 99999 } } }] }
    expectClear(invalid(later), "events[0].agent.spec.imagePullGraceSeconds")
  })

  it("events naming an unknown task or agent, pods of an unknown task", () => {
    expectClear(invalid({ ...base(), events: [{ at: "1m", deleteJob: "no-such-task" }] }), "events[0].deleteJob")
    expectClear(invalid({ ...base(), events: [{ at: "1m", task: { taskIdentifier: "no-such-task", frontmatter: {} } }] }), "events[0].task.taskIdentifier")
    expectClear(invalid({ ...base(), events: [{ at: "1m", deleteAgent: "nobody" }] }), "events[0].deleteAgent")
    expectClear(invalid({ ...base(), pods: { "no-such-task": ["hang"] } }), "pods.no-such-task")
  })

  it("a bad duration string, a negative duration, an unknown pod behaviour, events out of order", () => {
    expectClear(invalid({ ...base(), duration: "5 minutes" }), "duration")
    expectClear(invalid({ ...base(), duration: -5 }), "duration")
    expectClear(invalid({ ...base(), pods: { [task]: ["explode"] } }), `pods.${task}[0]`)
    expectClear(invalid({ ...base(), events: [{ at: "2m", kafkaDown: "1m" }, { at: "1m", kafkaDown: "1m" }] }), "events")
  })

  it("kafkaAckLost takes a positive whole number of publish calls", () => {
    for (const bad of [0, -1, 1.5, "2"]) {
      expectClear(invalid({ ...base(), events: [{ at: "1m", kafkaAckLost: bad }] }), "events[0].kafkaAckLost")
    }
  })

  it("a bad duration inside an event names the event's field", () => {
    expectClear(invalid({ ...base(), events: [{ at: "1m", kafkaDown: "soon" }] }), "events[0].kafkaDown")
  })

  // Messages an author can act on
  it("a bad duration string says it expects a duration", () => {
    expect(invalid({ ...base(), duration: "5 minutes" })).toMatch(/^duration: expected a duration/)
  })
  it("a bad duration in an event says it expects a duration", () => {
    expect(invalid({ ...base(), events: [{ at: "1m", kafkaDown: "soon" }] })).toMatch(/^events\[0\]\.kafkaDown: expected a duration/)
  })
  it("an empty file or a scalar gets a short message, not a dump of the whole schema", () => {
    expect(invalid(null).length).toBeLessThan(200)
    expect(invalid("just a string").length).toBeLessThan(200)
  })
  it("an unknown key in a Config spec is rejected, as the API server (strict field validation) would", () => {
    expectClear(invalid({ ...base(), agents: [{ name: "claude", spec: { ...spec, zombieTimeout: 600 } }] }), "agents[0].spec.zombieTimeout")
  })
})

describe("simulate: scenario files (in-process)", () => {
  const failure = (path: string) => Effect.runPromise(Effect.flip(runSimulateCommand(path, "jsonl")))

  it("a file that is not YAML, a JSON file that is not JSON, a missing file: one message naming the file", async () => {
    const yaml = await failure(write("broken.yaml", "duration: [1h\n  - : : x\n\t{"))
    expect(yaml.message).toMatch(/broken\.yaml: not valid YAML/)
    expect(yaml.message.split("\n")).toHaveLength(1)
    const json = await failure(write("broken.json", '{"duration": "1h", '))
    expect(json.message).toMatch(/broken\.json: not valid JSON/)
    expect(json.message.split("\n")).toHaveLength(1)
    const missing = await failure(join(dir, "absent.yaml"))
    expect(missing.message).toMatch(/absent\.yaml: cannot read/)
    expect(missing.message.split("\n")).toHaveLength(1)
  })

  it("a JSON scenario file is validated like a YAML one", async () => {
    const error = await failure(write("unknown-key.json", JSON.stringify({ ...base(), retries: 3 })))
    expectClear(error.message, "retries")
  })
})

// ---------------------------------------------------------------------------------------------------
// Real processes

const cli = (args: ReadonlyArray<string>): Promise<Exit> =>
  runNode(["--import", "tsx", "apps/executor/src/main.ts", ...args], { cwd: root })

describe("simulate: the process", () => {
  let jsonl: Exit
  let tour: Exit
  let badField: Exit
  let badOutput: Exit

  beforeAll(async () => {
    const crash = { ...base(), pods: { [task]: [{ fail: "30s", exitCode: 1 }, { succeed: "2m" }] } }
    const scenarioJson = write("crash.json", JSON.stringify(crash, null, 2))
    const badMax = write(
      "bad-max.yaml",
      `duration: 1h\ntasks:\n  - taskIdentifier: ${task}\n    frontmatter: {status: in_progress, assignee: claude-agent, max_triggers: "3"}\n`
    )
    // In parallel: each process costs a second or more of start-up.
    ;[jsonl, tour, badField, badOutput] = await Promise.all([
      cli(["simulate", scenarioJson, "--output", "jsonl"]),
      cli([]),
      cli(["simulate", badMax, "--output", "jsonl"]),
      cli(["simulate", "examples/succeed.yaml", "--output", "xml"])
    ])
  }, 120_000)

  it("a JSON scenario with --output jsonl: only JSON Lines on stdout, every documented field, the final line last, exit 0", () => {
    expect(jsonl.code, jsonl.stderr).toBe(0)
    expect(jsonl.stdout.endsWith("\n")).toBe(true)
    const texts = jsonl.stdout.trimEnd().split("\n")
    expect(texts.length).toBeGreaterThan(1)
    for (const text of texts) expect(() => JSON.parse(text) as unknown, text).not.toThrow()
    const parsed = parseRun(jsonl.stdout)
    expect(parsed.violations.map(formatViolation)).toEqual([])
    expect(parsed.lines[parsed.lines.length - 1]?.kind).toBe("final")
    expect(new Set(parsed.lines.map((l) => l.kind))).toEqual(new Set(["job.created", "job.finished", "job.deleted", "verdict", "command", "final"]))
    expect(parsed.lines.filter((l) => l.kind === "verdict").map((l) => (l.kind === "verdict" ? [l.t, l.reason] : []))).toEqual([[36000, "pod_crash_no_stdout"]])
    expect(checkInvariants(jsonl.stdout).map(formatViolation)).toEqual([])
  })

  it("no arguments: the tour, as a readable table, then the final task states", () => {
    expect(tour.code, tour.stderr).toBe(0)
    expect(tour.stdout).toMatch(/^# tour:/)
    expect(tour.stdout).toMatch(/^time +task +event$/m)
    expect(tour.stdout).toContain("job created")
    expect(tour.stdout).toContain("VERDICT       image_pull_backoff")
    expect(tour.stdout).toMatch(/^task +status +phase +assignee +triggers +current_job$/m)
    expect(tour.stdout).toMatch(/^11111111 +completed +done +claude-agent +1\/3 /m)
    expect(tour.stdout).toMatch(/^22222222 +in_progress +execution +\(inbox\) +4\/3 /m)
    expect(() => JSON.parse(tour.stdout.split("\n")[0] ?? "") as unknown).toThrow()
  })

  it("an invalid scenario: exit 2, nothing on stdout, exactly one message on stderr naming the field", () => {
    expect(badField.code).toBe(2)
    expect(badField.stdout).toBe("")
    expect(badField.stderr).toBe("tasks[0].frontmatter.max_triggers: expected a number\n")
  })

  it("an unknown --output value: exit 2 with one message", () => {
    expect(badOutput.code).toBe(2)
    expect(badOutput.stdout).toBe("")
    expect(badOutput.stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(badOutput.stderr).toContain("--output")
    expect(badOutput.stderr).toContain("xml")
  })
})
