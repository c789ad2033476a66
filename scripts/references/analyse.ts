/**
 * Finds the references of a repository that do not resolve inside it, and those that point outside
 * it (to documents a clone does not have). Pure: the caller hands in the files and answers whether a
 * path exists, so a test can run it on a repository of a few strings.
 *
 * - Markdown links `[text](target)`: a relative target must exist; `#anchor` must be a heading (or an
 *   `<a id>`) of the target markdown file.
 * - Repository paths cited anywhere (`docs/contract.md`, `packages/kube/src/Crd.ts`, with an optional
 *   `#anchor` for markdown files): they must exist, from the repository root or from a directory
 *   above the citing file; paths git ignores (build outputs) and placeholders (`<id>`, `*`) are skipped.
 * - Outside references: the sibling spec directory, bare names of its documents, its section signs,
 *   decision numbers and catalogue items (see `outsidePatterns`).
 * - The decisions page: each id a unique kebab-case `###` heading, each listed in architecture.md.
 */

export type Kind = "outside" | "broken" | "structure"

export interface Finding {
  readonly file: string
  readonly line: number
  readonly kind: Kind
  /** What was found, as written (the allow-list key together with file and kind). */
  readonly token: string
  readonly message: string
}

export interface Repository {
  /** The files to scan, by repository path (forward slashes, no leading `./`). */
  readonly files: ReadonlyMap<string, string>
  /** Whether a repository path (file or directory) exists. */
  readonly exists: (path: string) => boolean
  /** Whether git ignores the path (build outputs cited as such). */
  readonly ignored: (path: string) => boolean
}

export const decisionsPage = "docs/decisions.md"
export const architecturePage = "docs/architecture.md"

/** Names of the documents of the sibling spec directory, which a clone of this repository lacks. */
const specDocuments = [
  "executor",
  "simulation",
  "decisions",
  "controller",
  "real-cluster",
  "infra",
  "stack",
  "peers",
  "style-anchors"
]

interface OutsidePattern {
  readonly pattern: RegExp
  readonly what: string
}

/** Every regex is global; they run over text whose resolving markdown links were blanked out. */
export const outsidePatterns: ReadonlyArray<OutsidePattern> = [
  { pattern: /\.\.\/shared\b[^\s)`'"\]]*/g, what: "the sibling spec directory" },
  {
    pattern: new RegExp(`(?<![\\w/.-])(?:${specDocuments.join("|")})\\.md\\b`, "g"),
    what: "a spec document without a repository path"
  },
  { pattern: /(?:\bREF\s*)?§\s?\d+(?:\.\d+)*(?:-\d+(?:\.\d+)*)?/g, what: "a section of the spec" },
  { pattern: /\bD[1-6](?:\.\d{1,2})?\b/g, what: "a decision number of the spec" },
  { pattern: /\bitems? \d+(?:(?:, | and |-)\d+)*/g, what: "an item of the spec's test catalogue" }
]

// ---------------------------------------------------------------------------------------------
// Paths and anchors
// ---------------------------------------------------------------------------------------------

const dirname = (path: string): string => (path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "")

/** `a/b/../c` → `a/c`; `undefined` when it climbs out of the repository. */
export const normalise = (path: string): string | undefined => {
  const parts: Array<string> = []
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") {
      if (parts.length === 0) return undefined
      parts.pop()
    } else {
      parts.push(part)
    }
  }
  return parts.join("/")
}

/** The directories from the citing file's up to the root (`""`). */
const ancestors = (file: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  let dir = dirname(file)
  while (dir !== "") {
    out.push(dir)
    dir = dirname(dir)
  }
  return ["", ...out]
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
export const slug = (heading: string): string =>
  heading
    .replace(/`([^`]*)`/g, "$1")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-")

/** Lines outside fenced code blocks, with their 1-based numbers. */
const proseLines = (text: string): ReadonlyArray<readonly [number, string]> => {
  const out: Array<readonly [number, string]> = []
  let fence: string | undefined
  text.split("\n").forEach((line, index) => {
    const opening = line.match(/^\s*(```+|~~~+)/)
    if (opening !== null) {
      const marker = opening[1] ?? ""
      if (fence === undefined) fence = marker[0]
      else if (marker[0] === fence) fence = undefined
      return
    }
    if (fence === undefined) out.push([index + 1, line])
  })
  return out
}

export interface Heading {
  readonly level: number
  readonly text: string
  readonly anchor: string
  readonly line: number
}

export const headings = (markdown: string): ReadonlyArray<Heading> => {
  const seen = new Map<string, number>()
  const out: Array<Heading> = []
  for (const [line, text] of proseLines(markdown)) {
    const match = text.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/)
    if (match === null) continue
    const base = slug(match[2] ?? "")
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    out.push({
      level: (match[1] ?? "").length,
      text: match[2] ?? "",
      anchor: count === 0 ? base : `${base}-${count}`,
      line
    })
  }
  return out
}

export const anchors = (markdown: string): ReadonlySet<string> =>
  new Set([
    ...headings(markdown).map((h) => h.anchor),
    ...Array.from(markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g), (m) => m[1] ?? "")
  ])

// ---------------------------------------------------------------------------------------------
// The scan
// ---------------------------------------------------------------------------------------------

const lineOf = (text: string, index: number): number => text.slice(0, index).split("\n").length

/** Ranges of markdown code (fenced blocks and inline spans): a `[x](y)` there is no link. */
const codeRanges = (markdown: string): ReadonlyArray<readonly [number, number]> => {
  const ranges: Array<readonly [number, number]> = []
  for (const m of markdown.matchAll(/^\s*(```+|~~~+)[^\n]*\n[\s\S]*?^\s*\1\s*$/gm)) {
    ranges.push([m.index ?? 0, (m.index ?? 0) + m[0].length])
  }
  for (const m of markdown.matchAll(/(`+)(?!`)[\s\S]*?[^`]\1(?!`)/g)) {
    ranges.push([m.index ?? 0, (m.index ?? 0) + m[0].length])
  }
  return ranges
}

/** Kubernetes API versions look like paths of this repository (`apps/v1`). */
const apiVersion = /^apps\/v\d+((alpha|beta)\d+)?$/

const markdownLink = /!?\[([^\]\n]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g
const externalTarget = /^[a-z][a-z0-9+.-]*:/i

/** The first path segments that are directories of the repository (`apps`, `docs`, ...). */
const topDirectories = (files: Iterable<string>): ReadonlyArray<string> => {
  const dirs = new Set<string>()
  for (const file of files) {
    const first = file.split("/")[0] ?? ""
    if (file.includes("/") && !first.startsWith(".") && first !== "node_modules") dirs.add(first)
  }
  return [...dirs].sort()
}

export const analyse = (repo: Repository): ReadonlyArray<Finding> => {
  const findings: Array<Finding> = []
  const anchorCache = new Map<string, ReadonlySet<string>>()
  const anchorsOf = (path: string): ReadonlySet<string> | undefined => {
    const text = repo.files.get(path)
    if (text === undefined) return undefined
    let cached = anchorCache.get(path)
    if (cached === undefined) {
      cached = anchors(text)
      anchorCache.set(path, cached)
    }
    return cached
  }
  const push = (file: string, line: number, kind: Kind, token: string, message: string) =>
    findings.push({ file, line, kind, token, message })

  /** A missing anchor of a markdown file, else `undefined`. */
  const anchorProblem = (path: string, anchor: string | undefined): string | undefined => {
    if (anchor === undefined || anchor === "" || !path.endsWith(".md")) return undefined
    const known = anchorsOf(path)
    if (known === undefined) return undefined
    return known.has(anchor) ? undefined : `${path} has no heading #${anchor}`
  }

  const dirs = topDirectories(repo.files.keys())
  const repoPath = new RegExp(`(?<![\\w./@-])((?:${dirs.join("|")})/[\\w./@+-]*[\\w@+-])(?:#([\\w-]+))?`, "g")

  for (const [file, original] of repo.files) {
    let text = original

    if (file.endsWith(".md")) {
      // Links first; each is then blanked out, so its text and target are not read as references again.
      const code = codeRanges(original)
      for (const match of original.matchAll(markdownLink)) {
        const target = match[2] ?? ""
        const at = match.index ?? 0
        if (code.some(([from, to]) => at >= from && at < to)) continue
        const line = lineOf(original, at)
        if (externalTarget.test(target)) continue
        const [rawPath = "", anchor] = target.split("#", 2)
        const path = rawPath === "" ? file : normalise(`${dirname(file)}/${decodeURI(rawPath)}`)
        if (path === undefined || /(^|\/)\.\.\/shared\b/.test(target)) {
          push(file, line, "outside", target, `link ${target} leaves the repository`)
        } else if (!repo.exists(path)) {
          push(file, line, "broken", target, `link ${target}: ${path} does not exist`)
        } else {
          const problem = anchorProblem(path, anchor)
          if (problem !== undefined) push(file, line, "broken", target, `link ${target}: ${problem}`)
        }
        // reported (or fine) as a link: its text and target are not read again
        text = text.slice(0, at) + " ".repeat(match[0].length) + text.slice(at + match[0].length)
      }
    }

    for (const match of text.matchAll(repoPath)) {
      const path = match[1] ?? ""
      const at = match.index ?? 0
      const next = text[at + match[0].length] ?? ""
      if (("<*{$".includes(next) && next !== "") || apiVersion.test(path)) continue
      const line = lineOf(text, at)
      const resolved = ancestors(file)
        .map((dir) => (dir === "" ? path : `${dir}/${path}`))
        .find((candidate) => repo.exists(candidate))
      if (resolved === undefined) {
        if (!repo.ignored(path)) push(file, line, "broken", match[0], `${path} does not exist`)
        continue
      }
      const problem = anchorProblem(resolved, match[2])
      if (problem !== undefined) push(file, line, "broken", match[0], problem)
    }

    for (const { pattern, what } of outsidePatterns) {
      for (const match of text.matchAll(pattern)) {
        push(file, lineOf(text, match.index ?? 0), "outside", match[0], `${match[0]}: ${what}`)
      }
    }
  }

  findings.push(...decisionStructure(repo))
  return findings
}

/** Each decision id is a unique kebab-case `###` heading and has a row in architecture.md. */
const decisionStructure = (repo: Repository): ReadonlyArray<Finding> => {
  const decisions = repo.files.get(decisionsPage)
  if (decisions === undefined) return []
  const out: Array<Finding> = []
  const architecture = repo.files.get(architecturePage) ?? ""
  const seen = new Set<string>()
  for (const heading of headings(decisions)) {
    if (heading.level !== 3) continue
    const id = heading.text
    const problem = !/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(id)
      ? `decision heading "${id}" is not a kebab-case id`
      : seen.has(id)
      ? `decision id ${id} appears twice`
      : !architecture.includes(`decisions.md#${id})`)
      ? `decision ${id} has no row in ${architecturePage} ("Where decisions live")`
      : undefined
    seen.add(id)
    if (problem !== undefined) {
      out.push({ file: decisionsPage, line: heading.line, kind: "structure", token: id, message: problem })
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// The allow-list: outside references that existed when the check was introduced
// ---------------------------------------------------------------------------------------------

/** `file<TAB>kind<TAB>token`, one line per occurrence (line numbers left out so edits elsewhere do not matter). */
export const allowKey = (finding: Finding): string => `${finding.file}\t${finding.kind}\t${finding.token}`

export const parseAllowList = (text: string): ReadonlyArray<string> =>
  text
    .split("\n")
    .map((line) => line.replace(/\r$/, ""))
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))

export const renderAllowList = (findings: ReadonlyArray<Finding>, header: string): string =>
  header + findings.filter((f) => f.kind !== "structure").map(allowKey).sort().join("\n") + "\n"

export interface Verdict {
  /** Not covered by the allow-list: these fail the check. */
  readonly fresh: ReadonlyArray<Finding>
  /** Covered by the allow-list (the step that rewrites the references empties it). */
  readonly allowed: ReadonlyArray<Finding>
  /** Allow-list entries nothing matches any more: the list can shrink. */
  readonly stale: ReadonlyArray<string>
}

/** Each allow-list line covers one occurrence; structure problems are never allowed. */
export const judge = (findings: ReadonlyArray<Finding>, allowList: ReadonlyArray<string>): Verdict => {
  const budget = new Map<string, number>()
  for (const key of allowList) budget.set(key, (budget.get(key) ?? 0) + 1)
  const fresh: Array<Finding> = []
  const allowed: Array<Finding> = []
  for (const finding of findings) {
    const key = allowKey(finding)
    const left = budget.get(key) ?? 0
    if (finding.kind !== "structure" && left > 0) {
      budget.set(key, left - 1)
      allowed.push(finding)
    } else {
      fresh.push(finding)
    }
  }
  const stale = [...budget].flatMap(([key, left]) => Array.from({ length: left }, () => key))
  return { fresh, allowed, stale }
}
