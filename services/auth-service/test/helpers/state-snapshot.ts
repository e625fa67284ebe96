import {
  type StateSnapshot,
  snapshotState as snapshotStore,
} from '@platform/local-infra/state-snapshot'
import type { TestAuth } from './build.js'

export {
  type ExpectedChanges,
  expectOnlyChanged,
  expectUnchanged,
  type StateSnapshot,
} from '@platform/local-infra/state-snapshot'

/** Everything an auth-service app has stored (its database and Redis keys). */
export const snapshotState = (auth: TestAuth): Promise<StateSnapshot> =>
  snapshotStore({
    db: auth.app.mongo.db,
    redis: auth.app.redis,
    redisKeyPrefix: auth.redisKeyPrefix,
  })
