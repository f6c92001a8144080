/**
 * A forward-and-backward graph that exposes what a conformance check compares with open_clip: features,
 * normalised features, logits, the loss and d loss / d parameter for every parameter (one training forward).
 * Inputs: `param:<name>` (and `buffer:<name>`), `images` f32 [N,3,S,S], `tokens` i64 [N,C].
 */
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { gradients } from '../engine/autodiff.ts';
import { Graph } from '../engine/graph.ts';
import { names } from '../clip/train-graph.ts';
import { clipBuffers, clipForward, clipParams } from '../models/clip.ts';
import { textDims } from '../../core/model-config/config.ts';

export const PROBE_OUTPUTS = [
  'image_features',
  'text_features',
  'image_features_normalized',
  'text_features_normalized',
  'logit_scale',
  'logits_per_image',
  'logits_per_text',
  'loss',
] as const;

export const gradName = (param: string) => `grad:${param}`;

export function buildProbeGraph(config: ClipModelConfig, n: number, train = true): Uint8Array {
  const g = new Graph({ name: 'clip_probe' });
  const params = clipParams(config);
  const P = new Map(params.map((p) => [p.name, g.input(names.param(p.name), 'float32', p.shape)]));
  for (const b of clipBuffers(config)) P.set(b.name, g.input(names.buffer(b.name), 'float32', b.shape));
  const size = config.vision_cfg.image_size;
  const images = g.input('images', 'float32', [n, 3, size, size]);
  const tokens = g.input('tokens', 'int64', [n, textDims(config).context]);
  const f = clipForward(config, (name) => P.get(name)!, images, tokens, train);
  const values = [f.imageFeatures, f.textFeatures, f.imageNorm, f.textNorm, f.logitScale, f.logitsPerImage, f.logitsPerText, f.loss];
  const grads = gradients(f.loss, params.map((p) => P.get(p.name)!));
  values.forEach((t, i) => g.output(t, PROBE_OUTPUTS[i]));
  params.forEach((p, i) => {
    const grad = grads[i];
    if (grad) g.output(grad, gradName(p.name));
  });
  return g.toModel();
}
