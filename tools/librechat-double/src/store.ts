import mongoose, { type mongo } from 'mongoose'

/** A `users` document as LibreChat's schema has it; the gateway inserts these directly. */
export interface UserDoc {
  _id: mongo.ObjectId
  email: string
  emailVerified?: boolean
  provider?: string
  role?: string
  username?: string
  name?: string
  avatar?: string
  tenantId?: string
  password?: string
  totpSecret?: string
  backupCodes?: unknown
  createdAt?: Date
  updatedAt?: Date
}

export type ContentPart =
  | { type: 'text'; text: string }
  | {
      type: 'tool_call'
      tool_call: { id: string; name: string; args: string; output: string; progress: number }
    }

export interface MessageDoc {
  messageId: string
  conversationId: string
  parentMessageId: string
  /** LibreChat keys messages by the user id as a string. */
  user: string
  sender: string
  text: string
  content?: ContentPart[]
  isCreatedByUser: boolean
  endpoint: string
  model?: string
  agent_id?: string
  tokenCount?: number
  promptTokens?: number
  metadata?: { usage: UsageRollup }
  unfinished: boolean
  error: boolean
  createdAt: Date
  updatedAt: Date
}

export interface UsageRollup {
  input: number
  output: number
  cacheWrite: number
  cacheRead: number
}

export interface ConversationDoc {
  conversationId: string
  user: string
  title: string
  endpoint: string
  endpointType?: string
  model?: string
  agent_id?: string
  spec?: string
  isArchived: boolean
  createdAt: Date
  updatedAt: Date
}

export interface AgentDoc {
  _id: mongo.ObjectId
  id: string
  author: mongo.ObjectId
  authorName?: string
  name?: string
  description?: string
  instructions?: string
  provider: string
  model: string
  model_parameters?: Record<string, unknown>
  tools: string[]
  category: string
  createdAt: Date
  updatedAt: Date
  [field: string]: unknown
}

export interface FileDoc {
  file_id: string
  temp_file_id: string
  user: mongo.ObjectId
  filename: string
  filepath: string
  bytes: number
  type: string
  source: string
  context: string
  endpoint: string
  conversationId?: string
  createdAt: Date
  updatedAt: Date
}

export interface BalanceDoc {
  user: mongo.ObjectId
  tokenCredits: number
}

export interface Store {
  users: mongo.Collection<UserDoc>
  conversations: mongo.Collection<ConversationDoc>
  messages: mongo.Collection<MessageDoc>
  agents: mongo.Collection<AgentDoc>
  files: mongo.Collection<FileDoc>
  balances: mongo.Collection<BalanceDoc>
  close(): Promise<void>
}

/** LibreChat's collections in their own database. */
export async function openStore(mongoUrl: string, dbName: string): Promise<Store> {
  const connection = mongoose.createConnection(mongoUrl, { dbName })
  await connection.asPromise()
  const db = connection.db
  if (!db) throw new Error('MongoDB connection has no database')
  const store: Store = {
    users: db.collection<UserDoc>('users'),
    conversations: db.collection<ConversationDoc>('conversations'),
    messages: db.collection<MessageDoc>('messages'),
    agents: db.collection<AgentDoc>('agents'),
    files: db.collection<FileDoc>('files'),
    balances: db.collection<BalanceDoc>('balances'),
    // Every double has a database of its own; it goes with the double.
    close: async () => {
      await connection.dropDatabase().catch(() => undefined)
      await connection.close()
    },
  }
  // One at a time, every collection up front: concurrent implicit creation of one collection
  // crashes the wine-hosted mongod this project tests against.
  await store.users.createIndex({ email: 1, tenantId: 1 }, { unique: true })
  await store.conversations.createIndex({ conversationId: 1, user: 1 }, { unique: true })
  await store.conversations.createIndex({ user: 1, updatedAt: -1 })
  await store.messages.createIndex({ messageId: 1, user: 1 }, { unique: true })
  await store.messages.createIndex({ conversationId: 1, user: 1, createdAt: 1 })
  await store.agents.createIndex({ id: 1 }, { unique: true })
  await store.agents.createIndex({ author: 1, updatedAt: -1 })
  await store.files.createIndex({ user: 1, file_id: 1 })
  await store.balances.createIndex({ user: 1 }, { unique: true })
  return store
}

export const isObjectIdHex = (value: unknown): value is string =>
  typeof value === 'string' && /^[0-9a-f]{24}$/i.test(value)
