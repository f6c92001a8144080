/**
 * Compares this tokenizer with open_clip reference data (a fixture folder's tokens.json and
 * tokenizer_cases.json, as described in its README).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpeIds, cleanText, tokenize } from '../../core/tokenizer/index.ts';

export interface TokenizerCase {
  text: string;
  category: string;
  /** open_clip's cleaned text, when the reference has it. */
  cleaned?: string;
  /** Untruncated BPE ids without SOT/EOT, when the reference has them. */
  bpe_ids?: number[];
  /** open_clip.tokenize ids; their length is the context length. */
  ids: number[];
}

export interface TokenizerCaseFailure {
  index: number;
  category: string;
  text: string;
  /** Which of cleaned / bpe_ids / ids differ. */
  fields: string[];
  expectedCleaned?: string;
  actualCleaned: string;
  expectedIds: number[];
  actualIds: number[];
}

export interface TokenizerCheck {
  total: number;
  matched: number;
  failures: TokenizerCaseFailure[];
}

function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Runs every case; a case matches when ids, and cleaned text and BPE ids where given, are identical. */
export function checkTokenizerCases(cases: readonly TokenizerCase[]): TokenizerCheck {
  const failures: TokenizerCaseFailure[] = [];
  cases.forEach((c, index) => {
    const actualCleaned = cleanText(c.text);
    const actualIds = Array.from(tokenize(c.text, c.ids.length));
    const fields: string[] = [];
    if (c.cleaned !== undefined && actualCleaned !== c.cleaned) fields.push('cleaned');
    if (c.bpe_ids !== undefined && !sameIds(bpeIds(c.text), c.bpe_ids)) fields.push('bpe_ids');
    if (!sameIds(actualIds, c.ids)) fields.push('ids');
    if (fields.length) {
      failures.push({ index, category: c.category, text: c.text, fields, expectedCleaned: c.cleaned, actualCleaned, expectedIds: c.ids, actualIds });
    }
  });
  return { total: cases.length, matched: cases.length - failures.length, failures };
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`);
  }
}

function fail(path: string, reason: string): never {
  throw new Error(`${path}: ${reason}`);
}

/** tokens.json: parallel arrays `captions`, `cleaned`, `tokens`. */
function casesFromTokensJson(path: string): TokenizerCase[] {
  const json = readJson(path) as { captions?: unknown; cleaned?: unknown; tokens?: unknown };
  const { captions, cleaned, tokens } = json;
  if (!Array.isArray(captions) || !Array.isArray(tokens) || tokens.length !== captions.length) {
    fail(path, 'expected arrays `captions` and `tokens` of equal length');
  }
  return captions.map((text, i) => ({
    text: String(text),
    category: 'tokens.json',
    cleaned: Array.isArray(cleaned) ? String(cleaned[i]) : undefined,
    ids: tokens[i] as number[],
  }));
}

/** tokenizer_cases.json: `{ cases: [...] }` (or a bare array) of TokenizerCase. */
function casesFromCasesJson(path: string): TokenizerCase[] {
  const json = readJson(path) as { cases?: unknown } | unknown[];
  const cases = Array.isArray(json) ? json : json.cases;
  if (!Array.isArray(cases)) fail(path, 'expected an array `cases`');
  return cases.map((c, i) => {
    if (typeof c?.text !== 'string' || !Array.isArray(c?.ids)) fail(path, `case ${i} lacks \`text\` or \`ids\``);
    return { text: c.text, category: String(c.category ?? 'uncategorized'), cleaned: c.cleaned, bpe_ids: c.bpe_ids, ids: c.ids };
  });
}

/** All reference cases of a fixture folder: tokens.json, plus tokenizer_cases.json when present. */
export function loadReferenceCases(dir: string): TokenizerCase[] {
  const cases = casesFromTokensJson(join(dir, 'tokens.json'));
  const extra = join(dir, 'tokenizer_cases.json');
  if (existsSync(extra)) cases.push(...casesFromCasesJson(extra));
  return cases;
}
