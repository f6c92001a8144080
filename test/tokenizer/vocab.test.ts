import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';

const REAL_VOCAB = join(import.meta.dirname, '..', '..', 'core', 'assets', 'clip-bpe', 'bpe_simple_vocab_16e6.txt.gz');
const dir = mkdtempSync(join(tmpdir(), 'rsclip-vocab-'));

/** A fresh copy of the tokenizer module, reading its vocabulary from `path` on first use. */
async function tokenizerWithVocab(path: string) {
  vi.resetModules();
  vi.stubEnv('RSCLIP_BPE_VOCAB', path);
  return import('../../core/tokenizer/index.ts');
}

afterEach(() => vi.unstubAllEnvs());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vocabulary file', () => {
  it('names the missing path and the variable that overrides it', async () => {
    const missing = join(dir, 'nope.txt.gz');
    const tok = await tokenizerWithVocab(missing);
    expect(() => tok.tokenize('a river')).toThrow(`CLIP BPE vocabulary not found at ${missing} (set RSCLIP_BPE_VOCAB`);
  });

  it('rejects a truncated merge list, naming the file', async () => {
    const lines = gunzipSync(readFileSync(REAL_VOCAB)).toString('utf8').split('\n');
    const truncated = join(dir, 'short.txt.gz');
    writeFileSync(truncated, gzipSync(lines.slice(0, 1000).join('\n')));
    const tok = await tokenizerWithVocab(truncated);
    expect(() => tok.bpeIds('a river')).toThrow(`${truncated}: 999 merges, expected 48894`);
  });

  it('rejects a line that is not a merge, with its line number', async () => {
    const lines = gunzipSync(readFileSync(REAL_VOCAB)).toString('utf8').split('\n');
    lines[5] = 'broken';
    const damaged = join(dir, 'damaged.txt.gz');
    writeFileSync(damaged, gzipSync(lines.join('\n')));
    const tok = await tokenizerWithVocab(damaged);
    expect(() => tok.tokenize('a river')).toThrow(`${damaged}: line 6 is not a merge`);
  });

  it('rejects a file that is not gzip, naming it', async () => {
    const plain = join(dir, 'plain.txt.gz');
    writeFileSync(plain, 'not compressed');
    const tok = await tokenizerWithVocab(plain);
    expect(() => tok.tokenize('a river')).toThrow(`${plain}: not a gzip file`);
  });

  it('reads a vocabulary copied elsewhere, as a bundle would ship it', async () => {
    const copy = join(dir, 'copy.txt.gz');
    writeFileSync(copy, readFileSync(REAL_VOCAB));
    const tok = await tokenizerWithVocab(copy);
    const fixtures = join(import.meta.dirname, '..', 'fixtures', 'open_clip-tiny', 'tokenizer_cases.json');
    const [first] = JSON.parse(readFileSync(fixtures, 'utf8')).cases;
    expect(tok.bpeIds(first.text)).toEqual(first.bpe_ids);
  });
});
