// A recording of the real node (nodeRecorder.ts) in the format of the testkit's fixtures
// (packages/testkit/test/fixtures/real-node/*.json, read by RealNodeShapes.test.ts): the objects as
// the API server returned them, without managedFields, with the run's names replaced by the
// fixtures' fixed ones and every time shifted so that the Job was created at 2026-06-01T12:00:00Z.
import { join } from "node:path"
import type { Mode } from "../node/modes.js"
import type { RawObject, Step } from "./nodeRecorder.js"
import { repoRoot } from "./stack.js"

export const fixtureDir = join(repoRoot, "packages/testkit/test/fixtures/real-node")

const fixed = {
  t0: Date.parse("2026-06-01T12:00:00Z"),
  jobName: "claude-agent-4aa57614-1a2b3c4d5e",
  taskId: "4aa57614-8835-4992-87e9-ca483ddbeae6",
  namespace: "agents"
}

const timestamp = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$/

export interface Recording {
  readonly jobName: string
  readonly taskId: string
  readonly namespace: string
  readonly steps: ReadonlyArray<Step>
  readonly events: ReadonlyArray<RawObject>
}

const created = (recording: Recording): number => {
  const first = recording.steps.find((s) => s.job !== null)?.job
  const at = (first?.["metadata"] as { readonly creationTimestamp?: string } | undefined)?.creationTimestamp
  if (at === undefined) throw new Error(`no creationTimestamp for Job ${recording.jobName}`)
  return Date.parse(at)
}

const sanitizer = (recording: Recording, shift: number) => {
  const replace = (text: string) =>
    text
      .replaceAll(recording.jobName, fixed.jobName)
      .replaceAll(recording.taskId, fixed.taskId)
      .replaceAll(recording.namespace, fixed.namespace)
  const sanitize = (value: unknown): unknown => {
    if (typeof value === "string") {
      const match = timestamp.exec(value)
      if (match === null) return replace(value)
      const shifted = new Date(Date.parse(`${match[1]}Z`) + shift).toISOString().replace(/\.\d{3}Z$/, "")
      return `${shifted}${match[2] ?? ""}Z`
    }
    if (Array.isArray(value)) return value.map(sanitize)
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(
        Object.entries(value).filter(([key]) => key !== "managedFields").map(([key, v]) => [key, sanitize(v)])
      )
    }
    return value
  }
  return sanitize
}

/** The fixture of `recording`; a variant of the mode has a name and summary of its own. */
export const fixture = (mode: Mode, recording: Recording, variant?: { readonly name: string; readonly summary: string }) => {
  const createdAt = created(recording)
  const sanitize = sanitizer(recording, fixed.t0 - createdAt)
  const steps = recording.steps.map((step) => ({
    at: Math.round((step.at - createdAt) / 10) / 100,
    job: step.job === null ? null : sanitize(step.job),
    pods: step.pods.map(sanitize)
  }))
  const judged = mode.fixture.judgedAt === undefined ? -1 : recording.steps.findIndex(mode.fixture.judgedAt)
  return {
    mode: variant?.name ?? mode.name,
    origin: "recorded on the real node (test/node/record-fixtures.test.ts): every write the API server made to the Job and its pod, as a watch saw it",
    summary: variant?.summary ?? mode.fixture.summary,
    steps,
    events: recording.events.map(sanitize),
    verdict: {
      ...(judged >= 0 ? { step: judged } : {}),
      reason: mode.fixture.reason,
      after: mode.fixture.after,
      ...(mode.fixture.detail === undefined ? {} : { detail: mode.fixture.detail })
    }
  }
}
