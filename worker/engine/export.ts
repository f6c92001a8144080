/**
 * Image and text encoders as inference graphs: `embedding` = L2-normalised encode_image / encode_text.
 * The same builder serves two uses: standalone ONNX files with the weights inside (published models), and the
 * trainer's evaluation sessions, which read the current parameters as `param:<name>` inputs.
 */
import type { ClipModelConfig } from './api.ts';
import { Graph, type Tensor } from './graph.ts';
import { names } from './train-graph.ts';
import { clipBuffers, clipParams, visionTower } from '../models/clip.ts';
import { textDims } from '../models/config.ts';
import { l2normalize } from '../models/loss.ts';
import { encodeText } from '../models/text.ts';
import type { StateDict } from '../tensor.ts';

export type Tower = 'image' | 'text';

/** State-dict entries each tower reads (the logit scale belongs to neither; evaluation-mode BatchNorm reads no batch counter). */
export function towerParamNames(config: ClipModelConfig, tower: Tower): string[] {
  const all = [...clipParams(config), ...clipBuffers(config)].map((p) => p.name);
  return all.filter((n) => n !== 'logit_scale' && !n.endsWith('.num_batches_tracked') && n.startsWith('visual.') === (tower === 'image'));
}

export interface EncoderGraphOptions {
  /** Rows per run (the graph has static shapes). */
  batch: number;
  /** Weights to embed as initializers; without them every parameter is a `param:<name>` input. */
  weights?: StateDict;
  /** Write initializers to this file (needed past protobuf's 2 GB limit); the model must then be opened by path. */
  externalData?: string;
}

/** protobuf messages cannot exceed 2 GiB; stay clear of it with the graph's own bytes. */
const PROTOBUF_LIMIT = 2 ** 31 - 64 * 2 ** 20;

export function buildEncoderGraph(config: ClipModelConfig, tower: Tower, o: EncoderGraphOptions): Uint8Array {
  if (o.weights && !o.externalData) {
    let bytes = 0;
    for (const n of towerParamNames(config, tower)) bytes += (o.weights.get(n)?.data.byteLength ?? 0);
    if (bytes > PROTOBUF_LIMIT) throw new Error(`export: ${tower} encoder weights are ${bytes} bytes, past protobuf's 2 GB limit; pass externalData`);
  }
  const g = new Graph({ name: `clip_${tower}_encoder` });
  const shapes = new Map([...clipParams(config), ...clipBuffers(config)].map((p) => [p.name, p.shape]));
  const P = new Map<string, Tensor>();
  for (const name of towerParamNames(config, tower)) {
    const shape = shapes.get(name)!;
    if (!o.weights) {
      P.set(name, g.input(names.param(name), 'float32', shape));
      continue;
    }
    const w = o.weights.get(name);
    if (!w) throw new Error(`export: weights lack ${name}`);
    if (w.shape.join() !== shape.join()) throw new Error(`export: ${name} has shape [${w.shape}], the config needs [${shape}]`);
    P.set(name, g.initializer(name, w.data, shape));
  }
  const lookup = (name: string) => P.get(name)!;
  let features: Tensor;
  if (tower === 'image') {
    const s = config.vision_cfg.image_size;
    features = visionTower(config).encode(config, lookup, g.input('image', 'float32', [o.batch, 3, s, s]), false).features;
  } else {
    features = encodeText(config, lookup, g.input('text', 'int64', [o.batch, textDims(config).context]));
  }
  g.output(l2normalize(features), 'embedding');
  return g.toModel({ externalData: o.externalData });
}

/** Standalone image encoder: input `image` f32 [batch,3,S,S], output `embedding` [batch, embed_dim]. */
export function exportImageEncoder(config: ClipModelConfig, params: StateDict, opts: { batch?: number; externalData?: string } = {}): Uint8Array {
  return buildEncoderGraph(config, 'image', { batch: opts.batch ?? 1, weights: params, externalData: opts.externalData });
}

/** Standalone text encoder: input `text` i64 [batch,context], output `embedding` [batch, embed_dim]. */
export function exportTextEncoder(config: ClipModelConfig, params: StateDict, opts: { batch?: number; externalData?: string } = {}): Uint8Array {
  return buildEncoderGraph(config, 'text', { batch: opts.batch ?? 1, weights: params, externalData: opts.externalData });
}
