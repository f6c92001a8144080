/**
 * The colour of a GIF's transparent pixels as Pillow shows them: the first frame's palette entry at the Graphic
 * Control Extension's transparent index (Pillow keeps the frame as "P" and convert("RGB") maps every index through
 * the palette). libvips' GIF loader returns those pixels as 0,0,0,0 instead. Undefined when the first frame has no
 * transparency or the file does not walk as a GIF; every read is bounds-checked and every step moves forward.
 */
export function gifTransparentColour(bytes: Uint8Array): [number, number, number] | undefined {
  const HEADER = 13;
  if (bytes.length < HEADER || String.fromCharCode(...bytes.subarray(0, 3)) !== 'GIF') return undefined;
  const tableAt = (at: number, packed: number) => ({ at, entries: 2 << (packed & 7) });
  const screen = bytes[10]!;
  let p = HEADER;
  let table = screen & 0x80 ? tableAt(p, screen) : undefined;
  if (table) p += 3 * table.entries;
  let transparent: number | undefined;
  while (p < bytes.length) {
    if (bytes[p] === 0x21) {
      // Extension: label, then data sub-blocks until a zero-length one.
      const label = bytes[p + 1];
      p += 2;
      if (label === 0xf9 && bytes[p] === 4 && p + 5 <= bytes.length) transparent = bytes[p + 1]! & 1 ? bytes[p + 4] : undefined;
      while (p < bytes.length && bytes[p] !== 0) p += bytes[p]! + 1;
      p += 1;
    } else if (bytes[p] === 0x2c && p + 10 <= bytes.length) {
      // The first image descriptor; its own colour table, when present, replaces the global one.
      const packed = bytes[p + 9]!;
      if (packed & 0x80) table = tableAt(p + 10, packed);
      if (transparent === undefined || !table || transparent >= table.entries) return undefined;
      const at = table.at + 3 * transparent;
      return at + 3 <= bytes.length ? [bytes[at]!, bytes[at + 1]!, bytes[at + 2]!] : undefined;
    } else {
      return undefined;
    }
  }
  return undefined;
}
