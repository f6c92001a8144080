export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

export interface OptimizerHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clipping threshold; 0 disables clipping. */
  gradClip: number;
}
