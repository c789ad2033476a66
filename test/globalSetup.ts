// Global setup of the integration projects (vitest.config.ts): the real etcd + kube-apiserver +
// Kafka of test/infra for every integration test file.
//
//   1. test/infra/prepare.sh   (idempotent: ~0 s when cached, ~8 min cold: it builds)
//   2. free ports on 127.0.0.1, a fresh RUN_DIR, test/infra/up.sh RUN_DIR (~10-15 s)
//   3. KUBECONFIG, KAFKA_BROKERS, INFRA_RUN_DIR, KAFKA_LIBS, JAVA_BIN into process.env (the test
//      workers are forked after this and inherit it) and `inject("infra")` for typed access
//   4. teardown: test/infra/down.sh RUN_DIR (stops the recorded pids only), then rm -rf RUN_DIR
//
// Failing prepare or up fails the whole run with the log tail. Only a developer without the
// binaries may opt out with SKIP_INTEGRATION=1; it is ignored when CI=true or INTEGRATION_REQUIRED=1.
// KEEP_INFRA=1 leaves the servers and RUN_DIR behind for debugging (stop with down.sh RUN_DIR).
// INFRA_REUSE=1 with INFRA_RUN_DIR=<dir of a running up.sh> uses that stack as it is (fast
// iterations: start it once by hand, run the tests many times; it is not stopped).
//
// Several projects (integration, integration-serial) use this file; the stack is started once per
// vitest process and stopped after the last project's teardown.
import { existsSync } from "node:fs"
import { join } from "node:path"
import type { TestProject } from "vitest/node"
import { type InfraInfo, integrationRequired } from "./support/infraEnv.js"
import { cachedEnv, infoOf, keyValues, runScript, tail, upStack } from "./support/stack.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** The running stack, or null when the integration tests are skipped (SKIP_INTEGRATION=1). */
    infra: InfraInfo | null
  }
}

/** A cold prepare.sh builds kube-apiserver from source: minutes, not seconds. */
const prepareTimeoutMs = Number(process.env["PREPARE_TIMEOUT_MS"] ?? 60 * 60_000)

const log = (line: string) => process.stderr.write(`[globalSetup] ${line}\n`)

interface Stack {
  readonly info: InfraInfo | null
  readonly stop: () => Promise<void>
}

const fail = (message: string): never => {
  throw new Error(
    `${message}\n\nThe integration projects need the servers of test/infra (test/infra/README.md, test/README.md). ` +
      `On a machine without the binaries: SKIP_INTEGRATION=1 (ignored when CI=true or INTEGRATION_REQUIRED=1), ` +
      `or the unit tests alone: npx vitest run --project unit`
  )
}

const exportInfo = (info: InfraInfo) => {
  process.env["KUBECONFIG"] = info.kubeconfig
  process.env["KAFKA_BROKERS"] = info.kafkaBrokers
  process.env["INFRA_RUN_DIR"] = info.runDir
  process.env["KAFKA_LIBS"] = info.kafkaLibs
  process.env["JAVA_BIN"] = info.javaBin
  delete process.env["INTEGRATION_SKIPPED"]
}

const reuseStack = (runDir: string): Stack => {
  if (!existsSync(join(runDir, "state.json"))) {
    fail(`INFRA_REUSE=1: ${runDir}/state.json does not exist (start it with test/infra/up.sh ${runDir})`)
  }
  const cached = cachedEnv()
  const info = infoOf(runDir, {
    kafkaLibs: process.env["KAFKA_LIBS"] ?? cached["KAFKA_LIBS"] ?? "",
    javaBin: process.env["JAVA_BIN"] ?? cached["JAVA_BIN"] ?? ""
  })
  exportInfo(info)
  log(`INFRA_REUSE=1: using the running stack of ${runDir} (${info.kubeApiserverUrl}, kafka ${info.kafkaBrokers}); it is not stopped`)
  return { info, stop: async () => undefined }
}

const start = async (): Promise<Stack> => {
  if (process.env["SKIP_INTEGRATION"] === "1" && !integrationRequired()) {
    log("SKIP_INTEGRATION=1: the integration tests are skipped (no servers started)")
    process.env["INTEGRATION_SKIPPED"] = "1"
    // the adapter suites run whenever these are set: never against whatever the shell points at
    for (const name of ["KUBECONFIG", "KAFKA_BROKERS", "INFRA_RUN_DIR"]) delete process.env[name]
    return { info: null, stop: async () => undefined }
  }
  const reuse = process.env["INFRA_REUSE"] === "1" ? process.env["INFRA_RUN_DIR"] ?? "" : ""
  if (reuse !== "") return reuseStack(reuse)

  const t0 = Date.now()
  const prepared = await runScript("prepare.sh", [], process.env, prepareTimeoutMs, process.env["INFRA_QUIET"] !== "1")
  if (prepared.code !== 0) {
    fail(`test/infra/prepare.sh failed (exit ${prepared.code ?? prepared.signal}) after ${prepared.ms} ms; last lines:\n${tail(prepared.output)}`)
  }
  const built = keyValues(prepared.output)
  if ((built["KAFKA_LIBS"] ?? "") === "" || (built["JAVA_BIN"] ?? "") === "") {
    fail(`test/infra/prepare.sh did not report KAFKA_LIBS and JAVA_BIN:\n${tail(prepared.output)}`)
  }
  const stack = await upStack("agent-executor-it-", built).catch((error: unknown) =>
    fail(error instanceof Error ? error.message : String(error))
  )
  exportInfo(stack.info)
  log(
    `infra up in ${((Date.now() - t0) / 1000).toFixed(1)} s (prepare ${(prepared.ms / 1000).toFixed(1)} s, ` +
      `up ${(stack.upMs / 1000).toFixed(1)} s): ${stack.info.kubeApiserverUrl}, kafka ${stack.info.kafkaBrokers}, RUN_DIR ${stack.info.runDir}`
  )
  return {
    info: stack.info,
    stop: async () => {
      const keep = process.env["KEEP_INFRA"] === "1"
      if (keep) {
        log(`KEEP_INFRA=1: left running; stop with test/infra/down.sh ${stack.info.runDir}`)
        return
      }
      const down = await stack.stop()
      if (down.code !== 0) log(`down.sh exited ${down.code ?? down.signal}:\n${tail(down.output)}`)
      log(`infra down in ${(down.ms / 1000).toFixed(1)} s`)
    }
  }
}

/** One stack per vitest process, shared by the projects that list this file. */
interface Shared {
  stack?: Promise<Stack> | undefined
  users: number
}
const key = Symbol.for("agent-executor.integration-infra")
const shared = ((globalThis as Record<symbol, unknown>)[key] ??= { users: 0 }) as Shared

export default async function setup(project: TestProject) {
  shared.users++
  shared.stack ??= start()
  const stack = await shared.stack
  project.provide("infra", stack.info)
  return async () => {
    shared.users--
    if (shared.users > 0) return
    shared.stack = undefined
    await stack.stop()
  }
}
