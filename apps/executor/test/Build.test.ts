/**
 * The production build (scripts/build.mjs): built into a temporary directory with no node_modules
 * above it, the bundle alone must answer `--help`, simulate exactly as the sources do, and refuse
 * `run` without its environment; it imports nothing but Node's built-in modules and its own chunks.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { builtinModules } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { parse as parseYaml } from "yaml"
import { jsonl } from "../src/simulate/Output.js"
import { validate } from "../src/simulate/Scenario.js"
import { simulate } from "../src/simulate/Simulation.js"
import { type Exit, runNode } from "./NodeProcess.js"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const dir = mkdtempSync(join(tmpdir(), "executor-build-"))
const dist = join(dir, "dist")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A child process with only PATH in its environment, started outside the repository. */
const node = (args: ReadonlyArray<string>, cwd = dir): Promise<Exit> =>
  runNode(args, { cwd, env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" } })

const succeed = join(root, "examples/succeed.yaml")

describe("the production build", () => {
  let help: Exit
  let simulated: Exit
  let run: Exit

  beforeAll(async () => {
    const built = await node([join(root, "scripts/build.mjs"), "--outdir", dist], root)
    expect(built.code, built.stderr).toBe(0)
    const main = join(dist, "main.mjs")
    ;[help, simulated, run] = await Promise.all([
      node([main, "--help"]),
      node([main, "simulate", succeed, "--output", "jsonl"]),
      node([main, "run"])
    ])
  }, 120_000)

  it("--help prints the usage and exits 0", () => {
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toMatch(/^usage:\n {2}executor simulate .*\n {2}executor run\n/)
  })

  it("simulate prints the same JSON Lines as the sources", async () => {
    expect(simulated.code, simulated.stderr).toBe(0)
    const scenario = validate(parseYaml(readFileSync(succeed, "utf8")))
    if (Either.isLeft(scenario)) throw new Error(scenario.left.message)
    const fromSources = jsonl(await Effect.runPromise(simulate(scenario.right)))
    expect(simulated.stdout).toBe(fromSources)
  })

  it("run without its environment names every missing variable and exits 2", () => {
    expect(run.code).toBe(2)
    expect(run.stderr).toBe(
      "invalid configuration:\n  LISTEN: required\n  KAFKA_BROKERS: required\n  BRANCH: required\n  NAMESPACE: required\n"
    )
  })

  it("imports only Node's built-in modules and its own chunks (no node_modules at run time)", () => {
    const files = readdirSync(dist, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".mjs"))
    expect(files).toContain("main.mjs")
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)])
    // the optional native speed-ups of `ws`, required inside a try/catch
    const optional = new Set(["bufferutil", "utf-8-validate"])
    const foreign = new Set<string>()
    for (const file of files) {
      const code = readFileSync(join(dist, file), "utf8")
      const specifiers = code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)["']([\w@./:-]+)["']/g)
      for (const [, specifier] of specifiers) {
        if (specifier === undefined || specifier.startsWith("./") || specifier.startsWith("../")) continue
        if (!builtins.has(specifier) && !optional.has(specifier)) foreign.add(`${file}: ${specifier}`)
      }
    }
    expect([...foreign]).toEqual([])
  })

  it("ships the licenses of the bundled packages", () => {
    const licenses = readFileSync(join(dist, "THIRD-PARTY-LICENSES.txt"), "utf8")
    for (const id of ["effect@", "@kubernetes/client-node@", "kafkajs@", "yaml@"]) expect(licenses).toContain(id)
  })
})
