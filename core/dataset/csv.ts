import { parse, type CsvError } from 'csv-parse';

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

export interface ParsedCsv {
  header: string[] | undefined;
  records: CsvRecord[];
  /** Records the parser could not read (bad or unterminated quotes), by starting line. */
  malformed: CsvProblem[];
  /** Lines holding bytes that are not UTF-8. */
  badUtf8Lines: number[];
}

const CHUNK = 64 * 1024;

/**
 * RFC 4180 CSV (UTF-8, optional BOM, LF or CRLF) through csv-parse's streaming parser, fed in chunks. Malformed
 * records (bad quotes, an unterminated quote at the end) become problems with their starting line instead of
 * aborting the file. Invalid UTF-8 is decoded as U+FFFD and its lines are listed.
 */
export async function parseCsv(bytes: Uint8Array): Promise<ParsedCsv> {
  const records: CsvRecord[] = [];
  const malformed: CsvProblem[] = [];
  const text = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false }).decode(bytes);
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
      malformed.push({ line: lastEnd + 1, field: 'row', reason: quoteReason(err) });
      lastEnd = Math.max(lastEnd, at);
    },
  });
  const done = new Promise<void>((resolve, reject) => {
    parser.on('data', (r: { record: string[]; info: { lines: number }; raw: string }) => {
      const inner = r.raw.replace(/\r?\n$/, '');
      const line = r.info.lines - countNewlines(inner);
      lastEnd = r.info.lines;
      records.push({ line, fields: r.record });
    });
    parser.on('end', resolve);
    parser.on('error', reject);
  });
  for (let i = 0; i < text.length; i += CHUNK) parser.write(text.slice(i, i + CHUNK));
  parser.end();
  await done;
  const hasHeader = records[0]?.line === 1;
  return {
    header: hasHeader ? records[0]!.fields : undefined,
    records: hasHeader ? records.slice(1) : records,
    malformed,
    badUtf8Lines: invalidUtf8Lines(bytes),
  };
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
