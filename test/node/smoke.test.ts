// The real node end to end: Kubernetes itself (the Job controller, the scheduler, the kubelet and
// containerd) runs the agent image and writes every status; nothing is patched by the test.
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  agentContainer,
  agentStatus,
  createJob,
  createNamespace,
  deleteNamespace,
  jobCondition,
  jobPod,
  type NodeClients,
  nodeClients,
  podLog
} from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"

const node = requireNode("test/node/smoke.test.ts")

/** How often the kubelet's pulls asked the registry in the namespace for the agent's tag. */
const agentTagResolutions = (registryLog: string) =>
  readFileSync(registryLog, "utf8").split("\n").filter((line) => /^(HEAD|GET) \/v2\/agent\/manifests\/1 200$/.test(line)).length

describe.skipIf(node === undefined).concurrent("a real single-node cluster", () => {
  let clients: NodeClients
  let namespace: string

  beforeAll(async () => {
    clients = nodeClients(node!)
    namespace = await createNamespace(clients, "smoke")
  })
  afterAll(async () => {
    if (clients !== undefined && namespace !== undefined) await deleteNamespace(clients, namespace)
  })

  it("runs a Job of the agent image, pulled with imagePullPolicy Always from the registry in the namespace, to Succeeded", async () => {
    const resolvedBefore = agentTagResolutions(node!.logs.registry)
    // shaped like the executor's Jobs: their default resources, and a pull secret that need not exist
    const resources = { requests: { cpu: "20m", memory: "20Mi" }, limits: { cpu: "50m", memory: "50Mi" } }
    await createJob(clients, namespace, "agent-ok", agentContainer(node!.images.agent, { AGENT_STDOUT: "hello from the agent" }, { resources }), {
      imagePullSecrets: [{ name: "docker" }]
    })

    await jobCondition(clients, namespace, "agent-ok", "Complete")
    const pod = await jobPod(clients, namespace, "agent-ok", (p) => p.status?.phase === "Succeeded", "Succeeded")
    expect(pod.spec?.nodeName).toBe(node!.nodeName)
    expect(agentStatus(pod)?.state?.terminated).toMatchObject({ reason: "Completed", exitCode: 0 })
    // the image the kubelet ran is the registry's manifest, and the pull asked the registry for it
    const head = await fetch(`http://${node!.registry}/v2/agent/manifests/1`, { method: "HEAD" })
    expect(agentStatus(pod)?.imageID).toBe(`${node!.registry}/agent@${head.headers.get("docker-content-digest")}`)
    expect(agentTagResolutions(node!.logs.registry)).toBeGreaterThan(resolvedBefore)
    // the API server reads the log from the kubelet (its client certificate, the node's address)
    expect(await podLog(clients, namespace, pod.metadata!.name!)).toBe("hello from the agent\n")
  })

  it("reports ErrImagePull, then ImagePullBackOff, for an image on a port where nothing listens; the Job stays active", async () => {
    await createJob(clients, namespace, "unreachable", agentContainer(node!.images.unreachable))

    const waitingReason = (reason: string) => (p: Parameters<typeof agentStatus>[0]) => agentStatus(p)?.state?.waiting?.reason === reason
    const pulling = await jobPod(clients, namespace, "unreachable", waitingReason("ErrImagePull"), "ErrImagePull", 30_000, 100)
    expect(agentStatus(pulling)?.state?.waiting?.message).toContain(node!.images.unreachable)
    const backingOff = await jobPod(clients, namespace, "unreachable", waitingReason("ImagePullBackOff"), "ImagePullBackOff", 60_000)
    expect(backingOff.status?.phase).toBe("Pending")
    expect(agentStatus(backingOff)?.state?.waiting?.message).toContain(`Back-off pulling image "${node!.images.unreachable}"`)
    // a pull failure never fails the Job
    const job = await clients.batch.readNamespacedJob({ name: "unreachable", namespace })
    expect(job.status?.active).toBe(1)
    expect(job.status?.failed ?? 0).toBe(0)
    expect(job.status?.conditions ?? []).toEqual([])
  })

  it("mounts the ServiceAccount token of a pod with automountServiceAccountToken, and the API server accepts it", async () => {
    const printToken = { command: ["/bin/sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"] }
    await createJob(clients, namespace, "sa-token", agentContainer(node!.images.agent, {}, printToken), {
      automountServiceAccountToken: true
    })

    await jobCondition(clients, namespace, "sa-token", "Complete")
    const pod = await jobPod(clients, namespace, "sa-token", (p) => p.status?.phase === "Succeeded", "Succeeded")
    // the ServiceAccount admission plugin gave the pod its account and the projected token volume
    expect(pod.spec?.serviceAccountName).toBe("default")
    expect(pod.spec?.volumes?.some((v) => v.name.startsWith("kube-api-access-") && v.projected !== undefined)).toBe(true)
    const token = (await podLog(clients, namespace, pod.metadata!.name!)).trim()
    const review = await clients.auth.createTokenReview({ body: { spec: { token } } })
    expect(review.status?.authenticated).toBe(true)
    expect(review.status?.user?.username).toBe(`system:serviceaccount:${namespace}:default`)
  })
})
