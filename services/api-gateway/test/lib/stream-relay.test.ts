import { once } from 'node:events'
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { findFreePort } from '@platform/local-infra'
import Fastify from 'fastify'
import { Pool } from 'undici'
import { describe, expect, it, onTestFinished } from 'vitest'
import { relayStream } from '../../src/lib/stream-relay.js'
import { waitFor } from '../helpers/stream-client.js'

/** An SSE upstream that answers its head and first frame at once, the rest a little later. */
async function startSseUpstream() {
  const seen = { asked: 0, cutShort: 0 }
  const server: Server = createServer((request, response) => {
    seen.asked += 1
    response.on('close', () => {
      if (!response.writableFinished) seen.cutShort += 1
    })
    response.writeHead(200, { 'content-type': 'text/event-stream' })
    response.write('data: one\n\n')
    setTimeout(() => {
      if (!response.destroyed) response.end('data: two\n\n')
    }, 50)
    request.resume()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

/** A gateway route relaying `upstreamUrl` under the admission the test decides. */
async function startRelay(upstreamUrl: string) {
  const decisions: { resolve: () => void; reject: (error: Error) => void }[] = []
  const pool = new Pool(upstreamUrl)
  const app = Fastify()
  app.get('/stream', async (_request, reply) => {
    const admission = () =>
      new Promise<void>((resolve, reject) => decisions.push({ resolve, reject }))
    relayStream({
      dispatcher: pool,
      path: '/stream',
      headers: {},
      reply,
      failure: () =>
        Object.assign(new Error('the chat service is not answering'), { statusCode: 503 }),
      admission,
    })
    return reply
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  onTestFinished(async () => {
    await app.close()
    await pool.close()
  })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, decisions }
}

/** A GET whose response (head and whole body) the test can wait for, or see has not come. */
function get(url: string) {
  let headArrived = false
  const answer = new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
    httpRequest(`${url}/stream`, (response: IncomingMessage) => {
      headArrived = true
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        body += chunk
      })
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          type: String(response.headers['content-type'] ?? ''),
          body,
        }),
      )
      response.on('error', reject)
    })
      .on('error', reject)
      .end()
  })
  return { answer, headArrived: () => headArrived }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 100))

describe('relayStream with an admission decided alongside', () => {
  it('asks the upstream at once but relays nothing until admitted, then all of it in order', async () => {
    const upstream = await startSseUpstream()
    const relay = await startRelay(upstream.url)
    const client = get(relay.url)
    await waitFor('the upstream asked', () => upstream.seen.asked === 1)
    await settle()
    expect(client.headArrived()).toBe(false)

    relay.decisions[0]?.resolve()
    expect(await client.answer).toEqual({
      status: 200,
      type: 'text/event-stream',
      body: 'data: one\n\ndata: two\n\n',
    })
    expect(upstream.seen.cutShort).toBe(0)
  })

  it('answers the refusal, never the upstream’s answer, and ends the upstream request', async () => {
    const upstream = await startSseUpstream()
    const relay = await startRelay(upstream.url)
    const client = get(relay.url)
    await waitFor('the upstream asked', () => upstream.seen.asked === 1)
    relay.decisions[0]?.reject(
      Object.assign(new Error('This workspace allows 1 chat stream at once'), { statusCode: 429 }),
    )
    const answer = await client.answer
    expect(answer.status).toBe(429)
    expect(answer.body).toContain('1 chat stream at once')
    expect(answer.body).not.toContain('data:')
    await waitFor('the upstream request ended', () => upstream.seen.cutShort === 1)
  })

  it('ends the upstream request when the client leaves while admission is pending', async () => {
    const upstream = await startSseUpstream()
    const relay = await startRelay(upstream.url)
    const leaving = httpRequest(`${relay.url}/stream`)
    leaving.on('error', () => undefined)
    leaving.end()
    await waitFor('the upstream asked', () => upstream.seen.asked === 1)
    leaving.destroy()
    await waitFor('the upstream request ended', () => upstream.seen.cutShort === 1)
    // Admitted after the client left: nothing is relayed, nothing breaks.
    relay.decisions[0]?.resolve()
    await settle()
    expect(upstream.seen.cutShort).toBe(1)
  })

  it('holds an upstream failure until admission is decided, and a refusal wins over it', async () => {
    const down = `http://127.0.0.1:${await findFreePort()}`
    const admitted = await startRelay(down)
    const first = get(admitted.url)
    await waitFor('the route reached', () => admitted.decisions.length === 1)
    await settle()
    expect(first.headArrived()).toBe(false)
    admitted.decisions[0]?.resolve()
    expect((await first.answer).status).toBe(503)

    const refused = await startRelay(down)
    const second = get(refused.url)
    await waitFor('the route reached', () => refused.decisions.length === 1)
    await settle()
    refused.decisions[0]?.reject(Object.assign(new Error('no slot'), { statusCode: 429 }))
    expect((await second.answer).status).toBe(429)
  })
})

describe('relayStream for a client already gone', () => {
  it('asks nothing of the upstream when the client left during the checks before it', async () => {
    const upstream = await startSseUpstream()
    const pool = new Pool(upstream.url)
    const app = Fastify()
    let inHandler = () => {}
    const handlerReached = new Promise<void>((resolve) => {
      inHandler = resolve
    })
    app.get('/stream', async (request, reply) => {
      inHandler()
      // The checks before the relay (bridge, policy) outlast the client.
      await once(request.raw.socket, 'close')
      relayStream({
        dispatcher: pool,
        path: '/stream',
        headers: {},
        reply,
        failure: (error) => error,
      })
      return reply
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    onTestFinished(async () => {
      await app.close()
      await pool.close()
    })
    const client = httpRequest(
      `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/stream`,
    )
    client.on('error', () => {})
    client.end()
    await handlerReached
    client.destroy()
    await settle()
    expect(upstream.seen.asked).toBe(0)
  })
})
