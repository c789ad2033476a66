import { availableParallelism } from "node:os"
import { configDefaults, defineConfig } from "vitest/config"

// `vitest run` runs three projects:
//   unit                in-memory tests (packages/*/test, apps/*/test), no servers
//   integration         the adapter suites and test/e2e against real etcd + kube-apiserver + Kafka,
//                       started once by test/globalSetup.ts (test/infra)
//   integration-serial  the suite that restarts the shared API server (the kube adapter suite):
//                       alone, after the other two projects are done (sequence.groupOrder)
//                       (test/e2e/faults.test.ts starts a stack of its own for its faults)
//   node                test/node against a real single-node Kubernetes (test/nodeGlobalSetup.ts,
//                       test/infra/node-up.sh): Kubernetes itself writes every status
// `vitest run --project unit` runs the unit tests alone (no servers are started).
// The integration and node projects run inside a network namespace of their own: `pnpm test` runs
// vitest through test/infra/run-vitest.sh (prepare.sh, then test/infra/in-netns.sh).
// SKIP_INTEGRATION=1 skips the integration projects on a machine without the binaries (ignored
// when CI=true or INTEGRATION_REQUIRED=1: then a missing stack fails the run).

const integrationFiles = [
  "packages/*/test/**/*.integration.test.ts",
  "apps/*/test/**/*.integration.test.ts",
  "test/**/*.test.ts"
]
const disruptiveFiles = ["packages/kube/test/Kube.integration.test.ts"]
const nodeFiles = ["test/node/**/*.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    // The end-to-end files mostly wait on real-time graces: run more of them than there are cores.
    maxWorkers: Math.max(4, availableParallelism()),
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...integrationFiles],
          sequence: { groupOrder: 0 }
        }
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: integrationFiles,
          exclude: [...configDefaults.exclude, "test/infra/**", ...disruptiveFiles, ...nodeFiles],
          globalSetup: ["test/globalSetup.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // the failure modes of test/e2e run side by side (describe.concurrent)
          maxConcurrency: 20,
          sequence: { groupOrder: 0 }
        }
      },
      {
        extends: true,
        test: {
          name: "integration-serial",
          include: disruptiveFiles,
          globalSetup: ["test/globalSetup.ts"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // one worker runs these files one after another
          poolOptions: { forks: { singleFork: true } },
          sequence: { groupOrder: 1 }
        }
      },
      {
        extends: true,
        test: {
          name: "node",
          include: nodeFiles,
          globalSetup: ["test/nodeGlobalSetup.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          maxConcurrency: 20,
          sequence: { groupOrder: 0 }
        }
      }
    ]
  }
})
