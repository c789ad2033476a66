import type { Line } from "./Simulation.js"

export const jsonl = (lines: ReadonlyArray<Line>): string => lines.map((line) => JSON.stringify(line)).join("\n") + "\n"

const clock = (t: number): string => {
  const s = Math.floor(t / 1000)
  const pad = (n: number) => String(n).padStart(2, "0")
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`
}

const short = (id: string) => id.slice(0, 8)

const describe = (line: Line): string | undefined => {
  switch (line.kind) {
    case "job.created":
      return `${short(line.task)}  job created   ${line.job} (attempt ${line.attempt})`
    case "job.deleted":
      return `${short(line.task)}  job deleted   ${line.job}`
    case "job.finished":
      return `${short(line.task)}  job finished  ${line.job} ${line.outcome}${line.reason === "" ? "" : ` (${line.reason})`}`
    case "verdict":
      return `${short(line.task)}  VERDICT       ${line.reason} (${line.source}) ${line.detail}`
    case "command": {
      const data = line.data as { readonly updates?: Record<string, unknown>; readonly field?: string; readonly delta?: number; readonly frontmatter?: Record<string, unknown> }
      const what =
        line.operation === "increment-frontmatter"
          ? `${data.field} +${data.delta}`
          : line.operation === "update-frontmatter"
            ? JSON.stringify(data.updates)
            : line.operation === "update"
              ? `result ${JSON.stringify(data.frontmatter)}`
              : ""
      return `${short(line.key ?? "")}  ${line.initiator.padEnd(8)}      ${line.operation} ${what}`
    }
    case "command.expired":
      return `${short(line.task)}  EXPIRED       ${line.operation} sent ${line.requestTime}`
    case "intervention":
      return `          ${line.what} ${line.detail}`
    case "final":
      return undefined
  }
}

/** A readable timeline, then the final state of every task. */
export const table = (lines: ReadonlyArray<Line>, name?: string): string => {
  const out: Array<string> = []
  if (name !== undefined) out.push(`# ${name}`, "")
  out.push("time      task      event")
  for (const line of lines) {
    const text = describe(line)
    if (text !== undefined) out.push(`${clock(line.t)}  ${text}`)
  }
  const final = lines.find((l) => l.kind === "final")
  if (final !== undefined && final.kind === "final") {
    out.push("", "task      status       phase        assignee          triggers  current_job")
    for (const [id, task] of Object.entries(final.tasks)) {
      const fm = task.frontmatter
      const cell = (key: string, width: number) => String(fm[key] ?? "").padEnd(width)
      out.push(
        `${short(id)}  ${cell("status", 12)} ${cell("phase", 12)} ${(String(fm["assignee"] ?? "") || "(inbox)").padEnd(17)} ${`${fm["trigger_count"] ?? 0}/${fm["max_triggers"] ?? 3}`.padEnd(9)} ${cell("current_job", 0)}`
      )
    }
  }
  return out.join("\n") + "\n"
}
