import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { UpstreamAnswerTooLarge } from '../errors.js'

/** The largest LibreChat answer the gateway reads whole to filter (a listing, the startup config). */
export const MAX_FILTERED_BODY_BYTES = 8 * 1024 * 1024

/**
 * Request headers for a call whose answer the gateway will read and filter: an uncompressed
 * body, and never a 304 (the client's cached copy may be another workspace's filtering of it).
 */
export function filteredRequestHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const rewritten = { ...headers, 'accept-encoding': 'identity' }
  delete rewritten['if-none-match']
  delete rewritten['if-modified-since']
  return rewritten
}

/** What filtering needs of a reply; reply-from's callbacks type theirs for any server kind. */
export interface FilteredReply {
  getHeader(name: string): unknown
  removeHeader(name: string): unknown
  header(name: string, value: string): unknown
  send(payload?: unknown): unknown
  log: FastifyBaseLogger
}

async function readWhole(stream: Readable, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)
    size += buffer.length
    if (size > limit) {
      stream.destroy()
      return undefined
    }
    chunks.push(buffer)
  }
  return Buffer.concat(chunks)
}

/**
 * Sends LibreChat's JSON answer through `filter`. A refusal, a non-JSON body or one too large to
 * read passes through as LibreChat sent it (the filter is for listings, not errors). The
 * filtered answer differs per workspace, so it is never cached or validated by an entity tag.
 */
export async function sendFiltered(
  reply: FilteredReply,
  upstream: { statusCode: number; stream: Readable },
  filter: (body: unknown) => unknown,
): Promise<void> {
  const isJson = String(reply.getHeader('content-type') ?? '').includes('json')
  if (upstream.statusCode !== 200 || !isJson) {
    reply.send(upstream.stream)
    return
  }
  const raw = await readWhole(upstream.stream, MAX_FILTERED_BODY_BYTES)
  reply.removeHeader('content-length')
  reply.removeHeader('content-encoding')
  reply.removeHeader('etag')
  reply.removeHeader('last-modified')
  reply.header('cache-control', 'private, no-store')
  if (raw === undefined) {
    reply.log.warn('a LibreChat answer was too large to filter; refused')
    reply.send(new UpstreamAnswerTooLarge('chat service'))
    return
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(raw.toString('utf8'))
  } catch {
    reply.send(raw)
    return
  }
  reply.send(JSON.stringify(filter(parsed)))
}
