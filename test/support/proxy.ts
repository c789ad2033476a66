// A TCP proxy on 127.0.0.1 in front of the API server (TLS passes through; the server certificate
// is for 127.0.0.1): `cut` makes the API server unreachable for whoever talks through the proxy
// (open connections dropped, new ones refused), `resume` brings it back on the same port.
import { readFileSync, writeFileSync } from "node:fs"
import { connect, createServer, type Server, type Socket } from "node:net"

export interface TcpProxy {
  readonly port: number
  readonly cut: () => Promise<void>
  readonly resume: () => Promise<void>
  readonly close: () => Promise<void>
}

export const tcpProxy = async (targetPort: number, options: { readonly startCut?: boolean; readonly port?: number } = {}): Promise<TcpProxy> => {
  const sockets = new Set<Socket>()
  const onConnection = (client: Socket) => {
    const upstream = connect(targetPort, "127.0.0.1")
    sockets.add(client)
    sockets.add(upstream)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on("error", drop).on("close", drop)
    upstream.on("error", drop).on("close", drop)
    client.pipe(upstream).pipe(client)
  }
  let server: Server | undefined
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer(onConnection)
      s.once("error", reject)
      s.listen(port, "127.0.0.1", () => {
        server = s
        const address = s.address()
        resolve(typeof address === "object" && address !== null ? address.port : port)
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      sockets.clear()
      const s = server
      server = undefined
      if (s === undefined || !s.listening) return resolve()
      s.close(() => resolve())
    })
  const port = await listen(options.port ?? 0)
  if (options.startCut === true) await stop()
  return {
    port,
    cut: stop,
    resume: async () => {
      if (server === undefined) await listen(port)
    },
    close: stop
  }
}

/** A copy of `kubeconfig` whose cluster is reached through `127.0.0.1:<port>`. */
export const redirectKubeconfig = (kubeconfig: string, port: number, out: string): string => {
  const text = readFileSync(kubeconfig, "utf8")
  const redirected = text.replace(/server: "?https:\/\/127\.0\.0\.1:\d+"?/, `server: "https://127.0.0.1:${port}"`)
  if (redirected === text) throw new Error(`no 127.0.0.1 server in ${kubeconfig}`)
  writeFileSync(out, redirected, { mode: 0o600 })
  return out
}
