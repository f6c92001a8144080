/**
 * The individual fixes of ftfy 6.3.1 (`ftfy.fixes`) that `fix_text` applies with its default settings.
 * Port of python-ftfy by Robyn Speer (Apache-2.0).
 */
import { htmlUnescape } from '../text/html-unescape.ts';
import { SLOPPY_WINDOWS_1252 } from './codecs.ts';
import {
  A_GRAVE_WORD,
  ALTERED_UTF8_PATTERN,
  C1_CONTROL_PATTERN,
  CONTROL_CHARS_PATTERN,
  LIGATURES,
  LOSSY_UTF8,
  getFtfyHtmlEntities,
  getWidthMap,
} from './chardata.ts';

const HTML_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

/** Decodes HTML entities that are complete (`;`-terminated), including all-caps ones like `&AMP;`. */
export function unescapeHtml(text: string): string {
  return text.replace(HTML_ENTITY, (entity) => {
    const known = getFtfyHtmlEntities().get(entity);
    if (known !== undefined) return known;
    if (entity.startsWith('&#')) {
      const unescaped = htmlUnescape(entity);
      // Only a reference that decoded completely counts.
      return unescaped.includes(';') ? entity : unescaped;
    }
    return entity;
  });
}

const ANSI_ESCAPE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;

export function removeTerminalEscapes(text: string): string {
  return text.replace(ANSI_ESCAPE, '');
}

const DOUBLE_QUOTES = /[\u201c-\u201f]/g;
const SINGLE_QUOTES = /[\u02bc\u2018-\u201b]/g;

export function uncurlQuotes(text: string): string {
  return text.replace(DOUBLE_QUOTES, '"').replace(SINGLE_QUOTES, "'");
}

const LIGATURE_CHARS = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

export function fixLatinLigatures(text: string): string {
  return text.replace(LIGATURE_CHARS, (ch) => LIGATURES.get(ch) ?? ch);
}

const WIDTH_CHARS = /[\u3000\uff01-\uffef]/g;

export function fixCharacterWidth(text: string): string {
  return text.replace(WIDTH_CHARS, (ch) => getWidthMap().get(ch) ?? ch);
}

const LINE_BREAKS = /\r\n|[\r\u2028\u2029\u0085]/g;

export function fixLineBreaks(text: string): string {
  return text.replace(LINE_BREAKS, '\n');
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Surrogate pairs are already single code points in JS; what is left alone becomes U+FFFD. */
export function fixSurrogates(text: string): string {
  return text.replace(LONE_SURROGATE, '\ufffd');
}

const CONTROL_CHARS = new RegExp(CONTROL_CHARS_PATTERN, 'g');

export function removeControlChars(text: string): string {
  return text.replace(CONTROL_CHARS, '');
}

const C1_CONTROLS = new RegExp(C1_CONTROL_PATTERN, 'g');
export const HAS_C1_CONTROL = new RegExp(C1_CONTROL_PATTERN);

/** C1 controls are almost always Windows-1252 bytes that were decoded as Latin-1. */
export function fixC1Controls(text: string): string {
  return text.replace(C1_CONTROLS, (ch) => SLOPPY_WINDOWS_1252.decodeTable[ch.charCodeAt(0)]);
}

const ALTERED_UTF8 = new RegExp(ALTERED_UTF8_PATTERN, 'g');
export const HAS_ALTERED_UTF8 = new RegExp(ALTERED_UTF8_PATTERN);

/** Puts back the 0xA0 bytes that became spaces inside UTF-8 sequences (byte string in, byte string out). */
export function restoreByteA0(bytes: string): string {
  return bytes.replace(A_GRAVE_WORD, '\xc3\xa0 ').replace(ALTERED_UTF8, (m) => m.replaceAll(' ', '\xa0'));
}

/** Decodes UTF-8 sequences that lost bytes as U+FFFD (byte string in, byte string out). */
export function replaceLossySequences(bytes: string): string {
  return bytes.replace(LOSSY_UTF8, '\xef\xbf\xbd');
}
