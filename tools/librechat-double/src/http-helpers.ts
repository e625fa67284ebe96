import type { FastifyReply } from 'fastify'

/**
 * Browser families ua-parser-js names, each as the `Name/version` token it looks for. A
 * User-Agent without the `Mozilla/5.0` prefix and one of these is what LibreChat's `uaParser`
 * refuses (curl, node, undici, python-requests, langchainjs-openai, …).
 */
const BROWSER_TOKEN =
  /\b(?:Chrome|Chromium|CriOS|Firefox|FxiOS|Safari|Edg|Edge|EdgA|EdgiOS|OPR|Opera|SamsungBrowser|Vivaldi|YaBrowser)\/\d/

export function isBrowserUserAgent(userAgent: string | undefined): boolean {
  return userAgent?.startsWith('Mozilla/5.0') === true && BROWSER_TOKEN.test(userAgent)
}

/**
 * `req.ip` under Express `trust proxy` = 1 (LibreChat's TRUST_PROXY default): the last
 * X-Forwarded-For entry when the header is present, else the socket's address.
 */
export function expressClientIp(
  forwardedFor: string | string[] | undefined,
  socketAddress: string | undefined,
): string {
  const entries = [forwardedFor ?? []]
    .flat()
    .join(',')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
  return entries.at(-1) ?? socketAddress ?? ''
}

export const messageFrame = (data: unknown): string =>
  `event: message\ndata: ${JSON.stringify(data)}\n\n`

export const errorFrame = (data: unknown): string =>
  `event: error\ndata: ${JSON.stringify(data)}\n\n`

/**
 * LibreChat's middleware denials (`handleError`): HTTP 200 and an SSE-formatted body, but no SSE
 * content type, so a client that assumes JSON or SSE gets neither.
 */
export function sendSseTextDenial(reply: FastifyReply, data: unknown): FastifyReply {
  reply.hijack()
  reply.raw.writeHead(200)
  reply.raw.end(errorFrame(data))
  return reply
}
