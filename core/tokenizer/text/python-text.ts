/**
 * Python `str` semantics that JS lacks or defines differently, for the places open_clip and ftfy rely on
 * them.
 */

/**
 * Every code point for which Python 3.11's `str.isspace()` is true: what `str.split()`/`str.strip()` and
 * the `re` module's `\s` treat as whitespace. Unlike JS `\s` it includes U+001C..U+001F and U+0085 and
 * excludes U+FEFF.
 */
export const PY_WHITESPACE_CLASS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/** Python `re`'s `\w` on str patterns (isalnum() or '_'), for use inside a `u`-flag character class. */
export const PY_WORD_CLASS = '\\p{L}\\p{N}_';

const PY_WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE_CLASS}]+`, 'u');
const PY_STRIP = new RegExp(`^[${PY_WHITESPACE_CLASS}]+|[${PY_WHITESPACE_CLASS}]+$`, 'gu');

/** Python `str.split()` with no separator. */
export function pySplit(text: string): string[] {
  return text.split(PY_WHITESPACE_RUN).filter((piece) => piece.length > 0);
}

/** Python `str.strip()` with no argument. */
export function pyStrip(text: string): string {
  return text.replace(PY_STRIP, '');
}

/**
 * Letters that Python 3.11's Unicode 14 tables do not have (they came with Unicode 16 and 17) and so
 * `str.lower()` leaves alone, while Node's newer ICU lowercases them.
 */
const UNCASED_IN_PYTHON_311 = /[^\u1c89\ua7cb\ua7cc\ua7ce\ua7d2\ua7d4\ua7da\ua7dc\u{10d50}-\u{10d65}\u{16ea0}-\u{16eb8}]+/gu;

/** Python 3.11's `str.lower()`. */
export function pyLower(text: string): string {
  return text.replace(UNCASED_IN_PYTHON_311, (run) => run.toLowerCase());
}
