// A TCP proxy on 127.0.0.1 in front of one Kafka broker that speaks just enough of the Kafka
// protocol to stay in the path: it rewrites the broker's port in Metadata and FindCoordinator
// answers to its own, so a client that bootstraps through it keeps talking through it. It can lose
// the answer to a Produce request on purpose: the broker wrote the batch, the client never hears
// so (the connection is cut instead), which is what a connection lost mid-produce looks like.
import { connect, createServer, type Server, type Socket } from "node:net"

const apiKeys = { produce: 0, metadata: 3, findCoordinator: 10 } as const

export interface KafkaProxy {
  /** `127.0.0.1:<port>`: give this to clients as their broker list. */
  readonly address: string
  readonly port: number
  /**
   * The next `n` Produce requests reach the broker; their answers are dropped and the connection
   * that carried them is cut (both sides).
   */
  readonly loseProduceAnswers: (n: number) => void
  /** How many Produce answers were lost so far. */
  readonly lostAnswers: () => number
  /** Produce requests seen so far (answered or not). */
  readonly produceRequests: () => number
  /** Cuts every open connection now (new ones are accepted). */
  readonly cutAll: () => void
  readonly close: () => Promise<void>
}

/** Splits a byte stream into Kafka frames (int32 size, then the frame). */
const framer = (onFrame: (frame: Buffer) => void) => {
  let pending: Buffer = Buffer.alloc(0)
  return (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    while (pending.length >= 4) {
      const size = pending.readInt32BE(0)
      if (pending.length < 4 + size) return
      onFrame(pending.subarray(0, 4 + size))
      pending = pending.subarray(4 + size)
    }
  }
}

/** Reads a STRING / NULLABLE_STRING (int16 length, -1 = null) at `at`; returns the offset after it. */
const skipString = (frame: Buffer, at: number) => {
  const length = frame.readInt16BE(at)
  return at + 2 + Math.max(0, length)
}

/** Metadata (non-flexible, v1..v8 layout of the broker list) with every broker port mapped. */
const rewriteMetadata = (frame: Buffer, version: number, mapPort: (port: number) => number) => {
  // size(4) correlation id(4) [throttle(4) from v3]
  let at = 8 + (version >= 3 ? 4 : 0)
  const brokers = frame.readInt32BE(at)
  at += 4
  for (let i = 0; i < brokers; i++) {
    at += 4 // node id
    at = skipString(frame, at) // host
    frame.writeInt32BE(mapPort(frame.readInt32BE(at)), at)
    at += 4
    if (version >= 1) at = skipString(frame, at) // rack
  }
}

/** FindCoordinator (non-flexible v0..v2) with the coordinator's port mapped. */
const rewriteFindCoordinator = (frame: Buffer, version: number, mapPort: (port: number) => number) => {
  let at = 8 + (version >= 1 ? 4 : 0) // throttle from v1
  at += 2 // error code
  if (version >= 1) at = skipString(frame, at) // error message
  at += 4 // node id
  at = skipString(frame, at) // host
  frame.writeInt32BE(mapPort(frame.readInt32BE(at)), at)
}

export const kafkaProxy = async (brokerPort: number): Promise<KafkaProxy> => {
  const open = new Set<Socket>()
  let port = 0
  let toLose = 0
  let lost = 0
  let produces = 0
  const mapPort = (p: number) => (p === brokerPort ? port : p)

  const onConnection = (client: Socket) => {
    const upstream = connect(brokerPort, "127.0.0.1")
    open.add(client)
    open.add(upstream)
    // correlation id -> [api key, api version] of the requests in flight on this connection
    const inFlight = new Map<number, readonly [number, number]>()
    const losing = new Set<number>()
    const drop = () => {
      client.destroy()
      upstream.destroy()
      open.delete(client)
      open.delete(upstream)
    }
    client.on("error", drop).on("close", drop)
    upstream.on("error", drop).on("close", drop)
    client.on(
      "data",
      framer((frame) => {
        const apiKey = frame.readInt16BE(4)
        const correlationId = frame.readInt32BE(8)
        inFlight.set(correlationId, [apiKey, frame.readInt16BE(6)])
        if (apiKey === apiKeys.produce) {
          produces++
          if (toLose > 0) {
            toLose--
            losing.add(correlationId)
          }
        }
        upstream.write(frame)
      })
    )
    upstream.on(
      "data",
      framer((frame) => {
        const correlationId = frame.readInt32BE(4)
        const request = inFlight.get(correlationId)
        inFlight.delete(correlationId)
        if (losing.has(correlationId)) {
          lost++
          drop()
          return
        }
        if (request !== undefined) {
          const [apiKey, version] = request
          // ApiVersions and everything else pass through untouched
          if (apiKey === apiKeys.metadata) rewriteMetadata(frame, version, mapPort)
          if (apiKey === apiKeys.findCoordinator) rewriteFindCoordinator(frame, version, mapPort)
        }
        client.write(frame)
      })
    )
  }

  const server: Server = createServer(onConnection)
  port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : 0)
    })
  })
  const cutAll = () => {
    for (const socket of open) socket.destroy()
    open.clear()
  }
  return {
    address: `127.0.0.1:${port}`,
    port,
    loseProduceAnswers: (n) => {
      toLose = Math.max(0, Math.floor(n))
    },
    lostAnswers: () => lost,
    produceRequests: () => produces,
    cutAll,
    close: () =>
      new Promise<void>((resolve) => {
        cutAll()
        server.close(() => resolve())
      })
  }
}
