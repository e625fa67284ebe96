import { createServer, Socket } from 'node:net'

/** A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it). */
export async function findFreePort(): Promise<number> {
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
