import {
  type StateSnapshot,
  snapshotState as snapshotStore,
} from '@platform/local-infra/state-snapshot'
import type { TestStack } from './stack.js'

export {
  type ExpectedChanges,
  expectOnlyChanged,
  expectUnchanged,
  expectUnchangedWithin,
  type StateSnapshot,
} from '@platform/local-infra/state-snapshot'

/** Everything the stack's workspace-service has stored (its database and Redis keys). */
export const snapshotState = (stack: TestStack): Promise<StateSnapshot> =>
  snapshotStore({
    db: stack.app.mongo.db,
    redis: stack.app.redis,
    redisKeyPrefix: stack.redisKeyPrefix,
    // A member's `lastUsedAt` is a sign-in hint any successful read refreshes, fire-and-forget
    // (lib/access.ts); it is not state a request decides to write.
    volatileFields: { members: ['lastUsedAt'] },
    ownerFields: ['_id', 'tenantId', 'workspaceId'],
  })
