/**
 * The byte-level codecs ftfy needs, working on "byte strings" (one char per byte, code 0..255) so that
 * ftfy's bytes regexes run unchanged as JS regexes without the `u` flag.
 */
import { CHARMAP_SPECS } from './charmaps.ts';

export interface SingleByteCodec {
  name: string;
  sloppy: boolean;
  /** byte -> char */
  decodeTable: readonly string[];
  /** char -> byte: exactly the characters this encoding can produce (Python's `possible_encoding`). */
  encodeMap: ReadonlyMap<string, number>;
}

const REPLACEMENT = '\ufffd';
const SUBSTITUTE_BYTE = 0x1a;

function buildCodec(name: string, sloppy: boolean, high: string): SingleByteCodec {
  const decodeTable: string[] = [];
  for (let b = 0; b < 0x80; b++) decodeTable.push(String.fromCharCode(b));
  if (sloppy) decodeTable[SUBSTITUTE_BYTE] = REPLACEMENT;
  decodeTable.push(...high);
  if (decodeTable.length !== 256) throw new Error(`charmap ${name}: ${decodeTable.length} entries, expected 256`);
  const encodeMap = new Map<string, number>();
  decodeTable.forEach((ch, b) => encodeMap.set(ch, b));
  return { name, sloppy, decodeTable, encodeMap };
}

/** In ftfy's CHARMAP_ENCODINGS order, which decides which re-encoding is tried first. */
export const CHARMAP_CODECS: readonly SingleByteCodec[] = CHARMAP_SPECS.map((s) => buildCodec(s.name, s.sloppy, s.high));

function codecNamed(name: string): SingleByteCodec {
  const codec = CHARMAP_CODECS.find((c) => c.name === name);
  if (!codec) throw new Error(`no charmap ${name}`);
  return codec;
}

export const LATIN_1 = codecNamed('latin-1');
export const SLOPPY_WINDOWS_1252 = codecNamed('sloppy-windows-1252');

/**
 * Strict Windows-1252 (Python's cp1252): the sloppy table without its two liberties, so byte 0x1A is
 * U+001A and the five bytes Microsoft leaves undefined do not decode.
 */
const CP1252_STRICT: readonly (string | null)[] = SLOPPY_WINDOWS_1252.decodeTable.map((ch, b) =>
  b === SUBSTITUTE_BYTE ? '\x1a' : [0x81, 0x8d, 0x8f, 0x90, 0x9d].includes(b) ? null : ch,
);

/** text -> byte string, or null when some character is not in the encoding. */
export function encodeCharmap(text: string, codec: SingleByteCodec): string | null {
  let out = '';
  for (const ch of text) {
    const b = codec.encodeMap.get(ch);
    if (b === undefined) return null;
    out += String.fromCharCode(b);
  }
  return out;
}

/** Python's `bytes.decode('windows-1252')`; null on an undefined byte. */
export function decodeCp1252Strict(bytes: string): string | null {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const ch = CP1252_STRICT[bytes.charCodeAt(i)];
    if (ch === null) return null;
    out += ch;
  }
  return out;
}

// ignoreBOM keeps a leading U+FEFF, as Python's 'utf-8' codec does.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Python's strict `bytes.decode('utf-8')`: null where Python raises UnicodeDecodeError. */
export function decodeUtf8Strict(bytes: string): string | null {
  try {
    return strictUtf8.decode(Buffer.from(bytes, 'latin1'));
  } catch {
    return null;
  }
}

/** A CESU-8 surrogate pair (six bytes) as ftfy's utf-8-variants codec accepts it. */
const CESU8_PAIR = /\xed[\xa0-\xaf][\x80-\xbf]\xed[\xb0-\xbf][\x80-\xbf]/y;
/** What utf-8-variants treats specially: Java's C0 80 for NUL, or an encoded surrogate. */
const SPECIAL_START = /\xc0|\xed[\xa0-\xbf]/g;

/**
 * ftfy's 'utf-8-variants' decoder: UTF-8 that also accepts C0 80 as U+0000 and CESU-8 surrogate pairs;
 * anything else that strict UTF-8 rejects (lone surrogates included) still fails (null).
 */
export function decodeUtf8Variants(bytes: string): string | null {
  let out = '';
  let pos = 0;
  SPECIAL_START.lastIndex = 0;
  for (let m = SPECIAL_START.exec(bytes); m; m = SPECIAL_START.exec(bytes)) {
    // C0 and ED are never continuation bytes, so cutting before them never splits a valid sequence.
    const plain = decodeUtf8Strict(bytes.slice(pos, m.index));
    if (plain === null) return null;
    out += plain;
    if (bytes.charCodeAt(m.index) === 0xc0) {
      if (bytes.charCodeAt(m.index + 1) !== 0x80) return null;
      out += '\u0000';
      pos = m.index + 2;
    } else {
      CESU8_PAIR.lastIndex = m.index;
      if (!CESU8_PAIR.test(bytes)) return null;
      const b = (k: number) => bytes.charCodeAt(m.index + k);
      const codepoint = ((b(1) & 0x0f) << 16) + ((b(2) & 0x3f) << 10) + ((b(4) & 0x0f) << 6) + (b(5) & 0x3f) + 0x10000;
      out += String.fromCodePoint(codepoint);
      pos = m.index + 6;
    }
    SPECIAL_START.lastIndex = pos;
  }
  const rest = decodeUtf8Strict(bytes.slice(pos));
  return rest === null ? null : out + rest;
}
