import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeShard, type Shard } from '../../core/shard-format.ts';
import { shardName } from '../../core/s3-layout.ts';
import { FsStore } from '../../core/store.ts';
import { Rng } from '../../worker/data/rng.ts';
import { COMMON, resolveRecipe } from '../../worker/train/recipe.ts';
import { loadModelConfig } from '../../core/model-config/config.ts';
import type { StateDict } from '../../worker/engine/tensor.ts';
import { writeSafetensors } from '../../worker/checkpoint/safetensors.ts';
import { initParams } from '../../worker/models/init.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import type { TrainEvent } from '../../worker/train/log.ts';
import { trainAndPublish } from '../../worker/train/run.ts';
import { makeBatch } from '../../worker/data/batch.ts';
import { epochSamples, indexShards } from '../../worker/data/shard-stream.ts';
import { UserError, type Command } from '../command.ts';
import { numberFlag, parseFlags } from '../flags.ts';

/**
 * Peak memory of the worker's data path (index pass, then one epoch of shuffled, augmented, normalised batches)
 * over 2 and over 20 shards, each in a fresh process: with at most two shards resident the peaks should match.
 * With --arch, peak memory of the whole training worker instead (trainAndPublish, as `rsclip train` and the Batch
 * job run it): a random-weight, real-size checkpoint of each config is written (.pt by default), then a fresh
 * process per config and batch size loads it, trains --steps steps on synthetic 224-px shards, evaluates, and
 * writes final/ (safetensors, ONNX encoders); it reports VmHWM and VmRSS at each of the worker's log events.
 */
const USAGE =
  'bench-worker-memory [--size 224] [--images-per-shard 64] [--batch 32] [--counts 2,20] | ' +
  '--arch ViT-B-32,RN50 [--batch-size 8,32] [--steps 2] [--format pt|safetensors]';

/** VmHWM (peak resident set) and VmRSS of this process, in MiB, from /proc/self/status. */
function procMemory(): { hwmMiB: number; rssMiB: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { hwmMiB: Math.round(kib('VmHWM') / 1024), rssMiB: Math.round(kib('VmRSS') / 1024) };
}

interface TrainChildArgs {
  checkpoint: string;
  arch: string;
  batch: number;
  steps: number;
  shards: string;
  out: string;
}

/** The measured training run, in the child process. */
async function trainPass(a: TrainChildArgs): Promise<Record<string, unknown>> {
  const choice = chooseModel(a.checkpoint, a.arch, '--arch');
  const recipe = resolveRecipe(choice.config, { batchSize: a.batch, maxSteps: a.steps, checkpointEvery: a.steps });
  const phases: Record<string, unknown>[] = [];
  const t0 = performance.now();
  const mark = (event: string) => phases.push({ event, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)), ...procMemory() });
  const log = (e: TrainEvent) => {
    if (!['provider-unavailable'].includes(e.event)) mark(e.event);
  };
  await trainAndPublish(
    {
      shards: new FsStore(a.shards),
      out: new FsStore(a.out),
      config: choice.config,
      recipe,
      loadBase: async () => {
        mark('load-start');
        const dict = await loadBaseModel(a.checkpoint, choice, 0);
        mark('loaded');
        return dict;
      },
      log,
    },
    { dataset: 'bench', baseModel: a.checkpoint, modelName: choice.name },
  );
  mark('done');
  return { arch: a.arch, batchSize: a.batch, steps: a.steps, peakRssMiB: procMemory().hwmMiB, maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), phases };
}

/** A random-weight checkpoint of the config, as torch.save (test/checkpoint/torch-writer.ts) or safetensors writes it. */
async function writeCheckpoint(path: string, dict: StateDict, format: 'pt' | 'safetensors'): Promise<void> {
  if (format === 'safetensors') return writeFile(path, writeSafetensors(dict));
  // The only torch.save writer in the project is the tests' (the product never writes .pt); imported on demand.
  const w = (await import('../../test/checkpoint/torch-writer.ts')) as typeof import('../../test/checkpoint/torch-writer.ts');
  const value = new Map<string, import('../../test/checkpoint/torch-writer.ts').SaveValue>();
  const storages: Record<string, Uint8Array> = {};
  [...dict].forEach(([k, t], i) => {
    value.set(k, { storage: { key: String(i), type: 'FloatStorage', numel: t.data.length }, size: [...t.shape] });
    storages[String(i)] = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  });
  await writeFile(path, w.torchSave(value, storages));
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

function runChild(args: string[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', process.argv[1]!, 'bench-worker-memory', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`child exited ${code}`))));
  });
}

const child = (dir: string, batch: number) => runChild(['--child', dir, '--batch', String(batch)]) as Promise<Record<string, number>>;

/** --arch: the training worker's peak per config and batch size, each in a fresh process. */
async function trainBench(archs: string[], batches: number[], steps: number, format: 'pt' | 'safetensors'): Promise<void> {
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
        const r = await runChild(['--train-child', JSON.stringify({ checkpoint, arch, batch, steps, shards: shardDir, out } satisfies TrainChildArgs)]);
        results.push(r);
        console.error(`${arch} batch ${batch}: peak RSS ${r.peakRssMiB} MiB`);
        await rm(out, { recursive: true, force: true });
      }
      await rm(checkpoint, { force: true });
    }
    console.log(JSON.stringify({ format, steps, results }));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const command: Command = {
  summary: 'peak memory of the worker data path over 2 vs 20 shards, or (--arch) of the training worker per config and batch; last line JSON',
  async run(argv) {
    const f = parseFlags(
      argv,
      {
        size: { type: 'string' },
        'images-per-shard': { type: 'string' },
        batch: { type: 'string' },
        counts: { type: 'string' },
        child: { type: 'string' },
        arch: { type: 'string' },
        'batch-size': { type: 'string' },
        steps: { type: 'string' },
        format: { type: 'string' },
        'train-child': { type: 'string' },
      },
      USAGE,
    );
    if (f['train-child']) {
      console.log(JSON.stringify(await trainPass(JSON.parse(f['train-child']) as TrainChildArgs)));
      return 0;
    }
    if (f.arch) {
      const batches = (f['batch-size'] ?? '8').split(',').map((b) => numberFlag('batch-size', b, true)!);
      const steps = numberFlag('steps', f.steps, true) ?? 2;
      const format = f.format ?? 'pt';
      if (format !== 'pt' && format !== 'safetensors') throw new UserError(`--format must be pt or safetensors, got '${format}'`);
      if (steps < 1 || batches.some((b) => b < 1)) throw new UserError('--steps and --batch-size must be >= 1');
      await trainBench(f.arch.split(','), batches, steps, format);
      return 0;
    }
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
