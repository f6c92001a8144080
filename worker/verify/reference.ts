/**
 * Conformance against an open_clip reference folder (the test/fixtures/open_clip-tiny format: config.json,
 * model.pt / model.safetensors, preprocess.safetensors, tokens.json, forward.json, grads.safetensors,
 * step1/step3.safetensors, steps.json, tolerances.json). Each stage reports its worst error beside its tolerance.
 * Stages are a list so other towers can add theirs (e.g. train-mode forward and BatchNorm buffers for ResNets).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { preprocessParity } from './preprocess-parity.ts';
import { checkTokenizerCases, loadReferenceCases } from './tokenizer-cases.ts';
import { loadStateDictFile } from '../checkpoint/load.ts';
import type { ClipTrainer, OptimizerState, StepInput, TrainerOptions } from '../clip/api.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { excludedFromDecay } from '../engine/optimizer.ts';
import { openSession } from '../engine/session.ts';
import { createTrainer } from '../clip/trainer.ts';
import { names } from '../clip/train-graph.ts';
import { readSafetensors, readSafetensorsF32, type SafetensorsEntry } from '../../core/tensors/safetensors.ts';
import { copyDict, type StateDict } from '../../core/tensors/tensor.ts';
import { clipBuffers, clipParams } from '../models/clip.ts';
import { parseModelConfig } from '../../core/model-config/config.ts';
import { buildProbeGraph, gradName, PROBE_OUTPUTS } from './probe.ts';

export interface StageResult {
  stage: string;
  worst: number;
  tolerance: number;
  ok: boolean;
  /** Where the worst error was (tensor name, case index) or why the stage was skipped. */
  detail?: string;
  skipped?: boolean;
}

/** Everything the stages read, loaded once. */
export interface ReferenceFolder {
  dir: string;
  config: ClipModelConfig;
  params: StateDict;
  /** The checkpoint file the parameters came from. */
  modelFile: string;
  tolerances: Record<string, unknown>;
  pixels: Float32Array;
  n: number;
  tokens: number[][];
  forward: Record<string, unknown>;
  steps: Record<string, unknown>;
  read(file: string): Map<string, SafetensorsEntry>;
}

const DEFAULT_TOLERANCES: Record<string, Record<string, number>> = {
  forward: { abs: 1e-4 },
  loss: { abs: 1e-5 },
  grads: { rel_l2: 1e-4, abs: 1e-4 },
  step1: { abs: 2e-5 },
  step3: { abs: 2e-5 },
  step_losses: { abs: 1e-5 },
  preprocess_uint8: { mean_abs: 1, max_abs: 4 },
  // BatchNorm towers (the open_clip-tiny-rn README's suggestions).
  debug: { rel_l2: 2e-5 },
  step1_buffers: { abs: 1e-5 },
  step3_buffers: { abs: 1e-3 },
};

export function tolerance(ref: ReferenceFolder, stage: string, metric: string, tensor?: string): number | undefined {
  const entry = ref.tolerances[stage] as Record<string, unknown> | undefined;
  const override = tensor ? (entry?.overrides as Record<string, Record<string, number>> | undefined)?.[tensor]?.[metric] : undefined;
  const value = override ?? entry?.[metric] ?? DEFAULT_TOLERANCES[stage]?.[metric];
  return typeof value === 'number' ? value : undefined;
}

const readJson = (file: string): Record<string, unknown> => JSON.parse(readFileSync(file, 'utf8'));

/** The folder's checkpoint: model.pt through the checkpoint loader when it exists, else model.safetensors. */
async function loadParams(dir: string): Promise<{ params: StateDict; modelFile: string }> {
  const pt = join(dir, 'model.pt');
  if (existsSync(pt)) return { params: await loadStateDictFile(pt), modelFile: pt };
  const st = join(dir, 'model.safetensors');
  if (!existsSync(st)) throw new Error(`${dir}: neither model.pt nor model.safetensors`);
  return { params: readSafetensorsF32(readFileSync(st), st), modelFile: st };
}

export async function openReference(dir: string): Promise<ReferenceFolder> {
  for (const f of ['config.json', 'preprocess.safetensors', 'tokens.json', 'forward.json', 'steps.json']) {
    if (!existsSync(join(dir, f))) throw new Error(`${dir}: not an open_clip reference folder (missing ${f})`);
  }
  const config = parseModelConfig(readJson(join(dir, 'config.json')), join(dir, 'config.json'));
  const read = (file: string) => readSafetensors(readFileSync(join(dir, file)), join(dir, file));
  const pre = read('preprocess.safetensors').get('pixel_values');
  if (!pre) throw new Error(`${dir}/preprocess.safetensors: no pixel_values`);
  const tokens = (readJson(join(dir, 'tokens.json')).tokens as number[][]) ?? [];
  return {
    dir,
    config,
    ...(await loadParams(dir)),
    tolerances: existsSync(join(dir, 'tolerances.json')) ? readJson(join(dir, 'tolerances.json')) : {},
    pixels: pre.data as Float32Array,
    n: pre.shape[0],
    tokens,
    forward: readJson(join(dir, 'forward.json')),
    steps: readJson(join(dir, 'steps.json')),
    read,
  };
}

/** Running maximum of |a-b| and the sums behind ||a-b|| / ||b||. */
export class Diff {
  maxAbs = 0;
  diffSq = 0;
  refSq = 0;
  add(ours: number, ref: number): void {
    const d = Math.abs(ours - ref);
    if (!(d <= this.maxAbs)) this.maxAbs = Number.isNaN(d) ? Infinity : d;
    this.diffSq += (ours - ref) ** 2;
    this.refSq += ref * ref;
  }
  get relL2(): number {
    return this.refSq > 0 ? Math.sqrt(this.diffSq / this.refSq) : this.diffSq > 0 ? Infinity : 0;
  }
}

/**
 * Where a reference entry keeps its values: whole, or compacted by row (`<name>:rows` + `<name>:values`, and
 * `:sample_rows` + `:sample_values` for a sample of the rows outside the batch). undefined when the file lacks it.
 */
type StoredEntry =
  | { dense: Float32Array }
  | { width: number; groups: { ids: BigInt64Array; values: Float32Array; sample: boolean }[] };

function storedEntry(file: Map<string, SafetensorsEntry>, name: string): StoredEntry | undefined {
  const dense = file.get(name);
  if (dense) return { dense: dense.data as Float32Array };
  const rows = file.get(`${name}:rows`);
  if (!rows) return undefined;
  const values = file.get(`${name}:values`)!.data as Float32Array;
  const groups = [{ ids: rows.data as BigInt64Array, values, sample: false }];
  const sample = file.get(`${name}:sample_rows`);
  if (sample) groups.push({ ids: sample.data as BigInt64Array, values: file.get(`${name}:sample_values`)!.data as Float32Array, sample: true });
  return { width: values.length / rows.data.length, groups };
}

/**
 * Compares a dense tensor of ours with a reference entry that may be stored compacted (storedEntry). With
 * `zeroElsewhere`, rows the reference omits are known to be exactly zero (gradient files); otherwise they are not
 * compared (parameter files).
 */
export function compareEntry(ours: Float32Array, name: string, ref: Map<string, SafetensorsEntry>, zeroElsewhere: boolean): Diff | undefined {
  const stored = storedEntry(ref, name);
  if (!stored) return undefined;
  const d = new Diff();
  if ('dense' in stored) {
    stored.dense.forEach((v, i) => d.add(ours[i], v));
    return d;
  }
  const { width } = stored;
  const seen = new Set<number>();
  for (const { ids, values } of stored.groups) {
    ids.forEach((id, i) => {
      const row = Number(id);
      seen.add(row);
      for (let j = 0; j < width; j++) d.add(ours[row * width + j], values[i * width + j]);
    });
  }
  if (zeroElsewhere) {
    for (let row = 0; row < ours.length / width; row++) {
      if (seen.has(row)) continue;
      for (let j = 0; j < width; j++) d.add(ours[row * width + j], 0);
    }
  }
  return d;
}

export const result = (stage: string, worst: number, tol: number | undefined, detail?: string): StageResult => ({
  stage,
  worst,
  tolerance: tol ?? 0,
  ok: worst <= (tol ?? 0),
  detail,
});

const skipped = (stage: string, why: string): StageResult => ({ stage, worst: 0, tolerance: 0, ok: true, skipped: true, detail: why });

/** The model's inputs and the probe graph's outputs, computed once and shared by the forward/loss/grad stages. */
export async function runProbe(ref: ReferenceFolder, params: StateDict = ref.params, train = true): Promise<Record<string, Float32Array>> {
  const session = await openSession(buildProbeGraph(ref.config, ref.n, train), { threads: 1 });
  try {
    const feeds: Record<string, { data: Float32Array | BigInt64Array; dims: number[] }> = {};
    for (const p of clipParams(ref.config)) feeds[names.param(p.name)] = tensorOf(params, p.name);
    for (const b of clipBuffers(ref.config)) feeds[names.buffer(b.name)] = tensorOf(params, b.name);
    const s = ref.config.vision_cfg.image_size;
    feeds.images = { data: ref.pixels.slice(), dims: [ref.n, 3, s, s] };
    feeds.tokens = { data: BigInt64Array.from(ref.tokens.flat(), BigInt), dims: [ref.n, ref.tokens[0].length] };
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.close();
  }
}

function tensorOf(params: StateDict, name: string): { data: Float32Array; dims: number[] } {
  const t = params.get(name);
  if (!t) throw new Error(`checkpoint has no ${name}`);
  return { data: t.data.slice(), dims: t.shape };
}

export function forwardStages(ref: ReferenceFolder, out: Record<string, Float32Array>): StageResult[] {
  let worst = 0;
  let where = '';
  for (const key of PROBE_OUTPUTS) {
    if (key === 'loss') continue;
    const expected = ref.forward[key];
    if (expected === undefined) continue;
    const flat = [expected].flat(3) as number[];
    flat.forEach((v, i) => {
      const d = Math.abs(out[key][i] - v);
      if (!(d <= worst)) [worst, where] = [Number.isNaN(d) ? Infinity : d, key];
    });
  }
  const lossErr = Math.abs(out.loss[0] - (ref.forward.loss as number));
  return [
    result('forward', worst, tolerance(ref, 'forward', 'abs'), where),
    result('loss', Number.isNaN(lossErr) ? Infinity : lossErr, tolerance(ref, 'loss', 'abs')),
  ];
}

function gradStages(ref: ReferenceFolder, out: Record<string, Float32Array>): StageResult[] {
  const grads = ref.read('grads.safetensors');
  let worstRel = 0;
  let worstAbs = 0;
  let relAt = '';
  let absAt = '';
  let ratioRel = 0;
  let ratioAbs = 0;
  const missing: string[] = [];
  for (const p of clipParams(ref.config)) {
    const ours = out[gradName(p.name)] ?? new Float32Array(p.shape.reduce((a, b) => a * b, 1));
    const d = compareEntry(ours, p.name, grads, true);
    if (!d) {
      missing.push(p.name);
      continue;
    }
    // Per-tensor overrides: track the worst error relative to each tensor's own tolerance. An override replaces the
    // stage's metrics for that tensor: a metric it does not name is not checked there (a zero-gradient tensor's rel-L2).
    const override = (ref.tolerances.grads as { overrides?: Record<string, Record<string, number>> } | undefined)?.overrides?.[p.name];
    const tr = override ? (override.rel_l2 ?? Infinity) : (tolerance(ref, 'grads', 'rel_l2', p.name) ?? 0);
    const ta = override ? (override.abs ?? Infinity) : (tolerance(ref, 'grads', 'abs', p.name) ?? 0);
    if (d.relL2 / tr > ratioRel || Number.isNaN(d.relL2)) [ratioRel, worstRel, relAt] = [d.relL2 / tr, d.relL2, p.name];
    if (d.maxAbs / ta > ratioAbs) [ratioAbs, worstAbs, absAt] = [d.maxAbs / ta, d.maxAbs, p.name];
  }
  if (missing.length) return [result('grads', Infinity, 0, `reference lacks ${missing.join(', ')}`)];
  return [
    { ...result('grads.rel_l2', worstRel, tolerance(ref, 'grads', 'rel_l2', relAt), relAt), ok: ratioRel <= 1 },
    { ...result('grads.abs', worstAbs, tolerance(ref, 'grads', 'abs', absAt), absAt), ok: ratioAbs <= 1 },
  ];
}

/** Parameters after k steps against step<k>.safetensors: max abs and, where toleranced, the global update rel-L2. */
export function paramStage(ref: ReferenceFolder, stage: string, params: StateDict): StageResult[] {
  const file = ref.read(`${stage}.safetensors`);
  let worst = 0;
  let where = '';
  const update = new Diff();
  for (const p of clipParams(ref.config)) {
    const ours = params.get(p.name)!.data;
    const d = compareEntry(ours, p.name, file, false);
    if (!d) return [result(stage, Infinity, 0, `${stage}.safetensors lacks ${p.name}`)];
    if (!(d.maxAbs <= worst)) [worst, where] = [d.maxAbs, p.name];
    const initial = ref.params.get(p.name)!.data;
    // ||ours - ref|| / ||ref - initial||, over the elements the file holds.
    const refUpdate = compareEntry(initial, p.name, file, false)!;
    update.diffSq += d.diffSq;
    update.refSq += refUpdate.diffSq;
  }
  const out = [result(stage, worst, tolerance(ref, stage, 'abs'), where)];
  const tr = tolerance(ref, stage, 'global_update_rel_l2');
  if (tr !== undefined) out.push(result(`${stage}.global_update_rel_l2`, update.relL2, tr));
  return out;
}

export function hyperOf(ref: ReferenceFolder) {
  const s = ref.steps as { lr: number; betas: [number, number]; eps: number; weight_decay: number; grad_clip_norm: number };
  return { lr: s.lr, hyper: { beta1: s.betas[0], beta2: s.betas[1], eps: s.eps, weightDecay: s.weight_decay, gradClip: s.grad_clip_norm } };
}

export const maxAbs = (ours: ArrayLike<number>, want: number[]) =>
  Math.max(...want.map((v, i) => Math.abs(ours[i] - v)).map((d) => (Number.isNaN(d) ? Infinity : d)));

export async function withTrainer<T>(ref: ReferenceFolder, extra: Partial<TrainerOptions>, fn: (t: ClipTrainer) => Promise<T>): Promise<T> {
  // Over copies: a trainer takes its state's arrays over, and the comparisons read the reference's (and `extra`'s) on.
  const optimizer = extra.optimizer && { ...extra.optimizer, m: copyDict(extra.optimizer.m), v: copyDict(extra.optimizer.v) };
  const init = copyDict(extra.init ?? ref.params);
  const trainer = await createTrainer({ config: ref.config, batchSize: ref.n, hyper: hyperOf(ref).hyper, stepsPerRun: 1, ...extra, init, optimizer });
  try {
    return await fn(trainer);
  } finally {
    await trainer.close();
  }
}

/** `count` optimizer steps on the folder's batch (the generator uses the same batch every step). */
export function sameBatchSteps(ref: ReferenceFolder, count: number): StepInput[] {
  const step = { micro: [{ images: ref.pixels, tokens: Int32Array.from(ref.tokens.flat()) }], lr: hyperOf(ref).lr };
  return Array.from({ length: count }, () => step);
}

/** BatchNorm buffers after k steps against step<k>.safetensors: running statistics by max abs, num_batches_tracked exactly. */
function bufferStage(ref: ReferenceFolder, stage: string, state: StateDict): StageResult[] {
  const buffers = clipBuffers(ref.config);
  if (!buffers.length) return [];
  const file = ref.read(`${stage}.safetensors`);
  let worst = 0;
  let where = '';
  const counts: string[] = [];
  for (const b of buffers) {
    const want = file.get(b.name);
    if (!want) return [result(`${stage}_buffers`, Infinity, 0, `${stage}.safetensors lacks ${b.name}`)];
    const mine = state.get(b.name)!.data;
    if (b.name.endsWith('.num_batches_tracked')) {
      if (mine[0] !== Number((want.data as BigInt64Array)[0])) counts.push(`${b.name} ${mine[0]} != ${(want.data as BigInt64Array)[0]}`);
      continue;
    }
    (want.data as Float32Array).forEach((v, i) => {
      const d = Math.abs(mine[i] - v);
      if (!(d <= worst)) [worst, where] = [Number.isNaN(d) ? Infinity : d, b.name];
    });
  }
  return [
    result(`${stage}_buffers`, worst, tolerance(ref, `${stage}_buffers`, 'abs'), where),
    result(`${stage}_buffers.num_batches_tracked`, counts.length, 0, counts[0]),
  ];
}

const stateStages = (ref: ReferenceFolder, stage: string, state: StateDict) => [...paramStage(ref, stage, state), ...bufferStage(ref, stage, state)];

/**
 * A reference tensor as a dense array (storedEntry): the rows a compacted file omits are `elsewhere`'s, and its
 * sample of those rows must agree with them.
 */
function denseEntry(file: Map<string, SafetensorsEntry>, source: string, name: string, elsewhere: Float32Array): Float32Array {
  const stored = storedEntry(file, name);
  if (!stored) throw new Error(`${source} lacks ${name}`);
  if ('dense' in stored) return stored.dense.slice();
  const { width } = stored;
  const out = elsewhere.slice();
  for (const { ids, values, sample } of stored.groups) {
    ids.forEach((id, i) => {
      for (let j = 0; j < width; j++) {
        const at = Number(id) * width + j;
        if (sample && elsewhere[at] !== values[i * width + j]) {
          throw new Error(`${source}: ${name} row ${id} (not in the batch) is not what the rows outside the batch should hold`);
        }
        out[at] = values[i * width + j];
      }
    });
  }
  return out;
}

/**
 * The reference's own state after step 1, as a trainer start: parameters and buffers from step1.safetensors,
 * AdamW moments rebuilt from grads.safetensors the way torch's first step leaves them (the gradient clipped with
 * the step-1 norm in steps.json; m = (1-b1) g, v = (1-b2) g², in float32).
 */
export function referenceStep1State(ref: ReferenceFolder): { init: StateDict; optimizer: OptimizerState } {
  const { lr, hyper } = hyperOf(ref);
  const source = join(ref.dir, 'step1.safetensors');
  const step1 = ref.read('step1.safetensors');
  const grads = ref.read('grads.safetensors');
  const f = Math.fround;
  const total = (ref.steps.grad_global_norm_before_clip as number[] | undefined)?.[0];
  if (typeof total !== 'number') throw new Error(`${ref.dir}/steps.json: no grad_global_norm_before_clip`);
  const coef = hyper.gradClip > 0 ? Math.min(1, f(hyper.gradClip / f(total + 1e-6))) : 1;
  const init: StateDict = new Map();
  const m: StateDict = new Map();
  const v: StateDict = new Map();
  for (const p of clipParams(ref.config)) {
    const start = ref.params.get(p.name)!.data;
    // Rows without a gradient only decay: p * (1 - lr·wd), in float32 as torch computes it.
    const decay = excludedFromDecay(p.name, p.shape) ? 1 : f(1 - lr * hyper.weightDecay);
    init.set(p.name, { shape: [...p.shape], data: denseEntry(step1, source, p.name, start.map((x) => f(x * decay))) });
    const g = denseEntry(grads, join(ref.dir, 'grads.safetensors'), p.name, new Float32Array(start.length)).map((x) => f(x * coef));
    m.set(p.name, { shape: [...p.shape], data: g.map((x) => f(f(1 - hyper.beta1) * x)) });
    v.set(p.name, { shape: [...p.shape], data: g.map((x) => f(f(1 - hyper.beta2) * x * x)) });
  }
  for (const b of clipBuffers(ref.config)) {
    const entry = step1.get(b.name);
    if (!entry) throw new Error(`${source} lacks ${b.name}`);
    init.set(b.name, { shape: [...b.shape], data: Float32Array.from(entry.data as ArrayLike<number | bigint>, Number) });
  }
  return { init, optimizer: { step: 1, m, v } };
}

/** ClipLoss of a logits matrix (rows: images), in double. */
function clipLoss(logits: number[][]): number {
  const n = logits.length;
  const ce = (row: (j: number) => number, label: number) => {
    const xs = Array.from({ length: n }, (_, j) => row(j));
    const top = Math.max(...xs);
    return Math.log(xs.reduce((a, x) => a + Math.exp(x - top), 0)) + top - xs[label];
  };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += ce((j) => logits[i][j], i) + ce((j) => logits[j][i], i);
  return sum / (2 * n);
}

/**
 * Evaluation after training, through the trainer's own encoders (the sessions that evaluation in a run uses, fed
 * the trained parameters and buffers): loss, and for BatchNorm towers the logits, against steps.json's numbers
 * after the last step (evaluation mode, running statistics; for a ViT that is the same forward as training mode).
 */
export async function evalAfterTraining(ref: ReferenceFolder, trainer: ClipTrainer, state: StateDict): Promise<StageResult[]> {
  const evalMode = ref.steps.eval_mode_after_last_step as { loss: number; logits_per_image: number[][] } | undefined;
  const wantLoss = evalMode?.loss ?? ref.steps.loss_after_last_step;
  if (typeof wantLoss !== 'number') return [];
  const images = await trainer.encodeImages(ref.pixels, ref.n);
  const texts = await trainer.encodeTexts(Int32Array.from(ref.tokens.flat()), ref.n);
  const e = ref.config.embed_dim;
  const scale = Math.exp(state.get('logit_scale')!.data[0]);
  const logits = Array.from({ length: ref.n }, (_, i) =>
    Array.from({ length: ref.n }, (_, j) => {
      let dot = 0;
      for (let k = 0; k < e; k++) dot += images[i * e + k] * texts[j * e + k];
      return scale * dot;
    }),
  );
  const lossErr = Math.abs(clipLoss(logits) - wantLoss);
  const worst = evalMode ? Math.max(lossErr, maxAbs(logits.flat(), evalMode.logits_per_image.flat())) : lossErr;
  const tol = tolerance(ref, 'after_last_step', 'abs') ?? tolerance(ref, 'step_losses', 'abs');
  return [result('after_last_step.eval', Number.isNaN(worst) ? Infinity : worst, tol, `trainer encoders: ${evalMode ? 'loss and logits_per_image' : 'loss'}`)];
}

/**
 * The folder's optimizer steps. Run freely from the checkpoint, step 1 is compared tightly and the last step loosely:
 * AdamW's first update, lr·g/(|g|+eps), has slope lr/eps (1000 here) where the clipped gradient is below eps, so
 * float32 rounding in one gradient element (which differs between CPUs: AVX2 and AVX-512 kernels round
 * differently) moves later steps onto another branch of ReLU and BatchNorm decisions; PyTorch's own float64 run
 * lands 0.02 from the fixture's float32 logits. Steps 2..k therefore also run from the reference's own step-1 state
 * (`from_step1.*`), where every number after the last step is compared; there PyTorch's float64 run and runs with
 * injected gradient noise stay within 2e-5 of the fixture.
 */
export async function stepStages(ref: ReferenceFolder): Promise<StageResult[]> {
  const losses = ref.steps.losses as number[];
  const last = `step${losses.length}`;
  const lossTol = tolerance(ref, 'step_losses', 'abs');
  const out = await withTrainer(ref, {}, async (trainer) => {
    const rs = await trainer.train(sameBatchSteps(ref, 1));
    const stages = stateStages(ref, 'step1', (await trainer.snapshot()).params);
    rs.push(...(await trainer.train(sameBatchSteps(ref, losses.length - 1))));
    stages.push(...stateStages(ref, last, (await trainer.snapshot()).params));
    stages.push(result('step_losses', maxAbs(rs.map((r) => r.loss), losses), lossTol));
    return stages;
  });
  if (losses.length < 2) return out;
  const { init, optimizer } = referenceStep1State(ref);
  out.push(
    ...(await withTrainer(ref, { init, optimizer }, async (trainer) => {
      const rs = await trainer.train(sameBatchSteps(ref, losses.length - 1));
      const after = (await trainer.snapshot()).params;
      const stages = stateStages(ref, last, after).map((r) => ({ ...r, stage: `from_step1.${r.stage}` }));
      stages.push(result('from_step1.step_losses', maxAbs(rs.map((r) => r.loss), losses.slice(1)), lossTol));
      const trainLoss = ref.steps.loss_after_last_step;
      if (typeof trainLoss === 'number') {
        const err = Math.abs((await runProbe(ref, after)).loss[0] - trainLoss);
        stages.push(result('after_last_step', Number.isNaN(err) ? Infinity : err, tolerance(ref, 'after_last_step', 'abs') ?? lossTol));
      }
      stages.push(...(await evalAfterTraining(ref, trainer, after)));
      return stages;
    })),
  );
  return out;
}

async function tokenizerStage(ref: ReferenceFolder): Promise<StageResult> {
  const check = checkTokenizerCases(loadReferenceCases(ref.dir));
  const first = check.failures[0];
  const bad = check.failures.length;
  return result('tokens', bad, 0, first ? `${bad}/${check.total} differ, first ${JSON.stringify(first.text).slice(0, 60)} (${first.fields.join(', ')})` : `${check.total} strings`);
}

async function preprocessStage(ref: ReferenceFolder): Promise<StageResult[]> {
  if (!ref.read('preprocess.safetensors').get('pixels_uint8_hwc') || !existsSync(join(ref.dir, 'images', 'captions.csv'))) {
    return [skipped('preprocess', 'no pixels_uint8_hwc or images/captions.csv')];
  }
  const parity = await preprocessParity(ref.dir);
  return [
    result('preprocess.mean_abs', parity.meanAbs, tolerance(ref, 'preprocess_uint8', 'mean_abs')),
    result('preprocess.max_abs', parity.maxAbs, tolerance(ref, 'preprocess_uint8', 'max_abs')),
  ];
}

/** One check: a name and what it produces; `verifyReference` runs them in order. */
export interface Stage {
  name: string;
  run(ref: ReferenceFolder, probe: () => Promise<Record<string, Float32Array>>): Promise<StageResult[]>;
}

export const STAGES: Stage[] = [
  { name: 'tokens', run: async (ref) => [await tokenizerStage(ref)] },
  { name: 'preprocess', run: (ref) => preprocessStage(ref) },
  { name: 'forward', run: async (ref, probe) => forwardStages(ref, await probe()) },
  { name: 'grads', run: async (ref, probe) => gradStages(ref, await probe()) },
  { name: 'steps', run: (ref) => stepStages(ref) },
];
