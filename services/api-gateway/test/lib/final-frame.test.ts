import { describe, expect, it } from 'vitest'
import { finalFrameDetector } from '../../src/lib/stream-watch.js'

const FINAL_FRAME =
  'event: message\ndata: {"final":true,"conversationId":"c1","responseMessage":{}}\n\n'
const BEFORE = 'event: message\ndata: {"event":"on_message_delta","data":{"text":"final"}}\n\n'

function seenFinal(chunks: string[]) {
  let calls = 0
  const observe = finalFrameDetector(() => {
    calls += 1
  })
  for (const chunk of chunks) observe(Buffer.from(chunk, 'utf8'))
  return calls
}

describe('finalFrameDetector', () => {
  it('sees the final frame wherever the chunks split it, and only once', () => {
    const body = BEFORE + FINAL_FRAME + FINAL_FRAME
    for (let first = 0; first <= body.length; first++) {
      for (const second of [first, first + 1, first + 3, first + 12]) {
        const chunks = [body.slice(0, first), body.slice(first, second), body.slice(second)]
        expect(seenFinal(chunks), `split at ${first}/${second}`).toBe(1)
      }
    }
  })

  it('sees the mark spread over one-byte chunks', () => {
    expect(seenFinal([...(BEFORE + FINAL_FRAME)])).toBe(1)
  })

  it('does not fire without the final frame, even for near misses across chunks', () => {
    expect(seenFinal([BEFORE, 'data: {"final":false}\n\n', '"final":tru', 'th'])).toBe(0)
    expect(seenFinal(['"final"', ':', 'false'])).toBe(0)
    expect(seenFinal([])).toBe(0)
  })
})
