import { domainToASCII, domainToUnicode } from 'node:url'

export type EmailProblem =
  | 'format'
  | 'length'
  | 'invisible-characters'
  | 'mixed-scripts'
  | 'confusable'
  | 'domain'

const MESSAGES: Record<EmailProblem, string> = {
  format: 'The email address is not in a valid format',
  length: 'The email address is too long',
  'invisible-characters': 'The email address contains invisible or whitespace characters',
  'mixed-scripts': 'The email address mixes writing systems',
  confusable: 'The email address uses characters that imitate other letters',
  domain: 'The email domain is not valid',
}

export class InvalidEmailError extends Error {
  readonly problem: EmailProblem

  constructor(problem: EmailProblem) {
    super(MESSAGES[problem])
    this.name = 'InvalidEmailError'
    this.problem = problem
  }
}

// Limits count Unicode code points of the canonical form, not UTF-8 bytes: they are about what a
// person can read and what we store, and a byte limit would give non-Latin users far less room.
const MAX_ADDRESS_LENGTH = 254
const MAX_LOCAL_LENGTH = 64
// DNS limits apply to the punycode form, which is what resolvers see.
const MAX_ASCII_LABEL_LENGTH = 63
const MAX_ASCII_DOMAIN_LENGTH = 253
// Checked before NFKC so a huge input cannot make us normalise megabytes of text.
const MAX_INPUT_LENGTH = 1024

const SURROUNDING_WHITESPACE = /^\p{White_Space}+|\p{White_Space}+$/gu

// Hangul fillers are already Default_Ignorable; they are listed because they are the classic
// "blank letter" trick. U+2800 (braille blank) renders as nothing but is not Default_Ignorable.
const INVISIBLE =
  /[\p{Cc}\p{Cf}\p{White_Space}\p{Default_Ignorable_Code_Point}\p{Variation_Selector}\u115F\u1160\u3164\uFFA0\u2800]/u

const LOCAL_PART_CHARS = /^[a-z0-9!#$%&'*+/=?^_`{|}~.\-\p{L}\p{M}\p{Nd}]+$/u
const LABEL_CHARS = /^[a-z0-9\-\p{L}\p{M}\p{Nd}]+$/u
const LETTER = /\p{L}/u
const STANDALONE_MARK = /(?<![\p{L}\p{M}])\p{M}/u
// NFKC composes every accented Latin letter that has a precomposed form, so a mark still sitting
// on a bare ASCII letter is an overlay that makes it look like (or nearly like) that letter,
// e.g. 'i' + U+0307 rendering as 'i'.
const MARK_ON_ASCII_LETTER = /[a-z]\p{M}/u

// Latin-script letters without everyday orthographic use that pass for ASCII letters:
// ɑ ɡ ɩ ȷ, the dental click ǀ (looks like l), and small capitals (ɪ ɢ ʜ ʟ ɴ ʀ ʏ ʙ, U+1D00–U+1D22).
const LATIN_LOOKALIKE = /[ɑɡɩȷ\u01C0ɪɢʜʟɴʀʏʙ\u1D00-\u1D22]/u

// Lower-case Cyrillic and Greek letters that render (nearly) identically to a Latin letter in
// common fonts. Deliberately small: it only has to catch a label made entirely of such letters,
// which could then pass for an all-Latin name ('аррӏе' for 'apple').
const WHOLE_SCRIPT_LOOKALIKES = {
  // а е о р с у х і ј ѕ ԁ ӏ ԛ ԝ һ  ->  a e o p c y x i j s d l q w h
  Cyrillic: new Set('аеорсухіјѕԁӏԛԝһ'),
  // ο α ν τ ρ ι κ υ χ γ ϲ ϳ  ->  o a v t p i k u x y c j
  Greek: new Set('οαντρικυχγϲϳ'),
}
type LookalikeScript = keyof typeof WHOLE_SCRIPT_LOOKALIKES

const SCRIPT_LETTER: Record<LookalikeScript, RegExp> = {
  Cyrillic: /\p{Script=Cyrillic}/u,
  Greek: /\p{Script=Greek}/u,
}

// UTS #31 "recommended scripts": scripts in everyday use. Letters from anything else (historic
// scripts, Cherokee with its many Latin lookalikes, ...) are refused outright.
const RECOMMENDED_SCRIPTS = [
  'Arabic',
  'Armenian',
  'Bengali',
  'Bopomofo',
  'Cyrillic',
  'Devanagari',
  'Ethiopic',
  'Georgian',
  'Greek',
  'Gujarati',
  'Gurmukhi',
  'Han',
  'Hangul',
  'Hebrew',
  'Hiragana',
  'Kannada',
  'Katakana',
  'Khmer',
  'Lao',
  'Latin',
  'Malayalam',
  'Myanmar',
  'Oriya',
  'Sinhala',
  'Tamil',
  'Telugu',
  'Thaana',
  'Thai',
  'Tibetan',
] as const
const SCRIPT_PATTERNS = RECOMMENDED_SCRIPTS.map((script) => ({
  script,
  pattern: new RegExp(`^\\p{scx=${script}}$`, 'u'),
}))
const SCRIPT_AGNOSTIC = /^[\p{scx=Common}\p{scx=Inherited}]$/u

// Japanese, Korean and Chinese writing legitimately combine several scripts; UTS #39 resolves
// them to these writing systems so that e.g. Han + Katakana still counts as one.
const WRITING_SYSTEMS: Partial<Record<string, readonly string[]>> = {
  Han: ['Jpan', 'Kore', 'Hanb'],
  Hiragana: ['Jpan'],
  Katakana: ['Jpan'],
  Hangul: ['Kore'],
  Bopomofo: ['Hanb'],
}
const HAN_WRITING_SYSTEMS = ['Jpan', 'Kore', 'Hanb']

function fail(problem: EmailProblem): never {
  throw new InvalidEmailError(problem)
}

function codePointLength(value: string): number {
  return [...value].length
}

function scriptsOf(char: string, unknownProblem: EmailProblem): Set<string> | undefined {
  if (SCRIPT_AGNOSTIC.test(char)) return undefined
  const scripts = new Set<string>()
  for (const { script, pattern } of SCRIPT_PATTERNS) {
    if (!pattern.test(char)) continue
    scripts.add(script)
    for (const system of WRITING_SYSTEMS[script] ?? []) scripts.add(system)
  }
  if (scripts.size === 0) fail(unknownProblem)
  return scripts
}

function intersect(sets: readonly Set<string>[]): Set<string> {
  const [first, ...rest] = sets
  if (!first) return new Set()
  return new Set([...first].filter((script) => rest.every((set) => set.has(script))))
}

/**
 * One writing system per local part or label (UTS #39 "highly restrictive"): a single script,
 * or Latin combined with Japanese, Korean or Chinese, whose letters cannot pass for Latin ones.
 */
function checkScripts(unit: string, unknownProblem: EmailProblem): void {
  const sets: Set<string>[] = []
  for (const char of unit) {
    const scripts = scriptsOf(char, unknownProblem)
    if (scripts) sets.push(scripts)
  }
  if (sets.length === 0 || intersect(sets).size > 0) return
  const nonLatin = sets.filter((set) => !set.has('Latin'))
  const nonLatinSystems = intersect(nonLatin)
  if (
    nonLatin.length < sets.length &&
    HAN_WRITING_SYSTEMS.some((system) => nonLatinSystems.has(system))
  ) {
    return
  }
  fail('mixed-scripts')
}

function checkMarksAndLookalikes(unit: string): void {
  if (STANDALONE_MARK.test(unit)) fail('invisible-characters')
  if (MARK_ON_ASCII_LETTER.test(unit) || LATIN_LOOKALIKE.test(unit)) fail('confusable')
}

/** The script whose lookalike table covers every letter of the unit, if any. */
function lookalikeScript(unit: string): LookalikeScript | undefined {
  const letters = [...unit].filter((char) => LETTER.test(char))
  if (letters.length === 0) return undefined
  for (const script of ['Cyrillic', 'Greek'] as const) {
    const table = WHOLE_SCRIPT_LOOKALIKES[script]
    if (letters.every((char) => table.has(char))) return script
  }
  return undefined
}

function hasDistinctiveLetter(unit: string, script: LookalikeScript): boolean {
  const table = WHOLE_SCRIPT_LOOKALIKES[script]
  return [...unit].some((char) => SCRIPT_LETTER[script].test(char) && !table.has(char))
}

function checkLocalPart(local: string): void {
  if (codePointLength(local) > MAX_LOCAL_LENGTH) fail('length')
  // Quoted local parts and comments are legal in RFC 5322 but '"', '(' and friends are not in
  // this set, so they are refused here: they only make equal-looking addresses easier.
  if (!LOCAL_PART_CHARS.test(local)) fail('format')
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) fail('format')
  checkMarksAndLookalikes(local)
  checkScripts(local, 'format')
  if (lookalikeScript(local)) fail('confusable')
}

function normalizeDomain(typed: string): string {
  if (typed.startsWith('[') || typed.endsWith(']')) fail('domain')
  const ascii = domainToASCII(typed.replace(/[\u3002\uFF61]/gu, '.'))
  if (ascii === '') fail('domain')
  if (ascii.length > MAX_ASCII_DOMAIN_LENGTH) fail('length')

  // Everything below is checked on the Unicode form, so a label typed as punycode
  // ('xn--80ak6aa92e') gets exactly the same scrutiny as the same label typed in Unicode.
  const domain = domainToUnicode(ascii)
  if (domain !== domain.normalize('NFKC').toLowerCase()) fail('domain')
  if (INVISIBLE.test(domain)) fail('invisible-characters')

  const labels = domain.split('.')
  const asciiLabels = ascii.split('.')
  if (labels.length < 2 || labels.length !== asciiLabels.length) fail('domain')
  for (const asciiLabel of asciiLabels) {
    if (asciiLabel === '' || asciiLabel.length > MAX_ASCII_LABEL_LENGTH) fail('domain')
  }
  for (const label of labels) {
    if (!LABEL_CHARS.test(label) || label.startsWith('-') || label.endsWith('-')) fail('domain')
    // Still ACE after decoding means the punycode was invalid.
    if (label.startsWith('xn--')) fail('domain')
  }
  const tld = labels[labels.length - 1] ?? ''
  if (/^[0-9]+$/.test(tld)) fail('domain')

  for (const label of labels) {
    checkMarksAndLookalikes(label)
    checkScripts(label, 'domain')
  }
  for (const label of labels) {
    const script = lookalikeScript(label)
    if (!script) continue
    // A lookalike label is harmless when the name is visibly in that script anyway and sits
    // under a TLD of that script, which cannot hold the Latin name it imitates; this is what
    // keeps the real Cyrillic TLD 'рус' (all lookalikes) usable in 'пример.рус'.
    const visiblySameScript =
      SCRIPT_LETTER[script].test(tld) && labels.some((l) => hasDistinctiveLetter(l, script))
    if (!visiblySameScript) fail('confusable')
  }
  return domain
}

/**
 * Returns the canonical form we store and compare, or throws InvalidEmailError.
 *
 * Provider-specific aliases are deliberately kept: we do not strip '+tags' or remove dots for
 * Gmail, because whether two such addresses reach the same mailbox is the provider's decision,
 * and merging them here would silently join or hijack distinct identities.
 */
export function normalizeEmail(input: string): string {
  // Only White_Space is trimmed (not String#trim, which also eats U+FEFF), so a BOM is rejected.
  const trimmed = input.replace(SURROUNDING_WHITESPACE, '')
  if (trimmed === '') fail('format')
  if (trimmed.length > MAX_INPUT_LENGTH) fail('length')

  // Locale-independent lower-casing turns Turkish 'İ' into 'i' + U+0307, which would then be
  // refused as a lookalike; it is the capital of a plain 'i', so fold it to that first.
  // The second NFKC pass keeps the result stable if lower-casing produced a decomposed form.
  const email = trimmed.normalize('NFKC').replaceAll('\u0130', 'i').toLowerCase().normalize('NFKC')
  if (INVISIBLE.test(email)) fail('invisible-characters')

  const at = email.indexOf('@')
  if (at <= 0 || at === email.length - 1 || at !== email.lastIndexOf('@')) fail('format')
  const local = email.slice(0, at)
  checkLocalPart(local)
  const canonical = `${local}@${normalizeDomain(email.slice(at + 1))}`
  if (codePointLength(canonical) > MAX_ADDRESS_LENGTH) fail('length')
  return canonical
}
