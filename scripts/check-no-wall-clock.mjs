// Product code takes time only from Effect's Clock and Schedule (decisions D2), so TestClock
// drives every timer. This guard fails the test command when product code reads the wall
// clock or arms a raw timer. Tests are exempt.
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"

const roots = ["packages", "apps"]
const forbidden = [
  { pattern: /\bDate\.now\s*\(/, what: "Date.now()" },
  { pattern: /\bnew Date\s*\(\s*\)/, what: "new Date()" },
  { pattern: /\bsetTimeout\s*\(/, what: "setTimeout" },
  { pattern: /\bsetInterval\s*\(/, what: "setInterval" },
  { pattern: /\bperformance\.now\s*\(/, what: "performance.now()" }
]

const productFiles = (dir) =>
  readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    if (entry === "node_modules" || entry === "test") return []
    if (statSync(path).isDirectory()) return productFiles(path)
    return path.endsWith(".ts") && !path.endsWith(".test.ts") ? [path] : []
  })

const hits = roots.flatMap(productFiles).flatMap((file) =>
  readFileSync(file, "utf8")
    .split("\n")
    .flatMap((line, index) =>
      forbidden.filter(({ pattern }) => pattern.test(line)).map(({ what }) => `${file}:${index + 1}: ${what}`)
    )
)

if (hits.length > 0) {
  console.error("Product code must take time from Effect's Clock/Schedule (decisions D2):")
  for (const hit of hits) console.error(`  ${hit}`)
  process.exit(1)
}
