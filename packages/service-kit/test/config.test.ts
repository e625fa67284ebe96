import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  booleanEnv,
  ConfigError,
  commonConfigShape,
  httpUrlEnv,
  mongoUrlEnv,
  optionalEnv,
  parseConfig,
  portEnv,
  redisUrlEnv,
  secretEnv,
} from '../src/index.js'

const ConfigSchema = z.object({
  ...commonConfigShape,
  PORT: portEnv(3000),
  MONGO_URL: mongoUrlEnv,
  REDIS_URL: redisUrlEnv,
  JWT_SECRET: secretEnv,
  PUBLIC_URL: optionalEnv(httpUrlEnv),
  SECURE_COOKIES: booleanEnv(true),
})

const SECRET = 'a'.repeat(32)

/** The smallest valid environment; everything else has a default. */
const validEnv = (): NodeJS.ProcessEnv => ({
  MONGO_URL: 'mongodb://127.0.0.1:27017/?replicaSet=rs0',
  REDIS_URL: 'redis://127.0.0.1:6379',
  JWT_SECRET: SECRET,
})

/** The ConfigError a bad environment throws (fails the test when it does not throw one). */
function configErrorFor(env: NodeJS.ProcessEnv): ConfigError {
  try {
    parseConfig(ConfigSchema, env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return error as ConfigError
  }
  throw new Error('parseConfig accepted the environment')
}

describe('parseConfig', () => {
  it('parses a valid environment and fills in every default', () => {
    expect(parseConfig(ConfigSchema, validEnv())).toEqual({
      LISTEN_HOST: '0.0.0.0',
      LOG_LEVEL: 'info',
      LOG_PRETTY: false,
      PORT: 3000,
      MONGO_URL: 'mongodb://127.0.0.1:27017/?replicaSet=rs0',
      REDIS_URL: 'redis://127.0.0.1:6379',
      JWT_SECRET: SECRET,
      PUBLIC_URL: undefined,
      SECURE_COOKIES: true,
    })
  })

  it('takes the values it is given, coerced to their types, and ignores other variables', () => {
    const config = parseConfig(ConfigSchema, {
      ...validEnv(),
      LISTEN_HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      LOG_PRETTY: '1',
      PORT: '8081',
      PUBLIC_URL: 'https://platform.example',
      SECURE_COOKIES: 'false',
      UNRELATED: 'x',
    })
    expect(config).toEqual({
      LISTEN_HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      LOG_PRETTY: true,
      PORT: 8081,
      MONGO_URL: 'mongodb://127.0.0.1:27017/?replicaSet=rs0',
      REDIS_URL: 'redis://127.0.0.1:6379',
      JWT_SECRET: SECRET,
      PUBLIC_URL: 'https://platform.example',
      SECURE_COOKIES: false,
    })
  })

  it('reports two bad variables in one ConfigError that names both and shows neither value', () => {
    const badMongo = 'postgres://admin:hunter2-db-password@db:5432/app'
    const badSecret = 'too-short-but-still-secret'
    const error = configErrorFor({ ...validEnv(), MONGO_URL: badMongo, JWT_SECRET: badSecret })

    expect(error.name).toBe('ConfigError')
    expect(error.issues).toEqual([
      { variable: 'MONGO_URL', message: 'must be a mongodb:// or mongodb+srv:// URL' },
      { variable: 'JWT_SECRET', message: 'must be at least 32 characters' },
    ])
    expect(error.message).toContain('MONGO_URL')
    expect(error.message).toContain('JWT_SECRET')
    for (const secret of [badMongo, badSecret, 'hunter2']) {
      expect(error.message).not.toContain(secret)
      expect(JSON.stringify(error.issues)).not.toContain(secret)
    }
  })

  it('names every missing required variable at once', () => {
    const error = configErrorFor({})
    expect(error.issues).toEqual([
      { variable: 'MONGO_URL', message: 'is required' },
      { variable: 'REDIS_URL', message: 'is required' },
      { variable: 'JWT_SECRET', message: 'is required (npm start generates one)' },
    ])
    expect(error.message).toBe(
      'invalid configuration: MONGO_URL (is required), REDIS_URL (is required), ' +
        'JWT_SECRET (is required (npm start generates one))',
    )
  })

  it('treats an empty string as unset for optionalEnv, portEnv, booleanEnv and the common shape', () => {
    const config = parseConfig(ConfigSchema, {
      ...validEnv(),
      LISTEN_HOST: '',
      LOG_LEVEL: '',
      LOG_PRETTY: '',
      PORT: '',
      PUBLIC_URL: '',
      SECURE_COOKIES: '',
    })
    expect(config).toMatchObject({
      LISTEN_HOST: '0.0.0.0',
      LOG_LEVEL: 'info',
      LOG_PRETTY: false,
      PORT: 3000,
      SECURE_COOKIES: true,
    })
    expect(config.PUBLIC_URL).toBeUndefined()
  })

  it('does not treat an empty string as unset for a required variable', () => {
    const error = configErrorFor({ ...validEnv(), MONGO_URL: '', JWT_SECRET: '' })
    expect(error.issues.map((issue) => issue.variable)).toEqual(['MONGO_URL', 'JWT_SECRET'])
  })

  it('rejects a secret shorter than 32 characters and accepts one of exactly 32', () => {
    const short = configErrorFor({ ...validEnv(), JWT_SECRET: 'b'.repeat(31) })
    expect(short.issues).toEqual([
      { variable: 'JWT_SECRET', message: 'must be at least 32 characters' },
    ])
    expect(short.message).not.toContain('b'.repeat(31))
    expect(
      parseConfig(ConfigSchema, { ...validEnv(), JWT_SECRET: 'b'.repeat(32) }).JWT_SECRET,
    ).toBe('b'.repeat(32))
  })

  it.each(['0', '65536', '80.5', 'eighty', '-1'])('rejects the port %j', (port) => {
    const error = configErrorFor({ ...validEnv(), PORT: port })
    expect(error.issues.map((issue) => issue.variable)).toEqual(['PORT'])
  })

  it.each([
    ['true', true],
    ['1', true],
    ['false', false],
    ['0', false],
  ])('reads the boolean %j as %s', (value, expected) => {
    expect(parseConfig(ConfigSchema, { ...validEnv(), SECURE_COOKIES: value }).SECURE_COOKIES).toBe(
      expected,
    )
  })

  it.each(['yes', 'TRUE', 'on', ' 1'])('rejects the boolean %j', (value) => {
    const error = configErrorFor({ ...validEnv(), SECURE_COOKIES: value })
    expect(error.issues).toEqual([
      { variable: 'SECURE_COOKIES', message: 'must be true, false, 1 or 0' },
    ])
  })

  it.each([
    'mongodb://a.example:27017,b.example:27017,c.example:27017/?replicaSet=rs0',
    'mongodb+srv://user:pass@cluster0.example.net/app',
  ])('accepts the MongoDB URL %s', (url) => {
    expect(parseConfig(ConfigSchema, { ...validEnv(), MONGO_URL: url }).MONGO_URL).toBe(url)
  })

  it.each(['rediss://cache.example:6380/1', 'redis://:pw@127.0.0.1:6379'])(
    'accepts the Redis URL %s',
    (url) => {
      expect(parseConfig(ConfigSchema, { ...validEnv(), REDIS_URL: url }).REDIS_URL).toBe(url)
    },
  )

  it.each([
    ['REDIS_URL', 'http://127.0.0.1:6379'],
    ['REDIS_URL', 'redis:// spaced'],
    ['MONGO_URL', 'mongodb://db host/app'],
    ['PUBLIC_URL', 'ftp://platform.example'],
    ['PUBLIC_URL', 'not a url'],
    ['LOG_LEVEL', 'verbose'],
  ])('rejects %s=%j', (variable, value) => {
    const error = configErrorFor({ ...validEnv(), [variable]: value })
    expect(error.issues.map((issue) => issue.variable)).toEqual([variable])
    expect(error.message).not.toContain(value)
  })

  it('names a problem that belongs to no single variable "(environment)"', () => {
    const Paired = z
      .object({ A: optionalEnv(z.string()), B: optionalEnv(z.string()) })
      .refine((env) => (env.A === undefined) === (env.B === undefined), 'A and B come together')
    expect(parseConfig(Paired, { A: 'x', B: 'y' })).toEqual({ A: 'x', B: 'y' })
    expect(() => parseConfig(Paired, { A: 'x' })).toThrow(
      'invalid configuration: (environment) (A and B come together)',
    )
  })
})
