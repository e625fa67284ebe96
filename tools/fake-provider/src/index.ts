export { DEFAULT_REPLY, startFakeProvider } from './fake-provider.js'
export { countPromptTokens, countTokens, splitIntoTokens } from './tokens.js'
export type {
  ChatCompletionRequestBody,
  ChatMessage,
  FakeBehaviour,
  FakeCallOutcome,
  FakeProvider,
  FakeProviderCall,
  FakeProviderOptions,
} from './types.js'
