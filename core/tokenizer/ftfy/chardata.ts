/**
 * ftfy 6.3.1's character data (`ftfy.chardata`): the patterns and tables its fixes use.
 * Port of python-ftfy by Robyn Speer (Apache-2.0).
 *
 * Byte patterns (ALTERED_UTF8, LOSSY_UTF8, A_GRAVE_WORD) run on byte strings (see codecs.ts), so they
 * have no `u` flag; text patterns do.
 */
import { HTML5_ENTITIES } from '../text/html5-entities.ts';
import { htmlUnescape } from '../text/html-unescape.ts';

/** Characters that, in some encoding ftfy tries, decode from a UTF-8 lead or continuation byte. */
const UTF8_CLUES = {
  firstOf2:
    '\u0102\u00c2\u00c4\u0100\u00c5\u00c3\u00c6\u0106\u010c\u00c7\u010e\u0110\u00c9\u011a\u00ca\u00cb\u0116\u00c8\u0112\u0118\u00d0\u011e\u0122\u00cd\u00ce\u00cf\u0130\u00cc\u012a\u0136\u0139\u013b\u0141\u0143\u0147\u0145\u00d1\u00d3\u00d4\u00d6\u0150\u00d2\u014c\u00d8\u00d5\u0158\u015a\u0160\u015e\u0162\u00de\u00da\u00db\u00dc\u0170\u00d9\u016a\u0172\u016e\u00dd\u0179\u017d\u017b\u00df\u00d7' +
    '\u0392\u0393\u0394\u0395\u0396\u0397\u0398\u0399\u039a\u039b\u039c\u039d\u039e\u039f\u03a0\u03a1\u03a3\u03a4\u03a5\u03a6\u03a7\u03a8\u03a9\u03aa\u03ab\u03ac\u03ad\u03ae\u03af' +
    '\u0412\u0413\u0414\u0415\u0416\u0417\u0418\u0419\u041a\u041b\u041c\u041d\u041e\u041f\u0420\u0421\u0422\u0423\u0424\u0425\u0426\u0427\u0428\u0429\u042a\u042b\u042c\u042d\u042e\u042f',
  firstOf3:
    '\u00e1\u0103\u00e2\u00e4\u00e0\u0101\u0105\u00e5\u00e3\u00e6\u0107\u010d\u00e7\u010f\u00e9\u011b\u00ea\u00eb\u0117\u00e8\u0113\u0119\u0119\u0123\u00ed\u00ee\u00ef\u00ec\u012b\u012f\u0137\u013a\u013c\u0155\u017a' +
    '\u03b0\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9\u03ba\u03bb\u03bc\u03bd\u03be\u03bf' +
    '\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u0439\u043a\u043b\u043c\u043d\u043e\u043f',
  firstOf4: '\u0111\u00f0\u011f\u00f3\u0161\u03c0\u03c3\u0440\u0443',
  /** Continuation bytes that don't usually stand for themselves next to mojibake. */
  continuationStrict:
    '\u0080-\u00bf\u0104\u00c6\u013d\u0141\u00d8\u0156\u015a\u0160\u015e\u0164\u0178\u0179\u017d\u017b\u0152\u0105\u00e6\u0192\u013e\u0142\u00f8\u0157\u015b\u0161\u015f\u0165\u017a\u017e\u017c\u0153\u02c6\u02c7\u02d8\u02db\u02dc\u02dd' +
    '\u0384\u0385\u0386\u0388\u0389\u038a\u038c\u038e\u038f' +
    '\u0401\u0402\u0403\u0404\u0405\u0406\u0407\u0408\u0409\u040a\u040b\u040c\u040e\u040f\u0451\u0452\u0453\u0454\u0455\u0456\u0457\u0458\u0459\u045a\u045b\u045c\u045e\u045f\u0490\u0491' +
    '\u2020\u2021\u2030\u2039\u203a\u20ac\u2116\u2122',
  /** The strict set plus a space (for a lost 0xA0), dashes, quotes, bullet and ellipsis. */
  continuationExtra: ' \u2013\u2014\u2015\u2018\u2019\u201a\u201c\u201d\u201e\u2022\u2026',
};

const CONTINUATION = UTF8_CLUES.continuationStrict + UTF8_CLUES.continuationExtra;

/**
 * Runs of what looks like UTF-8 decoded as a single-byte encoding, not preceded by a strict continuation
 * character (so a few characters in a larger garble are not "fixed" on their own).
 */
export const UTF8_DETECTOR_PATTERN =
  `(?<![${UTF8_CLUES.continuationStrict}])(?:` +
  `[${UTF8_CLUES.firstOf2}][${CONTINUATION}]|` +
  `[${UTF8_CLUES.firstOf3}][${CONTINUATION}]{2}|` +
  `[${UTF8_CLUES.firstOf4}][${CONTINUATION}]{3})+`;

/** UTF-8 sequences that would be valid had a Windows-1252 program not turned byte 0xA0 into a space. */
export const ALTERED_UTF8_PATTERN =
  '[\\xc2\\xc3\\xc5\\xce\\xd0\\xd9][ ]' +
  '|[\\xe2\\xe3][ ][\\x80-\\x84\\x86-\\x9f\\xa1-\\xbf]' +
  '|[\\xe0-\\xe3][\\x80-\\x84\\x86-\\x9f\\xa1-\\xbf][ ]' +
  '|[\\xf0][ ][\\x80-\\xbf][\\x80-\\xbf]' +
  '|[\\xf0][\\x80-\\xbf][ ][\\x80-\\xbf]' +
  '|[\\xf0][\\x80-\\xbf][\\x80-\\xbf][ ]';

/** "à " as a word, where the space stood for the 0xA0 of its UTF-8 encoding. */
export const A_GRAVE_WORD = /\xc3 (?! |quele|quela|quilo|s )/g;

/** UTF-8 / CESU-8 sequences whose lost bytes became 0x1A (U+FFFD in the sloppy codecs) or, once, '?'. */
export const LOSSY_UTF8 = new RegExp(
  '[\\xc2-\\xdf][\\x1a]' +
    '|[\\xc2-\\xc3][?]' +
    '|\\xed[\\xa0-\\xaf][\\x1a?]\\xed[\\xb0-\\xbf][\\x1a?\\x80-\\xbf]' +
    '|\\xed[\\xa0-\\xaf][\\x1a?\\x80-\\xbf]\\xed[\\xb0-\\xbf][\\x1a?]' +
    '|[\\xe0-\\xef][\\x1a?][\\x1a\\x80-\\xbf]' +
    '|[\\xe0-\\xef][\\x1a\\x80-\\xbf][\\x1a?]' +
    '|[\\xf0-\\xf4][\\x1a?][\\x1a\\x80-\\xbf][\\x1a\\x80-\\xbf]' +
    '|[\\xf0-\\xf4][\\x1a\\x80-\\xbf][\\x1a?][\\x1a\\x80-\\xbf]' +
    '|[\\xf0-\\xf4][\\x1a\\x80-\\xbf][\\x1a\\x80-\\xbf][\\x1a?]' +
    '|\\x1a',
  'g',
);

export const C1_CONTROL_PATTERN = '[\\x80-\\x9f]';

/** Latin ligatures and legacy digraphs, split into their letters. */
export const LIGATURES: ReadonlyMap<string, string> = new Map([
  ['\u0132', 'IJ'],
  ['\u0133', 'ij'],
  ['\u0149', '\u02bcn'],
  ['\u01f1', 'DZ'],
  ['\u01f2', 'Dz'],
  ['\u01f3', 'dz'],
  ['\u01c4', 'D\u017d'],
  ['\u01c5', 'D\u017e'],
  ['\u01c6', 'd\u017e'],
  ['\u01c7', 'LJ'],
  ['\u01c8', 'Lj'],
  ['\u01c9', 'lj'],
  ['\u01ca', 'NJ'],
  ['\u01cb', 'Nj'],
  ['\u01cc', 'nj'],
  ['\ufb00', 'ff'],
  ['\ufb01', 'fi'],
  ['\ufb02', 'fl'],
  ['\ufb03', 'ffi'],
  ['\ufb04', 'ffl'],
  ['\ufb05', '\u017ft'],
  ['\ufb06', 'st'],
]);

let widthMap: Map<string, string> | undefined;

/** Halfwidth/fullwidth forms (U+FF01..U+FFEF) -> their NFKC form, plus U+3000 -> space. */
export function getWidthMap(): ReadonlyMap<string, string> {
  if (!widthMap) {
    widthMap = new Map([['\u3000', ' ']]);
    for (let cp = 0xff01; cp < 0xfff0; cp++) {
      const ch = String.fromCharCode(cp);
      const alternate = ch.normalize('NFKC');
      if (alternate !== ch) widthMap.set(ch, alternate);
    }
  }
  return widthMap;
}

/** Control characters ftfy removes (tab, LF, VT... stay; see ftfy.fixes.remove_control_chars). */
export const CONTROL_CHARS_PATTERN = '[\\x00-\\x08\\x0b\\x0e-\\x1f\\x7f\\u206a-\\u206f\\ufeff\\ufff9-\\ufffc]';

let htmlEntities: Map<string, string> | undefined;

/**
 * ftfy's HTML_ENTITIES: every `&name;` of HTML5, plus the all-caps spelling of lowercase names when that
 * spelling is not itself an entity (`&EACUTE;` -> É).
 */
export function getFtfyHtmlEntities(): ReadonlyMap<string, string> {
  if (!htmlEntities) {
    htmlEntities = new Map();
    for (const [name, char] of Object.entries(HTML5_ENTITIES)) {
      if (!name.endsWith(';')) continue;
      htmlEntities.set('&' + name, char);
      if (name === name.toLowerCase()) {
        const upper = '&' + name.toUpperCase();
        if (htmlUnescape(upper) === upper) htmlEntities.set(upper, char.toUpperCase());
      }
    }
  }
  return htmlEntities;
}
