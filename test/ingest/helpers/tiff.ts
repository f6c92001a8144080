/**
 * Minimal uncompressed, chunky (interleaved), one-strip TIFF writer for multi-band test images; sharp cannot
 * write more than 4 bands or 16-bit TIFFs. `extraSamples` is the ExtraSamples tag (one value per sample past the
 * photometric colour ones: 0 unspecified, 1 associated alpha, 2 unassociated alpha); all unspecified by default,
 * and null leaves the tag out, as some writers do.
 */
export function writeTiff(
  width: number,
  height: number,
  bands: number,
  data: Uint8Array | Uint16Array,
  photometric?: number,
  extraSamples?: number[] | null,
): Uint8Array {
  const bits = data instanceof Uint16Array ? 16 : 8;
  if (data.length !== width * height * bands) throw new Error('writeTiff: data size mismatch');
  const pixelBytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const photo = photometric ?? (bands >= 3 ? 2 : 1);
  const colour = photo === 2 ? 3 : 1;
  const entries: [tag: number, type: number, values: number[]][] = [
    [256, 4, [width]],
    [257, 4, [height]],
    [258, 3, new Array(bands).fill(bits)],
    [259, 3, [1]],
    [262, 3, [photo]],
    [273, 4, [0]], // strip offset, patched below
    [277, 3, [bands]],
    [278, 4, [height]],
    [279, 4, [pixelBytes.length]],
    [284, 3, [1]],
    ...(bands > colour && extraSamples !== null ? [[338, 3, extraSamples ?? new Array(bands - colour).fill(0)] as [number, number, number[]]] : []),
  ];
  const ifdOffset = 8;
  const ifdSize = 2 + entries.length * 12 + 4;
  let extra = ifdOffset + ifdSize;
  const extras: [offset: number, type: number, values: number[]][] = [];
  for (const [, type, values] of entries) {
    const size = values.length * (type === 3 ? 2 : 4);
    if (size > 4) {
      extras.push([extra, type, values]);
      extra += size + (size % 2);
    }
  }
  const dataOffset = extra;
  const out = new Uint8Array(dataOffset + pixelBytes.length);
  const v = new DataView(out.buffer);
  out.set([0x49, 0x49], 0);
  v.setUint16(2, 42, true);
  v.setUint32(4, ifdOffset, true);
  v.setUint16(ifdOffset, entries.length, true);
  let e = ifdOffset + 2;
  let x = 0;
  for (const [tag, type, values0] of entries) {
    const values = tag === 273 ? [dataOffset] : values0;
    v.setUint16(e, tag, true);
    v.setUint16(e + 2, type, true);
    v.setUint32(e + 4, values.length, true);
    const size = values.length * (type === 3 ? 2 : 4);
    const at = size > 4 ? extras[x++]![0] : e + 8;
    if (size > 4) v.setUint32(e + 8, at, true);
    values.forEach((val, i) => (type === 3 ? v.setUint16(at + i * 2, val, true) : v.setUint32(at + i * 4, val, true)));
    e += 12;
  }
  v.setUint32(e, 0, true);
  out.set(pixelBytes, dataOffset);
  return out;
}
