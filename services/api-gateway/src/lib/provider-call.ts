import type { IncomingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'

/** Where a provider's answer body goes, chunk by chunk, as the bytes arrive. */
export interface AnswerSink {
  data(chunk: Buffer): void
  end(): void
  error(error: Error): void
}

/** A provider's answer once its head is in; the body flows to the sink `consume` is given. */
export interface ProviderAnswer {
  statusCode: number
  headers: IncomingHttpHeaders
  /** Starts delivering the body; chunks that arrived with the head are delivered first. */
  consume(sink: AnswerSink): void
  /** Backpressure: stop reading the provider's connection, and read on. */
  pause(): void
  resume(): void
}

export interface ProviderRequest {
  origin: string
  path: string
  headers: Record<string, string>
  body: string
  signal: AbortSignal
}

/**
 * One call to a model provider through undici's dispatcher, body bytes handed over the moment the
 * parser has them. A stream-based body would drop what it buffered when the provider's connection
 * breaks: here every chunk the provider sent before a cut reaches the sink before the error, so
 * it is relayed to LibreChat and counted, as the provider will bill it.
 */
export function requestProvider(
  dispatcher: Dispatcher,
  request: ProviderRequest,
): Promise<ProviderAnswer> {
  return new Promise((resolveHead, rejectHead) => {
    let controller: Dispatcher.DispatchController | undefined
    let sink: AnswerSink | undefined
    let headIn = false
    const early: Buffer[] = []
    let outcome: { ended: true } | { error: Error } | undefined

    const abort = () => controller?.abort(request.signal.reason ?? new Error('aborted'))
    request.signal.addEventListener('abort', abort, { once: true })
    const finish = () => request.signal.removeEventListener('abort', abort)

    dispatcher.dispatch(
      {
        origin: request.origin,
        path: request.path,
        method: 'POST',
        headers: request.headers,
        body: request.body,
      },
      {
        onRequestStart(started) {
          controller = started
          if (request.signal.aborted) abort()
        },
        onResponseStart(_controller, statusCode, headers) {
          headIn = true
          resolveHead({
            statusCode,
            headers: headers as IncomingHttpHeaders,
            consume(next) {
              sink = next
              for (const chunk of early.splice(0)) next.data(chunk)
              if (outcome === undefined) return
              if ('error' in outcome) next.error(outcome.error)
              else next.end()
            },
            pause: () => controller?.pause(),
            resume: () => controller?.resume(),
          })
        },
        onResponseData(_controller, chunk) {
          if (sink === undefined) early.push(chunk)
          else sink.data(chunk)
        },
        onResponseEnd() {
          finish()
          if (sink === undefined) outcome = { ended: true }
          else sink.end()
        },
        onResponseError(_controller, error) {
          finish()
          if (!headIn) rejectHead(error)
          else if (sink === undefined) outcome = { error }
          else sink.error(error)
        },
      },
    )
  })
}
