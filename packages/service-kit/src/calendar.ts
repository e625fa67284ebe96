/**
 * Calendar arithmetic in a tenant's IANA time zone (budget resets at local midnight on the 1st,
 * day buckets), built on `Intl.DateTimeFormat` alone.
 *
 * Intl only ever tells us one thing here: the zone's UTC offset at an instant. Everything else
 * (local date fields, the next day, the next month) is UTC arithmetic on `instant + offset`, which
 * is proleptic Gregorian for every year and independent of the locale's calendar quirks.
 */

const MS_PER_SECOND = 1_000
const MS_PER_MINUTE = 60_000
const MS_PER_DAY = 86_400_000

/**
 * Constructing a DateTimeFormat costs ~100 µs, formatting with one ~1 µs, so each zone gets one.
 * Keyed by the exact name given: Intl matches names ASCII-case-insensitively, and lower-casing the
 * key with `toLowerCase` would also fold non-ASCII look-alikes (the Kelvin sign becomes `k`) onto
 * valid names. Names Intl rejects throw before they are stored, so only a bounded set of real
 * zones (and their spellings) can accumulate; the cap is a backstop against pathological callers.
 */
const offsetFormats = new Map<string, Intl.DateTimeFormat>()
const MAX_CACHED_ZONES = 1_000

/** The cached formatter whose output ends in the zone's offset, e.g. `11/21/2026, GMT+05:45`. */
function offsetFormatFor(timeZone: string): Intl.DateTimeFormat {
  const cached = offsetFormats.get(timeZone)
  if (cached !== undefined) return cached
  // Pinned locale and numbering system so the offset always reads `GMT±HH:MM[:SS]` in ASCII digits.
  const created = new Intl.DateTimeFormat('en-US-u-nu-latn', {
    timeZone,
    timeZoneName: 'longOffset',
  })
  if (offsetFormats.size >= MAX_CACHED_ZONES) {
    const oldest = offsetFormats.keys().next()
    if (oldest.done !== true) offsetFormats.delete(oldest.value)
  }
  offsetFormats.set(timeZone, created)
  return created
}

/** `GMT` alone means +00:00; ICU adds seconds only for historical local-mean-time offsets. */
const LONG_OFFSET = /GMT(?:([+\-\u2212])(\d{2}):(\d{2})(?::(\d{2}))?)?$/

/** The zone's UTC offset at `epochMs`, in milliseconds (whole seconds; whole minutes since ~1972). */
function offsetMsAt(epochMs: number, timeZone: string): number {
  const formatted = offsetFormatFor(timeZone).format(epochMs)
  const match = LONG_OFFSET.exec(formatted)
  if (match === null) throw new Error(`unexpected offset format from Intl: ${formatted}`)
  const [, sign, hours, minutes, seconds] = match
  if (sign === undefined) return 0
  const magnitude =
    (Number(hours) * 3_600 + Number(minutes) * 60 + Number(seconds ?? 0)) * MS_PER_SECOND
  return sign === '+' ? magnitude : -magnitude
}

/** Milliseconds since the epoch, refusing an invalid Date rather than formatting `NaN-NaN-NaN`. */
function epochMsOf(instant: Date): number {
  const epochMs = instant.getTime()
  if (Number.isNaN(epochMs)) throw new RangeError('invalid Date')
  return epochMs
}

/**
 * The local wall clock as a UTC-based Date, so getUTC* read local fields. Refuses instants whose
 * local time falls outside Date's range (only possible within a day of ±275760 years).
 */
function wallClockOf(epochMs: number, timeZone: string): Date {
  const wallClock = new Date(epochMs + offsetMsAt(epochMs, timeZone))
  if (Number.isNaN(wallClock.getTime())) throw new RangeError('local time outside the Date range')
  return wallClock
}

/**
 * Midnight of a wall-clock date as if it were UTC. `setUTCFullYear` rather than `Date.UTC`,
 * which maps years 0–99 to 1900–1999; overflowing months and days roll over, which the callers
 * rely on for "the next day" and "the next month".
 */
function wallMidnightMs(year: number, month: number, day: number): number {
  const wallMidnight = new Date(0)
  wallMidnight.setUTCFullYear(year, month - 1, day)
  return wallMidnight.getTime()
}

/** ISO 8601 years: four digits for 0000–9999, the signed six-digit expanded form beyond. */
function isoYear(year: number): string {
  if (year >= 0 && year <= 9_999) return String(year).padStart(4, '0')
  return `${year < 0 ? '-' : '+'}${String(Math.abs(year)).padStart(6, '0')}`
}

const twoDigits = (value: number): string => String(value).padStart(2, '0')

function dayKeyOf(wallClock: Date): string {
  return `${isoYear(wallClock.getUTCFullYear())}-${twoDigits(wallClock.getUTCMonth() + 1)}-${twoDigits(wallClock.getUTCDate())}`
}

/**
 * The first instant whose local wall clock reads `wallMidnight` or later.
 *
 * The instant sought is `wallMidnight - offset` for the offset in force then; every offset ever
 * used is within ±16 h, so it lies within a day of `wallMidnight`. Sampling the offset a day
 * either side gives both candidates when a transition falls in that window (tzdata never has two
 * within two days). A candidate is real when the zone actually uses that offset at it; when both
 * are (midnight repeated, as in Havana when DST ends at 01:00) the earlier wins, unless it is not
 * after `laterThan`. When neither is, midnight fell into a forward jump and the day starts at the
 * transition itself, found by bisection; that happens a few times per zone per decade, so its cost
 * does not matter.
 */
function firstInstantAtOrAfterWallMs(
  wallMidnight: number,
  timeZone: string,
  laterThan = Number.NEGATIVE_INFINITY,
): number {
  const offsetBefore = offsetMsAt(wallMidnight - MS_PER_DAY, timeZone)
  const offsetAfter = offsetMsAt(wallMidnight + MS_PER_DAY, timeZone)
  const candidates =
    offsetBefore === offsetAfter
      ? [wallMidnight - offsetBefore]
      : [wallMidnight - offsetBefore, wallMidnight - offsetAfter].sort((a, b) => a - b)
  for (const candidate of candidates) {
    if (candidate > laterThan && candidate + offsetMsAt(candidate, timeZone) === wallMidnight) {
      return candidate
    }
  }
  // In a forward jump the clock reads before midnight up to the transition and after it from
  // then on; offsets and transitions are whole seconds, so bisecting on seconds is exact.
  let beforeMidnight = wallMidnight - Math.max(offsetBefore, offsetAfter)
  let atOrAfterMidnight = wallMidnight - Math.min(offsetBefore, offsetAfter)
  while (atOrAfterMidnight - beforeMidnight > MS_PER_SECOND) {
    const middle =
      beforeMidnight +
      Math.floor((atOrAfterMidnight - beforeMidnight) / (2 * MS_PER_SECOND)) * MS_PER_SECOND
    if (middle + offsetMsAt(middle, timeZone) >= wallMidnight) atOrAfterMidnight = middle
    else beforeMidnight = middle
  }
  return atOrAfterMidnight
}

function startOfWallDate(year: number, month: number, day: number, timeZone: string): Date {
  return new Date(firstInstantAtOrAfterWallMs(wallMidnightMs(year, month, day), timeZone))
}

/**
 * The start of the wall date after the one `epochMs` is on, always later than `epochMs`. Where the
 * clock once fell back across midnight (Moncton and Goose Bay in 1996, St. John's in 1991: 00:01
 * back to 23:01), an instant in the repeated hour before midnight has the previous date although
 * the new day's first midnight already passed; its period must end at the second midnight, or it
 * would end before it began.
 */
function startOfWallDateAfter(
  epochMs: number,
  year: number,
  month: number,
  day: number,
  timeZone: string,
): Date {
  return new Date(firstInstantAtOrAfterWallMs(wallMidnightMs(year, month, day), timeZone, epochMs))
}

/**
 * Whether `name` is an IANA time zone name this runtime knows, e.g. `Europe/Berlin`, `UTC`,
 * `Asia/Kolkata`; false for garbage, `''` and UTC offsets such as `+01:00`.
 *
 * Intl is the judge, not `Intl.supportedValuesOf('timeZone')`: that list holds only ICU's
 * canonical IDs, which lag IANA renames (it has `Asia/Calcutta` and `Europe/Kiev`, not
 * `Asia/Kolkata` or `Europe/Kyiv`, and no `UTC`), so checking against it would refuse the names
 * tenants are most likely to send. Offsets are refused although Intl accepts them since ES2024,
 * because a fixed offset cannot follow a region's DST and budgets would reset an hour off for half
 * the year. Links (`US/Eastern`) and any letter case (`europe/berlin`) pass because Intl resolves
 * them to the same zone; store the name as given or normalise it before using it as a key.
 */
export function isTimeZone(name: string): boolean {
  // Intl's offset time zones are exactly the names starting with a sign.
  if (/^[+\-\u2212]/.test(name)) return false
  try {
    offsetFormatFor(name)
    return true
  } catch {
    return false
  }
}

/**
 * The zone's UTC offset at `instant` in minutes, east positive: 60 for Berlin in winter, 330 for
 * Kolkata, 345 for Kathmandu, -300 for New York in winter. Historical local mean time (before
 * ~1900, Monrovia until 1972) had offsets with seconds, which come back as fractional minutes.
 * Throws a RangeError for an invalid Date or a time zone Intl does not know.
 */
export function offsetMinutes(instant: Date, timeZone: string): number {
  return offsetMsAt(epochMsOf(instant), timeZone) / MS_PER_MINUTE
}

/** The local calendar date of `instant` in the zone, `YYYY-MM-DD`, e.g. the day bucket's key. */
export function zonedDayKey(instant: Date, timeZone: string): string {
  return dayKeyOf(wallClockOf(epochMsOf(instant), timeZone))
}

/** The local calendar month of `instant` in the zone, `YYYY-MM`, e.g. the budget period's key. */
export function zonedMonthKey(instant: Date, timeZone: string): string {
  const wallClock = wallClockOf(epochMsOf(instant), timeZone)
  return `${isoYear(wallClock.getUTCFullYear())}-${twoDigits(wallClock.getUTCMonth() + 1)}`
}

/** `YYYY-MM-DD`, or the ISO expanded year `±YYYYYY-MM-DD` that `zonedDayKey` writes beyond 9999. */
const DAY_KEY = /^(\d{4}|[+-]\d{6})-(\d{2})-(\d{2})$/

/**
 * The first instant of the local calendar day `dayKey` (`YYYY-MM-DD`) in the zone: local midnight,
 * or, where a DST jump skips midnight (America/Santiago each September, America/Havana each
 * March), the first instant that exists after it. Where midnight happens twice (Havana in
 * November) it is the first one. A day the zone skipped entirely (Pacific/Apia 2011-12-30) starts
 * where the next day does. Throws a RangeError for a malformed or impossible date (`2026-02-30`)
 * or an unknown time zone.
 */
export function localDateStart(dayKey: string, timeZone: string): Date {
  const match = DAY_KEY.exec(dayKey)
  if (match === null || match[1] === '-000000') {
    throw new RangeError(`not a YYYY-MM-DD date: ${JSON.stringify(dayKey)}`)
  }
  const [, year, month, day] = match.map(Number)
  if (year === undefined || month === undefined || day === undefined) {
    throw new RangeError(`not a YYYY-MM-DD date: ${JSON.stringify(dayKey)}`)
  }
  const wallMidnight = new Date(wallMidnightMs(year, month, day))
  // Rolled-over fields (month 13, February 30) show up as a different date after construction.
  if (
    Number.isNaN(wallMidnight.getTime()) ||
    wallMidnight.getUTCFullYear() !== year ||
    wallMidnight.getUTCMonth() !== month - 1 ||
    wallMidnight.getUTCDate() !== day
  ) {
    throw new RangeError(`no such calendar date: ${dayKey}`)
  }
  return new Date(firstInstantAtOrAfterWallMs(wallMidnight.getTime(), timeZone))
}

/** The first instant of the local day containing `instant`; see `localDateStart` for DST gaps. */
export function startOfDay(instant: Date, timeZone: string): Date {
  const wallClock = wallClockOf(epochMsOf(instant), timeZone)
  return startOfWallDate(
    wallClock.getUTCFullYear(),
    wallClock.getUTCMonth() + 1,
    wallClock.getUTCDate(),
    timeZone,
  )
}

/**
 * The first instant of the local day after the one containing `instant` (the day bucket's end),
 * always later than `instant`.
 */
export function startOfNextDay(instant: Date, timeZone: string): Date {
  const epochMs = epochMsOf(instant)
  const wallClock = wallClockOf(epochMs, timeZone)
  return startOfWallDateAfter(
    epochMs,
    wallClock.getUTCFullYear(),
    wallClock.getUTCMonth() + 1,
    wallClock.getUTCDate() + 1,
    timeZone,
  )
}

/** The first instant of the local month containing `instant`: when the budget period began. */
export function startOfMonth(instant: Date, timeZone: string): Date {
  const wallClock = wallClockOf(epochMsOf(instant), timeZone)
  return startOfWallDate(wallClock.getUTCFullYear(), wallClock.getUTCMonth() + 1, 1, timeZone)
}

/**
 * The first instant of the local month after the one containing `instant`: the next budget reset,
 * always later than `instant`.
 */
export function startOfNextMonth(instant: Date, timeZone: string): Date {
  const epochMs = epochMsOf(instant)
  const wallClock = wallClockOf(epochMs, timeZone)
  return startOfWallDateAfter(
    epochMs,
    wallClock.getUTCFullYear(),
    wallClock.getUTCMonth() + 2,
    1,
    timeZone,
  )
}

/**
 * `instant` as ISO 8601 with the zone's offset at that instant, to the second (milliseconds are
 * dropped): `2026-12-01T00:00:00+01:00`, `2026-06-01T00:00:00+05:30`, and UTC as `+00:00`, never
 * `Z`, so every zone's strings have one shape. `new Date(result)` is the same instant to the
 * second.
 */
export function formatInZone(instant: Date, timeZone: string): string {
  const epochMs = epochMsOf(instant)
  // ISO 8601 offsets have no seconds, so a historical local-mean-time offset such as Berlin's
  // +00:53:28 is written rounded to the minute with the wall clock shifted to match: the string
  // still names exactly this instant, which matters more than a clock nobody reads.
  const offsetMinutesRounded = Math.round(offsetMsAt(epochMs, timeZone) / MS_PER_MINUTE)
  const wallClock = new Date(epochMs + offsetMinutesRounded * MS_PER_MINUTE)
  if (Number.isNaN(wallClock.getTime())) throw new RangeError('local time outside the Date range')
  const offsetMagnitude = Math.abs(offsetMinutesRounded)
  const offset = `${offsetMinutesRounded < 0 ? '-' : '+'}${twoDigits(Math.floor(offsetMagnitude / 60))}:${twoDigits(offsetMagnitude % 60)}`
  const time = `${twoDigits(wallClock.getUTCHours())}:${twoDigits(wallClock.getUTCMinutes())}:${twoDigits(wallClock.getUTCSeconds())}`
  return `${dayKeyOf(wallClock)}T${time}${offset}`
}
