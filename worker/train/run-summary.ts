import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { CheckpointPointer, EvalRecord, StepRecord } from './checkpoints.ts';
import type { RetrievalMetrics } from './metrics.ts';
import type { ResolvedRecipe, StepPlan } from './recipe.ts';

/** What a finished run reports: the model card, metrics.json and the CLI's report are all written from these. */
export interface RunSummary {
  modelName: string;
  dataset: string;
  baseModel: string;
  config: ClipModelConfig;
  recipe: ResolvedRecipe;
  plan: StepPlan;
  /** Training caption rows and the shards that held them. */
  trainRows: number;
  shards: number;
  steps: number;
  evalSplit: string;
  history: StepRecord[];
  evals: EvalRecord[];
  best?: CheckpointPointer;
  test?: RetrievalMetrics;
}

export interface MetricsFile {
  model: string;
  dataset: string;
  steps: number;
  split: string;
  before: RetrievalMetrics;
  after: RetrievalMetrics;
  best?: CheckpointPointer;
  epochs: EvalRecord[];
  test?: RetrievalMetrics;
  sha256: string;
}
