/**
 * The UTF-16 a file's first bytes show, described for a reason line ("UTF-16 (little-endian, byte-order mark FF
 * FE)"), or undefined. Spreadsheet programs save "Unicode text" as UTF-16, which a UTF-8 reader would take for a
 * header of unknown columns ('f i l e n a m e') and rows of garbage; this names the real problem once instead.
 * Without a byte-order mark, ASCII text (every dataset file starts with an ASCII header or `{`) in UTF-16 has a NUL
 * at every other byte, which UTF-8 text never has.
 */
export function utf16Of(head: Uint8Array): string | undefined {
  if (head[0] === 0xff && head[1] === 0xfe) return 'UTF-16 (little-endian, byte-order mark FF FE)';
  if (head[0] === 0xfe && head[1] === 0xff) return 'UTF-16 (big-endian, byte-order mark FE FF)';
  const pairs = Math.min(head.length, 512) >> 1;
  if (pairs < 2) return undefined;
  let evenNul = 0;
  let oddNul = 0;
  for (let i = 0; i < pairs * 2; i += 2) {
    if (head[i] === 0) evenNul++;
    if (head[i + 1] === 0) oddNul++;
  }
  if (oddNul >= pairs * 0.9 && evenNul < pairs * 0.1) return 'UTF-16 (little-endian, NUL bytes every other byte)';
  if (evenNul >= pairs * 0.9 && oddNul < pairs * 0.1) return 'UTF-16 (big-endian, NUL bytes every other byte)';
  return undefined;
}
