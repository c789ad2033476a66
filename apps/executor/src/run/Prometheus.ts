import { Effect, Metric, MetricKeyType, MetricState } from "effect"

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

const labels = (tags: ReadonlyArray<{ readonly key: string; readonly value: string }>, extra: string = "") => {
  const parts = tags.map((t) => `${t.key}="${escapeLabel(t.value)}"`)
  if (extra !== "") parts.push(extra)
  return parts.length === 0 ? "" : `{${parts.join(",")}}`
}

const number = (n: number | bigint) => (typeof n === "bigint" ? n.toString() : Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : "-Inf")

/** The Prometheus text exposition (version 0.0.4) of every Effect metric of this process. */
export const render = Effect.map(Metric.snapshot, (pairs) => {
  const families = new Map<string, { type: string; help: string; lines: Array<string> }>()
  for (const pair of pairs) {
    const key = pair.metricKey
    const state = pair.metricState
    const name = key.name
    const tags = [...key.tags].sort((a, b) => a.key.localeCompare(b.key))
    const family = (type: string) => {
      const existing = families.get(name)
      if (existing !== undefined) return existing
      const created = { type, help: key.description._tag === "Some" ? key.description.value : name, lines: [] }
      families.set(name, created)
      return created
    }
    if (MetricKeyType.isCounterKey(key.keyType) && MetricState.isCounterState(state)) {
      family("counter").lines.push(`${name}${labels(tags)} ${number(state.count)}`)
    } else if (MetricKeyType.isGaugeKey(key.keyType) && MetricState.isGaugeState(state)) {
      family("gauge").lines.push(`${name}${labels(tags)} ${number(state.value)}`)
    } else if (MetricKeyType.isHistogramKey(key.keyType) && MetricState.isHistogramState(state)) {
      const f = family("histogram")
      let sawInf = false
      for (const [bound, cumulative] of state.buckets) {
        if (!Number.isFinite(bound)) sawInf = true
        f.lines.push(`${name}_bucket${labels(tags, `le="${number(bound)}"`)} ${cumulative}`)
      }
      if (!sawInf) f.lines.push(`${name}_bucket${labels(tags, 'le="+Inf"')} ${state.count}`)
      f.lines.push(`${name}_sum${labels(tags)} ${number(state.sum)}`)
      f.lines.push(`${name}_count${labels(tags)} ${state.count}`)
    }
  }
  const out: Array<string> = []
  for (const [name, f] of [...families].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`# HELP ${name} ${f.help.replace(/\n/g, " ")}`, `# TYPE ${name} ${f.type}`, ...f.lines.sort())
  }
  return out.join("\n") + "\n"
})
