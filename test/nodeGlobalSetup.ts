// Global setup of the `node` project (vitest.config.ts): one real single-node Kubernetes
// (test/infra/node-up.sh: etcd, kube-apiserver, controller manager, scheduler, containerd, kubelet,
// Kafka and the registry of the node's images) for every file of test/node.
//
//   1. test/infra/prepare.sh (cached: ~0 s; `pnpm test` runs it before entering the namespace)
//   2. a fresh RUN_DIR, test/infra/node-up.sh RUN_DIR (~10 s)
//   3. REAL_NODE_* into process.env for the test workers (support/nodeEnv.ts), `inject("node")`
//   4. teardown: test/infra/node-down.sh RUN_DIR, which fails (and so fails the run) if any process,
//      mount, cgroup or link of the node is left; then rm -rf RUN_DIR
//
// The node lives in the network namespace of this vitest process: run vitest through
// test/infra/in-netns.sh (`pnpm test` and test/infra/run-vitest.sh do). In the machine's own
// namespace this setup fails (or skips with SKIP_INTEGRATION=1, ignored when CI=true).
// KEEP_INFRA=1 leaves the node running (only useful when in-netns.sh runs a shell around vitest).
// NODE_REUSE=1 with REAL_NODE_RUN_DIR=<dir of a running node-up.sh in this namespace> uses it as is.
import { appendFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { TestProject } from "vitest/node"
import { integrationRequired } from "./support/infraEnv.js"
import { inInitialNetns, type NodeInfo, nodeEnvNames, readNodeInfo } from "./support/nodeEnv.js"
import { runScript, tail, upTimeoutMs } from "./support/stack.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** The running node, or null when the node tests are skipped (SKIP_INTEGRATION=1). */
    node: NodeInfo | null
  }
}

const prepareTimeoutMs = Number(process.env["PREPARE_TIMEOUT_MS"] ?? 60 * 60_000)
const downTimeoutMs = 120_000

const log = (line: string) => process.stderr.write(`[nodeGlobalSetup] ${line}\n`)

const fail = (message: string): never => {
  throw new Error(
    `${message}\n\nThe node project needs the real node of test/infra (test/README.md): run it as \`npx -y pnpm@12.4.2 test\`, ` +
      `or \`bash test/infra/run-vitest.sh run --project node\` (root, inside a network namespace of its own). ` +
      `SKIP_INTEGRATION=1 skips it (ignored when CI=true or INTEGRATION_REQUIRED=1).`
  )
}

const exportInfo = (info: NodeInfo) => {
  process.env[nodeEnvNames.runDir] = info.runDir
  process.env[nodeEnvNames.kubeconfig] = info.kubeconfig
  process.env[nodeEnvNames.kafkaBrokers] = info.kafkaBrokers
  process.env[nodeEnvNames.registry] = info.registry
  process.env[nodeEnvNames.nodeName] = info.nodeName
  process.env[nodeEnvNames.agentImage] = info.images.agent
  delete process.env[nodeEnvNames.skipped]
}

const start = async (): Promise<{ readonly info: NodeInfo | null; readonly stop: () => Promise<void> }> => {
  if (process.env["SKIP_INTEGRATION"] === "1" && !integrationRequired()) {
    log("SKIP_INTEGRATION=1: the node tests are skipped (no node started)")
    process.env[nodeEnvNames.skipped] = "1"
    return { info: null, stop: async () => undefined }
  }
  if (process.env["NODE_REUSE"] === "1") {
    const info = readNodeInfo(process.env[nodeEnvNames.runDir] ?? fail(`NODE_REUSE=1 needs ${nodeEnvNames.runDir}`))
    exportInfo(info)
    log(`NODE_REUSE=1: using the node of ${info.runDir}; it is not stopped`)
    return { info, stop: async () => undefined }
  }
  if (inInitialNetns()) fail("vitest runs in the machine's own network namespace, where no node may run")

  const prepared = await runScript("prepare.sh", [], process.env, prepareTimeoutMs, process.env["INFRA_QUIET"] !== "1")
  if (prepared.code !== 0) fail(`test/infra/prepare.sh failed (exit ${prepared.code ?? prepared.signal}):\n${tail(prepared.output)}`)

  const runDir = mkdtempSync(join(tmpdir(), "agent-executor-node-"))
  const up = await runScript("node-up.sh", [runDir], process.env, upTimeoutMs)
  if (up.code !== 0) {
    rmSync(runDir, { recursive: true, force: true })
    fail(`test/infra/node-up.sh failed (exit ${up.code ?? up.signal}) after ${up.ms} ms:\n${tail(up.output, 200)}`)
  }
  const info = readNodeInfo(runDir)
  exportInfo(info)
  log(`node up in ${(up.ms / 1000).toFixed(1)} s (Ready at ${info.startupSeconds["nodeReady"]} s): ${info.kubeApiserverUrl}, node ${info.nodeName}, registry ${info.registry}, RUN_DIR ${runDir}`)
  return {
    info,
    stop: async () => {
      if (process.env["KEEP_INFRA"] === "1") {
        log(`KEEP_INFRA=1: left running; stop with test/infra/node-down.sh ${runDir}`)
        return
      }
      const down = await runScript("node-down.sh", [runDir], process.env, downTimeoutMs)
      log(`node down in ${(down.ms / 1000).toFixed(1)} s`)
      if (down.code !== 0) {
        // RUN_DIR stays for the post-mortem. Under in-netns.sh the failure is handed to it, which
        // fails the command once every teardown ran (a throw here would skip the other projects'
        // teardowns, leaving their servers to in-netns.sh's clean-up).
        const message = `test/infra/node-down.sh ${runDir} failed (exit ${down.code ?? down.signal}):\n${tail(down.output, 60)}`
        const state = process.env["INFRA_NETNS_STATE"]
        if (state === undefined) throw new Error(message)
        log(message)
        appendFileSync(join(state, "failures"), `${message}\n`)
        return
      }
      rmSync(runDir, { recursive: true, force: true })
    }
  }
}

export default async function setup(project: TestProject) {
  const node = await start()
  project.provide("node", node.info)
  return node.stop
}
