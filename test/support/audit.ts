// The API server's audit log of the real node (test/infra/up.sh, UP_PROFILE=node): every request of
// a ServiceAccount outside kube-system, at metadata level. What one ServiceAccount was refused and
// which permissions it used, against the Role it runs under.
import { readFileSync } from "node:fs"
import type * as k8s from "@kubernetes/client-node"

export interface AuditEntry {
  /** A request for a path, not an object (discovery, /version): no resource, granted to everyone authenticated. */
  readonly nonResource: boolean
  readonly stage: string
  readonly verb: string
  readonly group: string
  readonly resource: string
  readonly subresource: string
  readonly namespace: string
  readonly name: string
  readonly code: number | undefined
  readonly uri: string
  readonly at: string
}

interface RawEvent {
  readonly stage?: string
  readonly verb?: string
  readonly requestURI?: string
  readonly user?: { readonly username?: string }
  readonly objectRef?: {
    readonly apiGroup?: string
    readonly resource?: string
    readonly subresource?: string
    readonly namespace?: string
    readonly name?: string
  }
  readonly responseStatus?: { readonly code?: number }
  readonly stageTimestamp?: string
}

/** The entries of `username`, in the order the API server wrote them (a line still being written is skipped). */
export const auditEntries = (file: string, username: string): ReadonlyArray<AuditEntry> =>
  readFileSync(file, "utf8").split("\n").flatMap((line) => {
    if (!line.includes(`"${username}"`)) return []
    let event: RawEvent
    try {
      event = JSON.parse(line) as RawEvent
    } catch {
      return []
    }
    if (event.user?.username !== username) return []
    return [{
      nonResource: event.objectRef === undefined,
      stage: event.stage ?? "",
      verb: event.verb ?? "",
      group: event.objectRef?.apiGroup ?? "",
      resource: event.objectRef?.resource ?? "",
      subresource: event.objectRef?.subresource ?? "",
      namespace: event.objectRef?.namespace ?? "",
      name: event.objectRef?.name ?? "",
      code: event.responseStatus?.code,
      uri: event.requestURI ?? "",
      at: event.stageTimestamp ?? ""
    }]
  })

/** `<group>/<resource>[/<subresource>] <verb>`, the core group as ""; a non-resource request as `<path> <verb>`. */
export const permissionOf = (e: {
  readonly group: string
  readonly resource: string
  readonly subresource?: string
  readonly verb: string
  readonly nonResource?: boolean
  readonly uri?: string
}) =>
  e.nonResource === true
    ? `${(e.uri ?? "").split("?")[0]} ${e.verb}`
    : `${e.group}/${e.resource}${e.subresource === undefined || e.subresource === "" ? "" : `/${e.subresource}`} ${e.verb}`

export const forbidden = (entries: ReadonlyArray<AuditEntry>) => entries.filter((e) => e.code === 403)

/** Every permission on resources the requests needed (authorized or not), sorted. */
export const permissionsUsed = (entries: ReadonlyArray<AuditEntry>) =>
  [...new Set(entries.filter((e) => !e.nonResource).map(permissionOf))].sort()

/** Every permission a Role grants (no wildcards, no resourceNames expected), sorted. */
export const permissionsGranted = (role: k8s.V1Role) =>
  [...new Set((role.rules ?? []).flatMap((rule) =>
    (rule.apiGroups ?? []).flatMap((group) =>
      (rule.resources ?? []).flatMap((resource) => rule.verbs.map((verb) => permissionOf({ group, resource, verb }))))
  ))].sort()

/** Per permission: how many requests, and their response codes. */
export const usageTable = (entries: ReadonlyArray<AuditEntry>) => {
  const table = new Map<string, Map<string, number>>()
  for (const e of entries.filter((x) => x.stage === "ResponseComplete" || x.stage === "ResponseStarted")) {
    const key = permissionOf(e)
    const codes = table.get(key) ?? new Map<string, number>()
    // a watch is written when it starts and when it ends: count it once
    if (e.verb === "watch" && e.stage === "ResponseComplete") continue
    const code = String(e.code ?? "?")
    codes.set(code, (codes.get(code) ?? 0) + 1)
    table.set(key, codes)
  }
  return [...table.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([permission, codes]) =>
    `${permission}: ${[...codes.entries()].map(([code, n]) => `${n}x${code}`).join(" ")}`)
}
