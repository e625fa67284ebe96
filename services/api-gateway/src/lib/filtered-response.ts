import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { UpstreamAnswerUnreadable, UpstreamUnavailable } from '../errors.js'
import { parseJson } from './json.js'

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

/** The whole body, or `undefined` (and the stream destroyed) once it passes `limit` bytes. */
export async function readWhole(stream: Readable, limit: number): Promise<Buffer | undefined> {
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
 * Sends LibreChat's JSON answer through `filter`. A refusal passes through as LibreChat sent it
 * (the filter is for listings, not errors); a 200 that is not JSON or too large to read is
 * refused, never passed on unfiltered. Filtered answers differ per workspace, so they are never
 * cached or validated by an entity tag.
 */
/** An answer that differs per workspace: never stored, never revalidated by its validators. */
export function markPerWorkspace(reply: FilteredReply): void {
  reply.removeHeader('etag')
  reply.removeHeader('last-modified')
  reply.header('cache-control', 'private, no-store')
}

export async function sendFiltered(
  reply: FilteredReply,
  upstream: { statusCode: number; stream: Readable },
  filter: (body: unknown) => unknown,
): Promise<void> {
  markPerWorkspace(reply)
  if (upstream.statusCode !== 200) {
    reply.send(upstream.stream)
    return
  }
  reply.removeHeader('content-length')
  reply.removeHeader('content-encoding')
  const isJson = String(reply.getHeader('content-type') ?? '').includes('json')
  let raw: Buffer | undefined
  try {
    raw = isJson ? await readWhole(upstream.stream, MAX_FILTERED_BODY_BYTES) : undefined
  } catch (error) {
    reply.log.warn({ err: error }, 'LibreChat broke off an answer the gateway filters')
    reply.send(new UpstreamUnavailable('chat service'))
    return
  }
  const parsed = raw === undefined ? undefined : parseJson(raw.toString('utf8'))
  if (parsed === undefined) {
    // Unfiltered it could show what the workspace may not use: refused instead.
    upstream.stream.destroy()
    reply.log.warn('a LibreChat answer to filter was not JSON, or too large; refused')
    reply.send(new UpstreamAnswerUnreadable('chat service'))
    return
  }
  reply.send(JSON.stringify(filter(parsed)))
}
