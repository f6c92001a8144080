import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkTokenizerCases, loadReferenceCases, type TokenizerCase } from '../../worker/verify/tokenizer-cases.ts';
import { bpeIds, cleanText, CONTEXT_LENGTH, EOT_ID, PAD_ID, SOT_ID, tokenize, tokenizeAll } from '../../core/tokenizer/index.ts';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'open_clip-tiny');
const MOJIBAKE = 'ftfy_mojibake_controls';
const cases = loadReferenceCases(FIXTURE);

function describeFailures(check: ReturnType<typeof checkTokenizerCases>): string {
  return check.failures
    .slice(0, 5)
    .map((f) => `${f.category} ${JSON.stringify(f.text).slice(0, 80)}: ${f.fields.join(',')} got ${JSON.stringify(f.actualCleaned)}`)
    .join('\n');
}

function ofCategory(category: string): TokenizerCase[] {
  return cases.filter((c) => c.category === category);
}

describe('open_clip reference tokens', () => {
  it('tokens.json: the six captions give identical ids and cleaned text', () => {
    const captions = ofCategory('tokens.json');
    expect(captions).toHaveLength(6);
    const check = checkTokenizerCases(captions);
    expect(check.failures, describeFailures(check)).toEqual([]);
  });

  it('tokenizer_cases.json outside the mojibake category: identical cleaned text, BPE ids and ids', () => {
    const plain = cases.filter((c) => c.category !== 'tokens.json' && c.category !== MOJIBAKE);
    expect(plain.length).toBeGreaterThan(250);
    const check = checkTokenizerCases(plain);
    expect(check.failures, describeFailures(check)).toEqual([]);
  });

  it(`${MOJIBAKE}: every case matches, mojibake repair included`, () => {
    const mojibake = ofCategory(MOJIBAKE);
    const check = checkTokenizerCases(mojibake);
    console.info(`${MOJIBAKE}: ${check.matched}/${check.total} cases match open_clip`);
    expect(check.total).toBeGreaterThan(0);
    expect(check.failures, describeFailures(check)).toEqual([]);
  });

  it('every reference case starts with SOT and ends with EOT before the padding', () => {
    for (const c of cases) {
      const ids = [...tokenize(c.text)];
      const lastNonPad = ids.findLastIndex((id) => id !== PAD_ID);
      expect(ids[0]).toBe(SOT_ID);
      expect(ids[lastNonPad]).toBe(EOT_ID);
    }
  });
});

describe('truncation', () => {
  it('keeps the first ids and overwrites the last slot with EOT when too long', () => {
    const long = ofCategory('boundary_200_words')[0];
    const full = bpeIds(long.text);
    expect(full.length + 2).toBeGreaterThan(CONTEXT_LENGTH);
    const ids = tokenize(long.text);
    expect(ids).toHaveLength(CONTEXT_LENGTH);
    expect([...ids.subarray(1, CONTEXT_LENGTH - 1)]).toEqual(full.slice(0, CONTEXT_LENGTH - 2));
    expect(ids[CONTEXT_LENGTH - 1]).toBe(EOT_ID);
  });

  it('fits exactly when SOT + ids + EOT is the context length, and pads when shorter', () => {
    for (const words of [74, 75, 76]) {
      const text = Array(words).fill('a').join(' ');
      const n = bpeIds(text).length;
      const ids = tokenize(text);
      const expectedEot = Math.min(n + 1, CONTEXT_LENGTH - 1);
      expect(ids.indexOf(EOT_ID)).toBe(expectedEot);
      expect([...ids.subarray(expectedEot + 1)].every((id) => id === PAD_ID)).toBe(true);
    }
  });

  it('honours a custom context length, also below 3', () => {
    const text = 'an aerial view of a river';
    const full = [SOT_ID, ...bpeIds(text), EOT_ID];
    expect([...tokenize(text, 5)]).toEqual([...full.slice(0, 4), EOT_ID]);
    expect([...tokenize(text, 1)]).toEqual([EOT_ID]);
    expect([...tokenize(text, 20)]).toEqual([...full, ...Array(20 - full.length).fill(PAD_ID)]);
  });

  it('rejects a context length that is not a positive integer', () => {
    expect(() => tokenize('x', 0)).toThrow(RangeError);
    expect(() => tokenizeAll(['x'], 2.5)).toThrow(/positive integer/);
  });
});

describe('special-token literals', () => {
  it('<start_of_text> and <end_of_text> written in a caption become the special ids', () => {
    expect([...tokenize('<start_of_text>').subarray(0, 4)]).toEqual([SOT_ID, SOT_ID, EOT_ID, PAD_ID]);
    const ids = bpeIds('a <end_of_text> b');
    expect(ids).toEqual([bpeIds('a')[0], EOT_ID, bpeIds('b')[0]]);
    expect(bpeIds('<START_OF_TEXT>')).toEqual([SOT_ID]);
  });

  it('near-misses are ordinary text', () => {
    for (const text of ['<|startoftext|>', '<end_of_text', '</w>']) {
      const ids = bpeIds(text);
      expect(ids.length).toBeGreaterThan(1);
      expect(ids.some((id) => id === SOT_ID || id === EOT_ID)).toBe(false);
    }
    const reference = ofCategory('special_token_literals');
    const check = checkTokenizerCases(reference);
    expect(check.failures, describeFailures(check)).toEqual([]);
  });
});

describe('tokenizeAll', () => {
  it('is tokenize row by row', () => {
    const texts = cases.slice(0, 7).map((c) => c.text);
    const all = tokenizeAll(texts);
    expect(all).toHaveLength(texts.length * CONTEXT_LENGTH);
    texts.forEach((t, i) => expect(all.subarray(i * CONTEXT_LENGTH, (i + 1) * CONTEXT_LENGTH)).toEqual(tokenize(t)));
    expect(tokenizeAll([])).toHaveLength(0);
  });
});

describe('cleanText', () => {
  it('splits on Python whitespace (NBSP, U+3000, U+2028, U+1680) but not on zero-width space or soft hyphen', () => {
    expect(cleanText('a\u00a0b\u3000c\u2028d\u1680e')).toBe('a b c d e');
    expect(cleanText('a\u200bb')).toBe('a\u200bb');
    expect(cleanText('a\u00adb')).toBe('a\u00adb');
  });

  it('lowercases like Python 3.11: final sigma, dotted I, no mapping for letters newer than Unicode 14', () => {
    expect(cleanText('\u03a3\u0391\u03a3 \u038c\u03a3\u039f\u03a3')).toBe('\u03c3\u03b1\u03c2 \u03cc\u03c3\u03bf\u03c2');
    expect(cleanText('\u0130STANBUL')).toBe('i\u0307stanbul');
    expect(cleanText('\ua78b\u1c89\u03a3')).toBe('\ua78c\u1c89\u03c3');
  });
});
