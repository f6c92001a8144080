/**
 * CLIP's byte-level BPE (open_clip `SimpleTokenizer.bpe`/`encode` after cleaning), reading the merge list
 * core/assets/clip-bpe/bpe_simple_vocab_16e6.txt.gz once, on first use.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

/** Overrides where the vocabulary file is read from (for bundles that ship it beside their code). */
export const BPE_VOCAB_ENV = 'RSCLIP_BPE_VOCAB';
const DEFAULT_VOCAB_PATH = fileURLToPath(new URL('../assets/clip-bpe/bpe_simple_vocab_16e6.txt.gz', import.meta.url));

/** open_clip uses merges[1 : 49152 - 256 - 2 + 1] of the file (line 0 is a header). */
const MERGE_COUNT = 49152 - 256 - 2;
const SPECIAL_TOKENS: readonly string[] = ['<start_of_text>', '<end_of_text>'];
/** Ids of the special tokens: the last two of the 49,408-entry vocabulary. */
export const SOT_ID = 49406;
export const EOT_ID = 49407;
const WORD_END = '</w>';
/** Size bounds for the file (the real one: 1.36 MB compressed, 3.2 MB of text). */
const MAX_VOCAB_GZ_BYTES = 8 << 20;
const MAX_VOCAB_BYTES = 32 << 20;
/** The cache only saves work; bounding it keeps a long-lived process from growing without end. */
const MAX_CACHE_ENTRIES = 200_000;
const MAX_CACHED_TOKEN_LENGTH = 64;

/**
 * GPT-2/CLIP's reversible map from bytes to printable characters: printable Latin-1 bytes map to
 * themselves, the rest to U+0100 upwards, in byte order. The order of this list is the order of ids 0..255.
 */
function bytesToUnicode(): { bytes: number[]; chars: string[] } {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.map((b) => String.fromCharCode(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(String.fromCharCode(256 + n++));
    }
  }
  return { bytes, chars };
}

interface Vocabulary {
  byteEncoder: string[];
  encoder: Map<string, number>;
  /** "first second" -> rank (lower merges first). */
  ranks: Map<string, number>;
  cache: Map<string, string[]>;
}

let vocabulary: Vocabulary | undefined;

function readVocabFile(): { text: string; path: string } {
  const path = process.env[BPE_VOCAB_ENV] || DEFAULT_VOCAB_PATH;
  if (!existsSync(path)) {
    throw new Error(`CLIP BPE vocabulary not found at ${path} (set ${BPE_VOCAB_ENV} to its location)`);
  }
  const gz = readFileSync(path);
  if (gz.length > MAX_VOCAB_GZ_BYTES) throw new Error(`${path}: ${gz.length} bytes, more than a BPE vocabulary can be`);
  try {
    return { text: gunzipSync(gz, { maxOutputLength: MAX_VOCAB_BYTES }).toString('utf8'), path };
  } catch (err) {
    throw new Error(`${path}: not a gzip file of at most ${MAX_VOCAB_BYTES} bytes (${(err as Error).message})`);
  }
}

function loadVocabulary(): Vocabulary {
  const { text, path } = readVocabFile();
  const lines = text.split('\n').slice(1, 1 + MERGE_COUNT);
  if (lines.length !== MERGE_COUNT) throw new Error(`${path}: ${lines.length} merges, expected ${MERGE_COUNT}`);
  const merges = lines.map((line, i) => {
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`${path}: line ${i + 2} is not a merge "A B": ${JSON.stringify(line)}`);
    return parts as [string, string];
  });

  const { bytes, chars } = bytesToUnicode();
  const byteEncoder: string[] = [];
  bytes.forEach((b, i) => (byteEncoder[b] = chars[i]));

  // Later duplicates win, like Python's dict(zip(vocab, range(len(vocab)))).
  const vocab = [...chars, ...chars.map((c) => c + WORD_END), ...merges.map(([a, b]) => a + b), ...SPECIAL_TOKENS];
  const encoder = new Map<string, number>();
  vocab.forEach((token, id) => encoder.set(token, id));
  if (encoder.get(SPECIAL_TOKENS[0]) !== SOT_ID || encoder.get(SPECIAL_TOKENS[1]) !== EOT_ID) {
    throw new Error(`${path}: special tokens do not land on ids ${SOT_ID}/${EOT_ID}`);
  }
  const ranks = new Map<string, number>();
  merges.forEach(([a, b], rank) => ranks.set(`${a} ${b}`, rank));
  return { byteEncoder, encoder, ranks, cache: new Map() };
}

function getVocabulary(): Vocabulary {
  vocabulary ??= loadVocabulary();
  return vocabulary;
}

/** Applies the merges to one pre-token (already byte-encoded); returns its vocabulary symbols. */
function bpe(vocab: Vocabulary, token: string): string[] {
  if (SPECIAL_TOKENS.includes(token)) return [token];
  const cached = vocab.cache.get(token);
  if (cached) return cached;

  const chars = [...token];
  let word = [...chars.slice(0, -1), chars[chars.length - 1] + WORD_END];
  while (word.length > 1) {
    // The adjacent pair with the lowest merge rank.
    let best: string | undefined;
    let bestRank = Infinity;
    for (let i = 0; i < word.length - 1; i++) {
      const rank = vocab.ranks.get(`${word[i]} ${word[i + 1]}`);
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = `${word[i]} ${word[i + 1]}`;
      }
    }
    if (best === undefined) break;
    const [first, second] = best.split(' ');
    const merged: string[] = [];
    for (let i = 0; i < word.length; ) {
      if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
        merged.push(first + second);
        i += 2;
      } else {
        merged.push(word[i]);
        i += 1;
      }
    }
    word = merged;
  }

  if (token.length <= MAX_CACHED_TOKEN_LENGTH) {
    if (vocab.cache.size >= MAX_CACHE_ENTRIES) vocab.cache.clear();
    vocab.cache.set(token, word);
  }
  return word;
}

/**
 * open_clip's pre-tokenizer: the special-token literals, English contractions, letter runs, single digits,
 * and runs of other non-space characters (case-insensitive, as open_clip compiles it).
 */
const PRE_TOKEN =
  /<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\p{White_Space}\p{L}\p{N}]+/giu;

/**
 * U+0345 (combining ypogegrammeni) case-folds to a letter, so under IGNORECASE Python's `regex` puts it in
 * neither \p{L} nor its complement: it matches nothing and only separates pieces. JS would treat it as a
 * letter; a space has exactly Python's effect.
 */
const UNMATCHED_UNDER_IGNORECASE = /\u0345/g;

/**
 * BPE ids of already-cleaned text (no start/end tokens). Pieces are encoded independently, so stopping
 * once `limit` ids are known gives exactly the first ids of the full encoding.
 */
export function encodeCleaned(cleaned: string, limit = Infinity): number[] {
  const vocab = getVocabulary();
  const ids: number[] = [];
  for (const [piece] of cleaned.replace(UNMATCHED_UNDER_IGNORECASE, ' ').matchAll(PRE_TOKEN)) {
    let token = '';
    for (const byte of Buffer.from(piece, 'utf8')) token += vocab.byteEncoder[byte];
    for (const symbol of bpe(vocab, token)) ids.push(vocab.encoder.get(symbol)!);
    if (ids.length >= limit) break;
  }
  return ids;
}
