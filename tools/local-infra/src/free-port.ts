import { readFileSync } from 'node:fs'
import { createServer, Socket } from 'node:net'

/** Ports below this are left to well-known services. */
const LOWEST_PICKED_PORT = 20_000

/**
 * The lowest port of the kernel's ephemeral range: every outgoing connection and every
 * `listen(0)` takes its local port from that range. Linux publishes it; elsewhere the IANA range
 * is the usual one.
 */
function lowestEphemeralPort(): number {
  try {
    const low = Number.parseInt(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'), 10)
    if (Number.isInteger(low)) return low
  } catch {
    // Not Linux: the IANA range below.
  }
  return 49_152
}

function bindsOn(port: number): Promise<boolean> {
  const server = createServer()
  return new Promise((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now, for a server that must be told its
 * port before it can bind. It is picked below the ephemeral range: a port the OS handed out for
 * `listen(0)` is handed out again to the next outgoing connection (a MongoDB or Redis client in
 * the same test run), which then holds it when the server binds, and the server fails with
 * EADDRINUSE. Below the range only other callers of this function compete, and they pick at
 * random.
 */
export async function findFreePort(): Promise<number> {
  const span = lowestEphemeralPort() - LOWEST_PICKED_PORT
  if (span >= 1_000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = LOWEST_PICKED_PORT + Math.floor(Math.random() * span)
      if (await bindsOn(port)) return port
    }
  }
  return portTheOsPicks()
}

async function portTheOsPicks(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string')
    throw new Error('no TCP address was assigned')
  return address.port
}

/**
 * Polls `port` until `until` settles and says whether anything ever accepted a connection on
 * it: how a test proves a process that was meant to fail early never bound its port.
 */
export async function portEverOpened(port: number, until: Promise<unknown>): Promise<boolean> {
  let settled = false
  void until.finally(() => {
    settled = true
  })
  let opened = false
  while (!settled) {
    if (await isPortOpen(port)) opened = true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return opened || (await isPortOpen(port))
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function isPortOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket()
    const done = (open: boolean) => {
      socket.destroy()
      resolve(open)
    }
    socket.setTimeout(1000, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
    socket.connect(port, host)
  })
}
