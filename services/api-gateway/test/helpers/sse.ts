/** One server-sent event as a client sees it. */
export interface SseFrame {
  event: string
  data: string
}

/**
 * Reads an SSE body frame by frame as the bytes arrive (no buffering of the whole body), so a
 * test can act between frames: stop reading, check what the server did meanwhile, go on.
 */
export async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<SseFrame> {
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true })
    for (let end = buffered.indexOf('\n\n'); end !== -1; end = buffered.indexOf('\n\n')) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      let event = 'message'
      const data: string[] = []
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
      }
      if (data.length > 0) yield { event, data: data.join('\n') }
    }
  }
}

/** The JSON of a `message` frame's data. */
export const frameJson = (frame: SseFrame) => JSON.parse(frame.data) as Record<string, unknown>
