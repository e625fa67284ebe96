import { testMongoUrl, uniqueTestName } from '@platform/local-infra/vitest'
import { type AuditEvent, AuditEventSchema, type TokenPairResponse } from '@platform/shared-types'
import type { FastifyInstance } from 'fastify'
import { decodeJwt } from 'jose'
import mongoose, { type Connection } from 'mongoose'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type AuditEventInput, type AuditLog, createAuditLog } from '../../src/lib/audit-log.js'
import {
  type AuthWithDouble,
  bearer,
  login,
  PASSWORD,
  refresh,
  register,
  signIn,
  sleep,
  startAuthWithDouble,
  uniqueEmail,
} from '../helpers/auth-requests.js'
import { startTestAuth, TEST_PUBLIC_URL, TEST_SECRETS } from '../helpers/build.js'
import { startWorkspaceDouble, type WorkspaceDouble } from '../helpers/workspace-double.js'

interface OutboxEntry {
  _id: string
  event: AuditEvent
  createdAt: Date
  attempts: number
  nextAttemptAt: Date
}

const BATCH_SIZE = 3

const eventInput = (index: number): AuditEventInput => ({
  action: 'auth.test.happened',
  actor: { type: 'service', id: 'auth-service' },
  target: { type: 'test', id: `target-${index}` },
  after: { index },
})

describe('the audit outbox', () => {
  let app: FastifyInstance
  let double: WorkspaceDouble
  let base: Connection

  beforeAll(async () => {
    // The app only signs service tokens and publishes the keys the double checks them with; with
    // no WORKSPACE_SERVICE_URL its own outbox never posts, so every batch the double sees is ours.
    ;({ app } = await startTestAuth())
    double = await startWorkspaceDouble({
      issuer: TEST_PUBLIC_URL,
      jwks: async () => (await app.inject('/.well-known/jwks.json')).json(),
    })
    base = await mongoose.createConnection(testMongoUrl()).asPromise()
  })
  afterAll(async () => {
    await double.close()
    await base.close()
    await app.close()
  })

  /** An audit log on a database of its own, delivering to the double (null: to nowhere). */
  async function freshAuditLog(workspaceServiceUrl: string | null = double.url) {
    const connection = base.useDb(uniqueTestName('audit'), { useCache: false })
    const audit = createAuditLog({
      connection,
      log: pino({ level: 'silent' }),
      workspaceServiceUrl: workspaceServiceUrl ?? undefined,
      serviceToken: () => app.identity.tokens.serviceToken('auth-service'),
      batchSize: BATCH_SIZE,
    })
    // The collection exists before the first insert: an insert racing mongoose's own creation of
    // it can wedge the test MongoDB (under wine).
    await connection.model('AuditOutbox').init()
    const outbox = connection.collection<OutboxEntry>('audit_outbox')
    return { audit, outbox }
  }

  async function recordMany(audit: AuditLog, count: number) {
    const events: AuditEvent[] = []
    for (let index = 0; index < count; index++) events.push(await audit.record(eventInput(index)))
    for (const event of events) expect(AuditEventSchema.safeParse(event).success).toBe(true)
    return events
  }

  it('keeps events while the workspace-service is down, and backs off between attempts', async () => {
    const { audit, outbox } = await freshAuditLog()
    double.failAudit = true
    try {
      const events = await recordMany(audit, 7)
      const batchesBefore = double.auditBatches
      expect(await audit.deliverDue()).toBe(0)
      expect(double.auditBatches - batchesBefore).toBe(1)

      const entries = await outbox.find().sort({ createdAt: 1 }).toArray()
      expect(entries.map((entry) => entry._id)).toEqual(events.map((event) => event.eventId))
      for (const entry of entries) expect(AuditEventSchema.parse(entry.event)).toEqual(entry.event)
      const tried = entries.filter((entry) => entry.attempts === 1)
      expect(tried).toHaveLength(BATCH_SIZE)
      for (const entry of tried) {
        // First retry after 2 s.
        const wait = entry.nextAttemptAt.getTime() - Date.now()
        expect(wait).toBeGreaterThan(1000)
        expect(wait).toBeLessThanOrEqual(2000)
      }

      // The others get their own attempts; the failed ones wait for their time.
      expect(await audit.deliverDue()).toBe(0)
      expect(await audit.deliverDue()).toBe(0)
      expect(double.auditBatches - batchesBefore).toBe(3)
      expect(await audit.deliverDue()).toBe(0)
      expect(double.auditBatches - batchesBefore).toBe(3)
      expect(await outbox.countDocuments({ attempts: 1 })).toBe(7)

      // Due again (forced), still failing: the wait doubles.
      await outbox.updateMany({}, { $set: { nextAttemptAt: new Date() } })
      expect(await audit.deliverDue()).toBe(0)
      const retried = await outbox.find({ attempts: 2 }).toArray()
      expect(retried).toHaveLength(BATCH_SIZE)
      for (const entry of retried)
        expect(entry.nextAttemptAt.getTime() - Date.now()).toBeGreaterThan(3000)
      expect(double.auditEvents).toHaveLength(0)
      expect(await outbox.countDocuments()).toBe(7)
    } finally {
      double.failAudit = false
    }
  })

  it('delivers every event exactly once when the workspace-service is back, in batches', async () => {
    const { audit, outbox } = await freshAuditLog()
    double.failAudit = true
    const events = await recordMany(audit, 7)
    expect(await audit.deliverDue()).toBe(0)
    double.failAudit = false

    // The backoff would hold the first batch for a while; make everything due now.
    await outbox.updateMany({}, { $set: { nextAttemptAt: new Date() } })
    const batchesBefore = double.auditBatches
    const receivedBefore = double.auditEvents.length
    expect(await audit.deliverDue()).toBe(7)
    // 7 events in batches of at most 3.
    expect(double.auditBatches - batchesBefore).toBe(Math.ceil(7 / BATCH_SIZE))
    expect(double.auditEvents.slice(receivedBefore)).toEqual(events)
    expect(await outbox.countDocuments()).toBe(0)
    expect(await audit.deliverDue()).toBe(0)
    expect(double.auditBatches - batchesBefore).toBe(Math.ceil(7 / BATCH_SIZE))
  })

  it('sends the same eventId again after a lost answer, which the receiver ignores', async () => {
    const { audit, outbox } = await freshAuditLog()
    const events = await recordMany(audit, 2)
    const pending = await outbox.find().toArray()
    const receivedBefore = double.auditEvents.length
    expect(await audit.deliverDue()).toBe(2)
    expect(double.auditEvents.slice(receivedBefore)).toEqual(events)

    // As if the workspace-service stored the batch but its answer never arrived.
    await outbox.insertMany(pending)
    const batchesBefore = double.auditBatches
    expect(await audit.deliverDue()).toBe(2)
    expect(double.auditBatches - batchesBefore).toBe(1)
    expect(double.auditEvents.slice(receivedBefore)).toEqual(events)
    expect(await outbox.countDocuments()).toBe(0)
  })

  it('parks an event the workspace-service refuses, and still delivers the rest of its batch', async () => {
    const { audit, outbox } = await freshAuditLog()
    const events = await recordMany(audit, 2)
    // An event from an older version of this service, say, that the receiver's schema refuses.
    const refused = { ...events[0], eventId: 'refused-event', action: 'Not An Action' }
    // Older than the others, so first in the batch, yet well inside the outbox's 90-day TTL:
    // a `createdAt` of 1970 is removed by MongoDB's TTL monitor whenever its pass comes first.
    const aMinuteAgo = new Date(Date.now() - 60_000)
    await outbox.insertOne({
      _id: refused.eventId,
      event: refused as AuditEvent,
      createdAt: aMinuteAgo,
      attempts: 0,
      nextAttemptAt: aMinuteAgo,
    })
    const receivedBefore = double.auditEvents.length
    expect(await audit.deliverDue()).toBe(2)
    expect(double.auditEvents.slice(receivedBefore)).toEqual(events)
    const parked = await outbox.find().toArray()
    expect(parked.map((entry) => entry._id)).toEqual(['refused-event'])
    expect(parked[0]?.nextAttemptAt.getUTCFullYear()).toBe(9999)
    // Parked for an operator, never retried.
    const batchesBefore = double.auditBatches
    expect(await audit.deliverDue()).toBe(0)
    expect(double.auditBatches).toBe(batchesBefore)
  })

  it('keeps events in the outbox when no workspace-service is configured', async () => {
    const { audit, outbox } = await freshAuditLog(null)
    const batchesBefore = double.auditBatches
    const events = await recordMany(audit, 2)
    expect(await audit.deliverDue()).toBe(0)
    const entries = await outbox.find().sort({ createdAt: 1 }).toArray()
    expect(entries.map((entry) => entry.event)).toEqual(events)
    expect(entries.map((entry) => entry.attempts)).toEqual([0, 0])
    expect(double.auditBatches).toBe(batchesBefore)

    // The service itself does the same: a registration waits in its outbox.
    const user = await register(app)
    const stored = await app.mongo
      .collection<OutboxEntry>('audit_outbox')
      .findOne({ 'event.action': 'auth.user.registered', 'event.target.id': user.id })
    expect(stored?.attempts).toBe(0)
    expect(AuditEventSchema.parse(stored?.event)).toMatchObject({
      actor: { type: 'user', id: user.id },
      target: { type: 'user', id: user.id },
    })
  })

  it('refuses to record an event that does not fit the schema', async () => {
    const { audit, outbox } = await freshAuditLog()
    await expect(audit.record({ ...eventInput(0), action: 'Not An Action' })).rejects.toThrow()
    expect(await outbox.countDocuments()).toBe(0)
  })
})

describe('the events the service raises', () => {
  let auth: AuthWithDouble

  beforeAll(async () => {
    auth = await startAuthWithDouble({ REFRESH_REUSE_GRACE_SECONDS: '1' })
  })
  afterAll(() => auth.close())

  /** Delivers until the double holds an event matching `expected`, and answers it. */
  async function delivered(expected: Partial<AuditEvent> & { action: string }) {
    return vi.waitFor(
      async () => {
        await auth.app.identity.audit.deliverDue()
        const found = auth.double.auditEvents.filter(
          (event) =>
            event.action === expected.action &&
            (expected.target === undefined || event.target.id === expected.target.id),
        )
        expect(found.length, `${expected.action} ${JSON.stringify(expected.target)}`).toBe(1)
        const [event] = found
        expect(event).toMatchObject(expected)
        return AuditEventSchema.parse(event)
      },
      { timeout: 5_000, interval: 100 },
    )
  }

  it('records sign-up, failed and successful sign-in, and session ends', async () => {
    const client = { 'x-forwarded-for': '192.0.2.44', 'user-agent': 'AuditTest/1.0' }
    const user = await register(auth.app)
    await delivered({
      action: 'auth.user.registered',
      actor: { type: 'user', id: user.id },
      target: { type: 'user', id: user.id },
    })

    const unknownEmail = uniqueEmail('nobody')
    const failures = [
      await login(auth.app, { email: unknownEmail, password: PASSWORD }, client),
      await login(auth.app, { email: user.email, password: 'wrong password' }, client),
    ]
    for (const failure of failures) expect(failure.statusCode).toBe(401)
    // The only sign-in with an unknown email in this app: it names no user.
    await delivered({
      action: 'auth.login.failed',
      actor: { type: 'anonymous', id: null },
      target: { type: 'user', id: null },
      after: { reason: 'unknown-email' },
      ip: '192.0.2.44',
    })
    await delivered({
      action: 'auth.login.failed',
      actor: { type: 'anonymous', id: null },
      target: { type: 'user', id: user.id },
      after: { reason: 'wrong-password' },
      ip: '192.0.2.44',
      userAgent: 'AuditTest/1.0',
    })

    const pair = await signIn(auth.app, { email: user.email, password: PASSWORD }, client)
    const sid = String(decodeJwt(pair.accessToken).sid)
    await delivered({
      action: 'auth.login.succeeded',
      actor: { type: 'user', id: user.id },
      target: { type: 'session', id: sid },
      after: { method: 'password', mfa: false },
      ip: '192.0.2.44',
    })

    const out = await auth.app.inject({
      method: 'POST',
      url: '/auth/v1/logout',
      headers: bearer(pair.accessToken),
    })
    expect(out.statusCode).toBe(204)
    await delivered({
      action: 'auth.session.revoked',
      actor: { type: 'user', id: user.id },
      target: { type: 'session', id: sid },
      after: { reason: 'logout' },
    })

    const keep = await signIn(auth.app, { email: user.email, password: PASSWORD })
    const other = await signIn(auth.app, { email: user.email, password: PASSWORD })
    const otherSid = String(decodeJwt(other.accessToken).sid)
    const ended = await auth.app.inject({
      method: 'DELETE',
      url: `/auth/v1/sessions/${otherSid}`,
      headers: bearer(keep.accessToken),
    })
    expect(ended.statusCode).toBe(204)
    await delivered({
      action: 'auth.session.revoked',
      target: { type: 'session', id: otherSid },
      after: { reason: 'user-request' },
    })
  })

  it('records the end of a session whose refresh token was replayed', async () => {
    const user = await register(auth.app)
    const pair = await signIn(auth.app, { email: user.email, password: PASSWORD })
    expect((await refresh(auth.app, pair.refreshToken)).statusCode).toBe(200)
    await sleep(1200)
    const replay = await refresh(auth.app, pair.refreshToken)
    expect(replay.json<TokenPairResponse & { code: string }>().code).toBe('AUTH_REFRESH_REUSED')
    await delivered({
      action: 'auth.session.revoked',
      actor: { type: 'anonymous', id: null },
      target: { type: 'session', id: String(decodeJwt(pair.accessToken).sid) },
      after: { reason: 'refresh-token-reuse', userId: user.id },
    })
  })

  it('records a key rotation', async () => {
    const token = await auth.app.inject({
      method: 'POST',
      url: '/internal/v1/service-token',
      payload: { service: 'auth-service', secret: TEST_SECRETS.SERVICE_SECRET_AUTH },
    })
    const rotated = await auth.app.inject({
      method: 'POST',
      url: '/internal/v1/keys/rotate',
      headers: bearer(token.json().token),
    })
    expect(rotated.statusCode).toBe(200)
    const { kid, retiredKid } = rotated.json<{ kid: string; retiredKid: string }>()
    await delivered({
      action: 'auth.key.rotated',
      actor: { type: 'service', id: 'auth-service' },
      target: { type: 'signing-key', id: kid },
      before: { kid: retiredKid },
      after: { kid, reason: 'on-demand' },
    })
  })

  it('delivered every event once, and only with its own service token', async () => {
    await auth.app.identity.audit.deliverDue()
    const ids = auth.double.auditEvents.map((event) => event.eventId)
    expect(new Set(ids).size).toBe(ids.length)
    for (const event of auth.double.auditEvents) AuditEventSchema.parse(event)
    expect(await auth.app.mongo.collection('audit_outbox').countDocuments()).toBe(0)
    expect(new Set(auth.double.callers)).toEqual(new Set(['auth-service']))
  })
})
