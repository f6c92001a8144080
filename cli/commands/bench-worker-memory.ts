import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeShard, type Shard } from '../../core/shard-format.ts';
import { shardName } from '../../core/s3-layout.ts';
import { FsStore } from '../../core/store.ts';
import { makeBatch } from '../../worker/data/batch.ts';
import { Rng } from '../../worker/data/rng.ts';
import { epochSamples, indexShards } from '../../worker/data/shard-stream.ts';
import { COMMON } from '../../worker/train/recipe.ts';
import { UserError, type Command } from '../command.ts';
import { numberFlag, parseFlags } from '../flags.ts';

/**
 * Peak memory of the worker's data path (index pass, then one epoch of shuffled, augmented, normalised batches)
 * over 2 and over 20 shards, each in a fresh process: with at most two shards resident the peaks should match.
 */
const USAGE = 'bench-worker-memory [--size 224] [--images-per-shard 64] [--batch 32] [--counts 2,20]';

function syntheticShard(size: number, images: number, seed: number): Shard {
  const rng = Rng.fromSeed(seed);
  const pixels = new Uint8Array(images * size * size * 3);
  for (let i = 0; i < pixels.length; i += 4) {
    const v = rng.next();
    pixels[i] = v & 255;
    pixels[i + 1] = (v >>> 8) & 255;
    pixels[i + 2] = (v >>> 16) & 255;
    pixels[i + 3] = v >>> 24;
  }
  const captions = Array.from({ length: images * 2 }, (_, r) => `tile ${seed}-${r >> 1} caption ${r & 1}`);
  const tokens = new Int32Array(captions.length * 77);
  captions.forEach((_, r) => tokens.set([49406, 320 + (r % 100), 49407], r * 77));
  return {
    imageSize: size,
    pixels,
    imageIds: Array.from({ length: images }, (_, i) => `s${seed}/${i}.png`),
    splits: Array.from({ length: images }, (_, i) => (i % 10 === 9 ? 'val' : 'train')),
    labels: Array.from({ length: images }, () => null),
    captions,
    captionImage: Int32Array.from(captions, (_, r) => r >> 1),
    lines: Int32Array.from(captions, (_, r) => r + 2),
    tokens,
  };
}

/** The measured pass, run in the child process. */
async function dataPass(dir: string, batch: number): Promise<Record<string, number>> {
  const store = new FsStore(dir);
  const index = await indexShards(store);
  const rng = Rng.fromSeed(0);
  let peakHeap = 0;
  let batches = 0;
  let pending = [];
  for await (const s of epochSamples(store, index, 0, { epoch: 0, sample: 0 })) {
    pending.push(s);
    if (pending.length === batch) {
      makeBatch(pending, index.imageSize, COMMON.augment, rng);
      pending = [];
      batches++;
      peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers);
    }
  }
  return { batches, maxRssMiB: process.resourceUsage().maxRSS / 1024, peakHeapAndBuffersMiB: peakHeap / 2 ** 20 };
}

function child(dir: string, batch: number): Promise<Record<string, number>> {
  const args = ['--import', 'tsx', process.argv[1]!, 'bench-worker-memory', '--child', dir, '--batch', String(batch)];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`child exited ${code}`))));
  });
}

const command: Command = {
  summary: 'peak memory of the worker data path over 2 vs 20 shards (flat when streaming is bounded)',
  async run(argv) {
    const f = parseFlags(
      argv,
      { size: { type: 'string' }, 'images-per-shard': { type: 'string' }, batch: { type: 'string' }, counts: { type: 'string' }, child: { type: 'string' } },
      USAGE,
    );
    const batch = numberFlag('batch', f.batch, true) ?? 32;
    if (f.child) {
      console.log(JSON.stringify(await dataPass(f.child, batch)));
      return 0;
    }
    const size = numberFlag('size', f.size, true) ?? 224;
    const perShard = numberFlag('images-per-shard', f['images-per-shard'], true) ?? 64;
    const counts = (f.counts ?? '2,20').split(',').map((c) => numberFlag('counts', c, true)!);
    if (counts.some((c) => c < 1)) throw new UserError('--counts must be positive integers');
    const root = await mkdtemp(join(tmpdir(), 'rsclip-bench-mem-'));
    try {
      const shardMiB = encodeShard(syntheticShard(size, perShard, 0)).length / 2 ** 20;
      const results: Record<string, unknown>[] = [];
      for (const n of counts) {
        const dir = join(root, `n${n}`);
        const store = new FsStore(dir);
        for (let i = 0; i < n; i++) await store.put(shardName(i), encodeShard(syntheticShard(size, perShard, i)));
        const r = await child(dir, batch);
        results.push({ shards: n, datasetMiB: Number((n * shardMiB).toFixed(1)), ...r });
        console.error(`${n} shards (${(n * shardMiB).toFixed(0)} MiB): max RSS ${r.maxRssMiB!.toFixed(0)} MiB`);
      }
      console.log(JSON.stringify({ size, imagesPerShard: perShard, shardMiB: Number(shardMiB.toFixed(2)), batch, results }));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
    return 0;
  },
};

export default command;
