import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { AgentConfig } from "@executor/domain"
import { parse } from "yaml"
import { Crd } from "@executor/kube"

const deployed = fileURLToPath(new URL("../../../deploy/crd.yaml", import.meta.url))

describe("Config CRD", () => {
  it("deploy/crd.yaml is the generated manifest (regenerate: pnpm --filter @executor/kube crd:write)", () => {
    expect(readFileSync(deployed, "utf8")).toBe(Crd.renderYaml())
  })

  it("has the names, scope and single version of executor.md §2.4", () => {
    const crd = parse(Crd.renderYaml())
    expect(crd.metadata.name).toBe("configs.agent.benjamin-borbe.de")
    expect(crd.spec).toMatchObject({
      group: "agent.benjamin-borbe.de",
      names: { kind: "Config", listKind: "ConfigList", plural: "configs", singular: "config", shortNames: ["cfg"] },
      scope: "Namespaced",
      preserveUnknownFields: false
    })
    expect(crd.spec.versions).toHaveLength(1)
    expect(crd.spec.versions[0]).toMatchObject({ name: "v1", served: true, storage: true })
    expect(crd.spec.versions[0].subresources).toBeUndefined()
  })

  it("bounds every numeric knob with the floor and ceiling of decisions D4.6", () => {
    const spec = Crd.manifest().spec.versions[0]?.schema.openAPIV3Schema.properties.spec
    const properties = (spec?.["properties"] ?? {}) as Record<string, Record<string, unknown>>
    for (const [field, bound] of Object.entries(AgentConfig.bounds)) {
      expect(properties[field], field).toEqual({ type: "integer", minimum: bound.floor, maximum: bound.ceiling })
    }
    expect(spec?.["required"]).toEqual(["assignee", "image", "heartbeat"])
    expect(spec?.["x-kubernetes-validations"]).toEqual([Crd.taskTypeRule])
  })

  it("follows the configured API group", () => {
    const crd = Crd.manifest("agents.example.com")
    expect(crd.metadata.name).toBe("configs.agents.example.com")
    expect(crd.spec.group).toBe("agents.example.com")
  })
})
