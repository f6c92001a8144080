import type { TrainOptions } from '../../core/train-options.ts';
import type { AugmentOptions } from '../data/augment.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { ExecutionProvider, OptimizerHyper } from '../engine/options.ts';
import { isVit } from '../../core/model-config/config.ts';
import { TrainInputError } from '../../core/run-errors.ts';

/**
 * The fine-tuning recipes, in one table: RemoteCLIP's for ViT towers (lr 4e-5, batch 256, AdamW 0.9/0.98,
 * eps 1e-6, wd 0.2, clip 1.0) and open_clip's ResNet settings (betas 0.9/0.999, eps 1e-8, lr 7e-5). A dataset's
 * train.json overrides any of them.
 */
export type Family = 'vit' | 'resnet';

interface Recipe {
  lr: number;
  batchSize: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClip: number;
}

export const RECIPES: Record<Family, Recipe> = {
  vit: { lr: 4e-5, batchSize: 256, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, gradClip: 1.0 },
  resnet: { lr: 7e-5, batchSize: 256, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.2, gradClip: 1.0 },
};

/** Settings every family shares. */
export const COMMON = {
  epochs: 10,
  accumulate: 1,
  /** Warm-up as a share of all steps when train.json sets no warmupSteps. */
  warmupFraction: 0.1,
  seed: 0,
  checkpointEvery: 500,
  /** Images of the evaluations during training (train.json evalSampleImages); the last covers the whole split. */
  evalSampleImages: 5000,
  augment: { randomResizedCrop: true, dihedral: true } satisfies AugmentOptions,
  freezeBnStats: false,
  /**
   * Optimizer steps per engine Loop run (fewer when a chunk's images would pass chunkImageBytes). Loop amortises
   * moving parameters and moments through the device; on the CPU that is cheap and each distinct run length
   * costs a session, so one step per run; a provider without Loop (RUNS_LOOP) can only take one.
   */
  stepsPerRun: { cpu: 1, cuda: 8, webgpu: 1 } satisfies Record<ExecutionProvider, number>,
  chunkImageBytes: 512 * 1024 * 1024,
} as const;

export const familyOf = (config: ClipModelConfig): Family => (isVit(config) ? 'vit' : 'resnet');

/** Everything the loop needs except the step count, which depends on the data. */
export interface ResolvedRecipe {
  family: Family;
  lr: number;
  batchSize: number;
  accumulate: number;
  hyper: OptimizerHyper;
  epochs?: number;
  maxSteps?: number;
  warmupSteps?: number;
  seed: number;
  checkpointEvery: number;
  evalSampleImages: number;
  augment: AugmentOptions;
  freeze: string[];
  freezeBnStats: boolean;
}

export function resolveRecipe(config: ClipModelConfig, o: TrainOptions): ResolvedRecipe {
  const family = familyOf(config);
  const r = RECIPES[family];
  return {
    family,
    lr: o.lr ?? r.lr,
    batchSize: o.batchSize ?? r.batchSize,
    accumulate: o.accumulate ?? COMMON.accumulate,
    hyper: {
      beta1: o.beta1 ?? r.beta1,
      beta2: o.beta2 ?? r.beta2,
      eps: o.eps ?? r.eps,
      weightDecay: o.weightDecay ?? r.weightDecay,
      gradClip: o.gradClip ?? r.gradClip,
    },
    // With only maxSteps set, the run lasts maxSteps; with neither, the default epoch count.
    epochs: o.epochs ?? (o.maxSteps === undefined ? COMMON.epochs : undefined),
    maxSteps: o.maxSteps,
    warmupSteps: o.warmupSteps,
    seed: o.seed ?? COMMON.seed,
    checkpointEvery: o.checkpointEvery ?? COMMON.checkpointEvery,
    evalSampleImages: o.evalSampleImages ?? COMMON.evalSampleImages,
    augment: {
      randomResizedCrop: o.augment?.randomResizedCrop ?? COMMON.augment.randomResizedCrop,
      dihedral: o.augment?.dihedral ?? COMMON.augment.dihedral,
    },
    freeze: o.freeze ?? [],
    freezeBnStats: o.freezeBnStats ?? COMMON.freezeBnStats,
  };
}

/** The step plan once the number of training rows is known. */
export interface StepPlan {
  /** Rows per micro-batch (the recipe's, shrunk to the data when the dataset is smaller). */
  batchSize: number;
  stepsPerEpoch: number;
  epochs: number;
  totalSteps: number;
  warmupSteps: number;
}

export function planSteps(r: ResolvedRecipe, trainRows: number): StepPlan {
  if (trainRows === 0) throw new TrainInputError('the shards hold no train-split rows');
  const batchSize = Math.max(1, Math.min(r.batchSize, Math.floor(trainRows / r.accumulate)));
  const stepsPerEpoch = Math.floor(trainRows / (batchSize * r.accumulate));
  if (stepsPerEpoch === 0) throw new TrainInputError(`${trainRows} train rows cannot fill one step of ${r.accumulate} micro-batches`);
  const byEpochs = r.epochs === undefined ? Infinity : r.epochs * stepsPerEpoch;
  const totalSteps = Math.min(byEpochs, r.maxSteps ?? Infinity);
  const epochs = Math.ceil(totalSteps / stepsPerEpoch);
  const warmupSteps = Math.min(r.warmupSteps ?? Math.round(COMMON.warmupFraction * totalSteps), totalSteps);
  return { batchSize, stepsPerEpoch, epochs, totalSteps, warmupSteps };
}
