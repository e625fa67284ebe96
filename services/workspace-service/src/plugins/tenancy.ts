import {
  createServiceTokenSource,
  createTokenVerifier,
  type TokenVerifier,
} from '@platform/service-kit'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { WorkspaceConfig } from '../config.js'
import { type Access, createAccess } from '../lib/access.js'
import { type AuditLog, createAuditLog } from '../lib/audit-log.js'
import { createExports, type Exports } from '../lib/export.js'
import { createInvitations, type Invitations } from '../lib/invitations.js'
import { createMembers, type Members } from '../lib/members.js'
import { createWorkspaceModels, type WorkspaceModels } from '../lib/models.js'
import { createPolicies, type Policies } from '../lib/policy.js'
import { createQuota, type QuotaView } from '../lib/quota.js'
import { createTenants, type Tenants } from '../lib/tenants.js'
import { createUsageLedger, type UsageLedger } from '../lib/usage-ledger.js'
import { createUserDirectory, type UserDirectory } from '../lib/user-directory.js'
import { createWorkspaces, type Workspaces } from '../lib/workspaces.js'

export interface TenancyOptions {
  config: WorkspaceConfig
}

/** Everything the routes work with, built once on the app's MongoDB and Redis clients. */
export interface Tenancy {
  models: WorkspaceModels
  verifier: TokenVerifier
  users: UserDirectory
  access: Access
  audit: AuditLog
  tenants: Tenants
  workspaces: Workspaces
  members: Members
  invitations: Invitations
  policies: Policies
  ledger: UsageLedger
  quota: QuotaView
  exports: Exports
}

/** Decorates `tenancy` and runs the purge of deleted workspaces past their retention. */
async function tenancy(app: FastifyInstance, options: TenancyOptions) {
  const { config } = options
  const connection = app.mongo
  const models = createWorkspaceModels(connection)
  const audit = createAuditLog({
    models,
    log: app.log,
    defaultRetentionDays: config.AUDIT_RETENTION_DAYS,
  })
  const policies = createPolicies({ connection, models, audit, redis: app.redis, log: app.log })
  const workspaces = createWorkspaces({
    connection,
    models,
    audit,
    retentionDays: config.WORKSPACE_RETENTION_DAYS,
    invalidatePolicy: policies.invalidate,
  })
  const members = createMembers({ connection, models, audit })
  const ledger = createUsageLedger({ connection, models })
  const value: Tenancy = {
    models,
    verifier: createTokenVerifier({
      issuer: config.PUBLIC_URL.replace(/\/+$/, ''),
      keys: new URL('/.well-known/jwks.json', config.AUTH_SERVICE_URL),
      redis: app.redis,
    }),
    users: createUserDirectory({
      authServiceUrl: config.AUTH_SERVICE_URL,
      serviceToken: createServiceTokenSource({
        authServiceUrl: config.AUTH_SERVICE_URL,
        service: 'workspace-service',
        secret: config.SERVICE_SECRET_WORKSPACE,
      }),
    }),
    access: createAccess(models),
    audit,
    tenants: createTenants({
      connection,
      models,
      audit,
      workspaces,
      invalidateTenantPolicies: policies.invalidateTenant,
    }),
    workspaces,
    members,
    invitations: createInvitations({
      connection,
      models,
      audit,
      members,
      ttlHours: config.INVITATION_TTL_HOURS,
    }),
    policies,
    ledger,
    quota: createQuota({ redis: app.redis, ledger }),
    exports: createExports({ models, redis: app.redis, maxRows: config.EXPORT_MAX_ROWS }),
  }
  // Unique, partial and TTL indexes exist before the first request relies on them.
  await Promise.all(Object.values(models).map((model) => model.init()))
  app.decorate('tenancy', value)

  const purgeTimer = setInterval(() => {
    workspaces
      .purgeDue()
      .then((purged) => {
        if (purged > 0) app.log.info({ purged }, 'deleted workspaces purged')
      })
      .catch((error: unknown) => app.log.error({ err: error }, 'workspace purge failed'))
  }, config.PURGE_INTERVAL_SECONDS * 1000)
  purgeTimer.unref()
  app.addHook('onClose', async () => clearInterval(purgeTimer))
}

export const tenancyPlugin = fp(tenancy, {
  name: 'tenancy',
  fastify: '5.x',
  dependencies: ['mongo', 'redis'],
})

declare module 'fastify' {
  interface FastifyInstance {
    tenancy: Tenancy
  }
}
