// Exactly once for a controller that reads uncommitted (docs/contract.md#what-the-controller-does-with-them), under the real `run`
// service on the shared stack, side by side (describe.concurrent; each its own namespace, topics
// and consumer group):
//
//   connections cut mid-produce: the executor talks to the broker through a Kafka-aware TCP proxy
//                (test/support/kafkaProxy.ts) that, 20 times, lets a Produce request reach the
//                broker and drops its answer with the connection (the broker wrote the batch, the
//                answer never came); some of them 7 times in a row, more than kafkajs's own
//                retries, so the executor sees an unknown outcome and reads the partition back.
//   executor kill -9: 20 times at a random point (start-up, recovery, a spawn, a verdict), and a
//                fresh `run` in its place at once.
//
// A stand-in kubelet makes every pod InvalidImageName (a verdict at once). A fresh reader that reads
// uncommitted then counts, for every task: one spawn increment, one spawn notification, one failure
// update and one failure increment, each pair in one record batch, nothing lost, nothing twice.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import { expectEachRunOnce, fastRejoin, newTaskIds, randomBetween, zombieKubelet } from "../support/exactlyOnce.js"
import { agentSpec, makeWorld, type World } from "../support/harness.js"
import { requireInfra } from "../support/infraEnv.js"
import { type KafkaProxy, kafkaProxy } from "../support/kafkaProxy.js"
import { eventually, sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/exactly-once.test.ts")
const agent = "eo-agent"
const image = `registry.invalid/agents/${agent}:dev`
const spec = agentSpec(agent, { podCreateGraceSeconds: 600, zombieJobTimeoutSeconds: 900 })

describe.skipIf(infra === undefined).concurrent("exactly once through lost answers and executor kills (real run, apiserver, broker)", () => {
  // made one after the other: two at once race for the CRD they both apply
  let cut: World
  let killed: World
  let proxy: KafkaProxy
  const processes: Array<ExecutorProcess> = []

  beforeAll(async () => {
    cut = await makeWorld(infra!, "eop", { [agent]: spec })
    killed = await makeWorld(infra!, "eok", { [agent]: spec })
    proxy = await kafkaProxy(Number(infra!.kafkaBrokers.split(":")[1]))
  }, 180_000)

  afterAll(async () => {
    await cut?.close()
    await killed?.close()
    await proxy?.close()
  }, 60_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail") {
      for (const p of processes.slice(-3)) console.error(`--- ${p.name} log (last lines) ---\n${p.logTail(120)}`)
    }
  })

  it("40 zombie runs while 20 produce answers are lost (connection cut after the broker wrote the batch): every run's four commands exactly once", async () => {
    const started = Date.now()
    const world = cut
    const executor = await world.start("run", { ...fastRejoin, KAFKA_BROKERS: proxy.address })
    processes.push(executor)
    await executor.ready(90_000)
    const kubelet = zombieKubelet(world, image)
    const tasks = newTaskIds(40)
    let cuts = 0
    try {
      const cutting = (async () => {
        for (let cut = 0; cut < 20; cut++) {
          // every fourth: more answers lost in a row than kafkajs retries, so its send fails
          const lost = cut % 4 === 3 ? 7 : 1
          const before = proxy.lostAnswers()
          proxy.loseProduceAnswers(lost)
          await eventually(`produce answer ${cut + 1} lost`, 60_000, () => (proxy.lostAnswers() >= before + lost ? true : undefined), 50)
          cuts++
          await sleep(randomBetween(100, 600))
        }
      })()
      for (let wave = 0; wave < 4; wave++) {
        await world.publishTasks(tasks.slice(wave * 10, wave * 10 + 10).map((taskId) => ({ taskId, assignee: agent })))
        await sleep(randomBetween(1_000, 3_000))
      }
      await cutting
      const seen = await expectEachRunOnce(world, tasks, "lost answers")
      expect(executor.isRunning()).toBe(true)
      const uncertain = await executor.metric("agent_executor_publish_uncertain_total")
      const found = await executor.metric("agent_executor_publish_readbacks_total", { outcome: "found" })
      const missing = await executor.metric("agent_executor_publish_readbacks_total", { outcome: "missing" })
      expect(uncertain).toBeGreaterThan(0)
      console.info(
        `exactly once, ${cuts} produce answers lost (${proxy.lostAnswers()} answers in all, of ${proxy.produceRequests()} produce requests) ` +
          `during 40 zombie runs: ${JSON.stringify(seen)}; uncertain sends ${uncertain}, read-backs found ${found} missing ${missing}; ` +
          `${Math.round((Date.now() - started) / 1000)} s`
      )
    } finally {
      await kubelet.stop()
    }
  }, 600_000)

  it("40 zombie runs while the executor is killed -9 at random points 20 times: every run's four commands exactly once", async () => {
    const started = Date.now()
    const world = killed
    const kubelet = zombieKubelet(world, image)
    const tasks = newTaskIds(40)
    const points: Array<string> = []
    try {
      for (let kill = 0; kill < 20; kill++) {
        const executor = await world.start(`run-${kill}`, fastRejoin, { waitListening: false })
        processes.push(executor)
        const mine = tasks.slice(kill * 2, kill * 2 + 2)
        await world.publishTasks(mine.map((taskId) => ({ taskId, assignee: agent })))
        if (kill % 2 === 0) {
          // anywhere from start-up through recovery to the first verdicts
          const after = randomBetween(2_500, 8_000)
          await sleep(after)
          points.push(`${after} ms after start`)
        } else {
          // mid-spawn: as soon as this executor creates a Job of its tasks, give or take
          const spawned = await eventually(`a Job of ${mine.join(", ")}`, 60_000, async () => {
            for (const taskId of mine) if ((await world.kube.jobsOf(world.namespace, taskId)).length > 0) return true
            return undefined
          }, 50).catch(() => false)
          const after = randomBetween(0, 400)
          await sleep(after)
          points.push(spawned ? `${after} ms after a spawn` : "no spawn within 60 s")
        }
        const exit = await executor.kill9()
        expect(exit.signal).toBe("SIGKILL")
      }
      const last = await world.start("run-last", fastRejoin)
      processes.push(last)
      await last.ready(90_000)
      const seen = await expectEachRunOnce(world, tasks, "executor kills")
      for (const taskId of tasks) expect((await world.kube.jobsOf(world.namespace, taskId)).length, taskId).toBe(0)
      console.info(
        `exactly once, executor kill -9 x20 during 40 zombie runs: ${JSON.stringify(seen)}; killed at ${points.join(", ")}; ` +
          `${Math.round((Date.now() - started) / 1000)} s`
      )
    } finally {
      await kubelet.stop()
    }
  }, 900_000)
})
