import { describe, expect, it } from 'vitest'
import {
  formatInZone,
  isTimeZone,
  localDateStart,
  offsetMinutes,
  startOfDay,
  startOfMonth,
  startOfNextDay,
  startOfNextMonth,
  zonedDayKey,
  zonedMonthKey,
} from '../src/index.js'

// Expected values come from the tzdata in Node's ICU (2026c when written); a future rule change
// for a 2026–2027 date here would show up as a failure in that zone only.

const at = (iso: string): Date => new Date(iso)

/** An instant as `formatInZone` writes it, so a failure shows the local time and offset at once. */
const inZone = (instant: Date, timeZone: string): string => formatInZone(instant, timeZone)

describe('isTimeZone', () => {
  it.each([
    'UTC',
    'Etc/UTC',
    'Europe/Berlin',
    'America/New_York',
    'America/Argentina/Buenos_Aires',
    'Asia/Kolkata',
    'Asia/Calcutta',
    'Europe/Kyiv',
    'Pacific/Kiritimati',
    'Etc/GMT+5',
  ])('accepts %s', (name) => {
    expect(isTimeZone(name)).toBe(true)
  })

  it('accepts links and any letter case, as Intl resolves them to the same zone', () => {
    expect(isTimeZone('US/Eastern')).toBe(true)
    expect(isTimeZone('europe/berlin')).toBe(true)
  })

  it.each([
    '',
    ' ',
    'Europe/Berlin ',
    'Mars/Olympus_Mons',
    'not a zone',
    'Europe',
    '+01:00',
    '-05:00',
    '+0530',
    '\u221205:00',
    'Asia/\u212Aolkata',
  ])('refuses %j', (name) => {
    expect(isTimeZone(name)).toBe(false)
  })

  it('does not let a refused name poison later answers', () => {
    expect(isTimeZone('Nowhere/Atlantis')).toBe(false)
    expect(isTimeZone('Nowhere/Atlantis')).toBe(false)
    expect(isTimeZone('Europe/Berlin')).toBe(true)
  })
})

describe('offsetMinutes', () => {
  it.each([
    ['UTC', '2026-07-01T12:00:00Z', 0],
    ['Europe/Berlin', '2026-01-15T12:00:00Z', 60],
    ['Europe/Berlin', '2026-07-15T12:00:00Z', 120],
    ['America/New_York', '2026-01-15T12:00:00Z', -300],
    ['America/New_York', '2026-07-15T12:00:00Z', -240],
    ['Asia/Kolkata', '2026-07-15T12:00:00Z', 330],
    ['Asia/Kathmandu', '2026-07-15T12:00:00Z', 345],
    ['Australia/Lord_Howe', '2026-07-15T12:00:00Z', 630],
    ['Australia/Lord_Howe', '2026-01-15T12:00:00Z', 660],
    ['America/Santiago', '2026-01-15T12:00:00Z', -180],
    ['America/Santiago', '2026-07-15T12:00:00Z', -240],
    ['Pacific/Kiritimati', '2026-07-15T12:00:00Z', 840],
    ['Pacific/Pago_Pago', '2026-07-15T12:00:00Z', -660],
  ])('%s at %s is %i', (timeZone, iso, expected) => {
    expect(offsetMinutes(at(iso), timeZone)).toBe(expected)
  })

  it('changes exactly at the transition instant', () => {
    expect(offsetMinutes(at('2026-03-29T00:59:59.999Z'), 'Europe/Berlin')).toBe(60)
    expect(offsetMinutes(at('2026-03-29T01:00:00Z'), 'Europe/Berlin')).toBe(120)
    expect(offsetMinutes(at('2026-10-03T15:29:59Z'), 'Australia/Lord_Howe')).toBe(630)
    expect(offsetMinutes(at('2026-10-03T15:30:00Z'), 'Australia/Lord_Howe')).toBe(660)
  })

  it('reports a historical local-mean-time offset with its seconds', () => {
    // Berlin ran on LMT +00:53:28 until 1893.
    expect(offsetMinutes(at('1850-01-01T00:00:00Z'), 'Europe/Berlin')).toBeCloseTo(53 + 28 / 60, 10)
  })

  it('refuses an invalid Date and an unknown zone', () => {
    expect(() => offsetMinutes(new Date(Number.NaN), 'UTC')).toThrow(RangeError)
    expect(() => offsetMinutes(at('2026-01-01T00:00:00Z'), 'Mars/Olympus_Mons')).toThrow(RangeError)
  })
})

describe('zonedDayKey and zonedMonthKey', () => {
  it.each([
    ['UTC', '2026-12-31T23:59:59Z', '2026-12-31'],
    ['Europe/Berlin', '2026-12-31T23:00:00Z', '2027-01-01'],
    ['Europe/Berlin', '2026-12-31T22:59:59Z', '2026-12-31'],
    ['America/New_York', '2027-01-01T04:59:59Z', '2026-12-31'],
    ['America/New_York', '2027-01-01T05:00:00Z', '2027-01-01'],
    ['Asia/Kolkata', '2026-05-31T18:30:00Z', '2026-06-01'],
    ['Asia/Kathmandu', '2026-05-31T18:14:59Z', '2026-05-31'],
    ['Asia/Kathmandu', '2026-05-31T18:15:00Z', '2026-06-01'],
    ['Pacific/Kiritimati', '2026-12-31T10:00:00Z', '2027-01-01'],
    ['Pacific/Pago_Pago', '2027-01-01T10:59:59Z', '2026-12-31'],
  ])('%s at %s is %s', (timeZone, iso, expected) => {
    expect(zonedDayKey(at(iso), timeZone)).toBe(expected)
    expect(zonedMonthKey(at(iso), timeZone)).toBe(expected.slice(0, 7))
  })

  it('puts one UTC instant on three different local dates across the date line', () => {
    const instant = at('2026-12-31T10:30:00Z')
    expect(zonedDayKey(instant, 'Pacific/Pago_Pago')).toBe('2026-12-30')
    expect(zonedDayKey(instant, 'UTC')).toBe('2026-12-31')
    expect(zonedDayKey(instant, 'Pacific/Kiritimati')).toBe('2027-01-01')
  })

  it('knows 29 February in leap years only', () => {
    expect(zonedDayKey(at('2028-02-29T12:00:00Z'), 'Europe/Berlin')).toBe('2028-02-29')
    expect(zonedDayKey(at('2028-02-29T23:00:00Z'), 'Europe/Berlin')).toBe('2028-03-01')
    expect(zonedDayKey(at('2027-02-28T23:00:00Z'), 'Europe/Berlin')).toBe('2027-03-01')
  })

  it('writes four-digit years with leading zeros and expanded years beyond 9999', () => {
    expect(zonedDayKey(at('0042-03-04T12:00:00Z'), 'UTC')).toBe('0042-03-04')
    expect(zonedDayKey(at('+010000-01-01T00:00:00Z'), 'UTC')).toBe('+010000-01-01')
    expect(zonedMonthKey(at('-000001-06-01T00:00:00Z'), 'UTC')).toBe('-000001-06')
  })
})

describe('localDateStart', () => {
  it.each([
    ['UTC', '2026-12-01', '2026-12-01T00:00:00.000Z'],
    ['Europe/Berlin', '2026-12-01', '2026-11-30T23:00:00.000Z'],
    ['Europe/Berlin', '2026-06-01', '2026-05-31T22:00:00.000Z'],
    ['America/New_York', '2026-12-01', '2026-12-01T05:00:00.000Z'],
    ['Asia/Kolkata', '2026-06-01', '2026-05-31T18:30:00.000Z'],
    ['Asia/Kathmandu', '2026-06-01', '2026-05-31T18:15:00.000Z'],
    ['Australia/Lord_Howe', '2026-10-01', '2026-09-30T13:30:00.000Z'],
    ['Australia/Lord_Howe', '2027-01-01', '2026-12-31T13:00:00.000Z'],
    ['Pacific/Kiritimati', '2027-01-01', '2026-12-31T10:00:00.000Z'],
    ['Pacific/Pago_Pago', '2027-01-01', '2027-01-01T11:00:00.000Z'],
  ])('%s %s starts at %s', (timeZone, dayKey, expected) => {
    expect(localDateStart(dayKey, timeZone).toISOString()).toBe(expected)
  })

  it('starts a day whose midnight DST skipped at the first instant after it (Santiago)', () => {
    // Chile springs forward at local midnight: Saturday 23:59:59 -04:00 is followed by Sunday
    // 01:00:00 -03:00, so 6 September 2026 begins at 01:00.
    const start = localDateStart('2026-09-06', 'America/Santiago')
    expect(start.toISOString()).toBe('2026-09-06T04:00:00.000Z')
    expect(inZone(start, 'America/Santiago')).toBe('2026-09-06T01:00:00-03:00')
    expect(inZone(new Date(start.getTime() - 1_000), 'America/Santiago')).toBe(
      '2026-09-05T23:59:59-04:00',
    )
  })

  it('starts the day after Santiago falls back (repeating Saturday 23:00) at its one midnight', () => {
    const start = localDateStart('2026-04-05', 'America/Santiago')
    expect(inZone(start, 'America/Santiago')).toBe('2026-04-05T00:00:00-04:00')
    expect(start.toISOString()).toBe('2026-04-05T04:00:00.000Z')
  })

  it('handles the same gap in Havana and a 15-minute one in Kathmandu', () => {
    expect(inZone(localDateStart('2026-03-08', 'America/Havana'), 'America/Havana')).toBe(
      '2026-03-08T01:00:00-04:00',
    )
    // Nepal moved from +05:30 to +05:45 at midnight on 1 January 1986.
    expect(inZone(localDateStart('1986-01-01', 'Asia/Kathmandu'), 'Asia/Kathmandu')).toBe(
      '1986-01-01T00:15:00+05:45',
    )
  })

  it('takes the first of two midnights when DST ends at 01:00 (Havana)', () => {
    const start = localDateStart('2026-11-01', 'America/Havana')
    expect(start.toISOString()).toBe('2026-11-01T04:00:00.000Z')
    expect(inZone(start, 'America/Havana')).toBe('2026-11-01T00:00:00-04:00')
    expect(inZone(at('2026-11-01T05:00:00Z'), 'America/Havana')).toBe('2026-11-01T00:00:00-05:00')
  })

  it('starts a day the zone skipped entirely where the next day starts', () => {
    // Kiritimati jumped from -10:00 to +14:00 over 31 December 1994.
    const start = localDateStart('1994-12-31', 'Pacific/Kiritimati')
    expect(inZone(start, 'Pacific/Kiritimati')).toBe('1995-01-01T00:00:00+14:00')
    expect(start).toEqual(localDateStart('1995-01-01', 'Pacific/Kiritimati'))
  })

  it('accepts leap days in leap years only', () => {
    expect(localDateStart('2028-02-29', 'Europe/Berlin').toISOString()).toBe(
      '2028-02-28T23:00:00.000Z',
    )
    expect(localDateStart('2000-02-29', 'UTC').toISOString()).toBe('2000-02-29T00:00:00.000Z')
    expect(() => localDateStart('2027-02-29', 'Europe/Berlin')).toThrow(RangeError)
    expect(() => localDateStart('2100-02-29', 'UTC')).toThrow(RangeError)
  })

  it('reads years 0–99 as written, not as 1900–1999', () => {
    expect(localDateStart('0042-03-04', 'UTC').toISOString()).toBe('0042-03-04T00:00:00.000Z')
  })

  it.each([
    '',
    '2026-13-01',
    '2026-00-10',
    '2026-04-31',
    '2026-02-30',
    '2026-1-01',
    '26-01-01',
    '2026-01-01T00:00:00Z',
    '2026/01/01',
    '-000000-01-01',
  ])('refuses %j', (dayKey) => {
    expect(() => localDateStart(dayKey, 'UTC')).toThrow(RangeError)
  })

  it('refuses an unknown zone', () => {
    expect(() => localDateStart('2026-01-01', 'Mars/Olympus_Mons')).toThrow(RangeError)
  })
})

describe('startOfDay and startOfNextDay', () => {
  it('gives Berlin 23 hours on the spring-forward day and 25 on the fall-back day', () => {
    const spring = at('2026-03-29T12:00:00Z')
    expect(startOfDay(spring, 'Europe/Berlin').toISOString()).toBe('2026-03-28T23:00:00.000Z')
    expect(startOfNextDay(spring, 'Europe/Berlin').toISOString()).toBe('2026-03-29T22:00:00.000Z')

    const autumn = at('2026-10-25T12:00:00Z')
    expect(startOfDay(autumn, 'Europe/Berlin').toISOString()).toBe('2026-10-24T22:00:00.000Z')
    expect(startOfNextDay(autumn, 'Europe/Berlin').toISOString()).toBe('2026-10-25T23:00:00.000Z')
  })

  it('gives New York 23 and 25 hours on its DST days', () => {
    const spring = at('2026-03-08T12:00:00Z')
    expect(startOfDay(spring, 'America/New_York').toISOString()).toBe('2026-03-08T05:00:00.000Z')
    expect(startOfNextDay(spring, 'America/New_York').toISOString()).toBe(
      '2026-03-09T04:00:00.000Z',
    )
    const autumn = at('2026-11-01T12:00:00Z')
    expect(startOfDay(autumn, 'America/New_York').toISOString()).toBe('2026-11-01T04:00:00.000Z')
    expect(startOfNextDay(autumn, 'America/New_York').toISOString()).toBe(
      '2026-11-02T05:00:00.000Z',
    )
  })

  it('gives Lord Howe 23.5 and 24.5 hours on its half-hour DST days', () => {
    const spring = at('2026-10-04T00:00:00Z')
    expect(inZone(startOfDay(spring, 'Australia/Lord_Howe'), 'Australia/Lord_Howe')).toBe(
      '2026-10-04T00:00:00+10:30',
    )
    expect(
      startOfNextDay(spring, 'Australia/Lord_Howe').getTime() -
        startOfDay(spring, 'Australia/Lord_Howe').getTime(),
    ).toBe(23.5 * 3_600_000)

    const autumn = at('2026-04-05T00:00:00Z')
    expect(inZone(startOfNextDay(autumn, 'Australia/Lord_Howe'), 'Australia/Lord_Howe')).toBe(
      '2026-04-06T00:00:00+10:30',
    )
    expect(
      startOfNextDay(autumn, 'Australia/Lord_Howe').getTime() -
        startOfDay(autumn, 'Australia/Lord_Howe').getTime(),
    ).toBe(24.5 * 3_600_000)
  })

  it('gives Santiago a 23-hour day starting at 01:00 and a 25-hour day before it falls back', () => {
    const skippedMidnight = at('2026-09-06T15:00:00Z')
    expect(inZone(startOfDay(skippedMidnight, 'America/Santiago'), 'America/Santiago')).toBe(
      '2026-09-06T01:00:00-03:00',
    )
    expect(inZone(startOfNextDay(skippedMidnight, 'America/Santiago'), 'America/Santiago')).toBe(
      '2026-09-07T00:00:00-03:00',
    )
    // The second 23:30 of Saturday 4 April still belongs to Saturday.
    const repeatedHour = at('2026-04-05T03:30:00Z')
    expect(inZone(repeatedHour, 'America/Santiago')).toBe('2026-04-04T23:30:00-04:00')
    expect(inZone(startOfDay(repeatedHour, 'America/Santiago'), 'America/Santiago')).toBe(
      '2026-04-04T00:00:00-03:00',
    )
    expect(startOfNextDay(repeatedHour, 'America/Santiago').toISOString()).toBe(
      '2026-04-05T04:00:00.000Z',
    )
  })

  it('ends a day at its second midnight when the clock fell back across the first (Moncton 1996)', () => {
    // At 00:01 -03:00 on 27 October 1996 the clock went back to 23:01 -04:00 on the 26th.
    expect(localDateStart('1996-10-27', 'America/Moncton').toISOString()).toBe(
      '1996-10-27T03:00:00.000Z',
    )
    const repeatedHour = at('1996-10-27T03:30:00Z')
    expect(inZone(repeatedHour, 'America/Moncton')).toBe('1996-10-26T23:30:00-04:00')
    expect(inZone(startOfDay(repeatedHour, 'America/Moncton'), 'America/Moncton')).toBe(
      '1996-10-26T00:00:00-03:00',
    )
    expect(inZone(startOfNextDay(repeatedHour, 'America/Moncton'), 'America/Moncton')).toBe(
      '1996-10-27T00:00:00-04:00',
    )
    expect(inZone(startOfNextMonth(repeatedHour, 'America/Moncton'), 'America/Moncton')).toBe(
      '1996-11-01T00:00:00-04:00',
    )
  })

  it('crosses the year boundary', () => {
    const newYearsEve = at('2026-12-31T18:00:00Z')
    expect(startOfNextDay(newYearsEve, 'Europe/Berlin').toISOString()).toBe(
      '2026-12-31T23:00:00.000Z',
    )
    expect(startOfNextDay(newYearsEve, 'Pacific/Pago_Pago').toISOString()).toBe(
      '2027-01-01T11:00:00.000Z',
    )
    // Already 1 January in Kiritimati, so its next day is 2 January.
    expect(startOfNextDay(newYearsEve, 'Pacific/Kiritimati').toISOString()).toBe(
      '2027-01-01T10:00:00.000Z',
    )
  })

  it('steps over 29 February in a leap year', () => {
    expect(startOfNextDay(at('2028-02-28T12:00:00Z'), 'UTC').toISOString()).toBe(
      '2028-02-29T00:00:00.000Z',
    )
    expect(startOfNextDay(at('2028-02-29T12:00:00Z'), 'UTC').toISOString()).toBe(
      '2028-03-01T00:00:00.000Z',
    )
  })
})

describe('startOfMonth and startOfNextMonth', () => {
  it.each([
    ['UTC', '2026-12-15T12:00:00Z', '2026-12-01T00:00:00+00:00', '2027-01-01T00:00:00+00:00'],
    [
      'Europe/Berlin',
      '2026-12-15T12:00:00Z',
      '2026-12-01T00:00:00+01:00',
      '2027-01-01T00:00:00+01:00',
    ],
    [
      'Europe/Berlin',
      '2026-06-15T12:00:00Z',
      '2026-06-01T00:00:00+02:00',
      '2026-07-01T00:00:00+02:00',
    ],
    // March starts in winter time and April in summer time.
    [
      'Europe/Berlin',
      '2026-03-15T12:00:00Z',
      '2026-03-01T00:00:00+01:00',
      '2026-04-01T00:00:00+02:00',
    ],
    [
      'America/New_York',
      '2026-11-15T12:00:00Z',
      '2026-11-01T00:00:00-04:00',
      '2026-12-01T00:00:00-05:00',
    ],
    [
      'Asia/Kolkata',
      '2026-06-15T12:00:00Z',
      '2026-06-01T00:00:00+05:30',
      '2026-07-01T00:00:00+05:30',
    ],
    [
      'Asia/Kathmandu',
      '2026-06-15T12:00:00Z',
      '2026-06-01T00:00:00+05:45',
      '2026-07-01T00:00:00+05:45',
    ],
    [
      'Australia/Lord_Howe',
      '2026-10-15T12:00:00Z',
      '2026-10-01T00:00:00+10:30',
      '2026-11-01T00:00:00+11:00',
    ],
    [
      'America/Santiago',
      '2026-09-15T12:00:00Z',
      '2026-09-01T00:00:00-04:00',
      '2026-10-01T00:00:00-03:00',
    ],
    [
      'Pacific/Kiritimati',
      '2026-12-15T12:00:00Z',
      '2026-12-01T00:00:00+14:00',
      '2027-01-01T00:00:00+14:00',
    ],
    [
      'Pacific/Pago_Pago',
      '2026-12-15T12:00:00Z',
      '2026-12-01T00:00:00-11:00',
      '2027-01-01T00:00:00-11:00',
    ],
    // Leap February, both as the current month and as the one before March.
    [
      'Europe/Berlin',
      '2028-02-29T12:00:00Z',
      '2028-02-01T00:00:00+01:00',
      '2028-03-01T00:00:00+01:00',
    ],
  ])('%s at %s: %s to %s', (timeZone, iso, monthStart, nextMonthStart) => {
    expect(inZone(startOfMonth(at(iso), timeZone), timeZone)).toBe(monthStart)
    expect(inZone(startOfNextMonth(at(iso), timeZone), timeZone)).toBe(nextMonthStart)
  })

  it('moves from December to January of the next year, by local not UTC date', () => {
    // 31 December 23:30 UTC is already January in Berlin and Kiritimati, still December in New York.
    const instant = at('2026-12-31T23:30:00Z')
    expect(startOfMonth(instant, 'Europe/Berlin').toISOString()).toBe('2026-12-31T23:00:00.000Z')
    expect(startOfNextMonth(instant, 'Europe/Berlin').toISOString()).toBe(
      '2027-01-31T23:00:00.000Z',
    )
    expect(startOfMonth(instant, 'America/New_York').toISOString()).toBe('2026-12-01T05:00:00.000Z')
    expect(startOfNextMonth(instant, 'America/New_York').toISOString()).toBe(
      '2027-01-01T05:00:00.000Z',
    )
    expect(startOfMonth(instant, 'Pacific/Kiritimati').toISOString()).toBe(
      '2026-12-31T10:00:00.000Z',
    )
  })

  it('treats the month start itself as inside the month and the instant before as outside', () => {
    const reset = at('2026-11-30T23:00:00Z')
    expect(startOfMonth(reset, 'Europe/Berlin')).toEqual(reset)
    expect(startOfNextMonth(new Date(reset.getTime() - 1), 'Europe/Berlin')).toEqual(reset)
  })
})

describe('formatInZone', () => {
  it.each([
    ['UTC', '2026-12-01T00:00:00Z', '2026-12-01T00:00:00+00:00'],
    ['Europe/Berlin', '2026-11-30T23:00:00Z', '2026-12-01T00:00:00+01:00'],
    ['Europe/Berlin', '2026-10-25T00:59:59Z', '2026-10-25T02:59:59+02:00'],
    ['Europe/Berlin', '2026-10-25T01:00:00Z', '2026-10-25T02:00:00+01:00'],
    ['America/New_York', '2026-03-08T06:59:59Z', '2026-03-08T01:59:59-05:00'],
    ['America/New_York', '2026-03-08T07:00:00Z', '2026-03-08T03:00:00-04:00'],
    ['Asia/Kolkata', '2026-05-31T18:30:00Z', '2026-06-01T00:00:00+05:30'],
    ['Asia/Kathmandu', '2026-05-31T18:15:00Z', '2026-06-01T00:00:00+05:45'],
    ['Australia/Lord_Howe', '2026-10-03T15:30:00Z', '2026-10-04T02:30:00+11:00'],
    ['Australia/Lord_Howe', '2026-04-04T15:00:00Z', '2026-04-05T01:30:00+10:30'],
    ['Pacific/Kiritimati', '2026-12-31T10:00:00Z', '2027-01-01T00:00:00+14:00'],
    ['Pacific/Pago_Pago', '2026-12-01T11:00:00Z', '2026-12-01T00:00:00-11:00'],
  ])('%s at %s is %s', (timeZone, iso, expected) => {
    expect(formatInZone(at(iso), timeZone)).toBe(expected)
  })

  it('drops milliseconds, rounding down also before 1970', () => {
    expect(formatInZone(at('2026-01-01T00:00:00.999Z'), 'UTC')).toBe('2026-01-01T00:00:00+00:00')
    expect(formatInZone(at('1969-12-31T23:59:59.500Z'), 'UTC')).toBe('1969-12-31T23:59:59+00:00')
  })

  it('writes a local-mean-time offset rounded to the minute and still names the same instant', () => {
    const instant = at('1850-01-01T00:00:00Z')
    const formatted = formatInZone(instant, 'Europe/Berlin')
    expect(formatted).toBe('1850-01-01T00:53:00+00:53')
    expect(new Date(formatted)).toEqual(instant)
  })

  it('refuses an invalid Date', () => {
    expect(() => formatInZone(new Date('nonsense'), 'UTC')).toThrow(RangeError)
  })
})

describe('invariants over two years of instants', () => {
  const zones = [
    'UTC',
    'Europe/Berlin',
    'America/New_York',
    'Asia/Kolkata',
    'Asia/Kathmandu',
    'Australia/Lord_Howe',
    'America/Santiago',
    'America/Havana',
    'Pacific/Kiritimati',
    'Pacific/Pago_Pago',
  ]
  // An odd step in whole seconds so the samples drift through every local hour and minute.
  const stepMs = ((5 * 60 + 17) * 60 + 13) * 1_000
  const instants: Date[] = []
  for (
    let ms = Date.parse('2026-01-01T00:00:00Z');
    ms < Date.parse('2028-01-01T00:00:00Z');
    ms += stepMs
  ) {
    instants.push(new Date(ms))
  }

  it.each(zones)('holds in %s', (timeZone) => {
    const failures: string[] = []
    for (const instant of instants) {
      const monthStart = startOfMonth(instant, timeZone)
      const nextMonthStart = startOfNextMonth(instant, timeZone)
      const dayStart = startOfDay(instant, timeZone)
      const nextDayStart = startOfNextDay(instant, timeZone)
      const formatted = formatInZone(instant, timeZone)
      const holds =
        monthStart <= instant &&
        instant < nextMonthStart &&
        dayStart <= instant &&
        instant < nextDayStart &&
        zonedDayKey(dayStart, timeZone) === zonedDayKey(instant, timeZone) &&
        zonedMonthKey(monthStart, timeZone) === zonedMonthKey(instant, timeZone) &&
        zonedDayKey(monthStart, timeZone).endsWith('-01') &&
        localDateStart(zonedDayKey(instant, timeZone), timeZone).getTime() === dayStart.getTime() &&
        new Date(formatted).getTime() === instant.getTime() &&
        formatted.startsWith(zonedDayKey(instant, timeZone))
      if (!holds) failures.push(`${instant.toISOString()} (${formatted})`)
    }
    expect(failures).toEqual([])
  })
})
