import { describe, expect, it } from "@effect/vitest"
import {
  analyse,
  type Finding,
  judge,
  parseAllowList,
  renderAllowList,
  slug
} from "../../../scripts/references/analyse.js"

/** A repository of a few files; every directory above a file exists. */
const repo = (files: Readonly<Record<string, string>>, ignored: ReadonlyArray<string> = []) => {
  const paths = new Set<string>()
  for (const file of Object.keys(files)) {
    const parts = file.split("/")
    for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join("/"))
  }
  return analyse({
    files: new Map(Object.entries(files)),
    exists: (path) => paths.has(path),
    ignored: (path) => ignored.some((prefix) => path.startsWith(prefix))
  })
}

const decisions = "# Decisions\n\n## Group\n\n### run-record\n\nOne record per run.\n"
const architecture = "| [run-record](decisions.md#run-record) | `packages/x/src/A.ts` |\n"
const docs = {
  "docs/decisions.md": decisions,
  "docs/architecture.md": architecture,
  "packages/x/src/A.ts": "export {}\n"
}

const summary = (findings: ReadonlyArray<Finding>) => findings.map((f) => `${f.file}:${f.line} ${f.kind} ${f.token}`)

describe("the reference check", () => {
  it("accepts links, paths and anchors that resolve, from the root or a directory above the citing file", () => {
    expect(
      summary(
        repo({
          ...docs,
          "README.md": "See [the decision](docs/decisions.md#run-record) and `packages/x/src/A.ts`.\n",
          "docs/guide.md": "[back](../README.md), [here](#guide), [there](architecture.md)\n\n# Guide\n",
          "packages/x/src/B.ts": "// one record per run: docs/decisions.md#run-record; see test/fixture.json\n",
          "packages/x/test/fixture.json": "{}\n"
        })
      )
    ).toEqual([])
  })

  it("reports a link, a path or an anchor that does not resolve", () => {
    expect(
      summary(
        repo({
          ...docs,
          "README.md": "[gone](docs/gone.md) and [no such id](docs/decisions.md#no-such-id)\n",
          "packages/x/src/B.ts": "// docs/decisions.md#run-recrod, packages/x/src/Missing.ts\n"
        })
      )
    ).toEqual([
      "README.md:1 broken docs/gone.md",
      "README.md:1 broken docs/decisions.md#no-such-id",
      "packages/x/src/B.ts:1 broken docs/decisions.md#run-recrod",
      "packages/x/src/B.ts:1 broken packages/x/src/Missing.ts"
    ])
  })

  it("reports every reference to the spec outside the repository", () => {
    expect(
      summary(
        repo({
          ...docs,
          "README.md": "The contract: `../shared/spec/executor.md`; [the spec](../shared/spec/simulation.md).\n",
          "packages/x/src/B.ts": "// decisions D4.1 and REF §8.2 (executor.md §4.2), catalogue item 125, D5\n"
        })
      ).sort()
    ).toEqual(
      [
        "README.md:1 outside ../shared/spec/executor.md",
        "README.md:1 outside ../shared/spec/simulation.md",
        "packages/x/src/B.ts:1 outside D4.1",
        "packages/x/src/B.ts:1 outside REF §8.2",
        "packages/x/src/B.ts:1 outside executor.md",
        "packages/x/src/B.ts:1 outside §4.2",
        "packages/x/src/B.ts:1 outside item 125",
        "packages/x/src/B.ts:1 outside D5"
      ].sort()
    )
  })

  it("skips placeholders, git-ignored build outputs, Kubernetes API versions and links inside code", () => {
    expect(
      summary(
        repo(
          {
            ...docs,
            "docs/guide.md":
              "Cite `docs/decisions.md#<id>`; run `apps/x/dist/main.mjs`; `packages/*/test`; apiVersion: apps/v1.\n" +
              "A pattern `^[a-z]([-a-z]*)?$` is no link.\n\n```\n[x](nowhere.md)\n```\n",
            "apps/x/src/main.ts": "export {}\n"
          },
          ["apps/x/dist"]
        )
      )
    ).toEqual([])
  })

  it("keeps the decision ids honest: kebab-case, unique, each with a row in architecture.md", () => {
    expect(
      summary(
        repo({
          ...docs,
          "docs/decisions.md": `${decisions}\n### Not An Id\n\n### run-record\n\n### orphan\n`
        })
      )
    ).toEqual([
      "docs/decisions.md:9 structure Not An Id",
      "docs/decisions.md:11 structure run-record",
      "docs/decisions.md:13 structure orphan"
    ])
  })

  it("headings get GitHub's anchors, and a heading inside a code block is none", () => {
    expect(slug("What the controller does with them")).toBe("what-the-controller-does-with-them")
    expect(slug("`run-record`")).toBe("run-record")
    expect(slug("Publishing exactly once (a long argument)")).toBe("publishing-exactly-once-a-long-argument")
    expect(summary(repo({ ...docs, "docs/a.md": "```\n## Failure\n```\n[x](#failure)\n" }))).toEqual([
      "docs/a.md:4 broken #failure"
    ])
  })

  it("fails only on what the allow-list does not cover, one entry per occurrence", () => {
    const before = repo({ ...docs, "packages/x/src/B.ts": "// D4.1\n// D4.1\n" })
    const allowList = parseAllowList(renderAllowList(before, "# header\n"))
    expect(allowList).toEqual(["packages/x/src/B.ts\toutside\tD4.1", "packages/x/src/B.ts\toutside\tD4.1"])
    expect(judge(before, allowList).fresh).toEqual([])

    const added = repo({ ...docs, "packages/x/src/B.ts": "// D4.1\n// D4.1\n// D4.1\n", "docs/new.md": "See D4.2.\n" })
    expect(summary(judge(added, allowList).fresh)).toEqual([
      "packages/x/src/B.ts:3 outside D4.1",
      "docs/new.md:1 outside D4.2"
    ])

    const fixed = repo({ ...docs, "packages/x/src/B.ts": "// docs/decisions.md#run-record\n" })
    expect(judge(fixed, allowList)).toEqual({ fresh: [], allowed: [], stale: allowList })
  })
})
