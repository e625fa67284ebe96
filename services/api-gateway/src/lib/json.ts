/** `text` parsed as JSON, or `undefined` when it is not JSON: for answers the gateway checks. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
