export * as InMemoryBus from "./InMemoryBus.js"
export * as InMemoryCluster from "./InMemoryCluster.js"
export * as PodBehaviour from "./PodBehaviour.js"
export * as World from "./World.js"
