import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { runConfig } from "../src/run/RunConfig.js"

const required = { LISTEN: ":9090", KAFKA_BROKERS: "kafka:9092", BRANCH: "prod", NAMESPACE: "agents" }
const load = (env: Record<string, string>) =>
  Effect.withConfigProvider(runConfig, ConfigProvider.fromMap(new Map(Object.entries({ ...required, ...env }))))

describe("RunConfig: IMAGE_PULL_SECRET", () => {
  it.effect("defaults to docker (the reference executor's clusters have that Secret); empty names none; a value is taken", () =>
    Effect.gen(function*() {
      expect((yield* load({})).settings.imagePullSecret).toBe("docker")
      expect((yield* load({ IMAGE_PULL_SECRET: "" })).settings.imagePullSecret).toBe("")
      expect((yield* load({ IMAGE_PULL_SECRET: " " })).settings.imagePullSecret).toBe("")
      expect((yield* load({ IMAGE_PULL_SECRET: "registry-creds" })).settings.imagePullSecret).toBe("registry-creds")
    }))
})
