import { onTestFinished } from 'vitest'
import { createServiceApp, type ServiceApp, type ServiceAppOptions } from '../src/index.js'

/** One parsed pino line. */
export interface LogLine {
  level: number
  msg?: string
  [field: string]: unknown
}

/** A pino destination that keeps every line it is given, raw and parsed. */
export class LogCollector {
  readonly raw: string[] = []

  write(line: string): void {
    this.raw.push(line)
  }

  get lines(): LogLine[] {
    return this.raw.map((line) => JSON.parse(line) as LogLine)
  }

  get text(): string {
    return this.raw.join('')
  }
}

/**
 * A service app with the `GW` prefix, logging nowhere unless told otherwise; it is closed when
 * the test finishes, whether it passed or not.
 */
export async function testApp(options: Partial<ServiceAppOptions> = {}): Promise<ServiceApp> {
  const app = await createServiceApp({
    service: 'test-service',
    errorPrefix: 'GW',
    logLevel: 'silent',
    logPretty: false,
    ...options,
  })
  onTestFinished(async () => {
    await app.close()
  })
  return app
}
