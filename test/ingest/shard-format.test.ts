import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLIP_MEAN, CLIP_STD, normalizeHwcToChw } from '../../core/pixels.ts';
import { BufferPool } from '../../core/buffer-pool.ts';
import { decodeShard, draftShard, encodeShard, type Shard } from '../../core/shard-format.ts';
import { sha256Hex } from '../../core/store.ts';

function sampleShard(): Shard {
  const S = 5;
  const nImages = 3;
  const pixels = new Uint8Array(nImages * S * S * 3).map((_, i) => (i * 37 + 11) & 255);
  const captions = ['a field', 'zwei Häuser, "quoted"', 'roads 🚗', 'a field'];
  const tokens = new Int32Array(captions.length * 77).map((_, i) => (i % 77 === 0 ? 49406 : i % 77 < 4 ? 1000 + i : 0));
  return {
    imageSize: S,
    pixels,
    imageIds: ['a/1.png', 'b.jpg', 'ü.tif'],
    splits: ['train', 'val', 'test'],
    labels: ['farmland', null, 'road'],
    captions,
    captionImage: Int32Array.from([0, 1, 2, 0]),
    lines: Int32Array.from([2, 3, 5, 9]),
    tokens,
  };
}

describe('shard format', () => {
  it('round-trips every field', () => {
    const s = sampleShard();
    const bytes = encodeShard(s);
    const d = decodeShard(bytes, 'mem');
    expect(d.imageSize).toBe(s.imageSize);
    expect(Buffer.from(d.pixels).equals(Buffer.from(s.pixels))).toBe(true);
    expect(d.imageIds).toEqual(s.imageIds);
    expect(d.splits).toEqual(s.splits);
    expect(d.labels).toEqual(s.labels);
    expect(d.captions).toEqual(s.captions);
    expect(Array.from(d.captionImage)).toEqual(Array.from(s.captionImage));
    expect(Array.from(d.lines)).toEqual(Array.from(s.lines));
    expect(Array.from(d.tokens)).toEqual(Array.from(s.tokens));
  });

  it('is the same file when drafted in place in a reused buffer, with the whole file\'s SHA-256', () => {
    const s = sampleShard();
    const want = encodeShard(s);
    const pool = new BufferPool();
    const dirty = pool.take(want.length + 500);
    dirty.fill(0xee);
    pool.release(dirty);
    const draft = draftShard(s, s.captions.length, (size) => pool.take(size));
    draft.pixels.set(s.pixels);
    draft.captionImage.set(s.captionImage);
    draft.lines.set(s.lines);
    draft.tokens.set(s.tokens);
    const sealed = draft.seal();
    expect(sealed.bytes.buffer).toBe(dirty.buffer);
    expect(Buffer.from(sealed.bytes).equals(Buffer.from(want))).toBe(true);
    expect(sealed.sha256).toBe(sha256Hex(want));
    const bad = draftShard(s, s.captions.length);
    bad.captionImage.set([0, 1, 3, 0]);
    expect(() => bad.seal()).toThrow(/caption 2 points at image 3, have 3/);
  });

  it('decodes from a misaligned view and is deterministic', () => {
    const bytes = encodeShard(sampleShard());
    expect(Buffer.from(encodeShard(sampleShard())).equals(Buffer.from(bytes))).toBe(true);
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const d = decodeShard(shifted.subarray(3), 'shifted');
    expect(Array.from(d.tokens)).toEqual(Array.from(sampleShard().tokens));
  });

  it('round-trips an empty shard', () => {
    const d = decodeShard(
      encodeShard({ imageSize: 4, pixels: new Uint8Array(0), imageIds: [], splits: [], labels: [], captions: [], captionImage: new Int32Array(0), lines: new Int32Array(0), tokens: new Int32Array(0) }),
    );
    expect(d.captions).toEqual([]);
  });

  it('rejects corruption, truncation and bad headers, naming the source', () => {
    const bytes = encodeShard(sampleShard());
    const flipped = bytes.slice();
    flipped[flipped.length - 100] ^= 1;
    expect(() => decodeShard(flipped, 's3://b/x.rsshard')).toThrow(/s3:\/\/b\/x\.rsshard: .*checksum/);
    expect(() => decodeShard(bytes.subarray(0, bytes.length - 1), 'cut')).toThrow(/cut: .*checksum/);
    expect(() => decodeShard(bytes.subarray(0, 20), 'tiny')).toThrow(/tiny: .*too short/);
    const magic = bytes.slice();
    magic[0] = 0x58;
    expect(() => decodeShard(magic, 'm')).toThrow(/m: .*magic/);
    const version = bytes.slice();
    version[8] = 9;
    expect(() => decodeShard(version, 'v')).toThrow(/v: .*version 9/);
    const hugeHeader = bytes.slice();
    new DataView(hugeHeader.buffer).setUint32(12, 0xfffffff0, true);
    expect(() => decodeShard(hugeHeader, 'h')).toThrow(/h: .*header length/);
  });

  it('rejects inconsistent shards at encode time', () => {
    const s = sampleShard();
    expect(() => encodeShard({ ...s, pixels: s.pixels.subarray(1) })).toThrow(/pixels/);
    expect(() => encodeShard({ ...s, captionImage: Int32Array.from([0, 1, 7, 0]) })).toThrow(/image 7/);
    expect(() => encodeShard({ ...s, labels: ['x'] })).toThrow(/labels/);
  });
});

describe('normalizeHwcToChw', () => {
  it('matches open_clip pixel_values bit for bit on the fixture', () => {
    const { u8, f32 } = readPreprocessFixture('test/fixtures/open_clip-tiny/preprocess.safetensors');
    const got = normalizeHwcToChw(u8, 6, 32);
    expect(got.length).toBe(f32.length);
    let diff = 0;
    for (let i = 0; i < got.length; i++) if (got[i] !== f32[i]) diff++;
    expect(diff).toBe(0);
    expect(CLIP_MEAN[0]).toBe(0.48145466);
    expect(CLIP_STD[2]).toBe(0.27577711);
  });
});

/** Minimal safetensors read of the two preprocess tensors (the checkpoint team owns the real reader). */
function readPreprocessFixture(path: string): { u8: Uint8Array; f32: Float32Array } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const at = (name: string): Buffer => buf.subarray(8 + n + header[name]!.data_offsets[0], 8 + n + header[name]!.data_offsets[1]);
  const f = at('pixel_values');
  return { u8: new Uint8Array(at('pixels_uint8_hwc')), f32: new Float32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.length)) };
}
