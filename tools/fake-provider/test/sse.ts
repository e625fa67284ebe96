/** Reads `data:` payloads of an SSE response one frame at a time. */
export function sseData(response: Response) {
  if (!response.body) throw new Error('response has no body')
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  return {
    /** The next frame's data, or `undefined` when the stream ended. */
    async next(): Promise<string | undefined> {
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end >= 0) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          return frame
            .split('\n')
            .filter((line) => line.startsWith('data: '))
            .map((line) => line.slice('data: '.length))
            .join('\n')
        }
        const { done, value } = await reader.read()
        if (done) return undefined
        buffer += decoder.decode(value, { stream: true })
      }
    },
    /** Every remaining frame's data until the stream ends. */
    async rest(): Promise<string[]> {
      const frames: string[] = []
      for (let frame = await this.next(); frame !== undefined; frame = await this.next()) {
        frames.push(frame)
      }
      return frames
    },
    cancel: () => reader.cancel(),
  }
}

export async function waitUntil(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
