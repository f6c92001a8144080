import type { Tensor } from '../engine/graph.ts';
import { exp } from '../engine/ops.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { isVit } from '../../core/model-config/config.ts';
import { clipLoss, l2normalize } from './loss.ts';
import type { ParamLookup, ParamSpec } from './spec.ts';
import { encodeImageResnet, resnetBuffers, resnetParams } from './resnet.ts';
import { encodeText, textParams } from './text.ts';
import { encodeImageVit, vitParams } from './vit.ts';

/**
 * An image tower: its state-dict entries and its forward. `train` selects training-mode behaviour (BatchNorm
 * batch statistics); a tower with running buffers returns their new values in `buffers`.
 */
export interface VisionTower {
  params(cfg: ClipModelConfig): ParamSpec[];
  /** State-dict entries that are not trained (BatchNorm running statistics), with their initial values. */
  buffers?(cfg: ClipModelConfig): ParamSpec[];
  encode(cfg: ClipModelConfig, P: ParamLookup<Tensor>, images: Tensor, train: boolean): { features: Tensor; buffers?: Map<string, Tensor> };
}

const vit: VisionTower = {
  params: vitParams,
  encode: (cfg, P, images) => ({ features: encodeImageVit(cfg, P, images) }),
};

const resnet: VisionTower = {
  params: resnetParams,
  buffers: resnetBuffers,
  encode: (cfg, P, images, train) => encodeImageResnet(cfg, P, images, train),
};

export function visionTower(cfg: ClipModelConfig): VisionTower {
  return isVit(cfg) ? vit : resnet;
}

/** ln(1/0.07), open_clip's init_logit_scale. */
export const INIT_LOGIT_SCALE = Math.log(1 / 0.07);

/** Every trained state-dict entry of a CLIP model, in open_clip's state-dict order. */
export function clipParams(cfg: ClipModelConfig): ParamSpec[] {
  const [pos, proj, ...textRest] = textParams(cfg);
  return [pos, proj, { name: 'logit_scale', shape: [], init: { fill: INIT_LOGIT_SCALE } }, ...visionTower(cfg).params(cfg), ...textRest];
}

export function clipBuffers(cfg: ClipModelConfig): ParamSpec[] {
  return visionTower(cfg).buffers?.(cfg) ?? [];
}

export interface ClipForward {
  imageFeatures: Tensor;
  textFeatures: Tensor;
  imageNorm: Tensor;
  textNorm: Tensor;
  logitScale: Tensor;
  loss: Tensor;
  logitsPerImage: Tensor;
  logitsPerText: Tensor;
  /** New BatchNorm running statistics (train mode, ResNet towers only). */
  buffers: Map<string, Tensor>;
}

/** model(images, tokens) followed by ClipLoss, as one open_clip training forward. */
export function clipForward(cfg: ClipModelConfig, P: ParamLookup<Tensor>, images: Tensor, tokens: Tensor, train: boolean): ClipForward {
  const vision = visionTower(cfg).encode(cfg, P, images, train);
  const textFeatures = encodeText(cfg, P, tokens);
  const imageNorm = l2normalize(vision.features);
  const textNorm = l2normalize(textFeatures);
  const logitScale = exp(P('logit_scale'));
  return {
    imageFeatures: vision.features,
    textFeatures,
    imageNorm,
    textNorm,
    logitScale,
    ...clipLoss(imageNorm, textNorm, logitScale),
    buffers: vision.buffers ?? new Map(),
  };
}
