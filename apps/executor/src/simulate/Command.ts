import { readFileSync } from "node:fs"
import { Effect, Either } from "effect"
import { parse as parseYaml } from "yaml"
import { jsonl, table } from "./Output.js"
import { InvalidScenario, validate } from "./Scenario.js"
import { simulate } from "./Simulation.js"

export type OutputFormat = "jsonl" | "table"

const readScenario = (path: string) =>
  Effect.gen(function* () {
    const text = yield* Effect.try({
      try: () => readFileSync(path, "utf8"),
      catch: (error) => new InvalidScenario({ message: `${path}: cannot read: ${String(error)}` })
    })
    const parsed = yield* Effect.try({
      try: (): unknown => (path.endsWith(".json") ? JSON.parse(text) : parseYaml(text)),
      catch: (error) => new InvalidScenario({ message: `${path}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${String(error).split("\n")[0]}` })
    })
    return yield* Either.match(validate(parsed), { onLeft: Effect.fail, onRight: Effect.succeed })
  })

/** `simulate <scenario> [--output jsonl|table]`: the output on stdout, exit 2 for an invalid scenario. */
export const runSimulateCommand = (path: string, format: OutputFormat) =>
  Effect.gen(function* () {
    const scenario = yield* readScenario(path)
    const lines = yield* simulate(scenario)
    process.stdout.write(format === "jsonl" ? jsonl(lines) : table(lines, scenario.name))
  })
