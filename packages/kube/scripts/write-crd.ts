// Writes deploy/crd.yaml from packages/kube/src/Crd.ts (test/Crd.test.ts fails when they differ).
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { renderYaml } from "../src/Crd.js"

const target = fileURLToPath(new URL("../../../deploy/crd.yaml", import.meta.url))
writeFileSync(target, renderYaml())
console.log(`wrote ${target}`)
