import { Option } from "effect"

/**
 * Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `129e6`): the grammar of apimachinery's
 * `ParseQuantity`, which is also what the CRD's CEL `isQuantity` accepts, read as a number. A
 * number needs at least one digit (Kubernetes also reads a bare `.` or `+` as zero).
 */
const binary: Readonly<Record<string, number>> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 }
const decimal: Readonly<Record<string, number>> = { n: -9, u: -6, m: -3, "": 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 }
const grammar = /^([+-]?)(\d*)(?:\.(\d*))?([eEinumkKMGTP]*)([+-]?\d*)$/

/** The longest quantity the CRD and the executor take (CEL's cost estimate needs a bound). */
export const maxLength = 64

/** The value of `text`, or none when it is not a quantity. */
export const parse = (text: string): Option.Option<number> => {
  const match = grammar.exec(text)
  if (match === null) return Option.none()
  const [, sign = "", whole = "", fraction = "", letters = "", exponentDigits = ""] = match
  if (whole === "" && fraction === "") return Option.none()
  const suffix = letters + exponentDigits
  const digits = `${whole}${fraction}` || "0"
  // one correctly rounded conversion, so equal quantities in different spellings compare equal
  const scaled = (power: number) => Number(`${sign}${digits}e${power - fraction.length}`)
  if (suffix in binary) return Option.some(scaled(0) * 2 ** (binary[suffix] ?? 0))
  if (suffix in decimal) return Option.some(scaled(decimal[suffix] ?? 0))
  if (/^[eE][+-]?\d+$/.test(suffix)) return Option.some(scaled(Number(suffix.slice(1))))
  return Option.none()
}

/** Why `text` cannot be a container resource quantity, if it cannot. */
export const problem = (text: string): Option.Option<string> => {
  if (text.length > maxLength) return Option.some(`must be at most ${maxLength} characters`)
  return Option.match(parse(text), {
    onNone: () => Option.some(`must be a resource quantity such as 500m, 2, 128Mi or 1Gi, got "${text}"`),
    onSome: (value) => (value < 0 ? Option.some(`must not be negative, got "${text}"`) : Option.none())
  })
}

/** `a` compared with `b` (-1, 0, 1); none when either is not a quantity. */
export const compare = (a: string, b: string): Option.Option<number> =>
  Option.zipWith(parse(a), parse(b), (x, y) => (x < y ? -1 : x > y ? 1 : 0))
