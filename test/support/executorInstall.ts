// The executor installed into the real node as an operator installs it: the image of
// scripts/build-image.sh served by the node's registry, deploy/ applied with `kubectl apply -k`
// through an overlay of this test's own (namespace, image tag, port, topics) that adds
// deploy/components/test-node; the pod runs under its ServiceAccount with the in-cluster
// configuration. Uninstalled as deploy/README.md says: finalizers released, then the namespace.
import { execFile } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import * as k8s from "@kubernetes/client-node"
import { Commands } from "@executor/domain"
import { http, metricSum } from "./executorProcess.js"
import { fastGraces } from "./harness.js"
import { type CommandLog, commandLog, createTopics, produce, taskEvent, type TaskEventInput } from "./kafka.js"
import { createNamespace, deleteNamespace, type NodeClients } from "./nodeCluster.js"
import type { NodeInfo } from "./nodeEnv.js"
import { freePort, repoRoot, tail } from "./stack.js"
import { eventually, sleep } from "./wait.js"

export const deployment = "agent-task-executor"
export const imageRepository = "agent-task-executor"
const configGroup = "agent.benjamin-borbe.de"

export interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to its end (no shell); never rejects. */
export const runCommand = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number; readonly cwd?: string } = {}
) =>
  new Promise<Ran>((resolvePromise) => {
    execFile(
      file,
      [...args],
      { cwd: options.cwd ?? repoRoot, env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolvePromise({ code, stdout, stderr: error !== null && stderr === "" ? String(error) : stderr })
      }
    )
  })

const must = async (what: string, ran: Promise<Ran>) => {
  const result = await ran
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}):\n${tail(result.stderr || result.stdout, 40)}`)
  return result.stdout
}

// ---------------------------------------------------------------------------------------------
// the image
// ---------------------------------------------------------------------------------------------

export interface ExecutorImage {
  /** `127.0.0.1:5001/agent-task-executor:<version>` */
  readonly image: string
  readonly version: string
  /** `<layout dir>:<tag>` */
  readonly oci: string
  /** The manifest's digest: installs pin it (a `-dirty` version tag is reused by every build of a dirty tree). */
  readonly digest: string
}

/**
 * scripts/build-image.sh (it stops after a 2-3 s check when nothing changed), one build at a time
 * (flock): several test files may ask at once. `version` builds another tag into a directory of its
 * own (`.build/image-<version>`).
 */
export const ensureImage = async (options: { readonly version?: string } = {}): Promise<ExecutorImage> => {
  const out = join(repoRoot, ".build", options.version === undefined ? "image" : `image-${options.version}`)
  mkdirSync(dirname(out), { recursive: true })
  const env = { ...process.env, IMAGE_OUT: out, ...(options.version === undefined ? {} : { VERSION: options.version }) }
  await must(
    "scripts/build-image.sh",
    runCommand("flock", [join(repoRoot, ".build", "image.lock"), "bash", join(repoRoot, "scripts", "build-image.sh")], {
      env,
      timeoutMs: 15 * 60_000
    })
  )
  const values = Object.fromEntries(
    readFileSync(join(out, "image.env"), "utf8").split("\n").flatMap((line) => {
      const at = line.indexOf("=")
      return at > 0 ? [[line.slice(0, at), line.slice(at + 1)] as const] : []
    })
  )
  const image = values["IMAGE"]
  const version = values["VERSION"]
  const oci = values["OCI"]
  if (image === undefined || version === undefined || oci === undefined) throw new Error(`${out}/image.env is incomplete`)
  const index = JSON.parse(readFileSync(join(oci.slice(0, oci.lastIndexOf(":")), "index.json"), "utf8")) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>
  }
  const digest = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === version)?.digest
  if (digest === undefined) throw new Error(`${oci}: no manifest tagged ${version}`)
  return { image, version, oci, digest }
}

/**
 * Puts the image into the node's registry (an OCI layout `agent-task-executor` in its root, one
 * tag per version), as `skopeo copy ... docker://<registry>/...` would push it: the kubelet pulls
 * it from 127.0.0.1:5001 like any other image.
 */
export const publishImage = async (node: NodeInfo, image: ExecutorImage) => {
  await must(
    `skopeo copy of ${image.image} into the node's registry`,
    runCommand("flock", [
      join(node.runDir, "registry.lock"),
      "skopeo", "--insecure-policy", "copy", "--quiet",
      `oci:${image.oci}`,
      `oci:${join(node.registryRoot, imageRepository)}:${image.version}`
    ])
  )
  const tags = await fetch(`http://${node.registry}/v2/${imageRepository}/tags/list`).then((r) => r.json() as Promise<{ tags?: Array<string> }>)
  if (!(tags.tags ?? []).includes(image.version)) throw new Error(`the registry does not list ${image.version}: ${JSON.stringify(tags)}`)
  return `${node.registry}/${imageRepository}:${image.version}`
}

/** The image built and in the node's registry. */
export const readyImage = async (node: NodeInfo, options: { readonly version?: string } = {}) => {
  const image = await ensureImage(options)
  await publishImage(node, image)
  return image
}

// ---------------------------------------------------------------------------------------------
// kubectl
// ---------------------------------------------------------------------------------------------

export const kubectl = (node: NodeInfo, args: ReadonlyArray<string>, timeoutMs = 120_000) =>
  runCommand(node.kubectl, args, { env: { ...process.env, KUBECONFIG: node.kubeconfig }, timeoutMs })

export const mustKubectl = (node: NodeInfo, args: ReadonlyArray<string>, timeoutMs = 120_000) =>
  must(`kubectl ${args.join(" ")}`, kubectl(node, args, timeoutMs))

// ---------------------------------------------------------------------------------------------
// the install
// ---------------------------------------------------------------------------------------------

/**
 * The spec of an agent Config of the node's agent image (test/infra/images/agent.sh: `env` chooses
 * what it does), with the smallest graces and a 600 s timeout unless `extra` says otherwise.
 */
export const agentConfig = (node: NodeInfo | undefined, assignee: string, extra: object = {}) => ({
  assignee,
  image: node?.images.agent ?? "",
  heartbeat: "5m",
  taskTypes: ["llm"],
  ...fastGraces,
  zombieJobTimeoutSeconds: 600,
  ...extra
})

export interface InstallOptions {
  /** Prefix of the namespace. */
  readonly label: string
  readonly image: ExecutorImage
  /** Container env to set or override (strategic merge by name). */
  readonly env?: Readonly<Record<string, string>>
  /** Merged into the pod spec (e.g. `automountServiceAccountToken: false`). */
  readonly pod?: Readonly<Record<string, unknown>>
  /** Merged into the service container (e.g. `volumeMounts`). */
  readonly container?: Readonly<Record<string, unknown>>
  /** More patches of the overlay (kustomize `patches` entries). */
  readonly patches?: ReadonlyArray<Readonly<Record<string, unknown>>>
  /** More objects the overlay installs in the namespace (e.g. a Secret the pod mounts). */
  readonly objects?: ReadonlyArray<Readonly<Record<string, unknown>>>
  /** Agent Configs to create before the executor starts. */
  readonly agents?: Readonly<Record<string, object>>
  /** Wait for the rollout (default true); the bad-input tests wait for a running, not-ready pod. */
  readonly waitReady?: boolean
}

export interface PodView {
  readonly name: string
  readonly uid: string
  readonly phase: string | undefined
  readonly ready: boolean
  readonly deleting: boolean
  readonly restarts: number
  readonly containerId: string | undefined
  readonly image: string | undefined
  readonly imageId: string | undefined
  readonly pod: k8s.V1Pod
}

export interface Install {
  readonly node: NodeInfo
  readonly namespace: string
  readonly port: number
  readonly topics: ReturnType<typeof Commands.topics>
  readonly topicPrefix: string
  readonly overlayDir: string
  /** `system:serviceaccount:<namespace>:agent-task-executor` */
  readonly user: string
  /** The request topic, read uncommitted (as the real controller reads it) from the start. */
  readonly log: CommandLog
  /** ms from `kubectl apply -k` to a Ready pod (undefined with `waitReady: false`). */
  readonly readyAfterMs: number | undefined
  readonly kubectl: (args: ReadonlyArray<string>, timeoutMs?: number) => Promise<string>
  readonly pods: () => Promise<ReadonlyArray<PodView>>
  /** The one pod that is not being deleted, once it is Ready. */
  readonly waitReady: (timeoutMs?: number, accept?: (pod: PodView) => boolean) => Promise<PodView>
  readonly http: (path: string) => ReturnType<typeof http>
  readonly metric: (name: string, labels?: Record<string, string>) => Promise<number>
  readonly logs: (pod: string, options?: { readonly previous?: boolean }) => Promise<string>
  readonly applyConfig: (name: string, spec: object) => Promise<void>
  readonly publishTasks: (tasks: ReadonlyArray<TaskEventInput>) => Promise<ReadonlyArray<ReturnType<typeof taskEvent>>>
  readonly scale: (replicas: number) => Promise<void>
  /** Releases the finalizers of the agent Jobs, deletes the Deployment and the namespace. */
  readonly uninstall: () => Promise<void>
}

const json = (value: unknown) => JSON.stringify(value, null, 2)

const view = (pod: k8s.V1Pod): PodView => {
  const status = pod.status?.containerStatuses?.find((c) => c.name === "service")
  return {
    name: pod.metadata?.name ?? "",
    uid: pod.metadata?.uid ?? "",
    phase: pod.status?.phase,
    ready: pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
    deleting: pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null,
    restarts: status?.restartCount ?? 0,
    containerId: status?.containerID?.replace(/^containerd:\/\//, ""),
    image: status?.image,
    imageId: status?.imageID,
    pod
  }
}

/** The overlay of one install: deploy/ plus the test-node component, and this install's settings. */
const writeOverlay = (dir: string, namespace: string, port: number, topicPrefix: string, options: InstallOptions) => {
  mkdirSync(dir, { recursive: true })
  const env = {
    LISTEN: `:${port}`,
    TOPIC_PREFIX: topicPrefix,
    KAFKA_GROUP_ID: `${topicPrefix}-executor`,
    KAFKA_TRANSACTIONAL_ID: `${topicPrefix}-executor`,
    ...options.env
  }
  const deploymentPatch = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: deployment },
    spec: {
      template: {
        metadata: { annotations: { "prometheus.io/port": String(port) } },
        spec: {
          ...options.pod,
          containers: [{ name: "service", env: Object.entries(env).map(([name, value]) => ({ name, value })), ...options.container }]
        }
      }
    }
  }
  const objects = (options.objects ?? []).map((object, i) => {
    writeFileSync(join(dir, `object-${i}.yaml`), json(object))
    return `object-${i}.yaml`
  })
  const kustomization = {
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    namespace,
    // kustomize takes relative paths only
    resources: [relative(dir, join(repoRoot, "deploy")), ...objects],
    components: [relative(dir, join(repoRoot, "deploy", "components", "test-node"))],
    images: [{ name: `127.0.0.1:5001/${imageRepository}`, digest: options.image.digest }],
    patches: [
      { target: { kind: "Deployment", name: deployment }, patch: json(deploymentPatch) },
      // in the node's network namespace the container port is a port of the node: one per install
      {
        target: { kind: "Deployment", name: deployment },
        patch: json([{ op: "replace", path: "/spec/template/spec/containers/0/ports/0/containerPort", value: port }])
      },
      ...(options.patches ?? [])
    ]
  }
  // JSON is YAML
  writeFileSync(join(dir, "kustomization.yaml"), json(kustomization))
}

export const install = async (node: NodeInfo, clients: NodeClients, options: InstallOptions): Promise<Install> => {
  const namespace = await createNamespace(clients, options.label)
  const port = await freePort()
  const topicPrefix = namespace
  const topics = Commands.topics(topicPrefix)
  const overlayDir = join(node.runDir, "installs", namespace)
  const custom = clients.kc.makeApiClient(k8s.CustomObjectsApi)
  const run = (args: ReadonlyArray<string>, timeoutMs?: number) => mustKubectl(node, args, timeoutMs)
  const inNs = (args: ReadonlyArray<string>, timeoutMs?: number) => run(["-n", namespace, ...args], timeoutMs)

  const applyConfig = async (name: string, spec: object) => {
    const body = { apiVersion: `${configGroup}/v1`, kind: "Config", metadata: { name, namespace }, spec }
    // the CRD may still be getting established right after the first apply
    await eventually(`Config ${name}`, 30_000, async () => {
      try {
        await custom.createNamespacedCustomObject({ group: configGroup, version: "v1", namespace, plural: "configs", body })
      } catch (error) {
        if ((error as { code?: number }).code !== 409) throw error
        await custom.patchNamespacedCustomObject(
          { group: configGroup, version: "v1", namespace, plural: "configs", name, body: { spec } },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
        )
      }
      return true
    }, 500)
  }

  const pods = async () =>
    (await clients.core.listNamespacedPod({ namespace, labelSelector: `app=${deployment}` })).items.map(view)

  const waitReady = (timeoutMs = 120_000, accept: (pod: PodView) => boolean = () => true) =>
    eventually(`a Ready executor pod in ${namespace}`, timeoutMs, async () => {
      const current = (await pods()).filter((p) => !p.deleting)
      return current.length === 1 && current[0]!.ready && accept(current[0]!) ? current[0] : undefined
    }, 100)

  await createTopics(node.kafkaBrokers, [topics.event, topics.request])
  const log = await commandLog(node.kafkaBrokers, topics.request, { readUncommitted: true })
  writeOverlay(overlayDir, namespace, port, topicPrefix, options)
  const appliedAt = Date.now()
  await run(["apply", "-k", overlayDir])
  // then the agents, as an operator would: they need the CRD established
  await run(["wait", "--for=condition=Established", "--timeout=60s", `crd/configs.${configGroup}`])
  for (const [name, spec] of Object.entries(options.agents ?? {})) await applyConfig(name, spec)
  let readyAfterMs: number | undefined
  if (options.waitReady !== false) {
    await waitReady()
    readyAfterMs = Date.now() - appliedAt
  }

  return {
    node,
    namespace,
    port,
    topics,
    topicPrefix,
    overlayDir,
    user: `system:serviceaccount:${namespace}:${deployment}`,
    log,
    readyAfterMs,
    kubectl: inNs,
    pods,
    waitReady,
    http: (path) => http(port, path),
    metric: async (name, labels = {}) => {
      const { body, status } = await http(port, "/metrics")
      if (status !== 200) throw new Error(`/metrics answered ${status}`)
      return metricSum(body, name, labels)
    },
    logs: (pod, logOptions = {}) => inNs(["logs", pod, "-c", "service", ...(logOptions.previous === true ? ["--previous"] : [])]),
    applyConfig,
    publishTasks: async (tasks) => {
      const events = tasks.map(taskEvent)
      await produce(node.kafkaBrokers, topics.event, events.map((e) => ({ key: e.taskIdentifier, value: JSON.stringify(e) })))
      return events
    },
    scale: async (replicas) => {
      await inNs(["scale", `deployment/${deployment}`, `--replicas=${replicas}`])
      if (replicas === 0) {
        await eventually(`no executor pod in ${namespace}`, 60_000, async () => ((await pods()).length === 0 ? true : undefined), 100)
      }
    },
    uninstall: async () => {
      await log.stop()
      await inNs(["delete", "deployment", deployment, "--ignore-not-found", "--wait=true"]).catch(() => undefined)
      // deploy/optional/uninstall-finalizers.sh, with this node's kubectl
      await runCommand("bash", [join(repoRoot, "deploy", "optional", "uninstall-finalizers.sh"), namespace], {
        env: { ...process.env, KUBECONFIG: node.kubeconfig, PATH: `${dirname(node.kubectl)}:${process.env["PATH"] ?? "/usr/bin:/bin"}` }
      })
      await deleteNamespace(clients, namespace)
    }
  }
}

/** SIGKILL to the executor's container (containerd, in the node's mount namespace): the kubelet restarts it. */
export const killContainer = (node: NodeInfo, containerId: string) =>
  must(
    `ctr task kill ${containerId}`,
    runCommand("nsenter", [
      "--target", String(node.pids["holder"]), "--mount", "--",
      "ctr", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", containerId
    ])
  )

// ---------------------------------------------------------------------------------------------
// memory, as the kubelet counts it
// ---------------------------------------------------------------------------------------------

const readNumber = (file: string) => Number(readFileSync(file, "utf8").trim())

/** The pod's cgroup of `controller` (cgroup v1, cgroupfs driver, under the node's cgroup root). */
const podCgroup = (node: NodeInfo, pod: PodView, controller: "memory" | "cpuacct", probe: string) => {
  const base = join("/sys/fs/cgroup", controller, node.cgroupRoot, "kubepods")
  for (const qos of ["burstable/", "besteffort/", ""]) {
    const dir = join(base, `${qos}pod${pod.uid}`)
    try {
      readNumber(join(dir, probe))
      return dir
    } catch {
      // not this class
    }
  }
  throw new Error(`no ${controller} cgroup for pod ${pod.name} (${pod.uid}) under ${base}`)
}

/** CPU time the pod used so far, in seconds. */
export const cpuSeconds = (node: NodeInfo, pod: PodView) =>
  readNumber(join(podCgroup(node, pod, "cpuacct", "cpuacct.usage"), "cpuacct.usage")) / 1e9

/** The working set of the pod's cgroup: usage minus inactive file pages (the kubelet's rule). */
export const workingSetBytes = (node: NodeInfo, pod: PodView) => {
  const dir = podCgroup(node, pod, "memory", "memory.usage_in_bytes")
  const usage = readNumber(join(dir, "memory.usage_in_bytes"))
  const stat = readFileSync(join(dir, "memory.stat"), "utf8")
  const inactiveFile = Number(/^total_inactive_file (\d+)$/m.exec(stat)?.[1] ?? "0")
  const rss = Number(/^total_rss (\d+)$/m.exec(stat)?.[1] ?? "0")
  return { workingSet: Math.max(0, usage - inactiveFile), usage, rss }
}

/** The kubelet's own figure (`/stats/summary`, refreshed by its housekeeping every 10-15 s). */
export const kubeletWorkingSet = async (node: NodeInfo, namespace: string, podName: string) => {
  const raw = await mustKubectl(node, ["get", "--raw", `/api/v1/nodes/${node.nodeName}/proxy/stats/summary`])
  const summary = JSON.parse(raw) as {
    pods: Array<{ podRef: { name: string; namespace: string }; memory?: { workingSetBytes?: number; time?: string } }>
  }
  const pod = summary.pods.find((p) => p.podRef.namespace === namespace && p.podRef.name === podName)
  return pod?.memory?.workingSetBytes
}

export interface MemorySamples {
  readonly max: number
  readonly mean: number
  readonly last: number
  readonly count: number
  /** The kubelet's own figure (`/stats/summary`), read every 5 s: the largest. */
  readonly kubeletMax: number
  /** Average CPU over the window, in millicores. */
  readonly cpuMillicores: number
}

/**
 * Samples the pod's working set every `intervalMs` (and the kubelet's figure every 5 s) until
 * `stop` settles.
 */
export const sampleWorkingSet = async (node: NodeInfo, namespace: string, pod: PodView, stop: Promise<unknown>, intervalMs = 500): Promise<MemorySamples> => {
  const samples: Array<number> = []
  const kubelet: Array<number> = []
  let done = false
  void stop.finally(() => (done = true))
  const startedAt = Date.now()
  const cpuBefore = cpuSeconds(node, pod)
  let lastKubelet = 0
  while (!done) {
    samples.push(workingSetBytes(node, pod).workingSet)
    if (Date.now() - lastKubelet >= 5_000) {
      lastKubelet = Date.now()
      const value = await kubeletWorkingSet(node, namespace, pod.name).catch(() => undefined)
      if (value !== undefined) kubelet.push(value)
    }
    await sleep(intervalMs)
  }
  const cpuMillicores = ((cpuSeconds(node, pod) - cpuBefore) * 1000) / ((Date.now() - startedAt) / 1000)
  return {
    max: Math.max(0, ...samples),
    mean: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length),
    last: samples.at(-1) ?? 0,
    count: samples.length,
    kubeletMax: Math.max(0, ...kubelet),
    cpuMillicores
  }
}

export const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10
