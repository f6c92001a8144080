/**
 * ftfy 6.3.1's mojibake heuristic (`ftfy.badness`): a regex over the few hundred characters that UTF-8
 * mojibake produces, matching juxtapositions that are far likelier to be mojibake than intended text.
 * Port of python-ftfy by Robyn Speer (Apache-2.0); the categories and alternatives are ftfy's, in its order.
 */
import { PY_WHITESPACE_CLASS, PY_WORD_CLASS } from '../text/python-text.ts';

/** ftfy's MOJIBAKE_CATEGORIES: regex character-class bodies (a few contain ranges). */
const CATEGORIES = {
  common: '\u00a0\u00ad\u00b7\u00b4\u2013\u2014\u2015\u2026\u2019',
  c1: '\u0080-\u009f',
  bad: '\u00a6\u00a4\u00a8\u00ac\u00af\u00b8\u0192\u02c6\u02c7\u02d8\u02db\u02dc\u2020\u2021\u2030\u2310\u25ca\ufffd\u00aa\u00ba',
  law: '\u00b6\u00a7',
  currency: '\u00a2\u00a3\u00a5\u20a7\u20ac',
  start_punctuation: '\u00a1\u00ab\u00bf\u00a9\u0384\u0385\u2018\u201a\u201c\u201e\u2022\u2039\uf8ff',
  end_punctuation: '\u00ae\u00bb\u02dd\u201d\u203a\u2122',
  numeric:
    '\u00b2\u00b3\u00b9\u00b1\u00bc\u00bd\u00be\u00d7\u00b5\u00f7\u2044\u2202\u2206\u220f\u2211\u221a\u221e\u2229\u222b\u2248\u2260\u2261\u2264\u2265\u2116',
  kaomoji: '\u00d2-\u00d6\u00d9-\u00dc\u00f2-\u00f6\u00f8-\u00fc\u0150\u014c\u016a\u0172\u00b0',
  upper_accented:
    '\u00c0-\u00d1\u00d8\u00dc\u00dd\u0102\u0100\u0104\u0106\u010c\u010e\u0110\u0118\u011a\u0112\u0116\u011e\u0122\u0130\u012a\u0136\u0139\u013d\u0141\u013b\u0143\u0147\u0145\u0152\u0158\u015a\u015e\u0160\u0162\u0164\u016e\u0170\u0178\u0179\u017b\u017d\u0490',
  lower_accented:
    '\u00df\u00e0-\u00f1\u0103\u0105\u0101\u0107\u010d\u010f\u0111\u0119\u011b\u0113\u0117\u011f\u0123\u012f\u012b\u0137\u013a\u013e\u0142\u013c\u0153\u0155\u015b\u015f\u0161\u0165\u00fc\u017a\u017c\u017e\u0491\ufb01\ufb02',
  upper_common: '\u00de\u0391-\u03a9\u0386\u0388\u0389\u038a\u038c\u038e\u038f\u03aa\u03ab\u0401-\u042f',
  lower_common: '\u03b1-\u03c9\u03ac\u03ad\u03ae\u03af\u03b0\u0430-\u045f',
  box: '\u2502\u250c\u2510\u2518\u251c\u2524\u252c\u253c\u2550-\u256c\u2580\u2584\u2588\u258c\u2590\u2591\u2592\u2593',
} as const;

type Category = keyof typeof CATEGORIES;

/** A character class made of categories plus literal extra characters. */
function cls(names: Category[], extra = ''): string {
  return `[${names.map((n) => CATEGORIES[n]).join('')}${extra}]`;
}

const S = `[${PY_WHITESPACE_CLASS}]`;
const W = `[${PY_WORD_CLASS}]`;
const ARABIC_PAIR = `[\u00d8\u00d9]${cls(['common', 'currency', 'bad', 'numeric', 'start_punctuation'], '\u0178\u0160\u00ae\u00b0\u00b5\u00bb')}`;

const ALTERNATIVES: string[] = [
  cls(['c1']),
  cls(['bad', 'lower_accented', 'upper_accented', 'box', 'start_punctuation', 'end_punctuation', 'currency', 'numeric', 'law']) + cls(['bad']),
  '[a-zA-Z]' + cls(['lower_common', 'upper_common']) + cls(['bad']),
  cls(['bad']) + cls(['lower_accented', 'upper_accented', 'box', 'start_punctuation', 'end_punctuation', 'currency', 'numeric', 'law']),
  cls(['lower_accented', 'lower_common', 'box', 'end_punctuation', 'currency', 'numeric']) + cls(['upper_accented']),
  cls(['box', 'end_punctuation', 'currency', 'numeric']) + cls(['lower_accented']),
  cls(['lower_accented', 'box', 'end_punctuation']) + cls(['currency']),
  S + cls(['upper_accented']) + cls(['currency']),
  cls(['upper_accented', 'box']) + cls(['numeric', 'law']),
  cls(['lower_accented', 'upper_accented', 'box', 'currency', 'end_punctuation']) + cls(['start_punctuation']) + cls(['numeric']),
  cls(['lower_accented', 'upper_accented', 'currency', 'numeric', 'box', 'law']) + cls(['end_punctuation']) + cls(['start_punctuation']),
  cls(['currency', 'numeric', 'box']) + cls(['start_punctuation']),
  '[a-z]' + cls(['upper_accented']) + cls(['start_punctuation', 'currency']),
  cls(['box']) + cls(['kaomoji']),
  cls(['lower_accented', 'upper_accented', 'currency', 'numeric', 'start_punctuation', 'end_punctuation', 'law']) + cls(['box']),
  cls(['box']) + cls(['end_punctuation']),
  cls(['lower_accented', 'upper_accented']) + cls(['start_punctuation', 'end_punctuation']) + W,
  // The ligature œ when not followed by an unaccented Latin letter.
  '[\u0152\u0153][^A-Za-z]',
  // Degree signs after capital letters.
  cls(['upper_accented']) + '\u00b0',
  // Common Windows-1252 2-character mojibake.
  '[\u00c2\u00c3\u00ce\u00d0]' +
    `[\u20ac\u0153\u0160\u0161\u00a2\u00a3\u0178\u017e\u00a0\u00ad\u00ae\u00a9\u00b0\u00b7\u00bb${CATEGORIES.start_punctuation}${CATEGORIES.end_punctuation}\u2013\u2014\u00b4]`,
  '\u00d7[\u00b2\u00b3]',
  // Windows-1252 mojibake of Arabic words includes 'common' characters, so four characters are required.
  ARABIC_PAIR + ARABIC_PAIR,
  // Windows-1252 mojibake starting 3-character sequences of some South Asian alphabets.
  '\u00e0[\u00b2\u00b5\u00b9\u00bc\u00bd\u00be]',
  // MacRoman mojibake.
  '\u221a[\u00b1\u2202\u2020\u2260\u00ae\u2122\u00b4\u2264\u2265\u00a5\u00b5\u00f8]',
  '\u2248[\u00b0\u00a2]',
  '\u201a\u00c4[\u00ec\u00ee\u00ef\u00f2\u00f4\u00fa\u00f9\u00fb\u2020\u00b0\u00a2\u03c0]',
  '\u201a[\u00e2\u00f3][\u00e0\u00e4\u00b0\u00ea]',
  // Windows-1251 mojibake of characters in the U+2000 range.
  '\u0432\u0402',
  // Windows-1251 mojibake of Latin-1 characters and/or Cyrillic: three characters required.
  '[\u0412\u0413\u0420\u0421]' + cls(['c1', 'bad', 'start_punctuation', 'end_punctuation', 'currency'], '\u00b0\u00b5') + '[\u0412\u0413\u0420\u0421]',
  // Windows-1251 mojibake on top of Latin-1 mojibake of Windows-1252 characters, next to a Latin letter.
  '\u0413\u045e\u0412\u0402\u0412[^\\n][A-Za-z ]',
  // Windows-1252 encodings of 'à' and 'á', and of \xa0 itself.
  '\u00c3[\u00a0\u00a1]',
  `[a-z]${S}?[\u00c3\u00c2][ ]`,
  '^[\u00c3\u00c2][ ]',
  // Â encoding exactly the character that follows it, when that character is common enough.
  `[a-z.,?!${CATEGORIES.end_punctuation}]\u00c2[ ${CATEGORIES.start_punctuation}${CATEGORIES.end_punctuation}]`,
  // Windows-1253 mojibake of characters in the U+2000 range.
  '\u03b2\u20ac[\u2122\u00a0\u0386\u00ad\u00ae\u00b0]',
  // Windows-1253 mojibake of Latin-1 characters and/or the Greek alphabet.
  '[\u0392\u0393\u039e\u039f]' + cls(['c1', 'bad', 'start_punctuation', 'end_punctuation', 'currency'], '\u00b0') + '[\u0392\u0393\u039e\u039f]',
  // Windows-1257 mojibake of characters in the U+2000 range.
  '\u0101\u20ac',
];

const BADNESS_RE = new RegExp(ALTERNATIVES.join('|'), 'u');

/** ftfy's `is_bad`: does the text contain a sequence that looks like mojibake? */
export function isBad(text: string): boolean {
  return BADNESS_RE.test(text);
}
