import { readFileSync } from 'node:fs';
import sharp, { type JpegOptions } from 'sharp';
import { describe, expect, it } from 'vitest';
import { preprocessImage } from '../../core/preprocess/index.ts';
import { jpegOrientation, UNREADABLE } from '../../core/preprocess/jpeg-orientation.ts';
import { decodeJpeg, jpegTurboAvailable } from '../../core/preprocess/jpeg-turbo.ts';

const LIMIT = 8192 * 8192;

function noise(width: number, height: number, channels: number, seed: number): Uint8Array {
  let x = seed * 2654435761 + 1;
  return new Uint8Array(width * height * channels).map((_, i) => {
    x = (x * 1103515245 + 12345) >>> 0;
    // Smooth ramps plus noise, so the DCT sees both flat and busy blocks.
    return ((i % (width * channels)) * 3 + (x >>> 27)) & 255;
  });
}

async function encode(width: number, height: number, channels: 1 | 3, opts: JpegOptions, seed = 0): Promise<Uint8Array> {
  return new Uint8Array(await sharp(noise(width, height, channels, seed), { raw: { width, height, channels } }).jpeg(opts).toBuffer());
}

/** What sharp's own pipeline decodes, the path every non-plain JPEG still takes. */
async function viaSharp(bytes: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(bytes, { ignoreIcc: true }).autoOrient().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels };
}

describe('the libjpeg-turbo fast path', () => {
  it('loads where the Shard Lambda and CI run (linux x64 and arm64)', () => {
    expect(jpegTurboAvailable()).toBe(process.platform === 'linux' && ['x64', 'arm64'].includes(process.arch));
  });

  it('decodes exactly what sharp decodes, for every subsampling, progressive, grey, odd sizes and restart markers', async () => {
    const cases: [string, Uint8Array][] = [
      ['4:2:0 q75', await encode(600, 600, 3, { quality: 75 })],
      ['4:4:4 q100', await encode(257, 129, 3, { quality: 100, chromaSubsampling: '4:4:4' })],
      ['progressive', await encode(300, 211, 3, { progressive: true }, 1)],
      ['optimised coding, no trellis', await encode(33, 65, 3, { optimiseCoding: true, trellisQuantisation: false }, 2)],
      ['grey', await encode(101, 77, 1, {}, 3)],
      ['1 x 1', await encode(1, 1, 3, {}, 4)],
      ['a strip', await encode(1000, 3, 3, {}, 5)],
      ...['rgb_q90.jpg', 'rgb_444.jpg', 'rgb_progressive.jpg', 'grey.jpg', 'icc_profile.jpg', 'large.jpg'].map(
        (f): [string, Uint8Array] => [f, readFileSync(`test/fixtures/pillow-formats/${f}`)],
      ),
    ];
    for (const [name, bytes] of cases) {
      const fast = decodeJpeg(bytes, LIMIT);
      expect(fast, name).toBeDefined();
      const slow = await viaSharp(bytes);
      // libvips sometimes hands a grey JPEG out as three equal bands.
      const data = fast!.channels === 1 && slow.channels === 3 ? Uint8Array.from({ length: fast!.data.length * 3 }, (_, i) => fast!.data[Math.trunc(i / 3)]!) : fast!.data;
      expect([fast!.width, fast!.height], name).toEqual([slow.width, slow.height]);
      expect(Buffer.from(data).equals(Buffer.from(slow.data)), name).toBe(true);
    }
  });

  it('leaves to sharp what it does not do exactly: EXIF rotation, CMYK, truncation, corrupt data, oversized and non-JPEG input', async () => {
    const rotated = new Uint8Array(await sharp(noise(8, 4, 3, 6), { raw: { width: 8, height: 4, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg().toBuffer());
    const upright = new Uint8Array(await sharp(noise(8, 4, 3, 6), { raw: { width: 8, height: 4, channels: 3 } }).withMetadata({ orientation: 1 }).jpeg().toBuffer());
    const plain = await encode(64, 48, 3, {}, 7);
    const corrupt = plain.slice();
    corrupt.fill(0xff, plain.length - 200, plain.length - 100);
    expect(decodeJpeg(rotated, LIMIT)).toBeUndefined();
    expect(decodeJpeg(upright, LIMIT)).toBeDefined();
    expect(decodeJpeg(readFileSync('test/fixtures/pillow-cmyk/pillow-cmyk-23x37.jpg'), LIMIT)).toBeUndefined();
    expect(decodeJpeg(plain.subarray(0, plain.length >> 1), LIMIT)).toBeUndefined();
    expect(decodeJpeg(corrupt, LIMIT)).toBeUndefined();
    expect(decodeJpeg(plain, 64 * 48 - 1)).toBeUndefined();
    expect(decodeJpeg(readFileSync('test/fixtures/pillow-formats/grey.png'), LIMIT)).toBeUndefined();
    // The slow path still says what is wrong.
    await expect(preprocessImage(plain, { size: 8, maxPixels: 1000, source: 'big.jpg' })).rejects.toThrow(/big\.jpg: image is 64 x 48 = 3072 pixels, over the limit of 1000/);
    await expect(preprocessImage(plain.subarray(0, plain.length >> 1), { size: 8, source: 'cut.jpg' })).rejects.toThrow(/cut\.jpg: cannot decode image/);
  });

  it('gives each image its own pixels when many are preprocessed at once (the decode buffer is shared)', async () => {
    const images = await Promise.all([0, 1, 2, 3, 4, 5].map((s) => encode(40 + s * 9, 50 - s * 3, s === 2 ? 1 : 3, {}, s)));
    const one: Buffer[] = [];
    for (const im of images) one.push(Buffer.from(await preprocessImage(im, { size: 24 })));
    const together = await Promise.all(images.map((im) => preprocessImage(im, { size: 24 })));
    together.forEach((got, i) => expect(Buffer.from(got).equals(one[i]!), `image ${i}`).toBe(true));
    expect(new Set(one.map((b) => b.toString('hex'))).size).toBe(images.length);
  });
});

describe('a JPEG\'s EXIF orientation', () => {
  /** SOI, an APP1 Exif segment holding `tiff`, then SOS. */
  function withExif(tiff: number[]): Uint8Array {
    const payload = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff];
    const len = payload.length + 2;
    return Uint8Array.from([0xff, 0xd8, 0xff, 0xe1, len >> 8, len & 255, ...payload, 0xff, 0xda, 0, 2]);
  }
  const entry = (le: boolean, tag: number, type: number, value: number) =>
    le ? [tag & 255, tag >> 8, type, 0, 1, 0, 0, 0, value & 255, value >> 8, 0, 0] : [tag >> 8, tag & 255, 0, type, 0, 0, 0, 1, value >> 8, value & 255, 0, 0];
  const tiff = (le: boolean, entries: number[][]) => [
    ...(le ? [0x49, 0x49, 42, 0, 8, 0, 0, 0] : [0x4d, 0x4d, 0, 42, 0, 0, 0, 8]),
    ...(le ? [entries.length, 0] : [0, entries.length]),
    ...entries.flat(),
  ];

  it('is read from IFD0 in either byte order', () => {
    expect(jpegOrientation(withExif(tiff(true, [entry(true, 0x010f, 2, 0), entry(true, 0x0112, 3, 6)])))).toBe(6);
    expect(jpegOrientation(withExif(tiff(false, [entry(false, 0x0112, 3, 8)])))).toBe(8);
    expect(jpegOrientation(withExif(tiff(true, [entry(true, 0x010f, 2, 0)])))).toBeUndefined();
    expect(jpegOrientation(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff, 0xda, 0, 2]))).toBeUndefined();
  });

  it('is UNREADABLE, never an over-read or a loop, for truncated and hostile headers', () => {
    const good = withExif(tiff(true, [entry(true, 0x0112, 3, 3)]));
    for (let n = 0; n < good.length - 4; n++) expect(jpegOrientation(good.subarray(0, n)), `cut at ${n}`).toBe(UNREADABLE);
    const hostileCount = withExif(tiff(true, [entry(true, 0x010f, 2, 0)]));
    hostileCount[6 + 6 + 8] = 0xff; // IFD0 claims 255 entries
    hostileCount[6 + 6 + 9] = 0xff;
    expect(jpegOrientation(hostileCount)).toBe(UNREADABLE);
    const farOffset = withExif([0x49, 0x49, 42, 0, 0xff, 0xff, 0xff, 0x7f]);
    expect(jpegOrientation(farOffset)).toBe(UNREADABLE);
    expect(jpegOrientation(withExif(tiff(true, [entry(true, 0x0112, 4, 6)])))).toBe(UNREADABLE);
    expect(jpegOrientation(Uint8Array.from([0xff, 0xd8, 0xff, 0xe1, 0, 1, 0, 0]))).toBe(UNREADABLE);
    expect(jpegOrientation(Uint8Array.from([0x89, 0x50, 0x4e, 0x47]))).toBe(UNREADABLE);
  });
});
