/**
 * The reference check of `pnpm test` (`pnpm run lint:refs`): every reference in the repository
 * resolves inside it, and none points outside it (scripts/references/analyse.ts says what counts).
 *
 * The outside references that existed when the check came are listed in
 * scripts/references/allowed.txt; the check fails on anything not on that list, so a new one (or
 * any in a file that has none listed) fails. The step that rewrites the old references empties the
 * list.
 *
 *   node --import tsx scripts/check-references.ts            check; a summary of the allowed ones by file
 *   node --import tsx scripts/check-references.ts --list     every offender with its line and where it should point
 *   node --import tsx scripts/check-references.ts --update   rewrite the allow-list from what is found now
 */
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { analyse, type Finding, judge, parseAllowList, renderAllowList } from "./references/analyse.js"
import { suggestion } from "./references/targets.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const allowListPath = join(root, "scripts/references/allowed.txt")
const allowListHeader =
  "# Outside references that existed when scripts/check-references.ts came (file, kind, token; one line per\n" +
  "# occurrence). The check fails on any reference not listed here. Shrinks to nothing when they are rewritten.\n"

/** Text files worth reading: sources, docs, scripts, manifests. Data (JSON fixtures, the lockfile) is not. */
const scanned = /\.(md|ts|mts|cts|mjs|cjs|js|sh|ya?ml|c)$|(^|\/)Dockerfile$/
/** The check's own tables and tests name outside references on purpose. */
const exempt = new Set([
  "scripts/references/allowed.txt",
  "scripts/references/targets.ts",
  "scripts/references/analyse.ts",
  "apps/executor/test/References.test.ts"
])

const git = (args: ReadonlyArray<string>): string =>
  execFileSync("git", args, {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    stdio: ["ignore", "pipe", "ignore"]
  })

const inGit = (() => {
  try {
    git(["rev-parse", "--is-inside-work-tree"])
    return true
  } catch {
    return false
  }
})()

/** Outside a git checkout (an unpacked source archive): `.gitignore`'s plain paths, as prefixes. */
const ignoredPrefixes = existsSync(join(root, ".gitignore"))
  ? readFileSync(join(root, ".gitignore"), "utf8")
    .split("\n")
    .map((line) => line.trim().replace(/^\//, "").replace(/\/$/, ""))
    .filter((line) => line !== "" && !line.startsWith("#") && !/[*?[!]/.test(line))
  : []

const walk = (dir: string): ReadonlyArray<string> =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = dir === "" ? entry.name : `${dir}/${entry.name}`
    if (entry.name === ".git" || ignoredPrefixes.some((prefix) => path === prefix || path.startsWith(`${prefix}/`))) {
      return []
    }
    return entry.isDirectory() ? walk(path) : [path]
  })

const listed = (inGit ? git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"]).split("\0") : walk(""))
  .filter((path) => path !== "" && existsSync(join(root, path)))
const files = new Map(
  listed
    .filter((path) => scanned.test(path) && !exempt.has(path) && path !== "pnpm-lock.yaml")
    .map((path) => [path, readFileSync(join(root, path), "utf8")] as const)
)

const ignoredCache = new Map<string, boolean>()
const ignored = (path: string): boolean => {
  if (!inGit) return ignoredPrefixes.some((prefix) => path === prefix || path.startsWith(`${prefix}/`))
  let known = ignoredCache.get(path)
  if (known === undefined) {
    try {
      // a directory pattern (`/dist/`) matches only a path that says it is one
      git(["check-ignore", "-q", "--no-index", path.endsWith("/") ? path : `${path}/`])
      known = true
    } catch {
      known = false
    }
    ignoredCache.set(path, known)
  }
  return known
}

const findings = analyse({ files, exists: (path) => existsSync(join(root, path)), ignored })
const args = new Set(process.argv.slice(2))

if (args.has("--update")) {
  writeFileSync(allowListPath, renderAllowList(findings, allowListHeader))
  console.log(`${allowListPath}: ${findings.filter((f) => f.kind !== "structure").length} entries`)
  process.exit(0)
}

const allowList = existsSync(allowListPath) ? parseAllowList(readFileSync(allowListPath, "utf8")) : []
const { allowed, fresh, stale } = judge(findings, allowList)

const describe = (f: Finding): string => {
  const hint = f.kind === "outside" ? suggestion(f.token) : undefined
  return `  ${f.file}:${f.line}: ${f.message}${hint === undefined ? "" : `  (use ${hint})`}`
}

if (args.has("--list")) {
  console.log(`Outside references still allowed (${allowed.length}):`)
  for (const f of allowed) console.log(describe(f))
} else if (allowed.length > 0) {
  const byFile = new Map<string, Map<string, number>>()
  for (const f of allowed) {
    const tokens = byFile.get(f.file) ?? new Map<string, number>()
    tokens.set(f.token, (tokens.get(f.token) ?? 0) + 1)
    byFile.set(f.file, tokens)
  }
  console.log(
    `references: ${allowed.length} outside references in ${byFile.size} files still allowed ` +
      "(scripts/references/allowed.txt; --list shows where each should point):"
  )
  for (const [file, tokens] of [...byFile].sort(([a], [b]) => a.localeCompare(b))) {
    const counted = [...tokens].map(([token, n]) => (n > 1 ? `${token} ×${n}` : token)).join(", ")
    console.log(`  ${file}: ${counted}`)
  }
}

if (stale.length > 0) {
  console.log(`references: ${stale.length} allow-list entries match nothing any more; --update shrinks the list`)
}

if (fresh.length > 0) {
  console.error(`references: ${fresh.length} references do not resolve inside the repository:`)
  for (const f of fresh) console.error(describe(f))
  process.exit(1)
}
console.log("references: ok")
