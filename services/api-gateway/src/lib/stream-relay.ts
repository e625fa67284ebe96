import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyReply } from 'fastify'
import type { Dispatcher } from 'undici'

/** Headers of one connection, never relayed (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
])

const withoutHopByHop = (headers: IncomingHttpHeaders): IncomingHttpHeaders => {
  const kept: IncomingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined && !HOP_BY_HOP.has(name)) kept[name] = value
  return kept
}

export interface StreamRelayOptions {
  dispatcher: Dispatcher
  path: string
  /** The request headers LibreChat gets (the caller has rewritten them). */
  headers: IncomingHttpHeaders
  reply: FastifyReply
  /**
   * Called once LibreChat's head is relayed; may return an observer for each body chunk (it
   * sees the bytes before the client does).
   */
  onHead?: (
    statusCode: number,
    headers: IncomingHttpHeaders,
  ) => ((chunk: Buffer) => void) | undefined
  /** The error to answer when LibreChat cannot be reached or fails before its head. */
  failure: (error: Error) => Error
  /**
   * What must hold before anything of LibreChat's answer reaches the client (a stream slot),
   * started once LibreChat's request has been handed to the pool, and decided while LibreChat
   * answers.
   * Refused: LibreChat's request is aborted and the refusal answered instead.
   */
  admission?: () => Promise<unknown>
}

/**
 * Relays one long-lived LibreChat answer (a chat stream) to the client with nothing in between:
 * undici's handler writes each chunk to the client socket as it arrives and pauses LibreChat's
 * connection while the client's socket is full (backpressure). The head goes out as LibreChat
 * sends it: with the chunks that came in the same read, in one write, or alone at the end of
 * that read. A client that leaves aborts the upstream request, releasing its connection.
 * An open stream holds its two sockets and a few closures, no stream objects in between (a third
 * less memory per idle stream than reply-from with a Transform, measured by bench:gateway).
 */
export function relayStream(options: StreamRelayOptions): void {
  const { reply } = options
  const client = reply.raw
  // A client that left during the checks before this has had its 'close' already: asking
  // LibreChat now would leave a stream nobody reads, its connection paused for good.
  if (client.destroyed || reply.request.raw.socket.destroyed) return
  let state: 'waiting' | 'answered' | 'relaying' = 'waiting'
  let upstream: Dispatcher.DispatchController | undefined
  let onChunk: ((chunk: Buffer) => void) | undefined
  let admission: 'pending' | 'admitted' | 'refused' =
    options.admission === undefined ? 'admitted' : 'pending'
  /** LibreChat's head and first chunks, held while admission is pending. */
  let heldHead: { statusCode: number; headers: IncomingHttpHeaders } | undefined
  const heldChunks: Buffer[] = []
  let upstreamEnded = false
  let relayedChunk = false
  /** An upstream failure met while admission was pending: answered once it is decided. */
  let heldFailure: Error | undefined

  const answer = (error: Error) => {
    if (state !== 'waiting') return
    state = 'answered'
    if (!client.destroyed) reply.send(error)
  }
  client.once('close', () => {
    if (state === 'waiting') state = 'answered'
    upstream?.abort(new Error('the client closed the connection'))
  })

  const relayHead = (
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ) => {
    state = 'relaying'
    reply.hijack()
    for (const [name, value] of Object.entries(withoutHopByHop(headers)))
      if (value !== undefined) client.setHeader(name, value)
    client.writeHead(statusCode)
    // A chunk written before this tick ends carries the head with it: one write instead of two,
    // each of which wakes the client.
    process.nextTick(() => {
      if (!relayedChunk && !client.destroyed && !client.writableEnded) client.flushHeaders()
    })
    onChunk = options.onHead?.(statusCode, headers)
    client.on('drain', () => controller.resume())
  }
  /** Relays one chunk; false when the client's socket is full and LibreChat is paused. */
  const relayChunk = (controller: Dispatcher.DispatchController, chunk: Buffer) => {
    onChunk?.(chunk)
    relayedChunk = true
    if (client.write(chunk)) return true
    controller.pause()
    return false
  }

  const admit = () =>
    options
      .admission?.()
      .then(
        () => {
          admission = 'admitted'
          if (heldFailure !== undefined) answer(heldFailure)
          if (state !== 'waiting' || upstream === undefined || heldHead === undefined) return
          relayHead(upstream, heldHead.statusCode, heldHead.headers)
          let flowing = true
          for (const chunk of heldChunks.splice(0)) flowing = relayChunk(upstream, chunk)
          if (upstreamEnded) client.end()
          // A full client socket resumes LibreChat itself, on 'drain'.
          else if (flowing) upstream.resume()
        },
        (error: unknown) => {
          admission = 'refused'
          answer(error instanceof Error ? error : new Error(String(error)))
          upstream?.abort(new Error('refused before LibreChat was relayed'))
        },
      )
      // Relaying what was held runs here, outside undici's callbacks: a failure in it ends both
      // sides as a failure in those callbacks would.
      .catch((error: unknown) => {
        const failure = error instanceof Error ? error : new Error(String(error))
        upstream?.abort(failure)
        if (state === 'relaying') client.destroy(failure)
        else answer(failure)
      })

  options.dispatcher.dispatch(
    { method: 'GET', path: options.path, headers: withoutHopByHop(options.headers) },
    {
      onRequestStart(controller) {
        upstream = controller
        if (state === 'answered' || admission === 'refused')
          controller.abort(new Error('answered without LibreChat'))
      },
      onResponseStart(controller, statusCode, headers) {
        if (state !== 'waiting') return
        if (admission === 'pending') {
          heldHead = { statusCode, headers }
          controller.pause()
          return
        }
        relayHead(controller, statusCode, headers)
      },
      onResponseData(controller, chunk) {
        if (state === 'relaying') relayChunk(controller, chunk)
        else if (admission === 'pending') heldChunks.push(chunk)
      },
      onResponseEnd() {
        upstreamEnded = true
        if (state === 'relaying') client.end()
      },
      onResponseError(_controller, error) {
        if (state === 'waiting') {
          if (admission === 'pending') heldFailure = options.failure(error)
          else answer(options.failure(error))
        } else if (state === 'relaying') client.destroy(error)
      },
    },
  )
  // After the request is handed to the pool (written at once on an idle connection): LibreChat's
  // work and the admission's run side by side.
  admit()
}
