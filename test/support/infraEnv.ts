// Where the integration tests find the servers of test/infra (started by test/globalSetup.ts, or by
// hand: `test/infra/up.sh RUN_DIR` and KUBECONFIG, KAFKA_BROKERS, INFRA_RUN_DIR exported).
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

export interface InfraInfo {
  readonly runDir: string
  readonly kubeconfig: string
  readonly kafkaBrokers: string
  readonly kubeApiserverUrl: string
  readonly kafkaLibs: string
  readonly javaBin: string
}

/** What up.sh writes to RUN_DIR/state.json (the parts the tests use). */
export interface InfraState {
  readonly runDir: string
  readonly pids: { readonly etcd: number; readonly kubeApiserver: number; readonly kafka: number }
  readonly ports: { readonly kubeApiserver: number; readonly kafka: number; readonly kafkaController: number }
  readonly kubeconfig: string
  readonly kubeApiserverUrl: string
  readonly caFile: string
  readonly token: string
  readonly kafkaBrokers: string
}

/** In CI (or when asked) a missing stack is a failure, never a skip. */
export const integrationRequired = (): boolean =>
  process.env["CI"] === "true" || process.env["INTEGRATION_REQUIRED"] === "1"

/** The stack of this run, or a reason why there is none. */
export const infraFromEnv = (): { readonly infra: InfraInfo } | { readonly missing: string } => {
  const env = process.env
  if (env["INTEGRATION_SKIPPED"] === "1") return { missing: "SKIP_INTEGRATION=1" }
  const runDir = env["INFRA_RUN_DIR"] ?? ""
  const kubeconfig = env["KUBECONFIG"] ?? ""
  const kafkaBrokers = env["KAFKA_BROKERS"] ?? ""
  if (runDir === "" || kubeconfig === "" || kafkaBrokers === "") {
    return { missing: "INFRA_RUN_DIR, KUBECONFIG and KAFKA_BROKERS are not all set (run through the integration project of vitest.config.ts)" }
  }
  if (!existsSync(join(runDir, "state.json"))) return { missing: `${runDir}/state.json does not exist` }
  return {
    infra: {
      runDir,
      kubeconfig,
      kafkaBrokers,
      kubeApiserverUrl: readState(runDir).kubeApiserverUrl,
      kafkaLibs: env["KAFKA_LIBS"] ?? "",
      javaBin: env["JAVA_BIN"] ?? ""
    }
  }
}

export const readState = (runDir: string): InfraState =>
  JSON.parse(readFileSync(join(runDir, "state.json"), "utf8")) as InfraState

/**
 * For a test file: the stack, or `undefined` (the file skips its suite). Without a stack where one
 * is required, loading the file fails, so the run fails.
 */
export const requireInfra = (file: string): InfraInfo | undefined => {
  const found = infraFromEnv()
  if ("infra" in found) return found.infra
  if (integrationRequired()) throw new Error(`${file}: no integration stack (${found.missing}) but CI=true or INTEGRATION_REQUIRED=1`)
  console.warn(`${file}: skipped, no integration stack (${found.missing})`)
  return undefined
}
