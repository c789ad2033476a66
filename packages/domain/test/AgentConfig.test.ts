import { describe, expect, it } from "@effect/vitest"
import { Either, Option } from "effect"
import {
  type AgentConfig,
  agentConfig,
  type BoundedField,
  bounds,
  ConfigInvalid,
  defaultGraces,
  effectiveTaskTypes,
  resolveImage,
  sweeperIntervalSeconds
} from "../src/AgentConfig.js"
import { canonicalPhases, canonicalStatuses } from "../src/Frontmatter.js"

// ---- helpers --------------------------------------------------------------------------------------

const meta = { name: "claude", namespace: "agents" }
const base = {
  assignee: "claude-agent",
  image: "registry.example/agent-claude:v1",
  heartbeat: "1h",
  taskTypes: ["llm"]
} as const

const load = (spec: unknown) => agentConfig(meta, spec)

const accepted = (spec: unknown): AgentConfig => {
  const result = load(spec)
  if (Either.isLeft(result)) throw new Error(`expected the Config to load, got: ${result.left.issues.join("; ")}`)
  return result.right
}

const issuesOf = (spec: unknown): ReadonlyArray<string> => {
  const result = load(spec)
  if (Either.isRight(result)) throw new Error(`expected ConfigInvalid for ${JSON.stringify(spec)}`)
  expect(result.left).toBeInstanceOf(ConfigInvalid)
  expect(result.left._tag).toBe("ConfigInvalid")
  expect(result.left.name).toBe("claude")
  expect(result.left.issues.length).toBeGreaterThan(0)
  return result.left.issues
}

/** Some issue mentions every one of the fragments. */
const expectIssue = (spec: unknown, ...fragments: ReadonlyArray<string>) => {
  const issues = issuesOf(spec)
  expect(
    issues.some((issue) => fragments.every((f) => issue.includes(f))),
    `no issue contains ${JSON.stringify(fragments)} in ${JSON.stringify(issues)}`
  ).toBe(true)
}

const deeplyNested = (depth: number): unknown => {
  let value: unknown = 1
  for (let i = 0; i < depth; i++) value = [value]
  return value
}

// ---- required fields (item 125) -------------------------------------------------------------------

describe("AgentConfig: required fields", () => {
  it("a minimal valid spec loads", () => {
    const config = accepted(base)
    expect(config.name).toBe("claude")
    expect(config.namespace).toBe("agents")
    expect(config.spec.assignee).toBe("claude-agent")
    expect(config.spec.image).toBe("registry.example/agent-claude:v1")
    expect(config.spec.heartbeat).toBe("1h")
  })

  it("empty assignee / image / heartbeat ⇒ the reference messages, each naming its field", () => {
    expectIssue({ ...base, assignee: "" }, "spec.assignee", "assignee is empty")
    expectIssue({ ...base, image: "" }, "spec.image", "image is empty")
    expectIssue({ ...base, heartbeat: "" }, "spec.heartbeat", "heartbeat is empty")
  })

  it("all three empty ⇒ all three issues at once", () => {
    const issues = issuesOf({ ...base, assignee: "", image: "", heartbeat: "" })
    expect(issues.some((i) => i.includes("assignee is empty"))).toBe(true)
    expect(issues.some((i) => i.includes("image is empty"))).toBe(true)
    expect(issues.some((i) => i.includes("heartbeat is empty"))).toBe(true)
  })

  it("a missing required field ⇒ an issue naming it", () => {
    for (const field of ["assignee", "image", "heartbeat"] as const) {
      const { [field]: _dropped, ...rest } = base
      expectIssue(rest, `spec.${field}`)
    }
  })

  it("the ConfigInvalid message names the Config and lists the issues", () => {
    const result = load({ ...base, image: "" })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left.message).toContain("Config claude is invalid")
      expect(result.left.message).toContain("image is empty")
    }
  })

  it("claim without mount path ⇒ `VolumeMountPath required when VolumeClaim set`; with a path ⇒ ok", () => {
    expectIssue({ ...base, volumeClaim: "agent-data" }, "VolumeMountPath required when VolumeClaim set")
    const config = accepted({ ...base, volumeClaim: "agent-data", volumeMountPath: "/data" })
    expect(config.spec.volumeClaim).toBe("agent-data")
    expect(config.spec.volumeMountPath).toBe("/data")
  })

  it("a mount path without a claim is fine", () => {
    accepted({ ...base, volumeMountPath: "/data" })
  })
})

describe("AgentConfig: heartbeat pattern ^[0-9]+(s|m|h)$", () => {
  for (const heartbeat of ["1h", "30m", "90s", "0s", "1440m"]) {
    it(`accepts ${heartbeat}`, () => {
      expect(accepted({ ...base, heartbeat }).spec.heartbeat).toBe(heartbeat)
    })
  }
  for (const heartbeat of ["1d", "h", "1.5h", "1H", "1h30m", " 1h", "-1h", "1"]) {
    it(`rejects ${JSON.stringify(heartbeat)}`, () => {
      expectIssue({ ...base, heartbeat }, "spec.heartbeat", "^[0-9]+(s|m|h)$")
    })
  }
})

// ---- task types (item 127) ------------------------------------------------------------------------

describe("AgentConfig: task types", () => {
  const { taskTypes: _none, ...noTypes } = base

  for (const taskType of ["pr-review", "claude", "2fa-setup", "a", "a".repeat(63)]) {
    it(`accepts taskType ${taskType.length > 20 ? `${taskType.length}×a` : taskType}`, () => {
      expect(accepted({ ...noTypes, taskType }).spec.taskType).toBe(taskType)
      expect(accepted({ ...noTypes, taskTypes: [taskType] }).spec.taskTypes).toEqual([taskType])
    })
  }

  for (const taskType of ["PR-Review", "pr_review", "pr.review", "pr review", "ü"]) {
    it(`rejects taskType ${JSON.stringify(taskType)} and a taskTypes element like it`, () => {
      expectIssue({ ...noTypes, taskType }, "spec.taskType", "must match ^[a-z0-9-]+$")
      expectIssue({ ...noTypes, taskTypes: ["llm", taskType] }, "spec.taskTypes.1", "must match ^[a-z0-9-]+$")
    })
  }

  it("rejects 64 characters, singular or in the list", () => {
    expectIssue({ ...noTypes, taskType: "a".repeat(64) }, "spec.taskType", "exceeds maximum length of 63")
    expectIssue({ ...noTypes, taskTypes: ["a".repeat(64)] }, "spec.taskTypes.0", "exceeds maximum length of 63")
  })

  it("an empty list element is rejected", () => {
    expectIssue({ ...noTypes, taskTypes: [""] }, "spec.taskTypes.0")
  })

  it("neither taskType nor taskTypes ⇒ the CEL rule's message", () => {
    const message = "at least one of spec.taskType or spec.taskTypes must be non-empty"
    expectIssue(noTypes, message)
    expectIssue({ ...noTypes, taskType: "" }, message)
    expectIssue({ ...noTypes, taskTypes: [] }, message)
    expectIssue({ ...noTypes, taskType: "", taskTypes: [] }, message)
  })

  it("an empty list with a singular type is fine; a list without a singular type is fine", () => {
    expect(accepted({ ...noTypes, taskType: "pr-review", taskTypes: [] }).taskTypes).toEqual(["pr-review"])
    expect(accepted({ ...noTypes, taskTypes: ["healthcheck"] }).spec.taskType).toBe("")
  })
})

describe("AgentConfig: effective task types (item 41)", () => {
  it("singular only; list only; union singular-first; de-duplicated; both empty ⇒ empty", () => {
    expect(effectiveTaskTypes("pr-review", undefined)).toEqual(["pr-review"])
    expect(effectiveTaskTypes("", ["healthcheck"])).toEqual(["healthcheck"])
    expect(effectiveTaskTypes("pr-review", ["healthcheck"])).toEqual(["pr-review", "healthcheck"])
    expect(effectiveTaskTypes("a", ["b", "a", "c", "b"])).toEqual(["a", "b", "c"])
    expect(effectiveTaskTypes("", [])).toEqual([])
    expect(effectiveTaskTypes("", undefined)).toEqual([])
  })

  it("an empty singular is skipped and never becomes a member", () => {
    expect(effectiveTaskTypes("", ["x", "y"])).toEqual(["x", "y"])
    expect(effectiveTaskTypes("", ["x"]).includes("")).toBe(false)
  })

  it("list order is kept", () => {
    expect(effectiveTaskTypes("", ["z", "a", "m"])).toEqual(["z", "a", "m"])
  })

  it("a loaded Config exposes the effective set", () => {
    const { taskTypes: _none, ...noTypes } = base
    expect(accepted({ ...noTypes, taskType: "pr-review", taskTypes: ["healthcheck", "pr-review"] }).taskTypes).toEqual([
      "pr-review",
      "healthcheck"
    ])
  })
})

// ---- trigger (item 126) -------------------------------------------------------------------------

describe("AgentConfig: trigger validation", () => {
  it("absent trigger, empty trigger and empty lists are fine and mean the defaults", () => {
    for (const trigger of [undefined, {}, { phases: [], statuses: [] }]) {
      const config = accepted(trigger === undefined ? base : { ...base, trigger })
      expect(config.triggerPhases).toEqual([])
      expect(config.triggerStatuses).toEqual([])
    }
  })

  it("every canonical phase and status is accepted, in the given order", () => {
    const config = accepted({ ...base, trigger: { phases: [...canonicalPhases], statuses: [...canonicalStatuses] } })
    expect(config.triggerPhases).toEqual([...canonicalPhases])
    expect(config.triggerStatuses).toEqual([...canonicalStatuses])
  })

  it("bogus_phase / bogus_status ⇒ the reference messages, naming the element", () => {
    expectIssue({ ...base, trigger: { phases: ["bogus_phase"] } }, "spec.trigger.phases.0", 'invalid trigger phase "bogus_phase"')
    expectIssue(
      { ...base, trigger: { statuses: ["in_progress", "bogus_status"] } },
      "spec.trigger.statuses.1",
      'invalid trigger status "bogus_status"'
    )
  })

  it("the legacy phase in_progress is accepted: phases are compared after normalisation on both sides (D4.9, §8.14, D1)", () => {
    accepted({ ...base, trigger: { phases: ["in_progress"] } })
  })
})

// ---- bounds (D4.6, item 128) --------------------------------------------------------------------

describe("AgentConfig: bounded fields", () => {
  const fields = Object.keys(bounds) as ReadonlyArray<BoundedField>

  it("covers the six knobs of D4.6 with their defaults, floors and ceilings", () => {
    expect(bounds).toEqual({
      zombieSweeperIntervalSeconds: { default: 60, floor: 10, ceiling: 3600 },
      zombieJobTimeoutSeconds: { default: 1800, floor: 30, ceiling: 604800 },
      maxConcurrentJobs: { default: 0, floor: 0, ceiling: 10000 },
      imagePullGraceSeconds: { default: 60, floor: 0, ceiling: 3600 },
      unschedulableGraceSeconds: { default: 120, floor: 30, ceiling: 86400 },
      podCreateGraceSeconds: { default: 120, floor: 30, ceiling: 3600 }
    })
  })

  for (const field of fields) {
    const { ceiling, floor } = bounds[field]

    it(`${field}: floor ${floor} and ceiling ${ceiling} are accepted`, () => {
      expect(accepted({ ...base, [field]: floor }).spec[field]).toBe(floor)
      expect(accepted({ ...base, [field]: ceiling }).spec[field]).toBe(ceiling)
    })

    it(`${field}: floor-1 is rejected naming the field and ">= ${floor}"`, () => {
      expectIssue({ ...base, [field]: floor - 1 }, `spec.${field}`, `>= ${floor}`)
    })

    it(`${field}: ceiling+1 is rejected naming the field and "<= ${ceiling}"`, () => {
      expectIssue({ ...base, [field]: ceiling + 1 }, `spec.${field}`, `<= ${ceiling}`)
    })

    it(`${field}: a non-integer is rejected naming the field`, () => {
      expectIssue({ ...base, [field]: floor + 0.5 }, `spec.${field}`, "integer")
    })

    it(`${field}: a string is rejected naming the field`, () => {
      expectIssue({ ...base, [field]: String(floor + 1) }, `spec.${field}`)
    })
  }

  it("accepted values reach the derived configuration", () => {
    const config = accepted({
      ...base,
      zombieJobTimeoutSeconds: 600,
      imagePullGraceSeconds: 0,
      unschedulableGraceSeconds: 300,
      podCreateGraceSeconds: 45,
      zombieSweeperIntervalSeconds: 15,
      maxConcurrentJobs: 4
    })
    expect(config.timeoutSeconds).toBe(600)
    expect(config.imagePullGraceSeconds).toBe(0)
    expect(config.unschedulableGraceSeconds).toBe(300)
    expect(config.podCreateGraceSeconds).toBe(45)
    expect(config.sweeperIntervalSeconds).toEqual(Option.some(15))
    expect(config.spec.maxConcurrentJobs).toBe(4)
  })

  it("the reference floors keep their messages (`invalid: must be >= 10` / `>= 30`)", () => {
    expectIssue({ ...base, zombieSweeperIntervalSeconds: 9 }, "spec.zombieSweeperIntervalSeconds", "invalid: must be >= 10")
    expectIssue({ ...base, zombieJobTimeoutSeconds: 29 }, "spec.zombieJobTimeoutSeconds", "invalid: must be >= 30")
  })
})

// ---- hostile input --------------------------------------------------------------------------------

describe("AgentConfig: hostile values give ConfigInvalid and never throw", () => {
  const hostile: ReadonlyArray<readonly [string, unknown]> = [
    ["null spec", null],
    ["undefined spec", undefined],
    ["array spec", [base]],
    ["string spec", "assignee: claude-agent"],
    ["number spec", 42],
    ["empty spec", {}],
    ["string for maxConcurrentJobs", { ...base, maxConcurrentJobs: "5" }],
    ["string for zombieJobTimeoutSeconds", { ...base, zombieJobTimeoutSeconds: "1800" }],
    ["negative maxConcurrentJobs", { ...base, maxConcurrentJobs: -1 }],
    ["huge maxConcurrentJobs", { ...base, maxConcurrentJobs: 1e12 }],
    ["huge timeout", { ...base, zombieJobTimeoutSeconds: Number.MAX_VALUE }],
    ["infinite timeout", { ...base, zombieJobTimeoutSeconds: Infinity }],
    ["NaN interval", { ...base, zombieSweeperIntervalSeconds: Number.NaN }],
    ["boolean grace", { ...base, imagePullGraceSeconds: true }],
    ["null grace", { ...base, podCreateGraceSeconds: null }],
    ["number assignee", { ...base, assignee: 7 }],
    ["object image", { ...base, image: { name: "x" } }],
    ["taskTypes as a string", { ...base, taskTypes: "llm" }],
    ["trigger null", { ...base, trigger: null }],
    ["trigger phases as a string", { ...base, trigger: { phases: "execution" } }],
    ["invalid resource quantity", { ...base, resources: { requests: { cpu: "lots" } } }],
    ["invalid memory limit", { ...base, resources: { limits: { memory: "1Gb" } } }],
    ["env value not a string", { ...base, env: { FOO: 1 } }],
    ["env not a map", { ...base, env: ["FOO=1"] }],
    ["assignee not a label value", { ...base, assignee: "claude agent!" }],
    ["assignee longer than a label value", { ...base, assignee: "a".repeat(64) }],
    ["priorityClassName with capitals", { ...base, priorityClassName: "High" }]
  ]
  for (const [what, spec] of hostile) {
    it(what, () => {
      let result: ReturnType<typeof load> | undefined
      expect(() => {
        result = load(spec)
      }).not.toThrow()
      expect(result !== undefined && Either.isLeft(result)).toBe(true)
      if (result !== undefined && Either.isLeft(result)) {
        expect(result.left).toBeInstanceOf(ConfigInvalid)
        for (const issue of result.left.issues) expect(issue.startsWith("spec")).toBe(true)
      }
    })
  }

  it("an invalid resource quantity names the field", () => {
    expectIssue({ ...base, resources: { requests: { cpu: "lots" } } }, "spec.resources.requests.cpu", "lots")
  })

  it("quantities are read as Kubernetes reads them: bad spellings, negatives and overlong values name the field", () => {
    for (const [q, says] of [
      ["16Q", "must be a resource quantity"],
      ["1K", "must be a resource quantity"],
      ["1Gb", "must be a resource quantity"],
      ["", "must be a resource quantity"],
      ["-1", "must not be negative"],
      ["1".repeat(65), "at most 64 characters"]
    ] as const) {
      expectIssue({ ...base, resources: { limits: { memory: q } } }, "spec.resources.limits.memory", says)
    }
    for (const q of ["1k", "1E", "1e+3", "+2", "1.", "100n", "5u", "0"]) accepted({ ...base, resources: { requests: { cpu: q } } })
  })

  it("a request above its limit can never make a valid Job: rejected, naming the field", () => {
    expectIssue(
      { ...base, resources: { requests: { memory: "20Mi" }, limits: { memory: "16Mi" } } },
      "spec.resources.requests.memory",
      "must be less than or equal to spec.resources.limits.memory (16Mi), got 20Mi"
    )
    expectIssue({ ...base, resources: { requests: { cpu: "1.5" }, limits: { cpu: "1200m" } } }, "spec.resources.requests.cpu")
    expectIssue(
      { ...base, resources: { requests: { "ephemeral-storage": "1Gi" }, limits: { "ephemeral-storage": "1G" } } },
      "spec.resources.requests.ephemeral-storage"
    )
    // equal in another spelling, one side only, or only the other resource: fine
    accepted({ ...base, resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1000m", memory: "1073741824" } } })
    accepted({ ...base, resources: { requests: { memory: "20Mi" } } })
    accepted({ ...base, resources: { limits: { memory: "16Mi" } } })
    accepted({ ...base, resources: { requests: { memory: "20Mi" }, limits: { cpu: "1" } } })
  })

  it("valid resource quantities are accepted", () => {
    const resources = {
      requests: { cpu: "500m", memory: "1Gi", "ephemeral-storage": "2Gi" },
      limits: { cpu: "1", memory: "2Gi", "ephemeral-storage": "4Gi" }
    }
    expect(accepted({ ...base, resources }).spec.resources).toEqual(resources)
    for (const q of ["0.5", "100M", "1e3", "128974848", "129e6", "123Mi", ".5"]) {
      accepted({ ...base, resources: { limits: { memory: q } } })
    }
  })

  it("an env key with '=' in it ⇒ ConfigInvalid naming spec.env (not silently dropped)", () => {
    expectIssue({ ...base, env: { "A=B": "x" } }, "spec.env")
  })

  it("an empty env name ⇒ ConfigInvalid naming spec.env", () => {
    expectIssue({ ...base, env: { "": "x" } }, "spec.env")
  })

  it("valid env entries are kept", () => {
    const env = { GEMINI_API_KEY: "k", "dotted.name": "v", "-dash": "w" }
    expect(accepted({ ...base, env }).spec.env).toEqual(env)
  })

  it("a deeply nested value in a field ⇒ ConfigInvalid, not a stack overflow", () => {
    for (const spec of [
      { ...base, assignee: deeplyNested(10_000) },
      { ...base, env: { A: deeplyNested(10_000) } }
    ]) {
      let result: ReturnType<typeof load> | undefined
      expect(() => {
        result = load(spec)
      }).not.toThrow()
      expect(result !== undefined && Either.isLeft(result)).toBe(true)
    }
  })

  it("unknown fields are ignored (the API server prunes them)", () => {
    expect(accepted({ ...base, futureField: { x: 1 } }).spec).not.toHaveProperty("futureField")
  })
})

// ---- defaults and derived values ------------------------------------------------------------------

describe("AgentConfig: defaults", () => {
  it("timeout 1800, imagePull 60, unschedulable 120, podCreate 120, sweeper interval None", () => {
    const config = accepted(base)
    expect(config.timeoutSeconds).toBe(1800)
    expect(config.imagePullGraceSeconds).toBe(60)
    expect(config.unschedulableGraceSeconds).toBe(120)
    expect(config.podCreateGraceSeconds).toBe(120)
    expect(config.sweeperIntervalSeconds).toEqual(Option.none())
  })

  it("optional strings default to empty and maxConcurrentJobs to 0 (unlimited)", () => {
    const { spec } = accepted(base)
    expect(spec.taskType).toBe("")
    expect(spec.secretName).toBe("")
    expect(spec.volumeClaim).toBe("")
    expect(spec.volumeMountPath).toBe("")
    expect(spec.priorityClassName).toBe("")
    expect(spec.imagePullSecret).toBe("")
    expect(spec.maxConcurrentJobs).toBe(0)
    expect(spec.resources).toBeUndefined()
    expect(spec.env).toBeUndefined()
  })

  it("a missing namespace is empty", () => {
    const result = agentConfig({ name: "x" }, base)
    expect(Either.isRight(result) && result.right.namespace).toBe("")
  })

  it("defaultGraces match the defaults of D4.6", () => {
    expect(defaultGraces).toEqual({
      timeoutSeconds: 1800,
      imagePullGraceSeconds: 60,
      unschedulableGraceSeconds: 120,
      podCreateGraceSeconds: 120
    })
  })
})

describe("AgentConfig: resolveImage (item 134)", () => {
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ["reg:443/team/agent-claude:v0.1.1", "dev", "reg:443/team/agent-claude:v0.1.1"],
    ["agent-pi:v0.2.0", "dev", "agent-pi:v0.2.0"],
    ["reg:443/agent-backtest", "dev", "reg:443/agent-backtest:dev"],
    ["reg/team/agent-claude@sha256:abc123", "dev", "reg/team/agent-claude@sha256:abc123"],
    ["foo/bar", "dev", "foo/bar:dev"],
    ["reg:443/x", "dev", "reg:443/x:dev"],
    ["x:v1", "prod", "x:v1"],
    ["agent", "prod", "agent:prod"]
  ]
  for (const [image, branch, expected] of cases) {
    it(`${image} on ${branch} ⇒ ${expected}`, () => {
      expect(resolveImage(image, branch)).toBe(expected)
    })
  }
})

describe("AgentConfig: sweeperIntervalSeconds (D4.7)", () => {
  const withInterval = (interval?: number): AgentConfig =>
    accepted(interval === undefined ? base : { ...base, zombieSweeperIntervalSeconds: interval })

  it("no Configs, or none configuring it ⇒ 60", () => {
    expect(sweeperIntervalSeconds([])).toBe(60)
    expect(sweeperIntervalSeconds([withInterval(), withInterval()])).toBe(60)
  })

  it("the smallest configured value wins, in any order", () => {
    const configs = [withInterval(30), withInterval(), withInterval(15), withInterval(120)]
    expect(sweeperIntervalSeconds(configs)).toBe(15)
    expect(sweeperIntervalSeconds([...configs].reverse())).toBe(15)
  })

  it("a single configured value larger than the default still wins over the default", () => {
    expect(sweeperIntervalSeconds([withInterval(), withInterval(300)])).toBe(300)
  })

  it("accepts any iterable", () => {
    expect(sweeperIntervalSeconds(new Set([withInterval(20)]))).toBe(20)
  })
})
