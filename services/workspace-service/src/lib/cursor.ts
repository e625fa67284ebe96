import { z } from 'zod'
import { InvalidRequest } from '../errors.js'

/** Where a page ended: the sort key of its last row. Opaque to clients (API.md §1). */
const PositionSchema = z.tuple([z.union([z.string(), z.number()]), z.string()])
export type CursorPosition = z.infer<typeof PositionSchema>

export const encodeCursor = (position: CursorPosition) =>
  Buffer.from(JSON.stringify(position)).toString('base64url')

export function decodeCursor(cursor: string | undefined): CursorPosition | null {
  if (cursor === undefined) return null
  try {
    return PositionSchema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')))
  } catch {
    throw new InvalidRequest('The cursor is not one this list gave out')
  }
}

/** `?limit=&cursor=` on every list (API.md §1). */
export const PageQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().min(1).max(512).optional(),
})

/** Keeps one row more than the page so the next cursor is only given when there is more. */
export function pageOf<T>(rows: T[], limit: number, positionOf: (row: T) => CursorPosition) {
  const items = rows.slice(0, limit)
  const last = items.at(-1)
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null,
  }
}
