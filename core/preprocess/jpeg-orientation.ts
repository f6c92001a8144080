/** What a JPEG's header walk could not read: a caller should let a full decoder decide the orientation. */
export const UNREADABLE = 0;

/**
 * The EXIF orientation of a JPEG (tag 0x0112 in IFD0 of the first APP1 "Exif" segment): undefined when the file
 * reaches its first scan without one, UNREADABLE when the walk or the EXIF block is malformed. Every read is
 * bounds-checked and every step moves forward, so a hostile file ends the walk instead of looping or over-reading.
 */
export function jpegOrientation(bytes: Uint8Array): number | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return UNREADABLE;
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) return UNREADABLE;
    const marker = bytes[p + 1]!;
    if (marker === 0xff) {
      p += 1; // fill byte
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return undefined;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      p += 2;
      continue;
    }
    const length = (bytes[p + 2]! << 8) | bytes[p + 3]!;
    if (length < 2) return UNREADABLE;
    const start = p + 4;
    const end = Math.min(p + 2 + length, bytes.length);
    if (marker === 0xe1 && isExif(bytes, start, end)) return tiffOrientation(bytes, start + 6, end);
    p += 2 + length;
  }
  return UNREADABLE;
}

function isExif(b: Uint8Array, start: number, end: number): boolean {
  return end - start >= 6 && b[start] === 0x45 && b[start + 1] === 0x78 && b[start + 2] === 0x69 && b[start + 3] === 0x66 && b[start + 4] === 0 && b[start + 5] === 0;
}

function tiffOrientation(b: Uint8Array, tiff: number, end: number): number | undefined {
  if (tiff + 8 > end) return UNREADABLE;
  const little = b[tiff] === 0x49 && b[tiff + 1] === 0x49;
  if (!little && !(b[tiff] === 0x4d && b[tiff + 1] === 0x4d)) return UNREADABLE;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u16 = (at: number) => view.getUint16(at, little);
  if (u16(tiff + 2) !== 42) return UNREADABLE;
  const ifd = tiff + view.getUint32(tiff + 4, little);
  if (ifd < tiff + 8 || ifd + 2 > end) return UNREADABLE;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > end) return UNREADABLE;
    // SHORT (type 3), one value, stored in the first two bytes of the value field.
    if (u16(entry) === 0x0112) return u16(entry + 2) === 3 ? u16(entry + 8) : UNREADABLE;
  }
  return undefined;
}
