import { crc32 } from 'node:zlib';
import sharp from 'sharp';

export async function png(width: number, height: number, channels: 1 | 2 | 3 | 4, seed = 0): Promise<Uint8Array> {
  const px = new Uint8Array(width * height * channels).map((_, i) => (i * 37 + seed * 101) & 255);
  return new Uint8Array(await sharp(px, { raw: { width, height, channels } }).png().toBuffer());
}

export async function jpeg(width: number, height: number, seed = 0): Promise<Uint8Array> {
  const px = new Uint8Array(width * height * 3).map((_, i) => (i * 13 + seed * 7) & 255);
  return new Uint8Array(await sharp(px, { raw: { width, height, channels: 3 } }).jpeg().toBuffer());
}

/** A valid small PNG whose header claims width x height: a decompression bomb as far as any header reader can tell. */
export async function pngClaiming(width: number, height: number): Promise<Uint8Array> {
  const bytes = (await png(4, 4, 3)).slice();
  const v = new DataView(bytes.buffer);
  // Signature (8) + IHDR length (4) + "IHDR" (4), then width and height; the CRC covers type + data (17 bytes).
  v.setUint32(16, width);
  v.setUint32(20, height);
  v.setUint32(29, crc32(bytes.subarray(12, 29)));
  return bytes;
}
