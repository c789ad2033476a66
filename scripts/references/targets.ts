/**
 * Where each outside reference should point inside the repository: the table of the step that
 * rewrites them (then the allow-list is empty and this file can go). `--list` prints the
 * suggestion next to each offender.
 */

const d = (id: string) => `docs/decisions.md#${id}`
const c = (anchor: string) => `docs/contract.md#${anchor}`

/** Decision numbers of the spec. */
const decisions: Readonly<Record<string, string>> = {
  D1: d("drop-in"),
  D2: d("clock-only"),
  D3: "docs/architecture.md",
  D4: "docs/decisions.md",
  "D4.1": d("run-record"),
  "D4.2": d("one-verdict"),
  "D4.3": d("verdict-ends-job"),
  "D4.4": d("publish-once"),
  "D4.5": d("reasons"),
  "D4.6": `${d("graces")} / ${d("bounds")}`,
  "D4.7": d("sweeper"),
  "D4.8": d("recovery"),
  "D4.9": d("gate-order"),
  "D4.10": d("errors-never-fatal"),
  "D4.11": `${d("least-privilege")} / ${d("auth")}`,
  "D4.12": d("high-availability"),
  "D4.13": d("metrics"),
  D5: d("doctrine"),
  D6: "docs/decisions.md",
  "D6.1": `${d("job-name")} / ${d("spawn-order")}`,
  "D6.2": d("verdict-mark"),
  "D6.3": d("finalizer"),
  "D6.4": c("job")
}

/** Sections of the Go executor's description. */
const sections: ReadonlyArray<readonly [RegExp, string]> = [
  [/^2\.1$/, c("task-event")],
  [/^2\.2$/, c("frontmatter")],
  [/^2\.3$/, c("reasons")],
  [/^2\.4$/, c("config-resource")],
  [/^2\.5$/, c("what-the-controller-does-with-them")],
  [/^3\.1$/, c("topics")],
  [/^3\.2$/, c("job")],
  [/^3\.3$/, c("http")],
  [/^3\.4$/, c("environment")],
  [/^4\.1$/, c("commands")],
  [/^4\.2$/, c("job")],
  [/^4\.3$/, c("metrics")],
  [/^5\.1$/, d("gate-order")],
  [/^5\.2$/, d("grace-window")],
  [/^5\.3$/, d("deferred-reevaluate")],
  [/^5\.[45]$/, d("classifier-shared")],
  [/^5\.6$/, d("one-verdict")],
  [/^5\.7$/, d("doctrine")],
  [/^5\.8$/, d("type-mismatch")],
  [/^5\.9$/, c("the-probe-task")],
  [/^5\.10$/, d("recovery")],
  [/^5\.11$/, d("errors-never-fatal")],
  [/^6(\.[12])?$/, "deploy/README.md"],
  [/^6\.3$/, d("crd-single-source")],
  [/^7/, "name the behaviour instead of the catalogue"],
  [/^8\.1$/, d("run-record")],
  [/^8\.2$/, d("run-record")],
  [/^8\.3$/, d("verdict-ends-job")],
  [/^8\.4$/, d("recovery")],
  [/^8\.5$/, d("sweeper")],
  [/^8\.6$/, d("one-verdict")],
  [/^8\.7$/, d("double-count")],
  [/^8\.8$/, d("reasons")],
  [/^8\.9$/, d("graces")],
  [/^8\.10$/, d("type-mismatch")],
  [/^8\.11$/, d("gate-order")],
  [/^8\.12$/, d("deferred-reevaluate")],
  [/^8\.13$/, d("spawn-serialised")],
  [/^8\.14$/, d("phase-normalised")],
  [/^8\.15$/, `${d("errors-never-fatal")} / ${d("spawn-rejected")}`],
  [/^8\.16$/, d("errors-never-fatal")],
  [/^8\.17$/, d("start-after-sync")],
  [/^8\.18$/, d("task-key")],
  [/^8\.19$/, d("validate-before-send")],
  [/^8\.20$/, d("cache-not-api")],
  [/^8\.21$/, `${d("env-reserved")} / ${d("pull-secret")} / ${d("bounds")}`],
  [/^8\.22$/, d("crd-single-source")],
  [/^8\.23$/, `${d("no-sa-token")} / ${d("auth")}`],
  [/^8\.24$/, d("same-namespace")],
  [/^8\.25$/, d("tests-real-servers")],
  [/^8\.26$/, d("metrics")],
  [/^8\.27$/, d("docs-checked")]
]

const documents: Readonly<Record<string, string>> = {
  executor: "docs/contract.md (or a decision of docs/decisions.md)",
  simulation: "docs/simulation.md",
  decisions: "docs/decisions.md",
  controller: c("what-the-controller-does-with-them"),
  "real-cluster": "docs/design.md#judging-what-a-real-node-writes",
  infra: "test/README.md",
  stack: "docs/architecture.md",
  peers: "docs/architecture.md",
  "style-anchors": "docs/architecture.md"
}

export const suggestion = (token: string): string | undefined => {
  const decision = decisions[token]
  if (decision !== undefined) return decision
  const section = token.match(/§\s?(\d+(?:\.\d+)*)/)
  if (section !== null) return sections.find(([pattern]) => pattern.test(section[1] ?? ""))?.[1]
  const document = token.match(/^([a-z-]+)\.md$/)
  if (document !== null) return documents[document[1] ?? ""]
  if (token.startsWith("../shared")) return "the matching document of docs/"
  if (/^items? /.test(token)) return "name the behaviour instead of the catalogue"
  return undefined
}
