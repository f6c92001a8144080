/**
 * `ftfy.fix_text` as open_clip calls it (ftfy 6.3.1, default TextFixerConfig), in TypeScript.
 * Port of python-ftfy by Robyn Speer (Apache-2.0): same steps, same order, same heuristics.
 */
import { isBad } from './badness.ts';
import { UTF8_DETECTOR_PATTERN } from './chardata.ts';
import {
  CHARMAP_CODECS,
  LATIN_1,
  decodeCp1252Strict,
  decodeUtf8Strict,
  decodeUtf8Variants,
  encodeCharmap,
} from './codecs.ts';
import {
  HAS_ALTERED_UTF8,
  HAS_C1_CONTROL,
  fixC1Controls,
  fixCharacterWidth,
  fixLatinLigatures,
  fixLineBreaks,
  fixSurrogates,
  removeControlChars,
  removeTerminalEscapes,
  replaceLossySequences,
  restoreByteA0,
  uncurlQuotes,
  unescapeHtml,
} from './fixes.ts';

/** ftfy fixes text a line at a time, and at most this many characters at once. */
const MAX_DECODE_LENGTH = 1_000_000;

const ASCII_ONLY = /^[\x00-\x7f]*$/;
const HAS_UTF8_LOOKALIKE = new RegExp(UTF8_DETECTOR_PATTERN, 'u');
const UTF8_LOOKALIKES = new RegExp(UTF8_DETECTOR_PATTERN, 'gu');
const MAY_NEED_UTF8_VARIANTS = /[\xc0\xed]/;

/** One round of `fix_encoding`: the most likely re-decoding of mojibake, or the text unchanged. */
function fixEncodingOneStep(text: string): string {
  if (text.length === 0 || ASCII_ONLY.test(text) || !isBad(text)) return text;

  // Most often the text was UTF-8 decoded as a single-byte encoding: undo that when the bytes allow it.
  let latin1Bytes: string | null = null;
  for (const codec of CHARMAP_CODECS) {
    let bytes = encodeCharmap(text, codec);
    if (bytes === null) continue;
    if (codec === LATIN_1) latin1Bytes = bytes;
    if (codec.name !== 'macroman' && HAS_ALTERED_UTF8.test(bytes)) bytes = restoreByteA0(bytes);
    if (codec.sloppy) bytes = replaceLossySequences(bytes);
    const fixed = MAY_NEED_UTF8_VARIANTS.test(bytes) ? decodeUtf8Variants(bytes) : decodeUtf8Strict(bytes);
    if (fixed !== null) return fixed;
  }

  // Mojibake embedded in otherwise fine text: fix the pieces.
  if (HAS_UTF8_LOOKALIKE.test(text)) {
    const fixed = decodeInconsistentUtf8(text);
    if (fixed !== text) return fixed;
  }

  // Latin-1 meant as Windows-1252. (ftfy's check for text that is also possible in "windows-1252" never
  // holds, because its list only has "sloppy-windows-1252"; so this runs whenever Latin-1 is possible.)
  if (latin1Bytes !== null) {
    const fixed = decodeCp1252Strict(latin1Bytes);
    if (fixed !== null && fixed !== text) return fixed;
  }

  if (HAS_C1_CONTROL.test(text)) return fixC1Controls(text);
  return text;
}

/** ftfy's `fix_encoding`: repeat single steps until nothing changes. */
export function fixEncoding(text: string): string {
  for (;;) {
    const fixed = fixEncodingOneStep(text);
    if (fixed === text) return text;
    text = fixed;
  }
}

/** Fixes each UTF-8-looking run that `isBad` flags, when it is shorter than the whole text. */
function decodeInconsistentUtf8(text: string): string {
  return text.replace(UTF8_LOOKALIKES, (run) => (run.length < text.length && isBad(run) ? fixEncoding(run) : run));
}

/** ftfy's `fix_and_explain` loop for one segment: all fixes in order, until the text is stable. */
function fixSegment(text: string, unescape: boolean): string {
  for (;;) {
    const original = text;
    if (unescape) text = unescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === original) return text;
  }
}

/** The end of the segment starting at `pos`: after the next newline, capped without splitting a surrogate pair. */
function segmentEnd(text: string, pos: number): number {
  let end = text.indexOf('\n', pos) + 1 || text.length;
  if (end - pos > MAX_DECODE_LENGTH) {
    end = pos + MAX_DECODE_LENGTH;
    if (/[\udc00-\udfff]/.test(text[end] ?? '')) end--;
  }
  return end;
}

/**
 * `ftfy.fix_text(text)` with default settings. HTML entities are decoded only until a line containing
 * '<' is met (ftfy's "auto" mode: such text is probably real HTML).
 */
export function fixText(text: string): string {
  let unescape = true;
  let out = '';
  for (let pos = 0; pos < text.length; ) {
    const end = segmentEnd(text, pos);
    const segment = text.slice(pos, end);
    if (unescape && segment.includes('<')) unescape = false;
    out += fixSegment(segment, unescape);
    pos = end;
  }
  return out;
}
