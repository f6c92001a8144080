/**
 * Image and text encoders as inference graphs: `embedding` = L2-normalised encode_image / encode_text.
 * The same builder serves two uses: standalone ONNX files with the weights inside (published models), and the
 * trainer's evaluation sessions, which read the current parameters as `param:<name>` inputs.
 */
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { Graph, type DType, type Tensor } from '../engine/graph.ts';
import { names } from './train-graph.ts';
import { clipBuffers, clipParams, visionTower } from '../models/clip.ts';
import { textDims } from '../../core/model-config/config.ts';
import { l2normalize } from '../models/loss.ts';
import { encodeText } from '../models/text.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';

export type Tower = 'image' | 'text';

/** State-dict entries each tower reads (the logit scale belongs to neither; evaluation-mode BatchNorm reads no batch counter). */
export function towerParamNames(config: ClipModelConfig, tower: Tower): string[] {
  const all = [...clipParams(config), ...clipBuffers(config)].map((p) => p.name);
  return all.filter((n) => n !== 'logit_scale' && !n.endsWith('.num_batches_tracked') && n.startsWith('visual.') === (tower === 'image'));
}

export interface EncoderGraphOptions {
  /** Rows per run, static; without it the batch is dynamic (`N`, see dynamicBatch). */
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
    g.output(dynamicBatch(g, row, config.embed_dim, embed), 'embedding');
  }
  return g.toModel({ externalData: o.externalData });
}

/**
 * Row-group sizes a dynamic batch is cut into, largest first; the last must be 1 so that every N is covered.
 * Groups of 16 keep the matrix products batched (ViT-B-32 on CPU: 16 rows in 516 ms as one group, 689 ms row
 * by row); the smaller sizes bound what a batch that is not a multiple of 16 pays.
 */
const ROW_GROUPS = [16, 4, 1];

/**
 * `embedding` [N, E] for an input [N, ...row] of any N. The builder's shapes are static, so each group size runs
 * its static tower in a Loop over the whole groups that fit in the rows left (zero or more); the weight-only
 * work of the towers (transposes, reshapes of parameters) is hoisted out of the Loop bodies and folded once.
 */
function dynamicBatch(
  g: Graph,
  row: { name: string; dtype: 'float32' | 'int64'; shape: number[] },
  E: number,
  embed: (x: Tensor) => Tensor,
): Tensor {
  const i64 = (v: number[]): Tensor => g.constant(BigInt64Array.from(v, BigInt));
  const op = (type: string, inputs: Tensor[], shape: number[], dtype: DType = 'int64', attrs: Record<string, number> = {}): Tensor =>
    g.node(type, inputs, attrs, [{ dtype, shape }])[0]!;
  const rowsOf = (x: Tensor): Tensor => op('Slice', [op('Shape', [x], [row.shape.length + 1]), i64([0]), i64([1])], [1]);
  let rest = g.input(row.name, row.dtype, [-1, ...row.shape]);
  const parts: Tensor[] = [];
  for (const size of ROW_GROUPS) {
    const n = rowsOf(rest);
    const count = op('Div', [n, i64([size])], [1]);
    const whole = op('Mul', [count, i64([size])], [1]);
    const head = op('Slice', [rest, i64([0]), whole, i64([0])], [-1, ...row.shape], row.dtype);
    const groups = op('Reshape', [head, i64([-1, size, ...row.shape])], [-1, size, ...row.shape], row.dtype);
    // A Loop, not a Scan: onnxruntime's Scan rejects zero iterations, and most group sizes get none.
    const body = g.subgraph(`rows_of_${size}`);
    const iter = body.input(`group_${size}_index`, 'int64', []);
    const cond = body.input(`group_${size}_cond`, 'bool', []);
    const [group] = body.node('Gather', [groups, iter], { axis: 0 }, [{ dtype: row.dtype, shape: [size, ...row.shape] }]);
    body.output(cond, `group_${size}_cond_out`);
    body.output(embed(group!), `group_${size}_embedding`);
    const trips = op('Reshape', [count, g.constant(new BigInt64Array(0), [0])], []);
    const [embedded] = g.node('Loop', [trips, undefined], { body }, [{ dtype: 'float32', shape: [-1, size, E] }]);
    parts.push(op('Reshape', [embedded!, i64([-1, E])], [-1, E], 'float32'));
    rest = op('Slice', [rest, whole, n, i64([0])], [-1, ...row.shape], row.dtype);
  }
  return op('Concat', parts, [-1, E], 'float32', { axis: 0 });
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
