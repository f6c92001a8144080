import { readFileSync } from 'node:fs';
import { FsStore } from '../core/store.ts';
import { makeBatch } from '../worker/data/batch.ts';
import { Rng } from '../worker/data/rng.ts';
import { epochSamples, indexShards } from '../worker/data/shard-stream.ts';
import { chooseModel, loadBaseModel } from '../worker/train/base-model.ts';
import type { TrainEvent } from '../worker/train/log.ts';
import { COMMON, resolveRecipe } from '../worker/train/recipe.ts';
import { trainAndPublish } from '../worker/train/run.ts';
import { serveParent } from './child-process.ts';

/** The process bench-worker-memory forks for each measurement, so that each peak RSS is that pass's own. */
export type MemoryRequest = { kind: 'data'; dir: string; batch: number } | ({ kind: 'train' } & TrainChildArgs);

/** VmHWM (peak resident set) and VmRSS of this process, in MiB, from /proc/self/status. */
export function procMemory(): { hwmMiB: number; rssMiB: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { hwmMiB: Math.round(kib('VmHWM') / 1024), rssMiB: Math.round(kib('VmRSS') / 1024) };
}

export interface TrainChildArgs {
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

/** The measured pass, run in the child process. */
async function dataPass({ dir, batch }: { dir: string; batch: number }): Promise<Record<string, number>> {
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

serveParent((m: MemoryRequest) => (m.kind === 'data' ? dataPass(m) : trainPass(m)));
