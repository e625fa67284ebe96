import { describe, expect, it } from 'vitest'
import { type EmailProblem, InvalidEmailError, normalizeEmail } from '../../src/lib/email.js'

function problemOf(input: string): EmailProblem | 'accepted' {
  try {
    normalizeEmail(input)
    return 'accepted'
  } catch (error) {
    if (error instanceof InvalidEmailError) return error.problem
    throw error
  }
}

// 64 + '@' + 189 = 254 code points, the longest address allowed.
const LONGEST_LOCAL = 'a'.repeat(64)
const LONG_DOMAIN = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`

describe('normalizeEmail', () => {
  describe('accepts and canonicalises', () => {
    it.each([
      ['case folding', 'Alice@Example.COM', 'alice@example.com'],
      ['surrounding whitespace', '  \talice@example.com \n', 'alice@example.com'],
      ['NFKC fullwidth address', 'ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ', 'alice@example.com'],
      ['ideographic full stop in the domain', 'alice@example\u3002com', 'alice@example.com'],
      ['halfwidth ideographic full stop', 'alice@example\uFF61com', 'alice@example.com'],
      ['decomposed accent composes', 'Jose\u0301@example.com', 'jos\u00E9@example.com'],
      ['Turkish dotted capital I', '\u0130brahim@example.com', 'ibrahim@example.com'],
      [
        'every atext character',
        "a!#$%&'*+/=?^_`{|}~-b@example.com",
        "a!#$%&'*+/=?^_`{|}~-b@example.com",
      ],
      ['dots in the local part', 'first.middle.last@example.com', 'first.middle.last@example.com'],
      ['Greek address', 'δοκιμή@παράδειγμα.δοκιμή', 'δοκιμή@παράδειγμα.δοκιμή'],
      ['Cyrillic address', 'пользователь@пример.рф', 'пользователь@пример.рф'],
      ['upper-case Cyrillic address', 'ПОЛЬЗОВАТЕЛЬ@ПРИМЕР.РФ', 'пользователь@пример.рф'],
      ['punycode domain stored as Unicode', 'user@xn--e1afmkfd.xn--p1ai', 'user@пример.рф'],
      ['Cyrillic TLD made of lookalikes', 'user@пример.рус', 'user@пример.рус'],
      ['Greek lookalike label under a Greek TLD', 'user@ορα.ελ', 'user@ορα.ελ'],
      ['Japanese scripts together', 'ユーザー@例え.テスト', 'ユーザー@例え.テスト'],
      ['Latin with Han', 'abc中文@example.com', 'abc中文@example.com'],
      ['Devanagari with vowel signs', 'हिन्दी@भारत.भारत', 'हिन्दी@भारत.भारत'],
      ['hyphen and digits inside labels', 'a@my-host1.example.com', 'a@my-host1.example.com'],
      ['longest local part', `${LONGEST_LOCAL}@example.com`, `${LONGEST_LOCAL}@example.com`],
      ['longest address', `${LONGEST_LOCAL}@${LONG_DOMAIN}`, `${LONGEST_LOCAL}@${LONG_DOMAIN}`],
      // Lengths count code points: 64 'é' is 128 UTF-8 bytes and still fits.
      ['64 non-ASCII letters', `${'é'.repeat(64)}@example.com`, `${'é'.repeat(64)}@example.com`],
    ])('%s', (_name, input, expected) => {
      expect(normalizeEmail(input)).toBe(expected)
    })

    it('makes differently typed forms of one address equal', () => {
      expect(normalizeEmail('Alice@Example.COM')).toBe(normalizeEmail('alice@example.com'))
      expect(normalizeEmail('ＡＬＩＣＥ＠ＥＸＡＭＰＬＥ．ＣＯＭ')).toBe(
        normalizeEmail('alice@example.com'),
      )
      expect(normalizeEmail('USER@ПРИМЕР.РФ')).toBe(normalizeEmail('user@xn--e1afmkfd.xn--p1ai'))
    })

    it('keeps plus tags and dots, which may be distinct mailboxes', () => {
      expect(normalizeEmail('Alice.Smith+News@gmail.com')).toBe('alice.smith+news@gmail.com')
      expect(normalizeEmail('alice.smith@gmail.com')).not.toBe(
        normalizeEmail('alicesmith@gmail.com'),
      )
    })

    it('is idempotent', () => {
      for (const input of [
        'Alice@Example.COM',
        'ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ',
        'ПОЛЬЗОВАТЕЛЬ@ПРИМЕР.РФ',
        'user@xn--e1afmkfd.xn--p1ai',
        '\u0130brahim@example.com',
        'Jose\u0301@example.com',
      ]) {
        const once = normalizeEmail(input)
        expect(normalizeEmail(once)).toBe(once)
      }
    })
  })

  describe('rejects', () => {
    it.each<[string, string, EmailProblem]>([
      ['empty string', '', 'format'],
      ['whitespace only', ' \t\n ', 'format'],
      ['missing @', 'alice.example.com', 'format'],
      ['two @', 'alice@bob@example.com', 'format'],
      ['empty local part', '@example.com', 'format'],
      ['empty domain', 'alice@', 'format'],
      ['quoted local part', '"alice"@example.com', 'format'],
      ['quoted local part hiding an @', '"a@b"@example.com', 'format'],
      ['comment in the local part', 'alice(comment)@example.com', 'format'],
      ['double dot', 'alice..smith@example.com', 'format'],
      ['leading dot', '.alice@example.com', 'format'],
      ['trailing dot', 'alice.@example.com', 'format'],
      ['symbol in the local part', 'alice\u2764@example.com', 'format'],
      ['ideographic full stop in the local part', 'alice\u3002smith@example.com', 'format'],
      ['letters of a non-recommended script', '\uAB70\uAB71@example.com', 'format'],

      ['too-long local part', `${'a'.repeat(65)}@example.com`, 'length'],
      ['too-long non-ASCII local part', `${'é'.repeat(65)}@example.com`, 'length'],
      ['too-long address', `${LONGEST_LOCAL}@${LONG_DOMAIN.replace('.com', 'd.com')}`, 'length'],
      ['absurdly long input', `${'a'.repeat(100_000)}@example.com`, 'length'],

      ['tab inside', 'ali\tce@example.com', 'invisible-characters'],
      ['space inside', 'ali ce@example.com', 'invisible-characters'],
      ['no-break space inside', 'alice@exam\u00A0ple.com', 'invisible-characters'],
      ['zero-width space inside', 'ali\u200Bce@example.com', 'invisible-characters'],
      ['zero-width joiner', 'ali\u200Dce@example.com', 'invisible-characters'],
      ['RLO bidi override', 'alice\u202E@example.com', 'invisible-characters'],
      ['soft hyphen in the domain', 'alice@exam\u00ADple.com', 'invisible-characters'],
      ['soft hyphen in the local part', 'ali\u00ADce@example.com', 'invisible-characters'],
      ['leading byte order mark', '\uFEFFalice@example.com', 'invisible-characters'],
      ['Hangul filler', 'ali\u3164ce@example.com', 'invisible-characters'],
      ['Hangul choseong filler', 'ali\u115Fce@example.com', 'invisible-characters'],
      ['variation selector', 'alice\uFE0F@example.com', 'invisible-characters'],
      ['braille blank', 'ali\u2800ce@example.com', 'invisible-characters'],
      ['control character', 'ali\u0000ce@example.com', 'invisible-characters'],
      ['leading combining mark', '\u0301alice@example.com', 'invisible-characters'],
      ['combining mark after a hyphen', 'al-\u0301ice@example.com', 'invisible-characters'],

      ['Cyrillic а in a Latin local part', 'p\u0430ypal@example.com', 'mixed-scripts'],
      ['Cyrillic а in a Latin domain label', 'user@ex\u0430mple.com', 'mixed-scripts'],
      ['Greek omicron in the domain', 'user@g\u03BF\u03BFgle.com', 'mixed-scripts'],
      ['Greek and Cyrillic together', 'δοκιμήпример@example.com', 'mixed-scripts'],

      ['whole-script Cyrillic domain label', 'user@аррӏе.com', 'confusable'],
      ['the same label typed as punycode', 'user@xn--80ak6aa92e.com', 'confusable'],
      ['lookalike label under an all-lookalike TLD', 'user@аррӏе.рус', 'confusable'],
      ['lookalike label under a Latin TLD', 'user@аррӏе.пример.com', 'confusable'],
      ['whole-script Cyrillic local part', 'аррӏе@example.com', 'confusable'],
      ['whole-script Cyrillic local part with digits', 'ѕсоре-2.х@example.com', 'confusable'],
      ['whole-script Greek domain label', 'user@ορα.com', 'confusable'],
      ['Latin alpha posing as a', 'p\u0251ypal@example.com', 'confusable'],
      ['dental click posing as l', 'paypa\u01C0@example.com', 'confusable'],
      ['small capital', 'p\u1D00ypal@example.com', 'confusable'],
      ['dot above stacked on i', 'pi\u0307ng@example.com', 'confusable'],

      ['IPv4 literal', 'user@[127.0.0.1]', 'domain'],
      ['IPv6 literal', 'user@[IPv6:::1]', 'domain'],
      ['bare IPv4 address', 'user@127.0.0.1', 'domain'],
      ['numeric TLD', 'user@example.123', 'domain'],
      ['single label', 'user@localhost', 'domain'],
      ['label with leading hyphen', 'user@-example.com', 'domain'],
      ['label with trailing hyphen', 'user@example-.com', 'domain'],
      ['empty label', 'user@example..com', 'domain'],
      ['trailing dot', 'user@example.com.', 'domain'],
      ['underscore', 'user@ex_ample.com', 'domain'],
      ['label longer than 63', `user@${'a'.repeat(64)}.com`, 'domain'],
      ['invalid punycode', 'user@xn--abc.com', 'domain'],
      ['domainToASCII failure', 'user@exa%mple.com', 'domain'],
    ])('%s', (_name, input, expected) => {
      expect(problemOf(input)).toBe(expected)
    })
  })

  describe('InvalidEmailError', () => {
    it('carries the problem and a message that is safe to show', () => {
      let caught: unknown
      try {
        normalizeEmail('p\u0430ypal@example.com')
      } catch (error) {
        caught = error
      }
      expect(caught).toBeInstanceOf(InvalidEmailError)
      expect(caught).toBeInstanceOf(Error)
      expect(caught).toMatchObject({
        name: 'InvalidEmailError',
        problem: 'mixed-scripts',
        message: 'The email address mixes writing systems',
      })
    })
  })
})
