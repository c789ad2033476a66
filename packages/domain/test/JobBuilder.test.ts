import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { parse } from "yaml"
import { type AgentConfig, agentConfig } from "../src/AgentConfig.js"
import {
  buildJob,
  type BuildJobInput,
  droppedEnvNames,
  eventIdentity,
  isDns1123Label,
  type JobManifest,
  jobName,
  type JobSettings,
  JobSpecInvalid,
  reservedEnvNames,
  taskContent
} from "../src/JobBuilder.js"
import { names } from "../src/Labels.js"
import type { TaskEvent } from "../src/TaskEvent.js"

const labels = names()
const taskIdLabel = "agent.benjamin-borbe.de/task-id"
const assigneeLabel = "agent.benjamin-borbe.de/assignee"

const settings: JobSettings = {
  namespace: "test-ns",
  branch: "develop",
  kafkaBrokers: "kafka:9092",
  topicPrefix: "test-prefix",
  jobTtlSecondsAfterFinished: 1800,
  kafkaClientCertSecret: "",
  kafkaCaCertSecret: "",
  imagePullSecret: "docker"
}

const config = (spec: Record<string, unknown> = {}): AgentConfig =>
  Either.getOrThrow(
    agentConfig(
      { name: "claude", namespace: "test-ns" },
      { assignee: "claude", image: "my-image:v1", heartbeat: "5m", taskType: "llm", ...spec }
    )
  )

const event = (overrides: Partial<TaskEvent> = {}): TaskEvent => ({
  identifier: "evt-1",
  taskIdentifier: "abc12345-rest-ignored",
  frontmatter: { assignee: "claude", phase: "planning", status: "in_progress" },
  content: "do the work",
  ...overrides
})

const input = (overrides: Partial<BuildJobInput> = {}): BuildJobInput => {
  const ev = overrides.event ?? event()
  return {
    event: ev,
    config: config(),
    settings,
    names: labels,
    name: jobName({
      assignee: typeof ev.frontmatter.assignee === "string" ? ev.frontmatter.assignee : "",
      taskIdentifier: ev.taskIdentifier,
      eventIdentity: eventIdentity(ev),
      triggerCount: 0
    }),
    ...overrides
  }
}

const build = (overrides: Partial<BuildJobInput> = {}): JobManifest => Either.getOrThrow(buildJob(input(overrides)))
const container = (job: JobManifest) => {
  const [only, ...rest] = job.spec.template.spec.containers
  expect(rest).toEqual([])
  if (only === undefined) throw new Error("no container")
  return only
}
const envOf = (job: JobManifest): Record<string, string> =>
  Object.fromEntries(container(job).env.map((e) => [e.name, e.value]))
const envNames = (job: JobManifest): Array<string> => container(job).env.map((e) => e.name)
/** A line-based frontmatter split, as markdown parsers do: the opening line and the next line that is exactly `---`. */
const splitFrontmatter = (content: string): { readonly yaml: string; readonly body: string } => {
  const lines = content.split("\n")
  const close = lines.indexOf("---", 1)
  if (lines[0] !== "---" || close < 0) throw new Error(`no frontmatter in ${JSON.stringify(content)}`)
  return { yaml: lines.slice(1, close).join("\n"), body: lines.slice(close + 1).join("\n") }
}
const yamlPart = (content: string): unknown => parse(splitFrontmatter(content).yaml)

describe("jobName (D6.1)", () => {
  const base = { assignee: "claude", taskIdentifier: "abc12345-rest-ignored", eventIdentity: "evt-1", triggerCount: 0 }

  it("is <assignee>-<first 8 of task id>-<10 hex hash>", () => {
    expect(jobName(base)).toMatch(/^claude-abc12345-[0-9a-f]{10}$/)
    expect(jobName({ ...base, assignee: "backtest-agent", taskIdentifier: "abcdefgh-1234" })).toMatch(
      /^backtest-agent-abcdefgh-[0-9a-f]{10}$/
    )
  })

  it("uses `agent` for an empty assignee and the whole id when shorter than 8", () => {
    expect(jobName({ ...base, assignee: "", taskIdentifier: "abc" })).toMatch(/^agent-abc-[0-9a-f]{10}$/)
    expect(jobName({ ...base, assignee: "___", taskIdentifier: "abc" })).toMatch(/^agent-abc-[0-9a-f]{10}$/)
  })

  it("is stable across calls (a redelivered event yields the same name)", () => {
    const redelivered = event()
    const again = event()
    const name = (ev: TaskEvent) =>
      jobName({ ...base, taskIdentifier: ev.taskIdentifier, eventIdentity: eventIdentity(ev) })
    expect(name(redelivered)).toBe(name(again))
    expect(jobName(base)).toBe(jobName({ ...base }))
  })

  it("differs with trigger_count and with the event identity", () => {
    const names = new Set([
      jobName(base),
      jobName({ ...base, triggerCount: 1 }),
      jobName({ ...base, triggerCount: 2 }),
      jobName({ ...base, eventIdentity: "evt-2" })
    ])
    expect(names.size).toBe(4)
  })

  it("is a DNS-1123 label of at most 63 chars for a 100-character assignee with uppercase and underscores", () => {
    const assignee = "My_Agent_" + "X".repeat(82) + "_Trailing"
    expect(assignee.length).toBe(100)
    const name = jobName({ ...base, assignee, taskIdentifier: "ABC_1234-rest" })
    expect(name.length).toBeLessThanOrEqual(63)
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
    expect(isDns1123Label(name)).toBe(true)
    expect(name).toMatch(/^my-agent-x+-abc-1234-[0-9a-f]{10}$/)
  })

  it("never ends the trimmed assignee part with '-' and never starts with '-'", () => {
    for (let cut = 40; cut <= 50; cut++) {
      const assignee = "-" + "a".repeat(cut) + "-" + "b".repeat(60)
      const name = jobName({ ...base, assignee })
      expect(isDns1123Label(name), name).toBe(true)
      expect(name).not.toMatch(/--/)
    }
    expect(isDns1123Label(jobName({ ...base, assignee: "ÄÖÜ émoji 🚀", taskIdentifier: "🚀🚀🚀" }))).toBe(true)
  })

  it("does not collide for assignees that sanitise to the same prefix", () => {
    const long = "a".repeat(60)
    expect(jobName({ ...base, assignee: long + "x" })).not.toBe(jobName({ ...base, assignee: long + "y" }))
  })
})

describe("eventIdentity", () => {
  it("is the event identifier when non-empty", () => {
    expect(eventIdentity(event({ identifier: "evt-42" }))).toBe("evt-42")
  })

  it("otherwise is a canonical JSON of task id, frontmatter and content (key order irrelevant)", () => {
    const a = event({ identifier: "", frontmatter: { b: 1, a: { y: 2, x: [1, { d: 1, c: 2 }] } } })
    const b = event({ identifier: "", frontmatter: { a: { x: [1, { c: 2, d: 1 }], y: 2 }, b: 1 } })
    expect(eventIdentity(a)).toBe(eventIdentity(b))
    expect(JSON.parse(eventIdentity(a))).toEqual({
      taskIdentifier: a.taskIdentifier,
      frontmatter: a.frontmatter,
      content: a.content
    })
    expect(eventIdentity(event({ identifier: "", content: "other" }))).not.toBe(eventIdentity(a))
    expect(eventIdentity(event({ identifier: "", frontmatter: { b: 2, a: { y: 2, x: [1, { d: 1, c: 2 }] } } }))).not.toBe(
      eventIdentity(a)
    )
    expect(eventIdentity(event({ identifier: "", taskIdentifier: "other" }))).not.toBe(
      eventIdentity(event({ identifier: "" }))
    )
  })
})

describe("taskContent", () => {
  it("is ---, sorted block YAML, ---, then the body (catalogue 108)", () => {
    const fm = {
      ref: "feature/x",
      clone_url: "https://github.com/o/r.git",
      base_ref: "main",
      assignee: "claude",
      nested: { z: 1, a: ["x", { d: true, c: null }] }
    }
    const text = taskContent(fm, "the body\nline 2")
    expect(text).toBe(
      [
        "---",
        "assignee: claude",
        "base_ref: main",
        "clone_url: https://github.com/o/r.git",
        "nested:",
        "  a:",
        "    - x",
        "    - c: null",
        "      d: true",
        "  z: 1",
        "ref: feature/x",
        "---",
        "the body\nline 2"
      ].join("\n")
    )
    expect(yamlPart(text)).toEqual(fm)
  })

  it("round-trips scalars that look like other types, long and multi-line strings", () => {
    const fm = {
      t: "true",
      yes: "yes",
      on: "off",
      n: "42",
      f: "0.5",
      octal: "0777",
      bin: "0b101",
      underscored: "1_000",
      nul: "null",
      tilde: "~",
      date: "2026-04-03",
      started: "2026-04-03T17:35:00Z",
      merge: "<<",
      empty: "",
      colon: "a: b",
      hash: "x #y",
      dash: "- x",
      marker: "---",
      "---": "a key that looks like a document marker",
      multi: "line1\n---\nline3\n",
      long: "word ".repeat(60).trim(),
      num: 3,
      float: 1.5,
      bool: false,
      nothing: null,
      list: [],
      map: {}
    }
    const text = taskContent(fm, "body")
    expect(yamlPart(text)).toEqual(fm)
    expect(parse(splitFrontmatter(text).yaml, { schema: "yaml-1.1" })).toEqual(fm)
    expect(splitFrontmatter(text).body).toBe("body")
    expect(text).toContain(`long: ${fm.long}\n`)
    expect(text).toContain(`t: "true"\n`)
    expect(text).toContain(`"yes": "yes"\n`)
    expect(text).toContain(`bin: "0b101"\n`)
    expect(text.endsWith("---\nbody")).toBe(true)
  })

  it("is exactly the body when the frontmatter is empty (catalogue 109)", () => {
    expect(taskContent({}, "do the work")).toBe("do the work")
    expect(taskContent({}, "")).toBe("")
  })
})

describe("buildJob", () => {
  it("has the exact shape of §4.2 plus the D6.4 additions (catalogue 105)", () => {
    const job = build({ config: config({ env: { GEMINI_API_KEY: "secret-key" } }) })
    const name = job.metadata.name
    expect(name).toMatch(/^claude-abc12345-[0-9a-f]{10}$/)
    const content = envOf(job).TASK_CONTENT ?? ""
    expect(content.startsWith("---\n")).toBe(true)
    expect(content).toContain("assignee: claude\n")
    expect(content).toContain("phase: planning\n")
    expect(content.endsWith("\n---\ndo the work")).toBe(true)
    expect(job).toEqual({
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name,
        namespace: "test-ns",
        labels: { [taskIdLabel]: "abc12345-rest-ignored", [assigneeLabel]: "claude" },
        annotations: {},
        finalizers: ["agent.benjamin-borbe.de/run-settled"]
      },
      spec: {
        backoffLimit: 0,
        completions: 1,
        parallelism: 1,
        completionMode: "NonIndexed",
        podReplacementPolicy: "TerminatingOrFailed",
        ttlSecondsAfterFinished: 1800,
        activeDeadlineSeconds: 1800,
        template: {
          metadata: {
            labels: {
              app: "agent",
              component: "abc12345-rest-ignored",
              [taskIdLabel]: "abc12345-rest-ignored",
              [assigneeLabel]: "claude"
            },
            annotations: {}
          },
          spec: {
            restartPolicy: "Never",
            automountServiceAccountToken: false,
            imagePullSecrets: [{ name: "docker" }],
            containers: [
              {
                name: "agent",
                image: "my-image:v1",
                imagePullPolicy: "Always",
                env: [
                  { name: "TASK_CONTENT", value: content },
                  { name: "TASK_ID", value: "abc12345-rest-ignored" },
                  { name: "KAFKA_BROKERS", value: "kafka:9092" },
                  { name: "BRANCH", value: "develop" },
                  { name: "TOPIC_PREFIX", value: "test-prefix" },
                  { name: "PHASE", value: "planning" },
                  { name: "TASK_TYPE", value: "" },
                  { name: "GEMINI_API_KEY", value: "secret-key" }
                ],
                resources: {
                  requests: { cpu: "20m", memory: "20Mi" },
                  limits: { cpu: "50m", memory: "50Mi" }
                }
              }
            ]
          }
        }
      }
    })
    // no optional keys leak in as undefined
    expect(Object.keys(job.spec.template.spec).sort()).toEqual(
      ["automountServiceAccountToken", "containers", "imagePullSecrets", "restartPolicy"].sort()
    )
    expect(Object.keys(container(job)).sort()).toEqual(["env", "image", "imagePullPolicy", "name", "resources"])
    expect(JSON.parse(JSON.stringify(job))).toEqual(job)
  })

  it("tags an untagged image with the branch", () => {
    expect(container(build({ config: config({ image: "reg:443/agent" }) })).image).toBe("reg:443/agent:develop")
    expect(container(build({ config: config({ image: "x@sha256:abc" }) })).image).toBe("x@sha256:abc")
  })

  it("keeps TOPIC_PREFIX present when empty (catalogue 106)", () => {
    const job = build({ settings: { ...settings, topicPrefix: "" } })
    expect(container(job).env).toContainEqual({ name: "TOPIC_PREFIX", value: "" })
  })

  it("uses the configured TTL (catalogue 107)", () => {
    expect(build({ settings: { ...settings, jobTtlSecondsAfterFinished: 60 } }).spec.ttlSecondsAfterFinished).toBe(60)
  })

  it("passes clone_url, ref, base_ref through TASK_CONTENT and they parse back (catalogue 108)", () => {
    const frontmatter = {
      assignee: "claude",
      phase: "execution",
      clone_url: "https://github.com/o/r.git",
      ref: "feature/x",
      base_ref: "main",
      trigger_count: 1
    }
    const content = envOf(build({ event: event({ frontmatter }) })).TASK_CONTENT ?? ""
    expect(content).toContain("clone_url: https://github.com/o/r.git\n")
    expect(content).toContain("ref: feature/x\n")
    expect(content).toContain("base_ref: main\n")
    expect(content.endsWith("---\ndo the work")).toBe(true)
    expect(yamlPart(content)).toEqual(frontmatter)
  })

  it("sets TASK_CONTENT to the body when the frontmatter is empty (catalogue 109)", () => {
    const job = build({ event: event({ frontmatter: {} }) })
    expect(envOf(job).TASK_CONTENT).toBe("do the work")
  })

  it("sets PHASE and TASK_TYPE, empty when absent (catalogue 110)", () => {
    const none = envOf(build({ event: event({ frontmatter: { assignee: "claude" } }) }))
    expect(none.PHASE).toBe("")
    expect(none.TASK_TYPE).toBe("")
    const typed = envOf(build({ event: event({ frontmatter: { phase: "in_progress", task_type: "healthcheck" } }) }))
    expect(typed.PHASE).toBe("execution")
    expect(typed.TASK_TYPE).toBe("healthcheck")
    expect(envNames(build({ event: event({ frontmatter: {} }) }))).toEqual([...reservedEnvNames])
  })

  it("labels the Job and the pod template with task id and Config assignee only (catalogue 111)", () => {
    const job = build({ config: config({ assignee: "backtest-agent" }) })
    expect(job.metadata.labels).toEqual({ [taskIdLabel]: "abc12345-rest-ignored", [assigneeLabel]: "backtest-agent" })
    expect(job.spec.template.metadata.labels).toEqual({
      app: "agent",
      component: "abc12345-rest-ignored",
      [taskIdLabel]: "abc12345-rest-ignored",
      [assigneeLabel]: "backtest-agent"
    })
    const custom = build({ names: names("example.org") })
    expect(custom.metadata.labels).toEqual({ "example.org/task-id": "abc12345-rest-ignored", "example.org/assignee": "claude" })
    expect(custom.metadata.finalizers).toEqual(["example.org/run-settled"])
  })

  it("omits the assignee label when the Config assignee is empty", () => {
    const base = config()
    const job = build({ config: { ...base, spec: { ...base.spec, assignee: "" } } })
    expect(job.metadata.labels).toEqual({ [taskIdLabel]: "abc12345-rest-ignored" })
    expect(job.spec.template.metadata.labels).toEqual({
      app: "agent",
      component: "abc12345-rest-ignored",
      [taskIdLabel]: "abc12345-rest-ignored"
    })
  })

  it("appends every Config env pair sorted by name, dropping reserved names (catalogue 112, §8.21)", () => {
    const cfg = config({ env: { ZED: "z", ALPHA: "a", TASK_ID: "evil", BRANCH: "main", MIDDLE: "m", PHASE: "x" } })
    const job = build({ config: cfg })
    expect(container(job).env.slice(reservedEnvNames.length)).toEqual([
      { name: "ALPHA", value: "a" },
      { name: "MIDDLE", value: "m" },
      { name: "ZED", value: "z" }
    ])
    const env = envOf(job)
    expect(env.TASK_ID).toBe("abc12345-rest-ignored")
    expect(env.BRANCH).toBe("develop")
    expect(env.PHASE).toBe("planning")
    expect(envNames(job).filter((n) => n === "TASK_ID")).toHaveLength(1)
    expect(droppedEnvNames(cfg)).toEqual(["BRANCH", "PHASE", "TASK_ID"])
    expect(droppedEnvNames(config())).toEqual([])
  })

  it("uses the deterministic name it is given; same input ⇒ same manifest (catalogue 113/114)", () => {
    const ev = event({ frontmatter: { assignee: "backtest-agent" }, taskIdentifier: "abcdefgh-1234" })
    const name = jobName({ assignee: "backtest-agent", taskIdentifier: ev.taskIdentifier, eventIdentity: eventIdentity(ev), triggerCount: 2 })
    expect(name).toMatch(/^backtest-agent-abcdefgh-[0-9a-f]{10}$/)
    const first = build({ event: ev, name })
    const redelivered = build({ event: { ...ev, frontmatter: { ...ev.frontmatter } }, name })
    expect(first.metadata.name).toBe(name)
    expect(redelivered).toEqual(first)
  })

  it("mounts the PVC only when a claim is set; claim without path is JobSpecInvalid (catalogue 115)", () => {
    const job = build({ config: config({ volumeClaim: "data-pvc", volumeMountPath: "/data" }) })
    expect(job.spec.template.spec.volumes).toEqual([{ name: "agent-data", persistentVolumeClaim: { claimName: "data-pvc" } }])
    expect(container(job).volumeMounts).toEqual([{ name: "agent-data", mountPath: "/data" }])

    const plain = build()
    expect(plain.spec.template.spec.volumes).toBeUndefined()
    expect(container(plain).volumeMounts).toBeUndefined()

    const base = config()
    const broken = buildJob(input({ config: { ...base, spec: { ...base.spec, volumeClaim: "data-pvc", volumeMountPath: "" } } }))
    expect(Either.isLeft(broken)).toBe(true)
    if (Either.isLeft(broken)) {
      expect(broken.left).toBeInstanceOf(JobSpecInvalid)
      expect(broken.left._tag).toBe("JobSpecInvalid")
      expect(broken.left.reason).toBe("VolumeMountPathMissing")
      expect(broken.left.message).toContain("VolumeMountPath required when VolumeClaim is set")
    }
  })

  it("adds envFrom only when a secret is set (catalogue 116)", () => {
    expect(container(build({ config: config({ secretName: "agent-secrets" }) })).envFrom).toEqual([
      { secretRef: { name: "agent-secrets" } }
    ])
    expect(container(build()).envFrom).toBeUndefined()
  })

  it("honours the Config pull secret, `docker` otherwise (catalogue 117, §8.21 fix)", () => {
    expect(build({ config: config({ imagePullSecret: "my-registry" }) }).spec.template.spec.imagePullSecrets).toEqual([
      { name: "my-registry" }
    ])
    expect(build({ config: config({ imagePullSecret: "" }) }).spec.template.spec.imagePullSecrets).toEqual([
      { name: "docker" }
    ])
  })

  it("the executor's pull secret setting applies when the Config names none; empty names none at all", () => {
    const own = { ...settings, imagePullSecret: "registry-creds" }
    expect(build({ settings: own }).spec.template.spec.imagePullSecrets).toEqual([{ name: "registry-creds" }])
    expect(build({ settings: own, config: config({ imagePullSecret: "mine" }) }).spec.template.spec.imagePullSecrets).toEqual([
      { name: "mine" }
    ])
    const none = build({ settings: { ...settings, imagePullSecret: "" } }).spec.template.spec
    expect("imagePullSecrets" in none).toBe(false)
    expect(build({ settings: { ...settings, imagePullSecret: "" }, config: config({ imagePullSecret: "mine" }) }).spec.template.spec.imagePullSecrets).toEqual([
      { name: "mine" }
    ])
  })

  it("applies resource overrides per field (catalogue 118)", () => {
    const full = build({
      config: config({
        resources: {
          requests: { cpu: "500m", memory: "1Gi", "ephemeral-storage": "2Gi" },
          limits: { cpu: "1", memory: "2Gi", "ephemeral-storage": "4Gi" }
        }
      })
    })
    expect(container(full).resources).toEqual({
      requests: { cpu: "500m", memory: "1Gi", "ephemeral-storage": "2Gi" },
      limits: { cpu: "1", memory: "2Gi", "ephemeral-storage": "4Gi" }
    })
    expect(container(build()).resources).toEqual({
      requests: { cpu: "20m", memory: "20Mi" },
      limits: { cpu: "50m", memory: "50Mi" }
    })
    expect(container(build({ config: config({ resources: { requests: { cpu: "40m" } } }) })).resources).toEqual({
      requests: { cpu: "40m", memory: "20Mi" },
      limits: { cpu: "50m", memory: "50Mi" }
    })
    expect(container(build({ config: config({ resources: { limits: { memory: "1Gi" } } }) })).resources).toEqual({
      requests: { cpu: "20m", memory: "20Mi" },
      limits: { cpu: "50m", memory: "1Gi" }
    })
  })

  it("fills a side the Config leaves out so that no request is above its limit (the API server rejects that Job)", () => {
    const resources = (r: Record<string, unknown>) => container(build({ config: config({ resources: r }) })).resources
    // a limit below the default request: the request is the limit
    expect(resources({ limits: { memory: "16Mi", cpu: "10m" } })).toEqual({
      requests: { cpu: "10m", memory: "16Mi" },
      limits: { cpu: "10m", memory: "16Mi" }
    })
    // a request above the default limit: the limit is the request
    expect(resources({ requests: { memory: "1Gi", cpu: "250m" } })).toEqual({
      requests: { cpu: "250m", memory: "1Gi" },
      limits: { cpu: "250m", memory: "1Gi" }
    })
    // compared as quantities, whatever the spelling
    expect(resources({ limits: { memory: "0.015Gi" }, requests: { cpu: "0.1" } })).toEqual({
      requests: { cpu: "0.1", memory: "0.015Gi" },
      limits: { cpu: "0.1", memory: "0.015Gi" }
    })
    expect(resources({ limits: { memory: "20971520" } }).requests.memory).toBe("20Mi")
    // ephemeral-storage has no default: only what is given (Kubernetes defaults a missing request to the limit)
    expect(resources({ limits: { "ephemeral-storage": "16Mi" } })).toEqual({
      requests: { cpu: "20m", memory: "20Mi" },
      limits: { cpu: "50m", memory: "50Mi", "ephemeral-storage": "16Mi" }
    })
  })

  it("stamps priorityClassName only when set (catalogue 119)", () => {
    expect(build({ config: config({ priorityClassName: "agent-high" }) }).spec.template.spec.priorityClassName).toBe(
      "agent-high"
    )
    expect("priorityClassName" in build().spec.template.spec).toBe(false)
  })

  it("mounts the Kafka cert secrets only when both are set (catalogue 121)", () => {
    const both = build({ settings: { ...settings, kafkaClientCertSecret: "kafka-user", kafkaCaCertSecret: "kafka-ca" } })
    expect(both.spec.template.spec.volumes).toEqual([
      { name: "client-cert", secret: { secretName: "kafka-user", items: [{ key: "user.crt", path: "file" }], defaultMode: 288 } },
      { name: "client-key", secret: { secretName: "kafka-user", items: [{ key: "user.key", path: "file" }], defaultMode: 288 } },
      { name: "server-cert", secret: { secretName: "kafka-ca", items: [{ key: "ca.crt", path: "file" }], defaultMode: 288 } }
    ])
    expect(container(both).volumeMounts).toEqual([
      { name: "client-cert", mountPath: "/client-cert" },
      { name: "client-key", mountPath: "/client-key" },
      { name: "server-cert", mountPath: "/server-cert" }
    ])

    for (const partial of [
      { kafkaClientCertSecret: "kafka-user", kafkaCaCertSecret: "" },
      { kafkaClientCertSecret: "", kafkaCaCertSecret: "kafka-ca" },
      { kafkaClientCertSecret: "", kafkaCaCertSecret: "" }
    ]) {
      const job = build({ settings: { ...settings, ...partial } })
      expect(job.spec.template.spec.volumes).toBeUndefined()
      expect(container(job).volumeMounts).toBeUndefined()
    }

    const withPvc = build({
      config: config({ volumeClaim: "data-pvc", volumeMountPath: "/data" }),
      settings: { ...settings, kafkaClientCertSecret: "kafka-user", kafkaCaCertSecret: "kafka-ca" }
    })
    expect(withPvc.spec.template.spec.volumes?.map((v) => v.name)).toEqual(["agent-data", "client-cert", "client-key", "server-cert"])
    expect(container(withPvc).volumeMounts?.map((m) => m.mountPath)).toEqual(["/data", "/client-cert", "/client-key", "/server-cert"])
  })

  it("sets activeDeadlineSeconds from the Config, 1800 by default (catalogue 122)", () => {
    expect(build({ config: config({ zombieJobTimeoutSeconds: 900 }) }).spec.activeDeadlineSeconds).toBe(900)
    expect(build().spec.activeDeadlineSeconds).toBe(1800)
  })

  it("always carries the finalizer and disables the ServiceAccount token (D6.4)", () => {
    const job = build({ config: config({ secretName: "s", volumeClaim: "c", volumeMountPath: "/d" }) })
    expect(job.metadata.finalizers).toEqual([labels.finalizer])
    expect(job.spec.template.spec.automountServiceAccountToken).toBe(false)
  })

  it("refuses an invalid Job name or task id label value instead of a later 422", () => {
    const badName = buildJob(input({ name: "Not_A_Label" }))
    expect(Either.isLeft(badName) && badName.left.reason).toBe("InvalidJobName")
    const tooLong = buildJob(input({ name: "a".repeat(64) }))
    expect(Either.isLeft(tooLong) && tooLong.left.reason).toBe("InvalidJobName")
    const badTask = buildJob(input({ event: event({ taskIdentifier: "x".repeat(64) }), name: "claude-x-0123456789" }))
    expect(Either.isLeft(badTask) && badTask.left.reason).toBe("InvalidLabelValue")
    expect(Either.isRight(buildJob(input({ name: "a".repeat(63) })))).toBe(true)
  })
})
