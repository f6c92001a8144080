/**
 * The contract between the training loop (worker/train) and the CLIP trainer (worker/clip, built on worker/engine
 * and worker/models). The loop owns data, schedule, evaluation and checkpoints; the trainer owns graphs and sessions.
 */
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { ExecutionProvider, OptimizerHyper } from '../engine/options.ts';
import type { Batch } from '../data/batch.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';

export interface TrainerOptions {
  config: ClipModelConfig;
  /**
   * Initial parameters (and BatchNorm buffers), open_clip names. The trainer takes the arrays over, as it does
   * `optimizer`'s (each run hands them to the session thread): pass copies of what you still read.
   */
  init: StateDict;
  /** Micro-batch size: rows per forward/backward. */
  batchSize: number;
  /** Micro-batches accumulated into one optimizer step (default 1). */
  accumulate?: number;
  hyper: OptimizerHyper;
  /** Regular expressions over parameter names; matching parameters are not updated. */
  freeze?: string[];
  /** Keep BatchNorm running statistics fixed and normalise with them (open_clip --lock-image-freeze-bn-stats). */
  freezeBnStats?: boolean;
  ep?: ExecutionProvider;
  /** onnxruntime intra-op threads (default: every core, os.availableParallelism()). */
  threads?: number;
  /** Optimizer steps per session.run (ONNX Loop) on CPU/CUDA. */
  stepsPerRun?: number;
  /**
   * Keep parameters, AdamW moments and BatchNorm buffers in the training session between runs instead of sending
   * them in and out of every run (default: on for WebGPU, where they then stay in GPU memory).
   */
  residentState?: boolean;
  /** Continue from a saved optimizer state (resume). */
  optimizer?: OptimizerState;
}

export interface StepInput {
  /** `accumulate` micro-batches. */
  micro: Batch[];
  lr: number;
}

export interface StepResult {
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** exp(logit_scale) after the step. */
  logitScale: number;
}

export interface OptimizerState {
  /** Number of optimizer steps taken (AdamW bias correction). */
  step: number;
  m: StateDict;
  v: StateDict;
}

export interface ClipTrainer {
  /** Runs the given optimizer steps in order (grouped into Loop runs where possible). */
  train(steps: StepInput[]): Promise<StepResult[]>;
  /** L2-normalised embeddings [n, embed_dim] with the current parameters, in evaluation mode. */
  encodeImages(images: Float32Array, n: number): Promise<Float32Array>;
  encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array>;
  /**
   * Current parameters and buffers (open_clip names) and optimizer state: views of the trainer's own arrays, valid
   * until the next train() (which hands them over), so a checkpoint does not copy them.
   */
  snapshot(): Promise<{ params: StateDict; optimizer: OptimizerState }>;
  close(): Promise<void>;
}
