import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { loadModelConfig } from '../../core/model-config/config.ts';
import { shardName } from '../../core/s3-layout.ts';
import { encodeShard, type Shard } from '../../core/shard-format.ts';
import { FsStore } from '../../core/store.ts';
import { writeSafetensors } from '../../core/tensors/safetensors.ts';
import { type SaveValue, torchSave } from '../../worker/checkpoint/torch-writer.ts';
import { Rng } from '../../worker/data/rng.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { initParams } from '../../worker/models/init.ts';
import type { MemoryRequest } from '../bench-worker-memory-runner.ts';
import { forkModule } from '../child-process.ts';
import { defineCommand, integer, option, toggle, UserError } from '../command.ts';
import { TRAINER_MALLOC_ENV } from '../../worker/train/malloc-env.ts';

/** A random-weight checkpoint of the config, as torch.save or safetensors writes it. */
async function writeCheckpoint(path: string, dict: StateDict, format: 'pt' | 'safetensors'): Promise<void> {
  if (format === 'safetensors') return writeFile(path, writeSafetensors(dict));
  const value = new Map<string, SaveValue>();
  const storages: Record<string, Uint8Array> = {};
  [...dict].forEach(([k, t], i) => {
    value.set(k, { storage: { key: String(i), type: 'FloatStorage', numel: t.data.length }, size: [...t.shape] });
    storages[String(i)] = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  });
  await writeFile(path, torchSave(value, storages));
}

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

/** One measurement in a fresh process, with `env` added to this one's. */
async function measure<T>(request: MemoryRequest, env: Readonly<Record<string, string>> = {}): Promise<T> {
  const runner = forkModule(new URL('../bench-worker-memory-runner.ts', import.meta.url), { ...process.env, ...env });
  try {
    await runner.next();
    return await runner.request<T>(request);
  } finally {
    await runner.stop();
  }
}

/** --arch: the training worker's peak per config and batch size, each in a fresh process. */
async function trainBench(archs: string[], batches: number[], steps: number, format: 'pt' | 'safetensors', glibcDefaults: boolean, resume: boolean): Promise<void> {
  // What the worker images run with, unless the baseline without it is asked for.
  const env = glibcDefaults ? {} : TRAINER_MALLOC_ENV;
  const root = await mkdtemp(join(tmpdir(), 'rsclip-bench-train-mem-'));
  try {
    // Enough train rows for `steps` steps of the largest batch (2 captions per image, 9 in 10 images train).
    const perShard = 64;
    const need = Math.ceil((steps * Math.max(...batches)) / (2 * 0.9 * perShard)) + 1;
    const results: Record<string, unknown>[] = [];
    for (const arch of archs) {
      const config = loadModelConfig(arch);
      const size = config.vision_cfg.image_size;
      const shardDir = join(root, `shards-${size}`);
      const shards = new FsStore(shardDir);
      if (!(await shards.list('')).length) {
        for (let i = 0; i < need; i++) await shards.put(shardName(i), encodeShard(syntheticShard(size, perShard, i)));
      }
      const checkpoint = join(root, `${arch}.${format}`);
      await writeCheckpoint(checkpoint, initParams(config, 0), format);
      for (const batch of batches) {
        const out = join(root, `out-${arch}-${batch}`);
        const request: MemoryRequest = { kind: 'train', checkpoint, arch, batch, steps, shards: shardDir, out };
        const r = await measure<Record<string, unknown>>(request, env);
        results.push(r);
        console.error(`${arch} batch ${batch}: peak RSS ${r.peakRssMiB} MiB`);
        if (resume) {
          // The same job again over the same output: it loads the last checkpoint (parameters and moments) instead.
          const again = await measure<Record<string, unknown>>(request, env);
          results.push({ ...again, resumed: true });
          console.error(`${arch} batch ${batch}, resumed from its checkpoint: peak RSS ${again.peakRssMiB} MiB`);
        }
        await rm(out, { recursive: true, force: true });
      }
      await rm(checkpoint, { force: true });
    }
    console.log(JSON.stringify({ format, steps, mallocEnv: env, results }));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const list = z
  .string()
  .transform((v) => v.split(',').map((c) => c.trim()))
  .pipe(z.array(integer(1)).min(1));

/**
 * Peak memory of the worker's data path (index pass, then one epoch of shuffled, augmented, normalised batches)
 * over 2 and over 20 shards, each in a fresh process: with at most two shards resident the peaks should match.
 * With --arch, peak memory of the whole training worker instead (trainAndPublish, as `rsclip train` and the Batch
 * job run it): a random-weight, real-size checkpoint of each config is written (.pt by default), then a fresh
 * process per config and batch size loads it, trains --steps steps on synthetic 224-px shards, evaluates, and
 * writes final/ (safetensors, ONNX encoders), with the worker images' malloc settings; it reports VmHWM and VmRSS
 * at each of the worker's log events.
 */
export default defineCommand({
  name: 'bench-worker-memory',
  summary: 'peak memory of the worker data path over 2 vs 20 shards, or (--arch) of the training worker per config and batch; last line JSON',
  flags: {
    size: option('N', 'image side of the data-path shards in pixels', integer(1).default(224)),
    'images-per-shard': option('N', 'images in each synthetic data-path shard', integer(1).default(64)),
    counts: option('N[,N...]', 'data path: shard counts, each measured in a fresh process', list.default([2, 20])),
    arch: option('<name|json>[,...]', 'measure the training worker instead, for each of these architectures', z.string().transform((v) => v.split(',')).optional()),
    'batch-size': option('N[,N...]', 'rows per batch, each measured (default: 32 for the data path, 8 with --arch)', list.optional()),
    steps: option('N', 'with --arch: training steps', integer(1).default(2)),
    format: option('<pt|safetensors>', 'with --arch: the base checkpoint format', z.enum(['pt', 'safetensors']).default('pt')),
    resume: toggle('with --arch: then run each job again over its output, which resumes from its last checkpoint, and measure that too'),
    'glibc-defaults': toggle("with --arch: glibc's default malloc settings instead of the worker images' (worker/train/malloc-env.ts)"),
  },
  async run(f) {
    if (f.arch) {
      await trainBench(f.arch, f['batch-size'] ?? [8], f.steps, f.format, f['glibc-defaults'], f.resume);
      return 0;
    }
    const { size, 'images-per-shard': perShard, counts } = f;
    const [batch = 32, ...more] = f['batch-size'] ?? [];
    if (more.length) throw new UserError('--batch-size: the data path measures one batch size');
    const root = await mkdtemp(join(tmpdir(), 'rsclip-bench-mem-'));
    try {
      const shardMiB = encodeShard(syntheticShard(size, perShard, 0)).length / 2 ** 20;
      const results: Record<string, unknown>[] = [];
      for (const n of counts) {
        const dir = join(root, `n${n}`);
        const store = new FsStore(dir);
        for (let i = 0; i < n; i++) await store.put(shardName(i), encodeShard(syntheticShard(size, perShard, i)));
        const r = await measure<{ maxRssMiB: number }>({ kind: 'data', dir, batch });
        results.push({ shards: n, datasetMiB: Number((n * shardMiB).toFixed(1)), ...r });
        console.error(`${n} shards (${(n * shardMiB).toFixed(0)} MiB): max RSS ${r.maxRssMiB!.toFixed(0)} MiB`);
      }
      console.log(JSON.stringify({ size, imagesPerShard: perShard, shardMiB: Number(shardMiB.toFixed(2)), batch, results }));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
    return 0;
  },
});
