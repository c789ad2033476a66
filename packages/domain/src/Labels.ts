/** The API group of the `Config` resource; also the prefix of every label, annotation and finalizer. */
export const DefaultApiGroup = "agent.benjamin-borbe.de"

export interface Names {
  readonly apiGroup: string
  /** Label on Jobs and pods: the task id. */
  readonly taskIdLabel: string
  /** Label on Jobs and pods: the Config's assignee (the concurrency key). */
  readonly assigneeLabel: string
  /** Annotation holding where the spawn commands of the Job go, written when the Job is created (docs/decisions.md#placement). */
  readonly spawnAnnotation: string
  /** Annotation holding the durable verdict mark (decisions D6.2). */
  readonly verdictAnnotation: string
  /** Finalizer that keeps a Job visible until its run is settled (decisions D6.3). */
  readonly finalizer: string
}

export const names = (apiGroup: string = DefaultApiGroup): Names => ({
  apiGroup,
  taskIdLabel: `${apiGroup}/task-id`,
  assigneeLabel: `${apiGroup}/assignee`,
  spawnAnnotation: `${apiGroup}/spawn`,
  verdictAnnotation: `${apiGroup}/verdict`,
  finalizer: `${apiGroup}/run-settled`
})
