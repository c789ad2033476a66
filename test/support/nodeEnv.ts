// Where the tests of the `node` project find the real single-node cluster of test/infra/node-up.sh
// (started by test/nodeGlobalSetup.ts, or by hand: see test/README.md).
import { existsSync, readFileSync, readlinkSync } from "node:fs"
import { join } from "node:path"
import { integrationRequired } from "./infraEnv.js"

/** What node-up.sh writes to RUN_DIR/node.json (the parts the tests use). */
export interface NodeInfo {
  readonly runDir: string
  /** admin credentials (system:masters) for the API server */
  readonly kubeconfig: string
  readonly kubeApiserverUrl: string
  readonly kafkaBrokers: string
  /** the registry inside the namespace, host:port */
  readonly registry: string
  /** the directory it serves: an OCI layout per repository (`<name>/`), the node's images linked in */
  readonly registryRoot: string
  /** the API server's audit log (JSON lines): the requests of ServiceAccounts outside kube-system */
  readonly auditLog: string
  readonly nodeName: string
  readonly nodeIp: string
  readonly images: {
    /** busybox + test/infra/images/agent.sh: behaviour from AGENT_* env (see that file) */
    readonly agent: string
    readonly pause: string
    /** on a loopback port where nothing listens: ErrImagePull, then ImagePullBackOff */
    readonly unreachable: string
  }
  readonly kubectl: string
  readonly cgroupRoot: string
  readonly pids: Readonly<Record<string, number>>
  readonly logs: { readonly containerd: string; readonly kubelet: string; readonly registry: string }
  readonly startupSeconds: Readonly<Record<string, number>>
}

/** The environment the node's global setup gives the test workers. */
export const nodeEnvNames = {
  runDir: "REAL_NODE_RUN_DIR",
  kubeconfig: "REAL_NODE_KUBECONFIG",
  kafkaBrokers: "REAL_NODE_KAFKA_BROKERS",
  registry: "REAL_NODE_REGISTRY",
  nodeName: "REAL_NODE_NAME",
  agentImage: "REAL_NODE_AGENT_IMAGE",
  skipped: "REAL_NODE_SKIPPED"
} as const

export const readNodeInfo = (runDir: string): NodeInfo =>
  JSON.parse(readFileSync(join(runDir, "node.json"), "utf8")) as NodeInfo

/** Whether this process runs in the machine's own network namespace (where no node may run). */
export const inInitialNetns = (): boolean => {
  try {
    return readlinkSync("/proc/self/ns/net") === readlinkSync("/proc/1/ns/net")
  } catch {
    return false // not root: node-up.sh's own guard decides
  }
}

/**
 * For a test file: the node, or `undefined` (the file skips its suite). Without a node where one
 * is required (CI=true or INTEGRATION_REQUIRED=1), loading the file fails, so the run fails.
 */
export const requireNode = (file: string): NodeInfo | undefined => {
  const env = process.env
  const runDir = env[nodeEnvNames.runDir] ?? ""
  const missing =
    env[nodeEnvNames.skipped] === "1"
      ? "SKIP_INTEGRATION=1"
      : runDir === ""
        ? `${nodeEnvNames.runDir} is not set (run through the node project of vitest.config.ts)`
        : !existsSync(join(runDir, "node.json"))
          ? `${runDir}/node.json does not exist`
          : undefined
  if (missing === undefined) return readNodeInfo(runDir)
  if (integrationRequired()) throw new Error(`${file}: no real node (${missing}) but CI=true or INTEGRATION_REQUIRED=1`)
  console.warn(`${file}: skipped, no real node (${missing})`)
  return undefined
}
