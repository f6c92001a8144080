import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDataset } from '../../core/dataset/check.ts';
import { CONTEXT_LENGTH } from '../../core/shard-format.ts';
import type { Body, ObjectInfo, ObjectStore } from '../../core/store.ts';
import { CROP_RATIO, CROP_SCALE, augmentImage, dihedral, randomResizedCropBox, resizeCrop } from '../../worker/data/augment.ts';
import { makeBatch } from '../../worker/data/batch.ts';
import { Rng } from '../../worker/data/rng.ts';
import { epochSamples, indexShards, listShardKeys, prefetchShards, type DataCursor, type Sample } from '../../worker/data/shard-stream.ts';
import { fsStore, simpleShards, tempDir, writeShards } from './helpers.ts';

describe('Rng', () => {
  it('is deterministic per seed and salt, and resumes from a saved state', () => {
    const a = Rng.fromSeed(7, 1, 2);
    const b = Rng.fromSeed(7, 1, 2);
    const c = Rng.fromSeed(7, 1, 3);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xs);
    const saved = a.state();
    const ahead = Array.from({ length: 10 }, () => a.float());
    const resumed = Rng.fromState(JSON.parse(JSON.stringify(saved)));
    expect(Array.from({ length: 10 }, () => resumed.float())).toEqual(ahead);
  });

  it('draws integers in range without obvious bias and permutations that are permutations', () => {
    const r = Rng.fromSeed(1);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 6000; i++) counts[r.int(6)]++;
    for (const n of counts) expect(n).toBeGreaterThan(850);
    const p = r.permutation(50);
    expect([...p].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect([...p]).not.toEqual([...Array(50).keys()]);
    const f = Array.from({ length: 1000 }, () => r.float());
    expect(Math.min(...f)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...f)).toBeLessThan(1);
    expect(() => Rng.fromState([0, 0, 0, 0])).toThrow(/zero state/);
    expect(() => Rng.fromState([1, 2, 3])).toThrow(/bad saved state/);
  });
});

function asymmetricImage(size: number): Uint8Array {
  const img = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) img[(y * size + x) * 3 + c] = (y * size + x + c) % 256;
  return img;
}

describe('augmentation', () => {
  const size = 6;
  const src = asymmetricImage(size);
  const apply = (k: number, img = src): Uint8Array => {
    const out = new Uint8Array(img.length);
    dihedral(img, size, k, out);
    return out;
  };

  it('the dihedral group has eight distinct elements; identity, quarter turns and flips compose as they should', () => {
    const all = [...Array(8).keys()].map((k) => Buffer.from(apply(k)).toString('hex'));
    expect(new Set(all).size).toBe(8);
    expect(apply(0)).toEqual(src);
    expect(apply(1, apply(1, apply(1, apply(1))))).toEqual(src);
    expect(apply(4, apply(4))).toEqual(src);
    expect(apply(1, apply(1))).toEqual(apply(2));
    // Quarter turn: the top-left pixel of the output comes from the top-right of the input (counter-clockwise view).
    const turned = apply(1);
    expect([...turned.subarray(0, 3)]).toEqual([...src.subarray((size - 1) * 3, size * 3)]);
    expect(() => apply(8)).toThrow(/not in 0..7/);
  });

  it('RandomResizedCrop boxes stay inside the image with area and ratio in range', () => {
    const rng = Rng.fromSeed(3);
    for (let i = 0; i < 200; i++) {
      const b = randomResizedCropBox(rng, 224, 224);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.left).toBeGreaterThanOrEqual(0);
      expect(b.top + b.height).toBeLessThanOrEqual(224);
      expect(b.left + b.width).toBeLessThanOrEqual(224);
      const area = (b.height * b.width) / (224 * 224);
      expect(area).toBeGreaterThan(CROP_SCALE[0] - 0.02);
      expect(area).toBeLessThanOrEqual(CROP_SCALE[1]);
      expect(b.width / b.height).toBeGreaterThan(CROP_RATIO[0] - 0.02);
      expect(b.width / b.height).toBeLessThan(CROP_RATIO[1] + 0.02);
    }
  });

  it('resizing the full box is the identity; a crop upsamples bilinearly', () => {
    const out = new Uint8Array(src.length);
    resizeCrop(src, size, { top: 0, left: 0, height: size, width: size }, out);
    expect(out).toEqual(src);
    // A 1x2 crop holding values 0 and 60 in a 2-pixel-wide image: x = 0 -> 0, x = 1 -> 60 after clamping,
    // and bilinear in between: ((x + 0.5) * 1/2 * ... ) gives 0, 15, 45, 60 for a 4-pixel output row.
    const s = 4;
    const img = new Uint8Array(s * s * 3);
    for (let y = 0; y < s; y++) for (let c = 0; c < 3; c++) img[(y * s + 1) * 3 + c] = 60;
    const up = new Uint8Array(img.length);
    resizeCrop(img, s, { top: 0, left: 0, height: s, width: 2 }, up);
    expect([0, 1, 2, 3].map((x) => up[x * 3])).toEqual([0, 15, 45, 60]);
  });

  it('augmentImage with both switches off copies; with them on it is seeded', () => {
    const out = new Uint8Array(src.length);
    augmentImage(src, size, { randomResizedCrop: false, dihedral: false }, Rng.fromSeed(1), out);
    expect(out).toEqual(src);
    const a = new Uint8Array(src.length);
    const b = new Uint8Array(src.length);
    augmentImage(src, size, { randomResizedCrop: true, dihedral: true }, Rng.fromSeed(5), a);
    augmentImage(src, size, { randomResizedCrop: true, dihedral: true }, Rng.fromSeed(5), b);
    expect(a).toEqual(b);
  });
});

/** Counts objects fetched but not yet released by the consumer, to check the prefetch bound. */
class CountingStore implements ObjectStore {
  gets = 0;
  constructor(private readonly inner: ObjectStore) {}
  get uri(): string {
    return this.inner.uri;
  }
  get(key: string): Promise<Uint8Array> {
    this.gets++;
    return this.inner.get(key);
  }
  tryGet(key: string): Promise<Uint8Array | undefined> {
    this.gets++;
    return this.inner.tryGet(key);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  list(prefix?: string): Promise<ObjectInfo[]> {
    return this.inner.list(prefix);
  }
  listEach(prefix?: string): AsyncIterable<ObjectInfo> {
    return this.inner.listEach(prefix);
  }
  stream(key: string): AsyncIterable<Uint8Array> {
    this.gets++;
    return this.inner.stream(key);
  }
  getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    this.gets++;
    return this.inner.getRange(key, start, end);
  }
  put(key: string, body: Body): Promise<void> {
    return this.inner.put(key, body);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  child(prefix: string): ObjectStore {
    return this.inner.child(prefix);
  }
}

describe('shard stream', async () => {
  const dir = tempDir('stream');
  afterAll(dir.cleanup);
  const store = fsStore(dir.path);
  await writeShards(store, simpleShards(5, 6));
  const index = await indexShards(store);

  it('indexes rows per split and labels without keeping pixels', () => {
    expect(index.keys).toHaveLength(5);
    expect(index.totals).toEqual({ train: 48, val: 12, test: 0 });
    expect(index.rows[0]).toEqual({ train: 10, val: 2, test: 0 });
    expect(index.labels.val).toEqual(['class0', 'class1', 'class2']);
    expect(index.imageSize).toBe(8);
  });

  const rowId = (s: Sample): number => s.shard.tokens[s.row * CONTEXT_LENGTH + 1]! * 100 + s.shard.tokens[s.row * CONTEXT_LENGTH + 2]!;
  const drain = async (seed: number, start: DataCursor): Promise<Sample[]> => {
    const out: Sample[] = [];
    for await (const s of epochSamples(store, index, seed, start)) out.push(s);
    return out;
  };

  it('visits every train row of the epoch once, in a seeded order that changes per epoch', async () => {
    const e0 = await drain(1, { epoch: 0, sample: 0 });
    expect(e0).toHaveLength(48);
    expect(e0.every((s) => s.shard.splits[s.shard.captionImage[s.row]!] === 'train')).toBe(true);
    const ids = e0.map((s) => `${s.shard.imageIds[s.shard.captionImage[s.row]!]}#${s.row}`);
    expect(new Set(ids).size).toBe(48);
    expect((await drain(1, { epoch: 0, sample: 0 })).map(rowId)).toEqual(e0.map(rowId));
    const e1 = await drain(1, { epoch: 1, sample: 0 });
    expect(e1.map(rowId)).not.toEqual(e0.map(rowId));
    expect(new Set(e1.map((s) => `${s.shard.imageIds[s.shard.captionImage[s.row]!]}#${s.row}`))).toEqual(new Set(ids));
  });

  it('resuming at any cursor yields exactly the rest of the epoch', async () => {
    const full = await drain(9, { epoch: 2, sample: 0 });
    for (const cut of [1, 9, 10, 23, 47]) {
      const rest = await drain(9, full[cut - 1]!.after);
      expect(rest.map(rowId)).toEqual(full.slice(cut).map(rowId));
    }
  });

  it('interleaves two shards at a time and fetches each shard once per epoch', async () => {
    const counting = new CountingStore(store);
    const shardsOf: string[] = [];
    for await (const s of epochSamples(counting, index, 4, { epoch: 0, sample: 0 })) shardsOf.push(s.shard.imageIds[0]!);
    expect(counting.gets).toBe(5);
    // The first 10 samples (one shard's worth) already come from both shards of the window.
    expect(new Set(shardsOf.slice(0, 10)).size).toBe(2);
    // At most two shards interleave: the k-th shard to appear starts only after the (k-2)-th has finished.
    const firstUse = [...new Set(shardsOf)];
    const span = (id: string): [number, number] => [shardsOf.indexOf(id), shardsOf.lastIndexOf(id)];
    for (let k = 2; k < firstUse.length; k++) expect(span(firstUse[k]!)[0]).toBeGreaterThan(span(firstUse[k - 2]!)[1]);
  });

  it('keeps at most the current and one prefetched shard in flight', async () => {
    const counting = new CountingStore(store);
    let consumed = 0;
    let maxAhead = 0;
    for await (const _ of prefetchShards(counting, index.keys, [0, 1, 2, 3, 4])) {
      consumed++;
      await new Promise((r) => setTimeout(r, 5));
      maxAhead = Math.max(maxAhead, counting.gets - consumed);
    }
    expect(consumed).toBe(5);
    expect(maxAhead).toBe(1);
  });

  it('makes normalised batches with the rows tokens', async () => {
    const samples = (await drain(1, { epoch: 0, sample: 0 })).slice(0, 4);
    const b = makeBatch(samples, 8, { randomResizedCrop: false, dihedral: false }, Rng.fromSeed(0));
    expect(b.images).toHaveLength(4 * 3 * 8 * 8);
    expect(b.tokens).toHaveLength(4 * 77);
    expect(b.tokens[77 + 1]).toBe(samples[1]!.shard.tokens[samples[1]!.row * 77 + 1]);
    const first = samples[0]!;
    const px = first.shard.pixels[first.shard.captionImage[first.row]! * 8 * 8 * 3]!;
    expect(b.images[0]).toBeCloseTo((px / 255 - 0.48145466) / 0.26862954, 5);
  });

  it('names the shard when one is corrupt', async () => {
    const bad = tempDir('bad');
    try {
      const s = fsStore(bad.path);
      await s.put('shard-00000.rsshard', new Uint8Array(100));
      await expect(indexShards(s)).rejects.toThrow(/shard-00000\.rsshard/);
      await expect(indexShards(fsStore(`${bad.path}/none`))).rejects.toThrow(/no \.rsshard files/);
    } finally {
      bad.cleanup();
    }
  });
});

describe('the shards index.json', async () => {
  const data = tempDir('index-data');
  const out = tempDir('index-shards');
  afterAll(data.cleanup);
  afterAll(out.cleanup);
  const images = fsStore(data.path);
  const rows = ['filename,caption,split,label'];
  for (let i = 0; i < 30; i++) {
    const split = i % 5 === 0 ? 'val' : i % 7 === 0 ? 'test' : 'train';
    const image = await sharp(new Uint8Array(8 * 8 * 3).fill(i * 7), { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();
    await images.put(`t${i}.png`, image);
    for (let k = 0; k <= i % 3; k++) rows.push(`t${i}.png,tile ${i} caption ${k},${split},class${i % 4}`);
  }
  await images.put('captions.csv', rows.join('\n'));
  await images.put('train.json', '{"model": "ViT-tiny", "shardSize": 8}');
  const shards = fsStore(out.path);
  const { report } = await checkDataset(images, 'index', shards);

  it('gives the same index as reading every shard, with one read', async () => {
    expect(report.valid).toBe(true);
    const counting = new CountingStore(shards);
    const fromFile = await indexShards(counting);
    expect(counting.gets).toBe(1);
    const scanned = await indexShards(shards, await listShardKeys(shards));
    expect(fromFile).toEqual(scanned);
    expect(fromFile.totals.train + fromFile.totals.val + fromFile.totals.test).toBe(rows.length - 1);
    // One split per shard: evaluation reads only the shards of its split.
    for (const r of fromFile.rows) expect(Object.values(r).filter((n) => n > 0)).toHaveLength(1);
  });

  it('is checked against each shard it describes', async () => {
    const index = await indexShards(shards);
    const lying = { ...index, rows: index.rows.map((r) => ({ ...r, train: r.train > 0 ? r.train + 1 : 0 })) };
    lying.trainRows = lying.rows.map((r) => Int32Array.from({ length: r.train }, (_, i) => i));
    lying.totals = { ...index.totals, train: lying.rows.reduce((n, r) => n + r.train, 0) };
    await expect(async () => {
      for await (const s of epochSamples(shards, lying, 1, { epoch: 0, sample: 0 })) void s;
    }).rejects.toThrow(/captions, the shard index says/);
    await shards.put('index.json', '{"version": 1, "imageSize": 8, "shards": [{"name": "../x.rsshard", "split": "train", "rows": 1, "images": 1}], "labels": {"train": [], "val": [], "test": []}}');
    await expect(indexShards(shards)).rejects.toThrow(/index\.json: shards\.0\.name/);
  });
});
