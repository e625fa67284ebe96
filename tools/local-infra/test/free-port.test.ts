import { readFileSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { findFreePort } from '../src/index.js'

const ephemeralLow = Number(
  readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
)

describe('findFreePort', () => {
  it('answers a port below the ephemeral range that a server can then bind', async () => {
    const port = await findFreePort()
    expect(port).toBeGreaterThanOrEqual(20_000)
    expect(port).toBeLessThan(ephemeralLow)
    const server = createServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', resolve)
    })
    await new Promise((resolve) => server.close(resolve))
  })

  it('never answers a port an outgoing connection holds, nor one a server listens on', async () => {
    const listener = createServer((socket) => socket.on('error', () => undefined))
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
    const address = listener.address()
    if (address === null || typeof address === 'string') throw new Error('not TCP')
    const clients = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const socket = new Socket()
        await new Promise<void>((resolve) => socket.connect(address.port, '127.0.0.1', resolve))
        return socket
      }),
    )
    const taken = new Set([address.port, ...clients.map((socket) => socket.localPort)])
    const picked = await Promise.all(Array.from({ length: 200 }, () => findFreePort()))
    for (const port of picked) expect(taken.has(port)).toBe(false)
    for (const socket of clients) socket.destroy()
    await new Promise((resolve) => listener.close(resolve))
  })
})
