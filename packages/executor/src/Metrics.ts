import { Metric, MetricBoundaries } from "effect"

/** Reference metric names keep their exact spelling (executor.md §4.3); the rest are D4.13's additions. */
export const taskEvents = Metric.counter("agent_executor_task_events_total", {
  description: "Task events by outcome"
})
export const jobsSpawned = Metric.counter("agent_executor_jobs_spawned_total", {
  description: "Jobs created for agent runs"
})
export const verdicts = Metric.counter("agent_executor_zombie_verdicts_total", {
  description: "Zombie verdicts published, by reason and detector"
})
export const detectionLatency = Metric.histogram(
  "agent_executor_zombie_detection_latency_seconds",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 14 }),
  "From the first bad signal of a run to its published verdict"
)
export const dedupeHits = Metric.counter("agent_executor_zombie_dedupe_hits_total", {
  description: "Verdicts suppressed because another detector already judged the run"
})
export const sweeperTickSeconds = Metric.histogram(
  "agent_executor_sweeper_tick_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 10 }),
  "Duration of one zombie sweep"
)
export const trackedRuns = Metric.gauge("agent_executor_tracked_runs", {
  description: "Runs in flight that the executor watches"
})
export const deferredRespawns = Metric.gauge("agent_executor_deferred_respawns", {
  description: "Respawns waiting in the deferred queue"
})
export const skippedObjects = Metric.counter("agent_executor_skipped_objects_total", {
  description: "Watched objects ignored as malformed (no task-id label, no owner Job)"
})
export const configsRejected = Metric.counter("agent_executor_configs_rejected_total", {
  description: "Config resources refused by the executor's own validation"
})
export const publishRetries = Metric.counter("agent_executor_publish_retries_total", {
  description: "Command publishes retried after a broker failure"
})
export const publishUncertain = Metric.counter("agent_executor_publish_uncertain_total", {
  description: "Command sends whose outcome was unknown (resolved by reading the partition back)"
})
export const publishReadBacks = Metric.counter("agent_executor_publish_readbacks_total", {
  description: "Partition read-backs for one command group, by whether the group was found in the log"
})
export const commandsInvalid = Metric.counter("agent_executor_commands_invalid_total", {
  description: "Command groups that failed the executor's own validation and were never sent"
})
export const skippedEvents = Metric.counter("agent_executor_skipped_events_total", {
  description: "Messages on the event topic that are not task events (empty, not JSON, no task id)"
})
export const probeFailures = Metric.counter("agent_executor_healthcheck_probe_failures_total", {
  description: "Healthcheck probe runs that failed to publish"
})
