import { describe, expect, it } from "@effect/vitest"
import { Api } from "@executor/kube"

const apiException = (code: number, body: unknown) =>
  Object.assign(new Error(`HTTP-Code: ${code}`), { code, body: typeof body === "string" ? body : JSON.stringify(body), headers: {} })

describe("API error classification", () => {
  it("404 is NotFound, other 4xx are permanent with the API server's message", () => {
    const notFound = Api.classify("deleteJob", "j", apiException(404, { kind: "Status", reason: "NotFound", message: "jobs.batch \"j\" not found" }))
    expect(notFound).toMatchObject({ status: 404, reason: "NotFound", transient: false, message: "jobs.batch \"j\" not found" })
    expect(Api.toPortError("Job", "j")(notFound)._tag).toBe("NotFound")
    const invalid = Api.classify("createJob", "j", apiException(422, { reason: "Invalid", message: "Job.batch \"j\" is invalid: x" }))
    expect(Api.toClusterError(invalid)).toMatchObject({ _tag: "ClusterError", transient: false, message: "Job.batch \"j\" is invalid: x" })
    expect(Api.classify("x", "y", apiException(403, { message: "forbidden" })).transient).toBe(false)
  })

  it("5xx and 429 are transient", () => {
    expect(Api.classify("x", "y", apiException(500, { message: "etcdserver: request timed out" })).transient).toBe(true)
    expect(Api.classify("x", "y", apiException(503, "not json")).message).toBe("not json")
    expect(Api.classify("x", "y", apiException(429, { message: "too many requests" })).transient).toBe(true)
  })

  it("connection failures, aborts and timeouts are transient; unknown errors are not", () => {
    const refused = Object.assign(new Error("request to https://127.0.0.1:1/ failed, reason: connect ECONNREFUSED"), {
      name: "FetchError",
      type: "system",
      code: "ECONNREFUSED",
      errno: "ECONNREFUSED"
    })
    expect(Api.classify("x", "y", refused)).toMatchObject({ status: undefined, transient: true })
    expect(Api.classify("x", "y", Object.assign(new Error("aborted"), { name: "AbortError" })).transient).toBe(true)
    expect(Api.classify("x", "y", new Error("self-signed certificate")).transient).toBe(false)
    // the watch rejects with Error(statusText) + statusCode
    expect(Api.classify("x", "y", Object.assign(new Error("Gone"), { statusCode: 410 }))).toMatchObject({ status: 410, transient: false })
  })
})
