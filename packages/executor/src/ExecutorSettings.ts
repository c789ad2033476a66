import { Context, Layer } from "effect"
import { Labels } from "@executor/domain"

/** Static settings of one executor process (environment in `run`, the scenario in `simulate`). */
export interface ExecutorSettingsShape {
  readonly namespace: string
  readonly branch: string
  readonly topicPrefix: string
  readonly kafkaBrokers: string
  readonly jobTtlSecondsAfterFinished: number
  readonly kafkaClientCertSecret: string
  readonly kafkaCaCertSecret: string
  /** `IMAGE_PULL_SECRET`: the agent pods' pull secret when their Config names none; empty: none. */
  readonly imagePullSecret: string
  readonly names: Labels.Names
}

export class ExecutorSettings extends Context.Tag("executor/ExecutorSettings")<
  ExecutorSettings,
  ExecutorSettingsShape
>() {
  static readonly defaults: ExecutorSettingsShape = {
    namespace: "agents",
    branch: "prod",
    topicPrefix: "",
    kafkaBrokers: "kafka:9092",
    jobTtlSecondsAfterFinished: 1800,
    kafkaClientCertSecret: "",
    kafkaCaCertSecret: "",
    imagePullSecret: "docker",
    names: Labels.names()
  }

  static readonly layer = (overrides: Partial<ExecutorSettingsShape> = {}) =>
    Layer.succeed(ExecutorSettings, { ...ExecutorSettings.defaults, ...overrides })
}
