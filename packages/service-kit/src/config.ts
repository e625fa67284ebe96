import { z } from 'zod'

/** One environment variable that failed validation. */
export interface ConfigIssue {
  variable: string
  message: string
}

/** Thrown by `parseConfig`: names every bad variable at once, never their values (they may be secrets). */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[]

  constructor(issues: ConfigIssue[]) {
    super(
      `invalid configuration: ${issues.map((issue) => `${issue.variable} (${issue.message})`).join(', ')}`,
    )
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** Parses the environment once with a service's zod schema, reporting every invalid variable. */
export function parseConfig<Schema extends z.ZodType>(
  schema: Schema,
  env: NodeJS.ProcessEnv,
): z.infer<Schema> {
  const result = schema.safeParse(env)
  if (result.success) return result.data
  const issues = result.error.issues.map((issue) => ({
    variable: issue.path.map(String).join('.') || '(environment)',
    message: issue.message,
  }))
  throw new ConfigError(issues)
}

/** An empty variable counts as unset, as shells and compose files write them. */
const unsetWhenEmpty = (value: unknown) => (value === '' ? undefined : value)

export const optionalEnv = <T extends z.ZodType>(schema: T) =>
  z.preprocess(unsetWhenEmpty, schema.optional())

export const portEnv = (fallback: number) =>
  z.preprocess(unsetWhenEmpty, z.coerce.number().int().min(1).max(65_535).default(fallback))

/** A positive whole number (a count, a duration) with a default. */
export const positiveIntEnv = (fallback: number) =>
  z.preprocess(unsetWhenEmpty, z.coerce.number().int().positive().default(fallback))

/** A string with a default. */
export const stringEnv = (fallback: string) =>
  z.preprocess(unsetWhenEmpty, z.string().default(fallback))

export const booleanEnv = (fallback: boolean) =>
  z.preprocess(
    unsetWhenEmpty,
    z
      .enum(['true', 'false', '1', '0'], { message: 'must be true, false, 1 or 0' })
      .transform((value) => value === 'true' || value === '1')
      .default(fallback),
  )

/** `z.url()` rejects multi-host MongoDB URIs, so only the scheme is checked here. */
export const mongoUrlEnv = z
  .string({ message: 'is required' })
  .regex(/^mongodb(\+srv)?:\/\/\S+$/, 'must be a mongodb:// or mongodb+srv:// URL')

export const redisUrlEnv = z
  .string({ message: 'is required' })
  .regex(/^rediss?:\/\/\S+$/, 'must be a redis:// or rediss:// URL')

export const httpUrlEnv = z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' })

/** A secret: required, never defaulted, long enough to be one. */
export const secretEnv = z
  .string({ message: 'is required (npm start generates one)' })
  .min(32, 'must be at least 32 characters')

/** Settings every service shares. */
export const commonConfigShape = {
  LISTEN_HOST: z.preprocess(unsetWhenEmpty, z.string().default('0.0.0.0')),
  LOG_LEVEL: z.preprocess(
    unsetWhenEmpty,
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ),
  LOG_PRETTY: booleanEnv(false),
}
