import type { ChatMessage } from './types.js'

/**
 * The fake provider's tokenizer: a token is a run of whitespace followed by a run of
 * non-whitespace (a word piece keeping the whitespace before it), plus any trailing whitespace as
 * one last token. Joining the tokens gives the text back exactly, so streamed deltas concatenate
 * to the reply. `"Hello there, friend"` → `["Hello", " there,", " friend"]`.
 */
export function splitIntoTokens(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? []
}

export function countTokens(text: string): number {
  return splitIntoTokens(text).length
}

/**
 * `prompt_tokens` of a request: per message 1 (its role) + the tokens of its text content (a
 * string, or the `text` of each part of an array) + the tokens of each tool call's name and
 * arguments.
 */
export function countPromptTokens(messages: readonly ChatMessage[]): number {
  let total = 0
  for (const message of messages) {
    total += 1
    const { content } = message
    if (typeof content === 'string') {
      total += countTokens(content)
    } else if (Array.isArray(content)) {
      for (const part of content) {
        if (typeof part.text === 'string') total += countTokens(part.text)
      }
    }
    for (const toolCall of message.tool_calls ?? []) {
      total += countTokens(toolCall.function.name) + countTokens(toolCall.function.arguments)
    }
  }
  return total
}
