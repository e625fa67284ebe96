import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ServiceApp } from '../src/index.js'
import { testApp } from './helpers.js'

async function listening(app: ServiceApp) {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not on TCP')
  return address.port
}

/** A raw client connection, destroyed when the test ends; `received` collects what it reads. */
async function rawConnection(port: number) {
  const socket = connect(port, '127.0.0.1')
  onTestFinished(() => {
    socket.destroy()
  })
  await once(socket, 'connect')
  // The server may drop a connection with a reset (it had unread bytes): closed all the same.
  socket.on('error', () => {})
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => received.push(chunk))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, closed, text: () => Buffer.concat(received).toString('utf8') }
}

const sendsGet = (socket: Socket, path: string) =>
  socket.write(`GET ${path} HTTP/1.1\r\nhost: localhost\r\n\r\n`)

describe('closing a service app', () => {
  it('does not wait for a connection that has sent no request (a preconnect)', async () => {
    const app = await testApp()
    const port = await listening(app)
    const preconnect = await rawConnection(port)
    // Node's own idle check passes over it; without the plugin close waits a minute for it.
    await app.close()
    await preconnect.closed
    expect(preconnect.text()).toBe('')
  })

  it('leaves an upgraded connection to its own handler, which closes it in its own words', async () => {
    const app = await testApp()
    const upgraded = new Set<Socket>()
    app.server.on('upgrade', (_request, socket: Socket) => {
      upgraded.add(socket)
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nupgrade: test\r\nconnection: upgrade\r\n\r\n',
      )
    })
    app.addHook('preClose', async () => {
      for (const socket of upgraded) socket.end('goodbye')
    })
    const port = await listening(app)
    const client = await rawConnection(port)
    client.socket.write(
      'GET /socket HTTP/1.1\r\nhost: localhost\r\nupgrade: test\r\nconnection: upgrade\r\n\r\n',
    )
    await new Promise<void>((resolve) => client.socket.once('data', () => resolve()))
    await app.close()
    await client.closed
    expect(client.text()).toMatch(/^HTTP\/1\.1 101 /)
    expect(client.text().endsWith('goodbye')).toBe(true)
  })

  it('lets a request in flight finish, then ends its kept-alive connection', async () => {
    const app = await testApp()
    let release = () => {}
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    let arrived = () => {}
    const hasArrived = new Promise<void>((resolve) => {
      arrived = resolve
    })
    app.get('/slow', async () => {
      arrived()
      await released
      return { done: true }
    })
    const port = await listening(app)
    const client = await rawConnection(port)
    const idle = await rawConnection(port)
    sendsGet(idle.socket, '/healthz')
    await new Promise<void>((resolve) => idle.socket.once('data', () => resolve()))
    sendsGet(client.socket, '/slow')
    await hasArrived

    const closing = app.close()
    // The kept-alive connection with nothing in flight goes at once; the busy one stays.
    await idle.closed
    expect(client.socket.destroyed).toBe(false)
    release()
    await closing
    await client.closed
    expect(client.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(client.text()).toContain('{"done":true}')
  })
})
