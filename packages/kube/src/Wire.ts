// client-node 1.4 does not re-export its ObjectSerializer from the package root; it has no
// `exports` map, so the deep import is stable for the pinned version.
import { ObjectSerializer } from "@kubernetes/client-node/dist/serializer.js"

/** A model-class object (Dates, renamed fields such as `x_kubernetes_validations`) to wire JSON. */
export const toWire = (object: unknown, type: string): unknown => ObjectSerializer.serialize(object, type)

/** Wire JSON to a model-class object, so the generated API serialises every field under its wire name. */
export const fromWire = <A>(json: unknown, type: string): A => ObjectSerializer.deserialize(json, type) as A
