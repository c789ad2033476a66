import { createHash } from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import * as k8s from "@kubernetes/client-node"

/** The TLS settings an agent was made with: calls that agree on them can share its connections. */
const tlsIdentity = (options: https.AgentOptions): string => {
  const hash = createHash("sha256")
  for (const part of [options.ca, options.cert, options.key, options.pfx]) {
    for (const item of Array.isArray(part) ? part : [part]) {
      hash.update(item === undefined ? "-" : typeof item === "string" || Buffer.isBuffer(item) ? item : JSON.stringify(item))
      hash.update("\u0000")
    }
  }
  hash.update(String(options.passphrase ?? "-"))
  hash.update(String(options.rejectUnauthorized ?? "-"))
  hash.update(String(options.servername ?? "-"))
  return hash.digest("hex")
}

/**
 * A KubeConfig whose API calls share keep-alive connections. client-node gives every API call a new
 * agent, so every call opened a TLS connection and built a new secure context (the CA parsed again):
 * about a third of the CPU of `run` under load, and memory that stayed. Calls with the same TLS
 * settings now share one keep-alive agent; changed credentials (a rotated client certificate) get a
 * new one. Watches keep their own agents: each is one long request, and client-node tunes the
 * sockets of a watch's agent. Proxy agents are left as client-node makes them.
 */
export class PooledKubeConfig extends k8s.KubeConfig {
  #shared: { readonly identity: string; readonly agent: http.Agent } | undefined

  override async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context)
    const made = context.getAgent()
    if (made === undefined) return
    const secure = made.constructor === https.Agent
    if (!secure && made.constructor !== http.Agent) return
    const options = (made as https.Agent).options
    const identity = `${secure ? "https" : "http"}:${tlsIdentity(options)}`
    if (this.#shared?.identity !== identity) {
      const agent = secure ? new https.Agent({ ...options, keepAlive: true }) : new http.Agent({ ...options, keepAlive: true })
      this.#shared = { identity, agent }
    }
    context.setAgent(this.#shared.agent)
  }
}
