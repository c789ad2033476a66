import { Either, ParseResult, Schema } from "effect"

/** A task event: the whole Kafka message value on the event topic, a bare JSON object. */
export const TaskEvent = Schema.Struct({
  identifier: Schema.optionalWith(Schema.String, { default: () => "" }),
  created: Schema.optional(Schema.String),
  modified: Schema.optional(Schema.String),
  taskIdentifier: Schema.String,
  frontmatter: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), {
    default: () => ({}),
    nullable: true
  }),
  content: Schema.optionalWith(Schema.String, { default: () => "", nullable: true })
})
export type TaskEvent = typeof TaskEvent.Type

/** Why a message on the event topic was skipped; each is counted, none is fatal. */
export type EventSkip =
  | { readonly _tag: "Empty" }
  | { readonly _tag: "NotJson"; readonly message: string }
  | { readonly _tag: "NotATask"; readonly message: string }
  | { readonly _tag: "NoTaskId" }

const decodeTask = Schema.decodeUnknownEither(TaskEvent, { errors: "all" })

/** The formatter prints the offending value, which for hostile nesting exhausts the stack. */
const describe = (error: ParseResult.ParseError): string => {
  try {
    return ParseResult.TreeFormatter.formatErrorSync(error)
  } catch {
    return "not a task event (too deeply nested to describe)"
  }
}

/** Deeper JSON than any real frontmatter; deeper input would exhaust the stack further on. */
const maxDepth = 64

const tooDeep = (value: unknown): boolean => {
  const stack: Array<readonly [unknown, number]> = [[value, 1]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop() ?? [undefined, 0]
    if (typeof node !== "object" || node === null) continue
    if (depth > maxDepth) return true
    for (const child of Object.values(node)) stack.push([child, depth + 1])
  }
  return false
}

/** Decodes a raw message value. Never throws: bad input becomes a skip reason. */
export const decodeTaskEvent = (value: string | null | undefined): Either.Either<TaskEvent, EventSkip> => {
  if (value === null || value === undefined || value.trim() === "") return Either.left({ _tag: "Empty" })
  let json: unknown
  try {
    json = JSON.parse(value)
  } catch (error) {
    return Either.left({ _tag: "NotJson", message: String(error) })
  }
  if (tooDeep(json)) return Either.left({ _tag: "NotATask", message: `nested deeper than ${maxDepth} levels` })
  return decodeTask(json).pipe(
    Either.mapLeft((error): EventSkip => ({ _tag: "NotATask", message: describe(error) })),
    Either.flatMap((task) =>
      task.taskIdentifier === "" ? Either.left({ _tag: "NoTaskId" } as const) : Either.right(task)
    )
  )
}
