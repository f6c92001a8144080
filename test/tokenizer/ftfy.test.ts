import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixText } from '../../core/tokenizer/ftfy/index.ts';
import { htmlUnescape } from '../../core/tokenizer/text/html-unescape.ts';
import { bpeIds, cleanText } from '../../core/tokenizer/index.ts';

interface ReferenceCase {
  text: string;
  fix_text: string;
  cleaned: string;
  bpe_ids: number[];
}

// Outputs of the real ftfy 6.3.1 and open_clip 3.3.0 tokenizer (see README.md here).
const reference: { count: number; cases: ReferenceCase[] } = JSON.parse(
  readFileSync(join(import.meta.dirname, 'ftfy-reference.json'), 'utf8'),
);

describe('ftfy 6.3.1 reference outputs (mostly mojibake)', () => {
  it('fix_text, cleaned text and BPE ids are identical for every case', () => {
    expect(reference.cases).toHaveLength(reference.count);
    const failures = reference.cases
      .map((c) => ({ c, fixed: fixText(c.text), cleaned: cleanText(c.text), ids: bpeIds(c.text) }))
      .filter(({ c, fixed, cleaned, ids }) => fixed !== c.fix_text || cleaned !== c.cleaned || ids.join() !== c.bpe_ids.join())
      .map(({ c, fixed }) => `${JSON.stringify(c.text)}: ftfy ${JSON.stringify(c.fix_text)}, ours ${JSON.stringify(fixed)}`);
    console.info(`ftfy reference: ${reference.count - failures.length}/${reference.count} identical`);
    expect(failures).toEqual([]);
  });
});

describe('fixText', () => {
  it.each([
    // Layered mojibake (UTF-8 read as Windows-1252, three times).
    ['The Mona Lisa doesn\u00c3\u0192\u00c2\u00a2\u00c3\u00a2\u00e2\u20ac\u0161\u00c2\u00ac\u00c3\u00a2\u00e2\u20ac\u017e\u00c2\u00a2t have eyebrows.', "The Mona Lisa doesn't have eyebrows."],
    ['\u00d0\u00bf\u00d1\u20ac\u00d0\u00b8\u00d0\u00b2\u00d0\u00b5\u00d1\u201a', '\u043f\u0440\u0438\u0432\u0435\u0442'],
    // A 0xA0 byte that became a space.
    ['voil\u00c3  le travail', 'voil\u00e0 le travail'],
    // Mojibake next to correct text.
    ['\u00c3\u00a9t\u00c3\u00a9 \u00e2\u20ac\u201d \u00e9t\u00e9', '\u00e9t\u00e9 \u2014 \u00e9t\u00e9'],
    ['C\u00c3\u0093MO', 'C\u00d3MO'],
    ['\x1b[31mred\x1b[0m', 'red'],
    ['\ufb01ne \u0133', 'fine ij'],
    ['line\r\nbreak\u2028x', 'line\nbreak\nx'],
    ['\ufeffbom a\u206ab', 'bom ab'],
    ['\ud83d lone', '\ufffd lone'],
    ['&EACUTE;cole &#x80; &#1;.', '\u00c9cole \u20ac .'],
  ])('%j -> %j', (input, expected) => {
    expect(fixText(input)).toBe(expected);
  });

  it('stops decoding HTML entities from the first line that contains "<"', () => {
    expect(fixText('&amp;\n<b>&amp;</b>\n&amp;')).toBe('&\n<b>&amp;</b>\n&amp;');
  });
});

describe('htmlUnescape (Python html.unescape)', () => {
  it.each([
    ['fish &amp chips', 'fish & chips'],
    ['&notit;', '\u00acit;'],
    ['&notin;', '\u2209'],
    ['&ampx;', '&x;'],
    ['&copy2021', '\u00a92021'],
    ['&lt&gt', '<>'],
    ['&#65;&#x41;&#X41', 'AAA'],
    ['&#x110000; &#xD800; &#99999999999999999999;', '\ufffd \ufffd \ufffd'],
    ['&#0;&#13;&#128;', '\ufffd\r\u20ac'],
    ['&#1;x&#xFFFE;', 'x'],
    ['&AMP; &EACUTE; &constructor; &;', '& &EACUTE; &constructor; &;'],
  ])('%j -> %j', (input, expected) => {
    expect(htmlUnescape(input)).toBe(expected);
  });
});
