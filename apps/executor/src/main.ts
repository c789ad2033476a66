import { fileURLToPath } from "node:url"
import type { OutputFormat } from "./simulate/Command.js"

// Each command imports what it needs when it starts: `--help` loads nothing else, `simulate` never
// loads the cluster and broker clients, and `run` never loads the in-memory world.

const usage = `usage:
  executor simulate <scenario.yaml|scenario.json> [--output jsonl|table]
  executor run
With no command, simulates the tour (examples/tour.yaml).`

const tour = fileURLToPath(new URL("../../../examples/tour.yaml", import.meta.url))

const fail = (message: string, code: number): never => {
  process.stderr.write(`${message}\n`)
  process.exit(code)
}

const simulateCommand = async (args: ReadonlyArray<string>) => {
  let file: string | undefined
  let output: OutputFormat = "table"
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (arg === "--output" || arg?.startsWith("--output=")) {
      const value = arg === "--output" ? args[++i] : arg.slice("--output=".length)
      if (value !== "jsonl" && value !== "table") return fail(`--output: expected jsonl or table, got ${value ?? "nothing"}`, 2)
      output = value
    } else if (arg !== undefined && !arg.startsWith("--") && file === undefined) {
      file = arg
    } else {
      return fail(`unexpected argument ${arg}\n${usage}`, 2)
    }
  }
  if (file === undefined) return fail(`simulate: missing scenario file\n${usage}`, 2)
  const [{ Effect }, { runSimulateCommand }] = await Promise.all([import("effect"), import("./simulate/Command.js")])
  // A simulation that never settles must not look like a success.
  process.exitCode = 1
  await Effect.runPromise(
    runSimulateCommand(file, output).pipe(
      Effect.tap(() => Effect.sync(() => (process.exitCode = 0))),
      Effect.catchTag("InvalidScenario", (error) => Effect.sync(() => fail(error.message, 2)))
    )
  ).catch((error: unknown) => fail(`simulation failed: ${String(error)}`, 1))
}

/** The service: every setting validated first, with one clear message per problem. */
const runCommand = async () => {
  const [NodeRuntime, { ConfigError, Effect, Either, Layer }, Run, { runConfig }] = await Promise.all([
    import("@effect/platform-node/NodeRuntime"),
    import("effect"),
    import("./run/Run.js"),
    import("./run/RunConfig.js")
  ])
  const config = Effect.runSync(Effect.either(runConfig))
  if (Either.isLeft(config)) {
    const problems: ReadonlyArray<string> = ConfigError.reduceWithContext<undefined, Array<string>>(config.left, undefined, {
      andCase: (_, l: Array<string>, r: Array<string>) => [...l, ...r],
      orCase: (_, l: Array<string>, r: Array<string>) => [...l, ...r],
      invalidDataCase: (_, path, message) => [`${path.join(".")}: ${message}`],
      missingDataCase: (_, path) => [`${path.join(".")}: required`],
      sourceUnavailableCase: (_, path, message) => [`${path.join(".")}: ${message}`],
      unsupportedCase: (_, path, message) => [`${path.join(".")}: ${message}`]
    })
    return fail(`invalid configuration:\n  ${[...new Set(problems)].join("\n  ")}`, 2)
  }
  NodeRuntime.runMain(Layer.launch(Run.layer(config.right)), { disablePrettyLogger: true })
}

const started = (command: Promise<void>) => command.catch((error: unknown) => fail(`start failed: ${String(error)}`, 1))

const [command, ...rest] = process.argv.slice(2)
switch (command) {
  case undefined:
    void started(simulateCommand([tour]))
    break
  case "simulate":
    void started(simulateCommand(rest))
    break
  case "run":
    void started(runCommand())
    break
  case "help":
  case "--help":
    process.stdout.write(`${usage}\n`)
    break
  default:
    fail(`unknown command ${command}\n${usage}`, 2)
}
