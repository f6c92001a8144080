export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

/** Providers whose ONNX Runtime build runs the Loop operator (WebGPU has no Loop kernel), so one session run may hold several steps. */
export const RUNS_LOOP: Record<ExecutionProvider, boolean> = { cpu: true, cuda: true, webgpu: false };

export interface OptimizerHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clipping threshold; 0 disables clipping. */
  gradClip: number;
}
