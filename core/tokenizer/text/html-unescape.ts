/**
 * CPython 3.11's `html.unescape`, which open_clip applies twice after ftfy. Its quirks matter for exact
 * token ids: legacy entities work without `;` (`&amp chips`), the longest known prefix of an unknown name
 * is decoded (`&notit;` -> `¬it;`), and numeric references to invalid code points follow the HTML5 rules.
 */
import { HTML5_ENTITIES } from './html5-entities.ts';

// A Map, so that names such as `constructor` never reach Object.prototype.
const ENTITIES = new Map(Object.entries(HTML5_ENTITIES));

/** HTML5's replacements for numeric references to C1 controls and a few others. */
const INVALID_CHARREFS = new Map<number, string>([
  [0x00, '\ufffd'],
  [0x0d, '\r'],
  [0x80, '\u20ac'],
  [0x81, '\x81'],
  [0x82, '\u201a'],
  [0x83, '\u0192'],
  [0x84, '\u201e'],
  [0x85, '\u2026'],
  [0x86, '\u2020'],
  [0x87, '\u2021'],
  [0x88, '\u02c6'],
  [0x89, '\u2030'],
  [0x8a, '\u0160'],
  [0x8b, '\u2039'],
  [0x8c, '\u0152'],
  [0x8d, '\x8d'],
  [0x8e, '\u017d'],
  [0x8f, '\x8f'],
  [0x90, '\x90'],
  [0x91, '\u2018'],
  [0x92, '\u2019'],
  [0x93, '\u201c'],
  [0x94, '\u201d'],
  [0x95, '\u2022'],
  [0x96, '\u2013'],
  [0x97, '\u2014'],
  [0x98, '\u02dc'],
  [0x99, '\u2122'],
  [0x9a, '\u0161'],
  [0x9b, '\u203a'],
  [0x9c, '\u0153'],
  [0x9d, '\x9d'],
  [0x9e, '\u017e'],
  [0x9f, '\u0178'],
]);

/** Code points a numeric reference may not produce: they decode to nothing. */
function isInvalidCodepoint(cp: number): boolean {
  return (
    (cp >= 0x1 && cp <= 0x8) ||
    cp === 0xb ||
    (cp >= 0xe && cp <= 0x1f) ||
    (cp >= 0x7f && cp <= 0x9f) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) ||
    (cp & 0xfffe) === 0xfffe
  );
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function numericCharref(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
  const cp = parseInt(digits, hex ? 16 : 10);
  const replaced = INVALID_CHARREFS.get(cp);
  if (replaced !== undefined) return replaced;
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return '\ufffd';
  if (isInvalidCodepoint(cp)) return '';
  return String.fromCodePoint(cp);
}

function namedCharref(ref: string): string {
  const exact = ENTITIES.get(ref);
  if (exact !== undefined) return exact;
  // The longest prefix that is an entity (only the legacy names without ';' can be prefixes).
  for (let len = ref.length - 1; len > 1; len--) {
    const value = ENTITIES.get(ref.slice(0, len));
    if (value !== undefined) return value + ref.slice(len);
  }
  return '&' + ref;
}

/** Python's `html.unescape(s)`. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_match, ref: string) => (ref[0] === '#' ? numericCharref(ref) : namedCharref(ref)));
}
