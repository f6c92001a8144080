import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { checkDataset } from '../../core/dataset/check.ts';
import { preprocessImage, probeImage, resizeWindow } from '../../core/preprocess/index.ts';
import { FsStore } from '../../core/store.ts';
import { gifTransparentColour } from '../../core/preprocess/gif.ts';
import { tiffSamples } from '../../core/preprocess/tiff-samples.ts';
import { preprocessParity } from '../../worker/verify/preprocess-parity.ts';
import { jpeg, png } from './helpers/images.ts';
import { writeTiff } from './helpers/tiff.ts';

describe('preprocessing parity with open_clip (Pillow 9.4 bicubic)', () => {
  for (const set of ['open_clip-tiny', 'open_clip-tiny-rn']) {
    it(`is exact on ${set}`, async () => {
      const r = await preprocessParity(`test/fixtures/${set}`);
      console.log(`${set}: mean abs ${r.meanAbs}, max abs ${r.maxAbs} grey levels over ${r.perImage.length} images`);
      expect(r.perImage).toHaveLength(6);
      expect(r.maxAbs).toBe(0);
    });
  }
});

describe('every format and layout, as Pillow 9.4 preprocesses it', () => {
  const dir = 'test/fixtures/pillow-formats';
  const expected = JSON.parse(readFileSync(`${dir}/expected.json`, 'utf8')) as { size: number; images: Record<string, { mode: string; pixels: number[] }> };
  it('covers the layouts open_clip meets', () => {
    expect(new Set(Object.values(expected.images).map((i) => i.mode))).toEqual(new Set(['RGB', 'RGBA', 'L', 'LA', '1', 'P']));
  });
  for (const [file, { mode, pixels }] of Object.entries(expected.images)) {
    it(`is exact on ${file} (${mode})`, async () => {
      const got = await preprocessImage(readFileSync(`${dir}/${file}`), { size: expected.size, source: file });
      expect(Array.from(got)).toEqual(pixels);
    });
  }
});

describe('a GIF\'s transparent colour', () => {
  it('is read from the first frame and never read past the end of a truncated or hostile file', () => {
    const gif = readFileSync('test/fixtures/pillow-formats/pillow-transparent.gif');
    const colour = gifTransparentColour(gif);
    expect(colour).toHaveLength(3);
    expect(gifTransparentColour(readFileSync('test/fixtures/pillow-formats/opaque.gif'))).toBeUndefined();
    for (let n = 0; n < gif.length; n += 7) expect(() => gifTransparentColour(gif.subarray(0, n))).not.toThrow();
    // An extension whose sub-block lengths point far past the end.
    const hostile = Uint8Array.from([...gif.subarray(0, 13), 0x21, 0xfe, 0xff, 1, 2, 3]);
    expect(gifTransparentColour(hostile)).toBeUndefined();
    expect(gifTransparentColour(new TextEncoder().encode('GIF89a but not really'))).toBeUndefined();
  });
});

describe('CMYK JPEGs, as Pillow converts them', () => {
  const dir = 'test/fixtures/pillow-cmyk';
  const expected = JSON.parse(readFileSync(`${dir}/expected.json`, 'utf8')) as { images: Record<string, Record<string, number[]>> };
  for (const [file, bySize] of Object.entries(expected.images)) {
    it(`matches Pillow 9.4 on ${file}`, async () => {
      const bytes = readFileSync(`${dir}/${file}`);
      expect((await probeImage(bytes, {})).space).toBe('cmyk');
      for (const [size, want] of Object.entries(bySize)) {
        const got = await preprocessImage(bytes, { size: Number(size) });
        expect(Array.from(got), `${file} at ${size}`).toEqual(want);
      }
    });
  }
});

describe('torchvision Resize + CenterCrop geometry', () => {
  it('follows the fixture README table', () => {
    expect(resizeWindow(40, 30, 32)).toMatchObject({ outWidth: 42, outHeight: 32, x0: 5, y0: 0 });
    expect(resizeWindow(50, 58, 32)).toMatchObject({ outWidth: 32, outHeight: 37, x0: 0, y0: 2 });
    expect(resizeWindow(100, 37, 32)).toMatchObject({ outWidth: 86, outHeight: 32, x0: 27, y0: 0 });
    expect(resizeWindow(17, 18, 32)).toMatchObject({ outWidth: 32, outHeight: 33, x0: 0, y0: 0 });
    expect(resizeWindow(32, 90, 32)).toMatchObject({ outWidth: 32, outHeight: 90, x0: 0, y0: 29 });
  });
});

const raw = (data: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4) =>
  sharp(data, { raw: { width, height, channels } });

describe('decoding', () => {
  it('auto-orients by EXIF', async () => {
    // 2 wide x 1 high: red, blue; orientation 6 (rotate 90 clockwise) makes it 1 wide x 2 high, red on top.
    const png = await raw(Uint8Array.from([255, 0, 0, 0, 0, 255]), 2, 1, 3).withMetadata({ orientation: 6 }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    const probe = await probeImage(png, {});
    expect([probe.width, probe.height]).toEqual([1, 2]);
    const out = await preprocessImage(png, { size: 1 });
    expect(out[0]).toBeGreaterThan(200);
    expect(out[2]).toBeLessThan(60);
  });

  it('drops alpha like Pillow (premultiplied resize, transparent pixels stay their colour when not resized)', async () => {
    const px = new Uint8Array(4 * 4 * 4);
    for (let i = 0; i < 16; i++) px.set(i % 2 ? [200, 100, 50, 0] : [10, 20, 30, 255], i * 4);
    const png = await raw(px, 4, 4, 4).png().toBuffer();
    const same = await preprocessImage(png, { size: 4 });
    expect(Array.from(same.subarray(0, 6))).toEqual([10, 20, 30, 200, 100, 50]);
    const down = await preprocessImage(png, { size: 2 });
    // Transparent pixels carry no colour into the average once premultiplied: no trace of 200.
    for (let i = 0; i < down.length; i += 3) expect(down[i]).toBeLessThan(60);
  });

  it('copies grey to three channels', async () => {
    const png = await raw(new Uint8Array(36).map((_, i) => i * 7), 6, 6, 1).png().toBuffer();
    const out = await preprocessImage(png, { size: 3 });
    for (let i = 0; i < out.length; i += 3) expect([out[i + 1], out[i + 2]]).toEqual([out[i], out[i]]);
  });

  it('selects bands of a multi-band 16-bit TIFF and stretches 2..98 percentiles', async () => {
    const w = 10, h = 10, b = 5;
    const data = new Uint16Array(w * h * b);
    for (let i = 0; i < w * h; i++) for (let k = 0; k < b; k++) data[i * b + k] = 1000 + k * 3000 + i * 10;
    const tif = writeTiff(w, h, b, data, 1);
    expect((await probeImage(tif, {})).bands).toEqual([0, 1, 2]);
    const out = await preprocessImage(tif, { size: 10, bands: [4, 2, 0] });
    // Band 4 holds the brightest values, band 0 the darkest: R > G > B everywhere after one joint stretch.
    for (let i = 0; i < out.length; i += 3) {
      expect(out[i]).toBeGreaterThanOrEqual(out[i + 1]!);
      expect(out[i + 1]).toBeGreaterThanOrEqual(out[i + 2]!);
    }
    expect(Math.max(...out)).toBe(255);
    expect(Math.min(...out)).toBe(0);
    await expect(preprocessImage(tif, { size: 10, bands: [0, 1, 7], source: 'x.tif' })).rejects.toThrow(/x\.tif: band 7 requested but the image has 5 band/);
  });

  it('keeps 8-bit multi-band values exactly', async () => {
    const w = 3, h = 3, b = 6;
    const data = new Uint8Array(w * h * b).map((_, i) => (i * 11) & 255);
    for (const photometric of [1, 2]) {
      const out = await preprocessImage(writeTiff(w, h, b, data, photometric), { size: 3, bands: [5, 3, 1] });
      for (let i = 0; i < w * h; i++) expect([out[i * 3], out[i * 3 + 1], out[i * 3 + 2]]).toEqual([data[i * b + 5], data[i * b + 3], data[i * b + 1]]);
    }
  });

  it('rejects oversized, unknown and truncated input naming the source', async () => {
    const png = await raw(new Uint8Array(64 * 64 * 3).fill(90), 64, 64, 3).png().toBuffer();
    await expect(preprocessImage(png, { size: 8, maxPixels: 1000, source: 'big.png' })).rejects.toThrow(/big\.png: image is 64 x 64 = 4096 pixels, over the limit of 1000/);
    await expect(preprocessImage(new TextEncoder().encode('hello'), { size: 8, source: 'a.jpg' })).rejects.toThrow(/a\.jpg: not a readable image/);
    const jpg = await raw(new Uint8Array(64 * 64 * 3).map((_, i) => i & 255), 64, 64, 3).jpeg().toBuffer();
    await expect(preprocessImage(jpg.subarray(0, jpg.length >> 1), { size: 8, source: 'cut.jpg' })).rejects.toThrow(/cut\.jpg: cannot decode image/);
    const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    await expect(preprocessImage(svg, { size: 8, source: 'v.svg' })).rejects.toThrow(/v\.svg: unsupported image format 'svg'/);
  });

  it('refuses a thin image whose resize would be over the pixel limit, before decoding it (PNG and the JPEG fast path)', async () => {
    // 20000 x 2 is 40000 pixels; its short side resized to 224 would make it 2240000 x 224.
    const strip = new Uint8Array(20000 * 2 * 3).fill(120);
    for (const [name, bytes] of [
      ['strip.png', await raw(strip, 20000, 2, 3).png().toBuffer()],
      ['strip.jpg', await raw(strip, 20000, 2, 3).jpeg().toBuffer()],
    ] as const) {
      await expect(preprocessImage(bytes, { size: 224, source: name })).rejects.toThrow(
        new RegExp(`${name.replace('.', '\\.')}: image is 20000 x 2: its short side resized to 224 makes it 2240000 x 224, over the limit of 67108864 pixels`),
      );
      // The same strip at a size whose resize fits is preprocessed.
      expect(await preprocessImage(bytes, { size: 8, source: name })).toHaveLength(8 * 8 * 3);
    }
  });
});

describe('writing into a caller-owned buffer (a shard\'s pixel section)', () => {
  it('gives the same bytes as a fresh result for every layout and leaves the rest of the buffer alone', async () => {
    const w = 9, h = 7, b = 5;
    const sixteen = new Uint16Array(w * h * b).map((_, i) => 500 + ((i * 977) % 40000));
    const cases: [string, Uint8Array][] = [
      ['rgb jpeg', await jpeg(40, 30)],
      ['grey png', await png(30, 41, 1)],
      ['grey+alpha png', await png(30, 41, 2)],
      ['rgb png', await png(37, 29, 3)],
      ['rgba png', await png(17, 18, 4)],
      ['palette png', new Uint8Array(await raw(new Uint8Array(40 * 30 * 3).map((_, i) => (i * 7) & 255), 40, 30, 3).png({ palette: true }).toBuffer())],
      ['already the size (crop only)', await png(12, 20, 3)],
      ['16-bit multi-band tiff', writeTiff(w, h, b, sixteen, 1)],
    ];
    const S = 12;
    const per = S * S * 3;
    for (const [name, bytes] of cases) {
      const fresh = await preprocessImage(bytes, { size: S });
      const shard = new Uint8Array(per * 3).fill(0xab);
      const got = await preprocessImage(bytes, { size: S }, shard.subarray(per, 2 * per));
      expect(got.buffer, name).toBe(shard.buffer);
      expect(Buffer.from(shard.subarray(per, 2 * per)).equals(Buffer.from(fresh)), name).toBe(true);
      expect(shard.subarray(0, per).every((v) => v === 0xab) && shard.subarray(2 * per).every((v) => v === 0xab), name).toBe(true);
    }
  });

  it('refuses a buffer of the wrong size', async () => {
    await expect(preprocessImage(await png(30, 30, 3), { size: 8 }, new Uint8Array(8 * 8 * 3 - 1))).rejects.toThrow(/output holds 191 bytes, need 192/);
  });
});

describe('the dataset check and thin images', () => {
  it('reports a small thin PNG and JPEG as bad rows (the resize would be over the pixel limit), by line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'thin-'));
    const strip = new Uint8Array(20000 * 2 * 3).fill(120);
    writeFileSync(join(dir, 'strip.png'), await raw(strip, 20000, 2, 3).png().toBuffer());
    writeFileSync(join(dir, 'strip.jpg'), await raw(strip, 20000, 2, 3).jpeg().toBuffer());
    writeFileSync(join(dir, 'ok.png'), await raw(new Uint8Array(32 * 32 * 3).fill(7), 32, 32, 3).png().toBuffer());
    writeFileSync(join(dir, 'captions.csv'), 'filename,caption\nstrip.png,a long strip\nstrip.jpg,another strip\nok.png,a square\n');
    const { report } = await checkDataset(new FsStore(dir), 'thin', new FsStore(mkdtempSync(join(tmpdir(), 'thin-out-'))));
    const lines = report.problems.map((p) => [p.line, p.field, p.reason.replace(/ makes it .*/, '')]);
    expect(lines).toEqual([
      [2, 'filename', 'image is 20000 x 2: its short side resized to 224'],
      [3, 'filename', 'image is 20000 x 2: its short side resized to 224'],
    ]);
    expect(report.counts).toMatchObject({ rows: 3, goodRows: 1, badRows: 2 });
  });
});

describe('multi-band TIFFs, read by band index', () => {
  // RGB+NIR as NAIP ships it: band 3 is near-infrared, 0 over half the pixels (water, shadow), not transparency.
  const w = 12, h = 10;
  const rgbNir = new Uint8Array(w * h * 4).map((_, i) => (i % 4 === 3 ? ((i >> 2) % 2 === 0 ? 0 : 40 + (i % 200)) : 30 + ((i * 37) % 200)));
  const pick = (bands: number[]) => Uint8Array.from({ length: w * h * 3 }, (_, i) => rgbNir[Math.floor(i / 3) * 4 + bands[i % 3]!]!);
  const pixelsOf = async (px: Uint8Array, size: number) => preprocessImage(await raw(px, w, h, 3).png().toBuffer(), { size });

  it('refuses a 4- or 2-band TIFF whose last band is not declared alpha, without `bands`, saying how to choose them', async () => {
    await expect(preprocessImage(writeTiff(w, h, 4, rgbNir), { size: 8, source: 'naip.tif' })).rejects.toThrow(
      'naip.tif: 4-band TIFF whose last band (band 3) is not declared as alpha (ExtraSamples [0], unspecified), so it may be data such as near-infrared ' +
        'rather than transparency: set "bands" in train.json to the three zero-based bands to use as R, G, B, e.g. [0,1,2] for the RGB of RGB+NIR, [3,0,1] for NIR false colour',
    );
    // Grey and another band, at 16 bits, with the tag left out (libtiff then reads the extra sample as unspecified).
    const two = writeTiff(w, h, 2, new Uint16Array(w * h * 2).map((_, i) => i * 100), 1, null);
    await expect(probeImage(two, { source: 'vv-vh.tif' })).rejects.toThrow(
      /^vv-vh\.tif: 2-band TIFF whose last band \(band 1\) is not declared as alpha \(no readable ExtraSamples tag\).*e\.g\. \[0,0,0\] for band 0 as grey$/,
    );
    const sixteen = writeTiff(w, h, 4, new Uint16Array(w * h * 4).map((_, i) => i * 50), 2);
    await expect(preprocessImage(sixteen, { size: 8, source: 's.tif' })).rejects.toThrow(/s\.tif: 4-band TIFF whose last band \(band 3\) is not declared as alpha/);
  });

  it('gives exactly the chosen bands: [3,0,1] puts NIR in red', async () => {
    const tif = writeTiff(w, h, 4, rgbNir);
    expect((await probeImage(tif, { bands: [3, 0, 1] })).bands).toEqual([3, 0, 1]);
    const same = await preprocessImage(tif, { size: h, bands: [3, 0, 1] });
    // At its own size the image is only cropped (12 x 10 -> the centre 10 x 10): each pixel is the source's bands 3, 0, 1.
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < h; x++) {
        const p = (y * w + x + 1) * 4;
        expect(Array.from(same.subarray((y * h + x) * 3, (y * h + x) * 3 + 3))).toEqual([rgbNir[p + 3], rgbNir[p], rgbNir[p + 1]]);
      }
    }
    // Resized, it is the 3-band image made of those bands, resized.
    expect(Array.from(await preprocessImage(tif, { size: 6, bands: [3, 0, 1] }))).toEqual(Array.from(await pixelsOf(pick([3, 0, 1]), 6)));
  });

  it('with bands [0,1,2], NIR darkens nothing: the result is the RGB image\'s, 8-bit with or without the tag, and 16-bit', async () => {
    const rgb = await pixelsOf(pick([0, 1, 2]), 6);
    const untagged = writeTiff(w, h, 4, rgbNir, 2, null);
    for (const tif of [writeTiff(w, h, 4, rgbNir), untagged]) {
      expect(Array.from(await preprocessImage(tif, { size: 6, bands: [0, 1, 2] }))).toEqual(Array.from(rgb));
    }
    // libtiff's warning about the missing tag is let through, not its read errors: a cut file is still refused.
    await expect(preprocessImage(untagged.subarray(0, untagged.length - 40), { size: 6, bands: [0, 1, 2], source: 'cut.tif' })).rejects.toThrow(
      /^cut\.tif: cannot decode image \(.*Read error/,
    );
    // 16-bit: the same values times 257 stretch to what the 8-bit RGB-only TIFF of them stretches to.
    const wide = Uint16Array.from(rgbNir, (v) => v * 257);
    const rgbWide = Uint16Array.from(pick([0, 1, 2]), (v) => v * 257);
    expect(Array.from(await preprocessImage(writeTiff(w, h, 4, wide), { size: 6, bands: [0, 1, 2] }))).toEqual(
      Array.from(await preprocessImage(writeTiff(w, h, 3, rgbWide), { size: 6 })),
    );
  });

  it('reads a 2-band and a 1-band TIFF by index too, and refuses a band the image lacks', async () => {
    const grey2 = new Uint8Array(w * h * 2).map((_, i) => (i * 29) & 255);
    const out = await preprocessImage(writeTiff(w, h, 2, grey2, 1), { size: h, bands: [1, 0, 1] });
    expect(Array.from(out.subarray(0, 3))).toEqual([grey2[3], grey2[2], grey2[3]]);
    await expect(preprocessImage(writeTiff(w, h, 4, rgbNir), { size: 8, bands: [0, 1, 4], source: 'n.tif' })).rejects.toThrow(
      /^n\.tif: band 4 requested but the image has 4 band\(s\)$/,
    );
    await expect(probeImage(writeTiff(w, h, 1, grey2.subarray(0, w * h)), { bands: [0, 0, 1], source: 'g.tif' })).rejects.toThrow(
      /g\.tif: band 1 requested but the image has 1 band\(s\)/,
    );
  });

  it('reads a TIFF that declares its 4th band alpha as RGBA, like the PNG of the same pixels, unless `bands` is set', async () => {
    const rgba = new Uint8Array(w * h * 4).map((_, i) => (i % 4 === 3 ? ((i >> 2) % 3 === 0 ? 0 : 255) : (i * 53) & 255));
    const declared = await raw(rgba, w, h, 4).tiff({ compression: 'lzw' }).toBuffer();
    // libvips writes ExtraSamples 2 (unassociated alpha); so does BigTIFF, read with 8-byte offsets.
    expect(tiffSamples(declared)).toEqual({ photometric: 2, extraSamples: [2] });
    expect(tiffSamples(await raw(rgba, w, h, 4).tiff({ compression: 'lzw', bigtiff: true }).toBuffer())).toEqual({ photometric: 2, extraSamples: [2] });
    expect(tiffSamples(declared.subarray(0, 6))).toEqual({ photometric: undefined, extraSamples: null });
    expect((await probeImage(declared, {})).bands).toBeUndefined();
    // At 16 bits (which Pillow cannot read as RGBA) the declared alpha is left out: the colour bands are read.
    expect((await probeImage(writeTiff(w, h, 4, new Uint16Array(w * h * 4), 2, [2]), {})).bands).toEqual([0, 1, 2]);
    expect((await probeImage(writeTiff(w, h, 2, new Uint16Array(w * h * 2), 1, [1]), {})).bands).toEqual([0, 0, 0]);
    const asPng = await preprocessImage(await raw(rgba, w, h, 4).png().toBuffer(), { size: 6 });
    expect(Array.from(await preprocessImage(declared, { size: 6 }))).toEqual(Array.from(asPng));
    // Pillow premultiplies alpha in the resize, so the chosen bands' own resize differs from it.
    const chosen = await preprocessImage(declared, { size: 6, bands: [0, 1, 2] });
    const opaque = await preprocessImage(await raw(Uint8Array.from({ length: w * h * 3 }, (_, i) => rgba[Math.floor(i / 3) * 4 + (i % 3)]!), w, h, 3).png().toBuffer(), { size: 6 });
    expect(Array.from(chosen)).toEqual(Array.from(opaque));
    expect(Array.from(chosen)).not.toEqual(Array.from(asPng));
  });

  it('keeps the pixel, resize and decoded-size limits on the band path, from the header alone', async () => {
    await expect(preprocessImage(writeTiff(w, h, 4, rgbNir), { size: 8, bands: [3, 0, 1], maxPixels: 100, source: 'n.tif' })).rejects.toThrow(
      /n\.tif: image is 12 x 10 = 120 pixels, over the limit of 100/,
    );
    const strip = writeTiff(2000, 1, 4, new Uint8Array(2000 * 4));
    await expect(preprocessImage(strip, { size: 224, bands: [3, 0, 1], source: 'strip.tif' })).rejects.toThrow(
      /strip\.tif: image is 2000 x 1: its short side resized to 224 makes it 448000 x 224, over the limit/,
    );
    // A 1 x 1 file whose header claims 8000 x 8000 x 64 bands (8 GB at 16 bits): refused before anything is decoded.
    const claim = writeTiff(1, 1, 64, new Uint8Array(64), 1).slice();
    const v = new DataView(claim.buffer);
    v.setUint32(8 + 2 + 8, 8000, true); // ImageWidth, the first entry's value
    v.setUint32(8 + 2 + 12 + 8, 8000, true); // ImageLength
    await expect(probeImage(claim, { bands: [0, 1, 2], source: 'bomb.tif' })).rejects.toThrow(/bomb\.tif: 8000 x 8000 x 64 bands is too large to decode/);
  });

  it('leaves `bands` out of 8-bit PNGs, which declare their own layout', async () => {
    const bytes = await png(12, 10, 3);
    expect(Array.from(await preprocessImage(bytes, { size: 6, bands: [2, 1, 0] }))).toEqual(Array.from(await preprocessImage(bytes, { size: 6 })));
  });

  it('makes a dataset of 4-band TIFFs invalid without `bands`, with the reason on each row, and valid with them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'naip-'));
    writeFileSync(join(dir, 'a.tif'), writeTiff(w, h, 4, rgbNir));
    writeFileSync(join(dir, 'b.tif'), writeTiff(w, h, 4, rgbNir.map((v) => 255 - v)));
    writeFileSync(join(dir, 'captions.csv'), 'filename,caption\na.tif,farmland\na.tif,fields and a road\nb.tif,a lake\n');
    const check = () => checkDataset(new FsStore(dir), 'naip', new FsStore(mkdtempSync(join(tmpdir(), 'naip-out-'))), { imageSize: 8, discardShards: true });
    const refused = (await check()).report;
    expect(refused.valid).toBe(false);
    expect(refused.counts).toMatchObject({ rows: 3, goodRows: 0, badRows: 3, goodImages: 0 });
    expect(refused.problems.map((p) => [p.line, p.field, p.reason.slice(0, 70)])).toEqual(
      [2, 3, 4].map((line) => [line, 'filename', '4-band TIFF whose last band (band 3) is not declared as alpha (ExtraSa']),
    );
    expect(refused.problems.every((p) => p.reason.includes('set "bands" in train.json'))).toBe(true);

    writeFileSync(join(dir, 'train.json'), JSON.stringify({ bands: [3, 0, 1] }));
    const { report, options } = await check();
    expect(options.bands).toEqual([3, 0, 1]);
    expect(report).toMatchObject({ valid: true, problems: [], counts: { rows: 3, goodRows: 3, badRows: 0, goodImages: 2 } });
  });
});
