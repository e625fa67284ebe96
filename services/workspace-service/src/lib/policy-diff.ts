import type { PolicyChange } from './models.js'

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * What changed between two policy documents, as dotted paths with their old and new values.
 * Arrays are compared whole: an allowlist is one setting, and its before/after reads better than
 * positional edits.
 */
export function policyDiff(before: unknown, after: unknown, path = ''): PolicyChange[] {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
    return keys.flatMap((key) =>
      policyDiff(before[key], after[key], path === '' ? key : `${path}.${key}`),
    )
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return []
  return [{ path, before: before ?? null, after: after ?? null }]
}
