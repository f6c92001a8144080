/**
 * Image and text encoders as inference graphs: `embedding` = L2-normalised encode_image / encode_text.
 * The same builder serves two uses: standalone ONNX files with the weights inside (published models), and the
 * trainer's evaluation sessions, which read the current parameters as `param:<name>` inputs.
 */
import type { ClipModelConfig } from './api.ts';
import { Graph, type Tensor } from './graph.ts';
import * as ops from './ops.ts';
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
  /** Rows per run, static; without it the batch is dynamic (`N`): a Scan runs the one-row tower per row. */
  batch?: number;
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
  const s = config.vision_cfg.image_size;
  const row = tower === 'image' ? { name: 'image', dtype: 'float32' as const, shape: [3, s, s] } : { name: 'text', dtype: 'int64' as const, shape: [textDims(config).context] };
  const embed = (x: Tensor): Tensor =>
    l2normalize(tower === 'image' ? visionTower(config).encode(config, lookup, x, false).features : encodeText(config, lookup, x));
  if (o.batch !== undefined) {
    g.output(embed(g.input(row.name, row.dtype, [o.batch, ...row.shape])), 'embedding');
  } else {
    // The builder's shapes are static, so a dynamic batch is a Scan over rows of the static one-row tower; the
    // weight-only work (transposes, reshapes of parameters) is hoisted out of the body and done once.
    const body = g.subgraph('row_encoder');
    const one = embed(ops.unsqueeze(body.input('row', row.dtype, row.shape), [0]));
    body.output(ops.reshape(one, [config.embed_dim]), 'row_embedding');
    const [out] = g.node('Scan', [g.input(row.name, row.dtype, [-1, ...row.shape])], { body, num_scan_inputs: 1 }, [
      { dtype: 'float32', shape: [-1, config.embed_dim] },
    ]);
    g.output(out!, 'embedding');
  }
  return g.toModel({ externalData: o.externalData });
}

type ExportOptions = { batch?: number; externalData?: string };

/** Standalone image encoder: input `image` f32 [N,3,S,S] (N dynamic unless `batch`), output `embedding` [N, embed_dim]. */
export function exportImageEncoder(config: ClipModelConfig, params: StateDict, opts: ExportOptions = {}): Uint8Array {
  return buildEncoderGraph(config, 'image', { ...opts, weights: params });
}

/** Standalone text encoder: input `text` i64 [N,context] (N dynamic unless `batch`), output `embedding` [N, embed_dim]. */
export function exportTextEncoder(config: ClipModelConfig, params: StateDict, opts: ExportOptions = {}): Uint8Array {
  return buildEncoderGraph(config, 'text', { ...opts, weights: params });
}
