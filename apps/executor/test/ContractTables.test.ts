/**
 * The tables of docs/contract.md that mirror code are compared with the code, so neither can drift:
 * reasons (ZombieReason), metrics (every `Metric.*` definition and the labels its uses add), the
 * `result` values, the environment (what the configuration reads), and the `Config` fields (the CRD
 * of packages/kube/src/Crd.ts and the bounds and defaults of packages/domain/src/AgentConfig.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { AgentConfig, Gates, zombieReasons } from "@executor/domain"
import { KafkaConfig } from "@executor/kafka"
import { Crd, KubeConfig } from "@executor/kube"
import { ConfigError, ConfigProvider, ConfigProviderPathPatch, Effect, Either, HashSet } from "effect"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { runConfig } from "../src/run/RunConfig.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..")
const contractPath = "docs/contract.md"
const contract = readFileSync(join(root, contractPath), "utf8")

// ---------------------------------------------------------------------------------------------
// Where the environment comes from. When the configuration moves into one module, repoint this
// list at it; the scan of product sources below still finds any variable read elsewhere.
// ---------------------------------------------------------------------------------------------

const environmentReaders: ReadonlyArray<readonly [string, Effect.Effect<unknown, ConfigError.ConfigError>]> = [
  ["apps/executor/src/run/RunConfig.ts (runConfig)", Effect.asVoid(runConfig)],
  ["packages/kafka/src/KafkaConfig.ts (fromEnv)", Effect.asVoid(KafkaConfig.fromEnv)],
  ["packages/kube/src/KubeConfig.ts (sourceFromEnv)", Effect.asVoid(KubeConfig.sourceFromEnv)]
]

// ---------------------------------------------------------------------------------------------
// Reading the contract's tables
// ---------------------------------------------------------------------------------------------

/** The cells of a table row; `\|` inside a cell is a literal bar. */
const cells = (row: string): ReadonlyArray<string> =>
  row
    .trim()
    .replace(/^\|/, "")
    .replace(/\|$/, "")
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim().replace(/\\\|/g, "|"))

/** The `index`-th table after the heading `heading`, before the next heading of its level or above. */
const table = (heading: string, index = 0): ReadonlyArray<ReadonlyArray<string>> => {
  const lines = contract.split("\n")
  const start = lines.findIndex((line) => line.trim() === heading)
  if (start < 0) throw new Error(`${contractPath} has no heading "${heading}"`)
  const level = (heading.match(/^#+/)?.[0] ?? "").length
  const tables: Array<Array<ReadonlyArray<string>>> = []
  let current: Array<ReadonlyArray<string>> | undefined
  for (const line of lines.slice(start + 1)) {
    const heads = line.match(/^(#+)\s/)
    if (heads !== null && (heads[1] ?? "").length <= level) break
    if (line.trim().startsWith("|")) {
      if (current === undefined) tables.push(current = [])
      current.push(cells(line))
    } else {
      current = undefined
    }
  }
  const found = tables[index]
  if (found === undefined) throw new Error(`${contractPath} has no table ${index + 1} under "${heading}"`)
  // header and the |---| line
  return found.slice(2)
}

/** The contents of the code spans of a cell. */
const spans = (cell: string): ReadonlyArray<string> => Array.from(cell.matchAll(/`([^`]*)`/g), (m) => m[1] ?? "")
const firstSpan = (cell: string | undefined): string => spans(cell ?? "")[0] ?? ""

/** The text of a section, up to the next heading of its level. */
const section = (heading: string): string => {
  const start = contract.indexOf(`\n${heading}\n`)
  const next = contract.indexOf("\n## ", start + heading.length + 2)
  return contract.slice(start, next < 0 ? undefined : next)
}

// ---------------------------------------------------------------------------------------------
// Reading the product sources (TypeScript's parser, so formatting does not matter)
// ---------------------------------------------------------------------------------------------

const sourceFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    if (entry === "node_modules" || entry === "test" || entry === "dist") return []
    if (statSync(path).isDirectory()) return sourceFiles(path)
    return path.endsWith(".ts") && !path.endsWith(".test.ts") ? [path] : []
  })

const productSources = ["packages", "apps"]
  .flatMap((top) => readdirSync(join(root, top)).map((pkg) => join(root, top, pkg, "src")))
  .filter((dir) => statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true)
  .flatMap(sourceFiles)
  .map((path) => ts.createSourceFile(relative(root, path), readFileSync(path, "utf8"), ts.ScriptTarget.ES2022, true))

const visit = (node: ts.Node, f: (node: ts.Node) => void): void => {
  f(node)
  ts.forEachChild(node, (child) => visit(child, f))
}

/** `Metric.counter`, `Config.string`, ...: the callee as `Object.method`. */
const calleeName = (call: ts.CallExpression): string => {
  const callee = call.expression
  if (ts.isPropertyAccessExpression(callee)) return `${callee.expression.getText()}.${callee.name.text}`
  return callee.getText()
}

/** The last name of `a`, `ns.a` or `ns.sub.a`. */
const lastName = (expression: ts.Expression): string | undefined =>
  ts.isIdentifier(expression)
    ? expression.text
    : ts.isPropertyAccessExpression(expression)
    ? expression.name.text
    : undefined

const stringArgument = (call: ts.CallExpression, index = 0): string | undefined => {
  const arg = call.arguments[index]
  return arg !== undefined && ts.isStringLiteralLike(arg) ? arg.text : undefined
}

/** Top-level `const X = <literal>` of every product file, for defaults named by a constant. */
const constants = new Map<string, string | number | boolean>()
for (const file of productSources) {
  for (const statement of file.statements) {
    if (!ts.isVariableStatement(statement)) continue
    for (const declaration of statement.declarationList.declarations) {
      const init = declaration.initializer
      if (!ts.isIdentifier(declaration.name) || init === undefined) continue
      if (ts.isStringLiteralLike(init)) constants.set(declaration.name.text, init.text)
      else if (ts.isNumericLiteral(init)) constants.set(declaration.name.text, Number(init.text))
    }
  }
}

const literalValue = (expression: ts.Expression): string | number | boolean | undefined => {
  if (ts.isStringLiteralLike(expression)) return expression.text
  if (ts.isNumericLiteral(expression)) return Number(expression.text.replace(/_/g, ""))
  if (expression.kind === ts.SyntaxKind.TrueKeyword) return true
  if (expression.kind === ts.SyntaxKind.FalseKeyword) return false
  const name = lastName(expression)
  return name === undefined ? undefined : constants.get(name)
}

const metricKinds: Readonly<Record<string, string>> = {
  "Metric.counter": "counter",
  "Metric.gauge": "gauge",
  "Metric.histogram": "histogram",
  "Metric.summary": "summary",
  "Metric.frequency": "frequency"
}

interface CodeMetric {
  readonly type: string
  readonly labels: Set<string>
  readonly where: string
}

/** Every metric defined in product code, with the labels `Metric.tagged` adds wherever it is used. */
const codeMetrics = (): ReadonlyMap<string, CodeMetric> => {
  const byName = new Map<string, CodeMetric>()
  const byVariable = new Map<string, string>()
  for (const file of productSources) {
    visit(file, (node) => {
      if (!ts.isCallExpression(node)) return
      const kind = metricKinds[calleeName(node)]
      const name = stringArgument(node)
      if (kind === undefined || name === undefined) return
      byName.set(name, { type: kind, labels: new Set(), where: file.fileName })
      if (ts.isVariableDeclaration(node.parent) && ts.isIdentifier(node.parent.name)) {
        byVariable.set(node.parent.name.text, name)
      }
    })
  }
  const base = (expression: ts.Expression): string | undefined => {
    if (ts.isCallExpression(expression) && calleeName(expression).endsWith("Metric.tagged")) {
      const inner = expression.arguments[0]
      return inner === undefined ? undefined : base(inner)
    }
    const variable = lastName(expression)
    return variable === undefined ? undefined : byVariable.get(variable)
  }
  for (const file of productSources) {
    visit(file, (node) => {
      if (!ts.isCallExpression(node) || calleeName(node) !== "Metric.tagged") return
      const metric = node.arguments[0] === undefined ? undefined : base(node.arguments[0])
      const label = stringArgument(node, 1)
      if (metric === undefined || label === undefined) {
        throw new Error(`${file.fileName}: cannot tell which metric and label "${node.getText()}" tags`)
      }
      byName.get(metric)?.labels.add(label)
    })
  }
  return byName
}

/** Variables named in product code: `Config.*("NAME")` and `env["NAME"]` / `process.env.NAME`. */
const scannedVariables = (): ReadonlySet<string> => {
  const names = new Set<string>()
  const variable = /^[A-Z][A-Z0-9_]+$/
  for (const file of productSources) {
    visit(file, (node) => {
      if (ts.isCallExpression(node) && calleeName(node).startsWith("Config.")) {
        const name = stringArgument(node)
        if (name !== undefined && variable.test(name)) names.add(name)
      }
      if (ts.isElementAccessExpression(node) && /(^|\.)env$/.test(node.expression.getText())) {
        const arg = node.argumentExpression
        if (ts.isStringLiteralLike(arg) && variable.test(arg.text)) names.add(arg.text)
      }
      if (
        ts.isPropertyAccessExpression(node) && node.expression.getText() === "process.env" &&
        variable.test(node.name.text)
      ) {
        names.add(node.name.text)
      }
    })
  }
  return names
}

/** `X("NAME").pipe(..., Config.withDefault(v), ...)`: the default of each variable, when it is a literal. */
const codeDefaults = (): ReadonlyMap<string, string | number | boolean> => {
  const defaults = new Map<string, string | number | boolean>()
  for (const file of productSources) {
    visit(file, (node) => {
      if (!ts.isCallExpression(node) || calleeName(node) !== "Config.withDefault") return
      const pipe = node.parent
      if (
        !ts.isCallExpression(pipe) || !ts.isPropertyAccessExpression(pipe.expression) ||
        pipe.expression.name.text !== "pipe"
      ) return
      const source = pipe.expression.expression
      if (!ts.isCallExpression(source)) return
      const name = stringArgument(source)
      const value = node.arguments[0] === undefined ? undefined : literalValue(node.arguments[0])
      if (name !== undefined && value !== undefined) defaults.set(name, value)
    })
  }
  return defaults
}

/** A value as the contract writes it in a code span: `""` for the empty string. */
const rendered = (value: string | number | boolean): string => (value === "" ? `""` : String(value))

// ---------------------------------------------------------------------------------------------
// Running the configuration with nothing set
// ---------------------------------------------------------------------------------------------

const missingPaths = (error: ConfigError.ConfigError): ReadonlyArray<string> =>
  ConfigError.reduceWithContext<undefined, ReadonlyArray<string>>(error, undefined, {
    andCase: (_, l, r) => [...l, ...r],
    orCase: (_, l, r) => [...l, ...r],
    invalidDataCase: () => [],
    missingDataCase: (_, path) => [path.join("_")],
    sourceUnavailableCase: () => [],
    unsupportedCase: () => []
  })

/** Every variable the readers ask for, and those whose absence fails them. */
const readEnvironment = () => {
  const asked = new Set<string>()
  const required = new Set<string>()
  const nothingSet = ConfigProvider.fromFlat(
    ConfigProvider.makeFlat({
      load: (path) => {
        asked.add(path.join("_"))
        return Effect.fail(ConfigError.MissingData([...path], "not set"))
      },
      enumerateChildren: () => Effect.succeed(HashSet.empty()),
      patch: ConfigProviderPathPatch.empty
    })
  )
  for (const [, reader] of environmentReaders) {
    const result = Effect.runSync(Effect.either(Effect.withConfigProvider(reader, nothingSet)))
    if (Either.isLeft(result)) { for (const path of missingPaths(result.left)) required.add(path) }
  }
  return { asked, required }
}

const sorted = (values: Iterable<string>) => [...values].sort()

describe("docs/contract.md mirrors the code", () => {
  it("Reasons: the ZombieReason literals, in order, the Go executor's seven first", () => {
    const rows = table("## Reasons")
    expect(rows.map((row) => firstSpan(row[0])), "## Reasons vs packages/domain/src/ZombieReason.ts").toEqual([
      ...zombieReasons
    ])
    expect(rows.map((row) => row[1]), "the `since` column: the first seven are the Go executor's").toEqual(
      zombieReasons.map((_, i) => (i < 7 ? "Go" : "new"))
    )
  })

  it("Metrics: every Metric definition with its type and the labels its uses add", () => {
    const code = codeMetrics()
    const doc = new Map(
      table("## Metrics").map((row) => [firstSpan(row[0]), { type: row[1] ?? "", labels: sorted(spans(row[2] ?? "")) }])
    )
    expect(sorted(doc.keys()), "metric names: ## Metrics vs the Metric.* definitions of packages/*/src, apps/*/src")
      .toEqual(
        sorted(code.keys())
      )
    for (const [name, metric] of code) {
      expect(doc.get(name), `${name} (defined in ${metric.where})`).toEqual({
        type: metric.type,
        labels: sorted(metric.labels)
      })
    }
  })

  it("Metrics: the result values of agent_executor_task_events_total, in order", () => {
    expect(table("## Metrics", 1).map((row) => firstSpan(row[0])), "vs Gates.eventResults").toEqual([
      ...Gates.eventResults
    ])
  })

  it("Environment: every variable the code reads, which are required, and the literal defaults", () => {
    const rows = table("## Environment")
    const doc = new Map(rows.map((row) => [firstSpan(row[0]), row[1] ?? ""]))
    const { asked, required } = readEnvironment()
    const names = new Set([...asked, ...scannedVariables()])
    expect(
      sorted(doc.keys()),
      `variables: ## Environment vs ${environmentReaders.map(([where]) => where).join(", ")} and the sources`
    )
      .toEqual(sorted(names))
    expect(sorted([...doc].filter(([, value]) => value === "required").map(([name]) => name)), "required variables")
      .toEqual(
        sorted(required)
      )
    for (const [name, value] of codeDefaults()) {
      expect(spans(doc.get(name) ?? ""), `${name}: the default the code gives`).toContain(rendered(value))
    }
  })

  it("Config resource: the CRD's fields, required ones, types and patterns, and the bounds and defaults", () => {
    const schema = Crd.specSchema as {
      readonly required: ReadonlyArray<string>
      readonly properties: Readonly<Record<string, { readonly type: string; readonly pattern?: string }>>
    }
    const rows = table("## Config resource")
    const doc = new Map(rows.map((row) => [firstSpan(row[0]), row]))
    expect(sorted(doc.keys()), "fields: ## Config resource vs specSchema of packages/kube/src/Crd.ts").toEqual(
      sorted(Object.keys(schema.properties))
    )
    // The defaults the executor applies: a minimal spec decoded, and the bounds of the numeric knobs.
    const given: Readonly<Record<string, unknown>> = { assignee: "a", image: "i", heartbeat: "1h", taskTypes: ["t"] }
    const minimal = Either.getOrThrow(AgentConfig.agentConfig({ name: "x" }, given)).spec as Readonly<
      Record<string, unknown>
    >
    const bounds = AgentConfig.bounds as Readonly<Record<string, { default: number; floor: number; ceiling: number }>>
    for (const [field, property] of Object.entries(schema.properties)) {
      const [, type = "", defaultCell = "", floor = "", ceiling = ""] = doc.get(field) ?? []
      const where = `## Config resource, ${field}`
      expect(type.split(/[ ,:]/)[0], `${where}: type`).toBe(property.type)
      expect(type.includes("required"), `${where}: required`).toBe(schema.required.includes(field))
      if (property.pattern !== undefined) expect(type, `${where}: pattern`).toContain(property.pattern)
      const bound = bounds[field]
      const fallback = field in given ? undefined : minimal[field]
      const expected = bound?.default ?? fallback
      expect(defaultCell, `${where}: default`).toBe(
        expected === undefined ? "—" : `\`${rendered(expected as string | number)}\``
      )
      expect([floor, ceiling], `${where}: floor and ceiling`).toEqual(
        bound === undefined ? ["—", "—"] : [`\`${bound.floor}\``, `\`${bound.ceiling}\``]
      )
    }
  })

  it("Config resource: every CEL rule's message is written down", () => {
    // as prose reads it: a message may be wrapped over two lines
    const text = section("## Config resource").replace(/\s+/g, " ")
    const messages = [
      Crd.taskTypeRule.message,
      ...Crd.quantityRules.map((rule) => rule.message),
      Crd.requestWithinLimitRule("cpu").message.replace(/cpu$/, "<name>")
    ]
    for (const message of messages) expect(text, "## Config resource: CEL messages").toContain(message)
  })
})
