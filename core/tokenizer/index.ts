/**
 * The CLIP tokenizer, identical to open_clip's `tokenize` (SimpleTokenizer with clean='lower'): ftfy +
 * HTML cleaning, lowercasing, byte-level BPE with the CLIP merges, start/end tokens, 77 ids padded with 0.
 */
import { encodeCleaned, EOT_ID, SOT_ID } from './bpe.ts';
import { cleanText } from './clean.ts';

export { cleanText } from './clean.ts';
export { BPE_VOCAB_ENV, EOT_ID, SOT_ID } from './bpe.ts';

export const CONTEXT_LENGTH = 77;
export const PAD_ID = 0;

/** BPE ids of a caption as open_clip's `SimpleTokenizer.encode` gives them: cleaned, untruncated, no SOT/EOT. */
export function bpeIds(text: string): number[] {
  return encodeCleaned(cleanText(text));
}

function checkContextLength(contextLength: number): void {
  if (!Number.isInteger(contextLength) || contextLength < 1) {
    throw new RangeError(`context length must be a positive integer, got ${contextLength}`);
  }
}

/** Writes one caption's ids into `out` at `offset` (`contextLength` slots, already zero = padding). */
function writeTokens(text: string, contextLength: number, out: Int32Array, offset: number): void {
  // Beyond contextLength - 1 BPE ids the result no longer changes: the last slot becomes EOT anyway.
  const ids = [SOT_ID, ...encodeCleaned(cleanText(text), contextLength - 1), EOT_ID];
  // Too long: keep the first contextLength ids and end with EOT anyway.
  if (ids.length > contextLength) {
    ids.length = contextLength;
    ids[contextLength - 1] = EOT_ID;
  }
  out.set(ids, offset);
}

/** open_clip.tokenize for one string: Int32Array [contextLength]. */
export function tokenize(text: string, contextLength = CONTEXT_LENGTH): Int32Array {
  checkContextLength(contextLength);
  const out = new Int32Array(contextLength);
  writeTokens(text, contextLength, out, 0);
  return out;
}

/** open_clip.tokenize for many strings: Int32Array [texts.length * contextLength], row-major. */
export function tokenizeAll(texts: string[], contextLength = CONTEXT_LENGTH): Int32Array {
  checkContextLength(contextLength);
  const out = new Int32Array(texts.length * contextLength);
  texts.forEach((text, i) => writeTokens(text, contextLength, out, i * contextLength));
  return out;
}
