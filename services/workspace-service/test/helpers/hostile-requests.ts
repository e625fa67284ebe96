import { randomUUID, webcrypto } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { type ErrorResponse, ErrorResponseSchema, PLATFORM_AUDIENCE } from '@platform/shared-types'
import type { LightMyRequestResponse } from 'fastify'
import { expect } from 'vitest'
import { z } from 'zod'
import { TEST_PUBLIC_URL, type TestStack } from './stack.js'

// ---------------------------------------------------------------------------------------------
// Error bodies

const StrictErrorSchema = z.strictObject(ErrorResponseSchema.shape)

/** What a body must never carry: driver or library text, stack frames, source paths. */
export const INTERNALS =
  /Mongo|E11000|BSON|Cast to|ioredis|ReplyError|MaxRetriesPerRequest|ECONNREFUSED|ECONNRESET|node_modules|\.ts:\d+|\n\s+at |\bat \S+ \(/

/** Asserts the API.md §1 error shape with exactly this status and code, and nothing internal. */
export function expectErrorBody(
  response: LightMyRequestResponse,
  status: number,
  code: string,
  context = '',
): ErrorResponse {
  const label = `${context} ${response.body}`.trim()
  expect(response.statusCode, label).toBe(status)
  expect(response.headers['content-type'], label).toMatch(/^application\/json/)
  const body = StrictErrorSchema.parse(response.json())
  expect(body.statusCode, label).toBe(status)
  expect(body.code, label).toBe(code)
  expect(body.error, label).toBe(STATUS_CODES[status])
  for (const text of [body.message, ...(body.details ?? []).map((detail) => detail.message)])
    expect(text, label).not.toMatch(INTERNALS)
  expect(response.body, label).not.toMatch(/"stack"/)
  return body
}

// ---------------------------------------------------------------------------------------------
// Tokens crafted by hand, so any header and any claim can be tried

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSeconds = () => Math.floor(Date.now() / 1000)

/** A compact JWS with exactly the header and payload given, signed with an Ed25519 key. */
export async function signEd25519(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: webcrypto.CryptoKey,
): Promise<string> {
  const input = `${b64url(header)}.${b64url(payload)}`
  const signature = await webcrypto.subtle.sign('Ed25519', key, Buffer.from(input))
  return `${input}.${Buffer.from(signature).toString('base64url')}`
}

/** A JWS "signed" with HMAC-SHA256 under `secret`: the classic key-confusion attempt. */
export async function signHs256(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  secret: Uint8Array,
): Promise<string> {
  const input = `${b64url(header)}.${b64url(payload)}`
  const key = await webcrypto.subtle.importKey(
    'raw',
    secret,
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  const signature = await webcrypto.subtle.sign('HMAC', key, Buffer.from(input))
  return `${input}.${Buffer.from(signature).toString('base64url')}`
}

export const unsignedToken = (header: Record<string, unknown>, payload: Record<string, unknown>) =>
  `${b64url(header)}.${b64url(payload)}.`

/** A real token with its payload edited and its signature kept. */
export function tamperPayload(token: string, edit: (claims: Record<string, unknown>) => void) {
  const [header, payload, signature] = token.split('.')
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >
  edit(claims)
  return `${header}.${b64url(claims)}.${signature}`
}

/** An Ed25519 key pair no one else knows: what an attacker can sign with. */
export const attackerKeyPair = () =>
  webcrypto.subtle.generateKey('Ed25519', false, [
    'sign',
    'verify',
  ]) as Promise<webcrypto.CryptoKeyPair>

/** Claims the auth-service would put in an access token for `userId`, scoped to nothing. */
export function platformClaims(
  userId: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const iat = nowSeconds()
  return {
    iss: TEST_PUBLIC_URL,
    aud: PLATFORM_AUDIENCE,
    sub: userId,
    sid: randomUUID(),
    jti: randomUUID(),
    iat,
    exp: iat + 600,
    ...overrides,
  }
}

/**
 * Signs with the auth-service's REAL current key. No attacker has it; the tests use it to show
 * that the checks after the signature (expiry, issuer, audience) hold on their own.
 */
export async function signWithRealKey(
  stack: TestStack,
  claims: Record<string, unknown>,
): Promise<string> {
  const key = await stack.auth.identity.keys.current()
  return signEd25519({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' }, claims, key.privateKey)
}

// ---------------------------------------------------------------------------------------------
// A TCP hop that can be cut: a dependency going away under a running service

export interface TcpProxy {
  /** The hop's URL: the target's, with the hop's host and port. */
  url: string
  /**
   * Stops listening and drops every open connection: the port refuses connections, as when the
   * dependency is down. (A hop that accepted and then dropped connections would not do: ioredis
   * keeps such commands queued with no deadline.)
   */
  cut(): Promise<void>
  /** Listens on the same port again. */
  restore(): Promise<void>
  close(): Promise<void>
}

/** A TCP proxy in front of `target` (a URL with host and port). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const upstream = new URL(target)
  const sockets = new Set<Socket>()
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }
  const server: Server = createServer((client) => {
    track(client)
    const toTarget = tcpConnect(Number(upstream.port), upstream.hostname)
    track(toTarget)
    client.on('close', () => toTarget.destroy())
    toTarget.on('close', () => client.destroy())
    client.pipe(toTarget).pipe(client)
  })
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) {
        resolve()
        return
      }
      server.close(() => resolve())
      for (const socket of sockets) socket.destroy()
    })
  await listen(0)
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy not on TCP')
  const { port } = address
  return {
    url: `${upstream.protocol}//127.0.0.1:${port}${upstream.pathname}`,
    cut: stop,
    restore: () => listen(port),
    close: stop,
  }
}
