// Exactly once for a controller that reads uncommitted (docs/contract.md#what-the-controller-does-with-them), while the broker is killed
// -9 and restarted under the real `run` service. The file starts a stack of its own (test/infra/up.sh
// on free ports) so that killing its broker disturbs no other suite.
//
// 100 zombie runs in 5 waves of 20: each wave's task events go in, and while the executor spawns
// and judges them (a stand-in kubelet makes every pod InvalidImageName: a verdict at once), the
// broker is killed -9 and started again on the same data dir. A fresh reader that reads
// uncommitted then counts, for every task: one spawn increment, one spawn notification, one failure
// update and one failure increment, each pair in one record batch, nothing lost, nothing twice.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import { expectEachRunOnce, fastRejoin, newTaskIds, randomBetween, zombieKubelet } from "../support/exactlyOnce.js"
import { agentSpec, makeWorld, type World } from "../support/harness.js"
import { readState, requireInfra } from "../support/infraEnv.js"
import { stopKafka } from "../support/servers.js"
import { type RunningStack, upStack } from "../support/stack.js"
import { sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/exactly-once-broker.test.ts")
const agent = "eo-agent"
const image = `registry.invalid/agents/${agent}:dev`

describe.skipIf(infra === undefined)("exactly once through broker kill -9 and restart (real run, apiserver, broker)", () => {
  let stack: RunningStack
  let world: World
  let executor: ExecutorProcess | undefined

  beforeAll(async () => {
    stack = await upStack("agent-executor-eo-broker-", { KAFKA_LIBS: infra!.kafkaLibs, JAVA_BIN: infra!.javaBin })
    world = await makeWorld(stack.info, "eob", {
      [agent]: agentSpec(agent, { podCreateGraceSeconds: 600, zombieJobTimeoutSeconds: 900 })
    })
  }, 180_000)

  afterAll(async () => {
    await world?.close()
    await stack?.stop({ keep: process.env["KEEP_INFRA"] === "1" })
  }, 120_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail" && executor !== undefined) {
      console.error(`--- ${executor.name} log (last lines) ---\n${executor.logTail(200)}`)
    }
  })

  it("100 zombie runs while the broker is killed -9 and restarted 5 times: every run's four commands exactly once", async () => {
    const started = Date.now()
    executor = await world.start("run", { ...fastRejoin, LOG_LEVEL: process.env["EO_LOG_LEVEL"] ?? "info" })
    await executor.ready(90_000)
    const kubelet = zombieKubelet(world, image)
    const port = readState(world.infra.runDir).ports.kafka
    const tasks: Array<string> = []
    const outages: Array<number> = []
    try {
      for (let wave = 0; wave < 5; wave++) {
        const ids = newTaskIds(20)
        tasks.push(...ids)
        await world.publishTasks(ids.map((taskId) => ({ taskId, assignee: agent })))
        // spawns and verdicts of this wave are in flight now
        await sleep(randomBetween(300, 2_500))
        const broker = await stopKafka(world.infra.runDir, port, true)
        const downAt = Date.now()
        await sleep(randomBetween(200, 1_500))
        await broker.start()
        outages.push(Date.now() - downAt)
      }
      const seen = await expectEachRunOnce(world, tasks, "broker kills")
      expect(executor.isRunning()).toBe(true)
      const uncertain = await executor.metric("agent_executor_publish_uncertain_total")
      const found = await executor.metric("agent_executor_publish_readbacks_total", { outcome: "found" })
      const missing = await executor.metric("agent_executor_publish_readbacks_total", { outcome: "missing" })
      const verdicts = await executor.metric("agent_executor_zombie_verdicts_total")
      expect(verdicts).toBe(tasks.length)
      console.info(
        `exactly once, broker kill -9 x5 during 100 zombie runs: ${JSON.stringify(seen)}; ` +
          `broker down ${outages.join("/")} ms; uncertain sends ${uncertain}, read-backs found ${found} missing ${missing}; ` +
          `${Math.round((Date.now() - started) / 1000)} s`
      )
    } finally {
      await kubelet.stop()
    }
  }, 600_000)
})
