import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TRAIN_OPTIONS_FILE } from '../../core/s3-layout.ts';
import type { TrainOptions } from '../../core/train-options.ts';
import { z } from 'zod';
import { defineCommand, option } from '../command.ts';
import { generateDemoDataset, type DemoDataOptions } from '../demo-data/generate.ts';
import { logLine } from '../progress.ts';
import { printResult, runLocal, type LocalRunResult } from './run.ts';
import { FLAGS } from '../flags.ts';
export const DEMO_DATASET = 'demo';

export interface DemoSettings {
  data: DemoDataOptions;
  /** The dataset's train.json: a tiny model trained from random weights. */
  train: TrainOptions;
}

/**
 * Sized to finish in about a minute on two cores: 320 tiles (64 in validation), ViT-tiny at 32 px from random
 * init with a from-scratch learning rate (RemoteCLIP's 4e-5 is for fine-tuning pretrained weights).
 */
export const DEMO: DemoSettings = {
  data: { perClass: 40, valPerClass: 8, testPerClass: 0, seed: 7 },
  train: { init: 'random:ViT-tiny', model: 'ViT-tiny', epochs: 5, batchSize: 32, lr: 3e-3, warmupSteps: 10, seed: 0 },
};

/** Generates the synthetic dataset (with its train.json) in a temporary folder and runs the local pipeline on it. */
export async function runDemo(settings: DemoSettings, out: string, log?: (line: string) => void): Promise<LocalRunResult> {
  const root = await mkdtemp(join(tmpdir(), 'rsclip-demo-'));
  try {
    const data = join(root, DEMO_DATASET);
    const summary = await generateDemoDataset(data, settings.data);
    await writeFile(join(data, TRAIN_OPTIONS_FILE), `${JSON.stringify(settings.train, null, 2)}\n`);
    (log ?? logLine)(
      `demo dataset: ${summary.images} tiles of ${summary.labels.length} land-cover classes (${summary.labels.join(', ')}), ${summary.captions} captions`,
    );
    return await runLocal({ data, out, log });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export default defineCommand({
  name: 'demo',
  summary: 'generate a small synthetic remote-sensing dataset, run the whole pipeline on it, show before/after',
  flags: {
    out: option('<dir>', 'result folder', z.string().default(join('out', DEMO_DATASET))),
    json: FLAGS.json,
  },
  async run(f) {
    const r = await runDemo(DEMO, resolve(f.out));
    printResult(r, f.json);
    return 0;
  },
});

