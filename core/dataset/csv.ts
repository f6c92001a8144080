import { parse, type CsvError } from 'csv-parse';
import { utf16Of } from '../utf16.ts';

/** One CSV record with the line it starts on (1-based; the header is line 1). */
export interface CsvRecord {
  line: number;
  fields: string[];
}

export interface CsvProblem {
  line: number;
  /** `row` for problems of the record as a whole. */
  field: string;
  reason: string;
}

/** What the stream yields, in line order of the records' starts; `unreadable` alone, when the file is not UTF-8 text at all. */
export type CsvItem = { record: CsvRecord } | { malformed: CsvProblem } | { unreadable: string };

const CHUNK = 64 * 1024;

/**
 * RFC 4180 CSV (UTF-8, optional BOM, LF or CRLF) through csv-parse's streaming parser, read from `source` a chunk
 * at a time so a CSV larger than memory streams through: what is held is one chunk and the records it completed.
 * Malformed records (bad quotes, an unterminated quote at the end) become problems with their starting line
 * instead of aborting the file. Invalid UTF-8 is decoded as U+FFFD; `badUtf8` collects the lines holding it, each
 * known before any record spanning it is yielded.
 */
export async function* csvRecords(source: AsyncIterable<Uint8Array>, badUtf8: Set<number>): AsyncGenerator<CsvItem> {
  const queue: CsvItem[] = [];
  let failure: unknown;
  // Each record starts on the line after the previous one ended (blank lines aside).
  let lastEnd = 0;
  // csv-parse may report one bad record more than once, at the same parser line.
  let lastSkipAt = -1;
  const parser = parse({
    relax_column_count: true,
    skip_empty_lines: true,
    info: true,
    raw: true,
    skip_records_with_error: true,
    on_skip: (err: CsvError | undefined) => {
      if (!err) return;
      const at = (err as CsvError & { lines?: number }).lines ?? lastEnd + 1;
      if (at === lastSkipAt) return;
      lastSkipAt = at;
      queue.push({ malformed: { line: lastEnd + 1, field: 'row', reason: quoteReason(err) } });
      lastEnd = Math.max(lastEnd, at);
    },
  });
  parser.on('data', (r: { record: string[]; info: { lines: number }; raw: string }) => {
    const inner = r.raw.replace(/\r?\n$/, '');
    lastEnd = r.info.lines;
    queue.push({ record: { line: r.info.lines - countNewlines(inner), fields: r.record } });
  });
  const ended = new Promise<void>((resolve) => parser.on('end', resolve));
  parser.on('error', (e) => (failure = e));
  const drain = function* (): Generator<CsvItem> {
    if (failure) throw failure;
    while (queue.length) yield queue.shift()!;
  };
  const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });
  const lines = new Utf8LineCheck(badUtf8);
  let first = true;
  for await (const chunk of source) {
    const utf16 = first ? utf16Of(chunk) : undefined;
    first = false;
    if (utf16) {
      yield { unreadable: `${utf16}: save it as UTF-8` };
      return;
    }
    for (let i = 0; i < chunk.length; i += CHUNK) {
      const piece = chunk.subarray(i, i + CHUNK);
      lines.push(piece);
      parser.write(decoder.decode(piece, { stream: true }));
      yield* drain();
    }
  }
  lines.end();
  parser.end(decoder.decode());
  await ended;
  yield* drain();
}

/**
 * Finds the lines holding invalid UTF-8 across chunk boundaries: a line is checked once it is complete (a
 * multi-byte sequence never contains the newline byte), so only the unfinished last line is carried.
 */
class Utf8LineCheck {
  /** The unfinished line, as the chunks it came in (joined once, when it ends). */
  private carry: Uint8Array[] = [];
  private line = 1;
  constructor(private readonly bad: Set<number>) {}

  push(bytes: Uint8Array): void {
    const nl = bytes.lastIndexOf(0x0a);
    if (nl === -1) {
      this.carry.push(bytes);
      return;
    }
    this.check(Buffer.concat([...this.carry, bytes.subarray(0, nl + 1)]));
    this.carry = [bytes.slice(nl + 1)];
  }

  end(): void {
    this.check(Buffer.concat(this.carry));
    this.carry = [];
  }

  private check(complete: Uint8Array): void {
    for (const l of invalidUtf8Lines(complete)) this.bad.add(this.line + l - 1);
    for (let i = complete.indexOf(0x0a); i !== -1; i = complete.indexOf(0x0a, i + 1)) this.line++;
  }
}

function quoteReason(err: CsvError): string {
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'unterminated quote: a quoted field is never closed';
    case 'CSV_INVALID_CLOSING_QUOTE':
      return 'malformed quoting: text follows a closing quote (write a quote inside a quoted field as "")';
    case 'INVALID_OPENING_QUOTE':
      return 'malformed quoting: a quote inside an unquoted field (quote the whole field and write the quote as "")';
    default:
      return `malformed CSV (${err.code}: ${err.message.split('\n')[0]})`;
  }
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** 1-based numbers of the lines holding a byte sequence that is not UTF-8 (RFC 3629: no overlongs, surrogates). */
export function invalidUtf8Lines(b: Uint8Array): number[] {
  const out: number[] = [];
  let line = 1;
  let i = 0;
  const bad = (): void => {
    if (out[out.length - 1] !== line) out.push(line);
  };
  while (i < b.length) {
    const c = b[i]!;
    if (c === 0x0a) {
      line++;
      i++;
      continue;
    }
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) [n, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, min] = [3, 0x10000];
    else {
      bad();
      i++;
      continue;
    }
    let cp = c & (0x3f >> n);
    let k = 1;
    for (; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) break;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (k <= n || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      bad();
      i += k;
      continue;
    }
    i += n + 1;
  }
  return out;
}
