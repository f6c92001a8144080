/**
 * The fused training-step model: forward of every micro-batch, reverse-mode gradients, their sum, global-norm
 * clipping, AdamW and the logit-scale clamp, for K optimizer steps per run (an ONNX Loop when K > 1), so
 * parameters and optimizer state cross the host boundary once per K steps.
 *
 * Inputs (names are namespaced so parameter names never clash with anything else):
 *   `param:<name>` every parameter (frozen ones are read, never written), `adam_m:<name>` / `adam_v:<name>` for
 *   the trained ones, `buffer:<name>` for running statistics, `images` f32 [K,A,B,3,S,S], `tokens` i64 [K,A,B,C],
 *   `lr` f64 [K], `step` f64 [] (optimizer steps taken before this run).
 * Outputs: `new_param:`, `new_adam_m:`, `new_adam_v:` (trained parameters), `new_buffer:`, and per step `loss`
 *   (mean over micro-batches), `grad_norm` (before clipping), `logit_scale` (exp, after the clamp), each [K].
 */
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { OptimizerHyper } from '../engine/options.ts';
import { gradients } from '../engine/autodiff.ts';
import { Graph, type Tensor } from '../engine/graph.ts';
import { add, cast, clip, div, exp, expand, gather, reshape, slice } from '../engine/ops.ts';
import { adamwScalars, adamwUpdate, clipGradNorm, excludedFromDecay } from '../engine/optimizer.ts';
import { inPlaceSafe, type InPlace } from '../engine/in-place.ts';
import { clipBuffers, clipForward, clipParams } from '../models/clip.ts';
import { textDims } from '../../core/model-config/config.ts';
import type { ParamSpec } from '../models/spec.ts';

export interface TrainGraphOptions {
  config: ClipModelConfig;
  batchSize: number;
  accumulate: number;
  stepsPerRun: number;
  hyper: OptimizerHyper;
  isFrozen: (name: string) => boolean;
  /** Normalise with the running statistics and keep them fixed (BatchNorm towers; open_clip --lock-image-freeze-bn-stats). */
  freezeBnStats?: boolean;
}

export interface TrainGraph {
  model: Uint8Array;
  trained: ParamSpec[];
  frozen: ParamSpec[];
  buffers: ParamSpec[];
  /**
   * New parameters, moments and buffers a run may write over the ones it was fed (engine/in-place.ts): those of the
   * one-step graph whose update the graph orders after every read. A Loop's carried state is never written in place.
   */
  inPlace: InPlace[];
}

/** logit_scale is clamped to [0, ln 100] after every step, as open_clip's training loop does. */
export const LOGIT_SCALE_MAX = Math.log(100);

export const names = {
  param: (n: string) => `param:${n}`,
  m: (n: string) => `adam_m:${n}`,
  v: (n: string) => `adam_v:${n}`,
  buffer: (n: string) => `buffer:${n}`,
  newParam: (n: string) => `new_param:${n}`,
  newM: (n: string) => `new_adam_m:${n}`,
  newV: (n: string) => `new_adam_v:${n}`,
  newBuffer: (n: string) => `new_buffer:${n}`,
};

interface State {
  params: Map<string, Tensor>;
  m: Map<string, Tensor>;
  v: Map<string, Tensor>;
  buffers: Map<string, Tensor>;
}

interface StepOut extends State {
  loss: Tensor;
  gradNorm: Tensor;
  logitScale: Tensor;
}

interface MicroOut {
  /** Summed gradient per trained parameter; undefined where the loss does not depend on it. */
  sum: (Tensor | undefined)[];
  buffers: Map<string, Tensor>;
  lossSum: Tensor;
}

/** Forward and backward of micro-batch `i` of images [A,B,3,S,S] / tokens [A,B,C] (index a constant or a tensor). */
function microBatch(
  o: TrainGraphOptions,
  trained: ParamSpec[],
  frozen: Map<string, Tensor>,
  s: State,
  images: Tensor,
  tokens: Tensor,
  i: number | Tensor,
): MicroOut {
  const pick = (x: Tensor) => (typeof i === 'number' ? reshape(slice(x, [i], [i + 1], [0]), x.shape.slice(1)) : gather(x, i, 0));
  const P = (name: string) => {
    const t = s.params.get(name) ?? frozen.get(name) ?? s.buffers.get(name);
    if (!t) throw new Error(`model reads unknown parameter ${name}`);
    return t;
  };
  const fwd = clipForward(o.config, P, pick(images), pick(tokens), !o.freezeBnStats);
  const sum = gradients(
    fwd.loss,
    trained.map((p) => s.params.get(p.name)!),
  );
  return { sum, buffers: new Map([...s.buffers, ...fwd.buffers]), lossSum: fwd.loss };
}

/**
 * Micro-batches in an inner Loop, so activations of one micro-batch are freed before the next one runs. Gradients
 * and the loss are loop-carried sums (as open_clip without --gather-with-grad: each micro-batch has its own
 * ClipLoss); BatchNorm buffers are carried too, updated micro-batch by micro-batch.
 */
function accumulateMicroBatches(
  o: TrainGraphOptions,
  trained: ParamSpec[],
  frozen: Map<string, Tensor>,
  s: State,
  images: Tensor,
  tokens: Tensor,
): MicroOut {
  const g = images.graph;
  const body = g.subgraph('micro_batch_body');
  const j = body.input('micro:iter', 'int64', []);
  const cond = body.input('micro:cond_in', 'bool', []);
  const accIn = trained.map((p) => body.input(`micro:grad:${p.name}`, 'float32', p.shape));
  const lossIn = body.input('micro:loss', 'float32', []);
  const bufferNames = [...s.buffers.keys()];
  const buffersIn = bufferNames.map((n) => body.input(`micro:buffer:${n}`, 'float32', [...s.buffers.get(n)!.shape]));
  // Parameters are read from the outer scope: ops on them alone (weight transposes) run once per step, outside.
  const inner: State = { ...s, buffers: new Map(bufferNames.map((n, i) => [n, buffersIn[i]])) };
  const micro = microBatch(o, trained, frozen, inner, images, tokens, j);
  body.output(cond, 'micro:cond_out');
  trained.forEach((p, i) => body.output(micro.sum[i] ? add(accIn[i], micro.sum[i]!) : accIn[i], `micro:grad_out:${p.name}`));
  body.output(add(lossIn, micro.lossSum), 'micro:loss_out');
  bufferNames.forEach((n) => body.output(micro.buffers.get(n)!, `micro:buffer_out:${n}`));

  const zero = g.constant(0, [], 'float32');
  const initial = [...trained.map((p) => expand(zero, p.shape)), zero, ...bufferNames.map((n) => s.buffers.get(n)!)];
  const trip = g.constant(BigInt64Array.of(BigInt(o.accumulate)), [], 'int64');
  const outs = g.node('Loop', [trip, undefined, ...initial], { body }, initial.map((t) => ({ dtype: 'float32' as const, shape: [...t.shape] })));
  return {
    sum: trained.map((_, i) => (micro.sum[i] ? outs[i] : undefined)),
    lossSum: outs[trained.length],
    buffers: new Map(bufferNames.map((n, i) => [n, outs[trained.length + 1 + i]])),
  };
}

/** One optimizer step over `accumulate` micro-batches: images [A,B,3,S,S], tokens [A,B,C], lr and t (1-based) f64 []. */
function optimizerStep(
  o: TrainGraphOptions,
  trained: ParamSpec[],
  frozen: Map<string, Tensor>,
  s: State,
  images: Tensor,
  tokens: Tensor,
  lr: Tensor,
  t: Tensor,
): StepOut {
  const a = o.accumulate;
  const { sum, buffers, lossSum } =
    a === 1 ? microBatch(o, trained, frozen, s, images, tokens, 0) : accumulateMicroBatches(o, trained, frozen, s, images, tokens);
  // A parameter that got no gradient is skipped by torch's AdamW (grad is None): no decay, no moment update.
  const withGrad = trained.flatMap((p, j) => (sum[j] ? [{ p, g: sum[j]! }] : []));
  const { norm, coef } = clipGradNorm(
    withGrad.map((x) => x.g),
    o.hyper.gradClip,
  );
  const scalars = adamwScalars(lr, t, o.hyper, coef);
  const out: State = { params: new Map(s.params), m: new Map(s.m), v: new Map(s.v), buffers };
  withGrad.forEach(({ p, g }) => {
    const u = adamwUpdate(s.params.get(p.name)!, s.m.get(p.name)!, s.v.get(p.name)!, g, scalars, o.hyper, !excludedFromDecay(p.name, p.shape));
    out.params.set(p.name, p.name === 'logit_scale' ? clip(u.p, 0, LOGIT_SCALE_MAX) : u.p);
    out.m.set(p.name, u.m);
    out.v.set(p.name, u.v);
  });
  const scale = out.params.get('logit_scale') ?? frozen.get('logit_scale')!;
  return { ...out, loss: a === 1 ? lossSum! : div(lossSum!, a), gradNorm: norm, logitScale: exp(scale) };
}

export function buildTrainGraph(o: TrainGraphOptions): TrainGraph {
  const { config, batchSize: b, accumulate: a, stepsPerRun: k } = o;
  if (!(k >= 1 && a >= 1 && b >= 1)) throw new Error(`train graph: batchSize, accumulate and stepsPerRun must be >= 1`);
  const all = clipParams(config);
  const trained = all.filter((p) => !o.isFrozen(p.name));
  const frozenSpecs = all.filter((p) => o.isFrozen(p.name));
  const bufferSpecs = clipBuffers(config);
  const size = config.vision_cfg.image_size;
  const context = textDims(config).context;

  const g = new Graph({ name: 'clip_train_step' });
  const input = (name: string, shape: number[]) => g.input(name, 'float32', shape);
  const params = new Map(trained.map((p) => [p.name, input(names.param(p.name), p.shape)]));
  const frozen = new Map(frozenSpecs.map((p) => [p.name, input(names.param(p.name), p.shape)]));
  const m = new Map(trained.map((p) => [p.name, input(names.m(p.name), p.shape)]));
  const v = new Map(trained.map((p) => [p.name, input(names.v(p.name), p.shape)]));
  const buffers = new Map(bufferSpecs.map((p) => [p.name, input(names.buffer(p.name), p.shape)]));
  const images = g.input('images', 'float32', [k, a, b, 3, size, size]);
  const tokens = g.input('tokens', 'int64', [k, a, b, context]);
  const lr = g.input('lr', 'float64', [k]);
  const step0 = g.input('step', 'float64', []);

  const carried: { name: string; spec: ParamSpec; kind: 'param' | 'm' | 'v' | 'buffer' }[] = [
    ...trained.map((spec) => ({ name: names.newParam(spec.name), spec, kind: 'param' as const })),
    ...trained.map((spec) => ({ name: names.newM(spec.name), spec, kind: 'm' as const })),
    ...trained.map((spec) => ({ name: names.newV(spec.name), spec, kind: 'v' as const })),
    ...bufferSpecs.map((spec) => ({ name: names.newBuffer(spec.name), spec, kind: 'buffer' as const })),
  ];
  const pick = (st: State, c: (typeof carried)[number]) =>
    (c.kind === 'param' ? st.params : c.kind === 'm' ? st.m : c.kind === 'v' ? st.v : st.buffers).get(c.spec.name)!;

  if (k === 1) {
    const out = optimizerStep(
      o,
      trained,
      frozen,
      { params, m, v, buffers },
      reshape(images, [a, b, 3, size, size]),
      reshape(tokens, [a, b, context]),
      reshape(lr, []),
      add(step0, 1),
    );
    for (const c of carried) g.output(pick(out, c), c.name);
    g.output(reshape(out.loss, [1]), 'loss');
    g.output(reshape(out.gradNorm, [1]), 'grad_norm');
    g.output(reshape(out.logitScale, [1]), 'logit_scale');
    const inPlace = inPlaceSafe(g.proto(), carried.map((c) => ({ output: c.name, input: pick({ params, m, v, buffers }, c).name })));
    return { model: g.toModel(), trained, frozen: frozenSpecs, buffers: bufferSpecs, inPlace };
  }

  // K steps in one Loop: parameters, moments and buffers are loop-carried; the batch and lr are read from the
  // outer scope at the iteration index.
  const body = g.subgraph('train_step_body');
  const iter = body.input('iter', 'int64', []);
  const condIn = body.input('cond_in', 'bool', []);
  const bodyIn = new Map(carried.map((c) => [c.name, body.input(`carried:${c.name}`, 'float32', c.spec.shape)]));
  const bodyState: State = { params: new Map(), m: new Map(), v: new Map(), buffers: new Map() };
  for (const c of carried) {
    const target = c.kind === 'param' ? bodyState.params : c.kind === 'm' ? bodyState.m : c.kind === 'v' ? bodyState.v : bodyState.buffers;
    target.set(c.spec.name, bodyIn.get(c.name)!);
  }
  const t = add(add(step0, cast(iter, 'float64')), 1);
  const out = optimizerStep(o, trained, frozen, bodyState, gather(images, iter, 0), gather(tokens, iter, 0), gather(lr, iter, 0), t);
  body.output(condIn, 'cond_out');
  for (const c of carried) body.output(pick(out, c), `body:${c.name}`);
  body.output(out.loss, 'body:loss');
  body.output(out.gradNorm, 'body:grad_norm');
  body.output(out.logitScale, 'body:logit_scale');

  const initial = carried.map((c) => (c.kind === 'param' ? params : c.kind === 'm' ? m : c.kind === 'v' ? v : buffers).get(c.spec.name)!);
  const trip = g.constant(BigInt64Array.of(BigInt(k)), [], 'int64');
  const outs = g.node('Loop', [trip, undefined, ...initial], { body }, [
    ...carried.map((c) => ({ dtype: 'float32' as const, shape: c.spec.shape })),
    ...['loss', 'grad_norm', 'logit_scale'].map(() => ({ dtype: 'float32' as const, shape: [k] })),
  ]);
  carried.forEach((c, i) => g.output(outs[i], c.name));
  g.output(outs[carried.length], 'loss');
  g.output(outs[carried.length + 1], 'grad_norm');
  g.output(outs[carried.length + 2], 'logit_scale');
  return { model: g.toModel(), trained, frozen: frozenSpecs, buffers: bufferSpecs, inPlace: [] };
}
