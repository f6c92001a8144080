/**
 * The engine side of training (api.ts ClipTrainer): holds parameters, AdamW moments and buffers between runs, on the
 * host or (resident state, WebGPU's default) in the training session itself, drives the fused training-step model
 * (K steps per run where the provider has Loop kernels) and separate encoder models that read the current parameters.
 */
import { availableParallelism } from 'node:os';
import type { ClipTrainer, OptimizerState, StepInput, StepResult, TrainerOptions } from './api.ts';
import type { Batch } from '../data/batch.ts';
import { buildEncoderGraph, towerParamNames, type Tower } from './export.ts';
import { frozenMatcher } from '../engine/optimizer.ts';
import { RUNS_LOOP } from '../engine/options.ts';
import { openSession, type CarriedState, type EngineSession, type HostArray } from '../engine/session.ts';
import { buildTrainGraph, names, type TrainGraph } from './train-graph.ts';
import { clipBuffers, clipParams } from '../models/clip.ts';
import { textDims } from '../../core/model-config/config.ts';
import type { ParamSpec } from '../models/spec.ts';
import { numel, type StateDict } from '../engine/tensor.ts';

/** Rows per encoder run: a fixed shape, the last chunk padded. */
const ENCODE_CHUNK = 32;

type Arrays = Map<string, Float32Array>;

function checkState(what: string, specs: ParamSpec[], dict: StateDict): Arrays {
  const out: Arrays = new Map();
  for (const s of specs) {
    const t = dict.get(s.name);
    if (!t) throw new Error(`${what} lacks ${s.name}`);
    if (t.shape.join() !== s.shape.join() || t.data.length !== numel(s.shape)) {
      throw new Error(`${what}: ${s.name} has shape [${t.shape}], the model config needs [${s.shape}]`);
    }
    // Own copies: their buffers are handed to the session thread on every run.
    out.set(s.name, t.data.slice());
  }
  return out;
}

const toDict = (specs: ParamSpec[], arrays: Arrays): StateDict =>
  new Map(specs.map((s) => [s.name, { shape: [...s.shape], data: arrays.get(s.name)!.slice() }]));

export async function createTrainer(opts: TrainerOptions): Promise<ClipTrainer> {
  const { config, batchSize } = opts;
  const accumulate = opts.accumulate ?? 1;
  const ep = opts.ep ?? 'cpu';
  const stepsPerRun = Math.max(1, opts.stepsPerRun ?? 1);
  if (stepsPerRun > 1 && !RUNS_LOOP[ep]) throw new Error(`${ep} runs no Loop operator: one step per run there, not ${stepsPerRun}`);
  const paramSpecs = clipParams(config);
  const bufferSpecs = clipBuffers(config);
  // Nothing below keeps `opts`: it holds the initial state dict (and resumed moments), copied into `params` below.
  const { hyper, freezeBnStats } = opts;
  const isFrozen = frozenMatcher(opts.freeze);
  for (const pattern of opts.freeze ?? []) {
    if (!paramSpecs.some((p) => new RegExp(pattern).test(p.name))) throw new Error(`freeze pattern ${JSON.stringify(pattern)} matches no parameter`);
  }
  const trainedSpecs = paramSpecs.filter((p) => !isFrozen(p.name));
  const params = checkState('initial parameters', paramSpecs, opts.init);
  const buffers = checkState('initial parameters', bufferSpecs, opts.init);
  const m = opts.optimizer ? checkState('optimizer state m', trainedSpecs, opts.optimizer.m) : zeros(trainedSpecs);
  const v = opts.optimizer ? checkState('optimizer state v', trainedSpecs, opts.optimizer.v) : zeros(trainedSpecs);
  let step = opts.optimizer?.step ?? 0;
  const size = config.vision_cfg.image_size;
  const context = textDims(config).context;
  const imageLen = batchSize * 3 * size * size;
  const tokenLen = batchSize * context;

  // Every core, set explicitly: onnxruntime's own default pool ran the ViT-B-32 step 22 % slower on 2 cores
  // (5734 vs 4691 ms/step, bench-train batch 8, K=5), with CPU time barely above wall time.
  const threads = opts.threads ?? availableParallelism();
  const resident = opts.residentState ?? ep === 'webgpu';
  type Trained = { graph: TrainGraph; session: EngineSession };
  const trainSessions = new Map<number, Promise<Trained>>();
  const trainSession = (k: number) => {
    let s = trainSessions.get(k);
    if (!s) {
      s = (async () => {
        const graph = buildTrainGraph({ config, batchSize, accumulate, stepsPerRun: k, hyper, isFrozen, freezeBnStats });
        return { graph, session: await openSession(graph.model, { ep, threads, carry: resident ? carriedState(graph) : undefined }) };
      })();
      trainSessions.set(k, s);
    }
    return s;
  };
  const specOf = (name: string): ParamSpec => (paramSpecs.find((p) => p.name === name) ?? bufferSpecs.find((p) => p.name === name))!;
  // Encoder sessions keep the parameters fed last (carried inputs without outputs): an evaluation sends them once,
  // not with every chunk, and only after training has moved them (`trainedRuns` counts the runs).
  const encoders = new Map<Tower, Promise<EngineSession>>();
  const encoderFedAt = new Map<Tower, number>();
  let trainedRuns = 0;
  const encoder = (tower: Tower) => {
    let s = encoders.get(tower);
    if (!s) {
      const carry = towerParamNames(config, tower).map((name) => ({ input: names.param(name), dims: [...specOf(name).shape] }));
      s = openSession(buildEncoderGraph(config, tower, { batch: ENCODE_CHUNK }), { ep, threads, carry });
      encoders.set(tower, s);
    }
    return s;
  };
  // A failed run has handed its state buffers to the session thread; nothing after it can be trusted.
  let broken: Error | undefined;
  // With resident state, the session that holds the newest parameters, moments and buffers, and whether the
  // host arrays have been brought up to date with it since its last run.
  let holder: Trained | undefined;
  let hostCurrent = true;

  async function syncHost(): Promise<void> {
    if (!holder || hostCurrent) return;
    const { graph, session } = holder;
    const state = await session.read();
    for (const p of graph.trained) {
      params.set(p.name, state[names.param(p.name)].data as Float32Array);
      m.set(p.name, state[names.m(p.name)].data as Float32Array);
      v.set(p.name, state[names.v(p.name)].data as Float32Array);
    }
    for (const b of graph.buffers) buffers.set(b.name, state[names.buffer(b.name)].data as Float32Array);
    hostCurrent = true;
  }

  function checkStep(s: StepInput, i: number): void {
    if (s.micro.length !== accumulate) throw new Error(`step ${i}: ${s.micro.length} micro-batches, the trainer accumulates ${accumulate}`);
    if (!(Number.isFinite(s.lr) && s.lr >= 0)) throw new Error(`step ${i}: learning rate ${s.lr} is not a finite number >= 0`);
    s.micro.forEach((b: Batch, j) => {
      if (b.images.length !== imageLen) throw new Error(`step ${i} micro-batch ${j}: ${b.images.length} pixel values, expected ${imageLen} ([${batchSize},3,${size},${size}])`);
      if (b.tokens.length !== tokenLen) throw new Error(`step ${i} micro-batch ${j}: ${b.tokens.length} tokens, expected ${tokenLen} ([${batchSize},${context}])`);
    });
  }

  async function runChunk(chunk: StepInput[]): Promise<StepResult[]> {
    const k = chunk.length;
    const trained = await trainSession(k);
    const { graph, session } = trained;
    // Resident state moves between the K-step and the one-step session through the host.
    if (holder && holder !== trained) await syncHost();
    const feedState = !resident || holder !== trained;
    const images = new Float32Array(k * accumulate * imageLen);
    const tokens = new BigInt64Array(k * accumulate * tokenLen);
    chunk.forEach((s, i) =>
      s.micro.forEach((b, j) => {
        const at = i * accumulate + j;
        images.set(b.images, at * imageLen);
        for (let t = 0; t < tokenLen; t++) tokens[at * tokenLen + t] = BigInt(b.tokens[t]);
      }),
    );
    const feeds: Record<string, HostArray> = {
      images: { data: images, dims: [k, accumulate, batchSize, 3, size, size] },
      tokens: { data: tokens, dims: [k, accumulate, batchSize, context] },
      lr: { data: Float64Array.from(chunk, (s) => s.lr), dims: [k] },
      step: { data: Float64Array.of(step), dims: [] },
    };
    if (feedState) {
      // Handed over, not copied: the arrays come back as outputs, or stay in the session when it holds them.
      for (const p of graph.trained) {
        feeds[names.param(p.name)] = { data: params.get(p.name)!, dims: p.shape };
        feeds[names.m(p.name)] = { data: m.get(p.name)!, dims: p.shape };
        feeds[names.v(p.name)] = { data: v.get(p.name)!, dims: p.shape };
      }
      for (const b of graph.buffers) feeds[names.buffer(b.name)] = { data: buffers.get(b.name)!, dims: b.shape };
      // Frozen parameters are not returned, so the thread gets copies of them (a resident session keeps those).
      for (const p of graph.frozen) feeds[names.param(p.name)] = { data: params.get(p.name)!.slice(), dims: p.shape };
    }
    let out: Record<string, HostArray>;
    try {
      // Fed state comes back holding the new values (graph.inPlace): a step allocates no second copy of it.
      const into = feedState && !resident ? Object.fromEntries(graph.inPlace.map((p) => [p.output, p.input])) : undefined;
      out = await session.run(feeds, undefined, { transfer: true, into });
    } catch (err) {
      broken = err as Error;
      throw err;
    }
    if (resident) {
      holder = trained;
      hostCurrent = false;
    } else {
      for (const p of graph.trained) {
        params.set(p.name, out[names.newParam(p.name)].data as Float32Array);
        m.set(p.name, out[names.newM(p.name)].data as Float32Array);
        v.set(p.name, out[names.newV(p.name)].data as Float32Array);
      }
      for (const b of graph.buffers) buffers.set(b.name, out[names.newBuffer(b.name)].data as Float32Array);
    }
    step += k;
    trainedRuns++;
    const [loss, gradNorm, logitScale] = ['loss', 'grad_norm', 'logit_scale'].map((n) => out[n].data as Float32Array);
    return chunk.map((_, i) => ({ loss: loss[i], gradNorm: gradNorm[i], logitScale: logitScale[i] }));
  }

  async function encode(tower: Tower, input: Float32Array | Int32Array, n: number): Promise<Float32Array> {
    if (broken) throw new Error(`trainer is unusable after a failed step: ${broken.message}`);
    const session = await encoder(tower);
    await syncHost();
    const per = tower === 'image' ? 3 * size * size : context;
    if (input.length !== n * per) throw new Error(`encode ${tower}: ${input.length} values for ${n} rows of ${per}`);
    const feeds: Record<string, HostArray> = {};
    if (encoderFedAt.get(tower) !== trainedRuns) {
      for (const name of towerParamNames(config, tower)) feeds[names.param(name)] = { data: (params.get(name) ?? buffers.get(name))!, dims: specOf(name).shape };
    }
    const embed = config.embed_dim;
    const result = new Float32Array(n * embed);
    for (let at = 0; at < n; at += ENCODE_CHUNK) {
      const rows = Math.min(ENCODE_CHUNK, n - at);
      const dims = [ENCODE_CHUNK, ...(tower === 'image' ? [3, size, size] : [context])];
      const chunk = input.subarray(at * per, (at + rows) * per);
      const data = tower === 'image' ? new Float32Array(ENCODE_CHUNK * per) : new BigInt64Array(ENCODE_CHUNK * per);
      if (data instanceof Float32Array) data.set(chunk as Float32Array);
      else chunk.forEach((t, i) => (data[i] = BigInt(t)));
      const out = await session.run({ ...(at === 0 ? feeds : {}), [tower]: { data, dims } }, ['embedding']);
      encoderFedAt.set(tower, trainedRuns);
      result.set((out.embedding.data as Float32Array).subarray(0, rows * embed), at * embed);
    }
    return result;
  }

  return {
    async train(steps) {
      if (broken) throw new Error(`trainer is unusable after a failed step: ${broken.message}`);
      steps.forEach(checkStep);
      const results: StepResult[] = [];
      let i = 0;
      // Full Loop runs first; a remainder shorter than K runs one step at a time (one more model, not one per length).
      while (steps.length - i >= stepsPerRun) {
        results.push(...(await runChunk(steps.slice(i, i + stepsPerRun))));
        i += stepsPerRun;
      }
      for (; i < steps.length; i++) results.push(...(await runChunk([steps[i]])));
      return results;
    },
    encodeImages: (images, n) => encode('image', images, n),
    encodeTexts: (tokens, n) => encode('text', tokens, n),
    async snapshot() {
      if (broken) throw new Error(`trainer is unusable after a failed step: ${broken.message}`);
      await syncHost();
      const state: StateDict = new Map([...toDict(paramSpecs, params), ...toDict(bufferSpecs, buffers)]);
      const optimizer: OptimizerState = { step, m: toDict(trainedSpecs, m), v: toDict(trainedSpecs, v) };
      return { params: state, optimizer };
    },
    async close() {
      // A session that failed to open has already reported its error to the call that needed it.
      const opened = await Promise.allSettled([...[...trainSessions.values()].map(async (s) => (await s).session), ...encoders.values()]);
      await Promise.all(opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value.close()] : [])));
    },
  };
}

/** What a resident training session keeps between runs: parameters (frozen ones as fed), moments, BatchNorm buffers. */
function carriedState(graph: TrainGraph): CarriedState[] {
  return [
    ...graph.trained.flatMap((p) => [
      { output: names.newParam(p.name), input: names.param(p.name), dims: [...p.shape] },
      { output: names.newM(p.name), input: names.m(p.name), dims: [...p.shape] },
      { output: names.newV(p.name), input: names.v(p.name), dims: [...p.shape] },
    ]),
    ...graph.frozen.map((p) => ({ input: names.param(p.name), dims: [...p.shape] })),
    ...graph.buffers.map((b) => ({ output: names.newBuffer(b.name), input: names.buffer(b.name), dims: [...b.shape] })),
  ];
}

function zeros(specs: ParamSpec[]): Arrays {
  return new Map(specs.map((s) => [s.name, new Float32Array(numel(s.shape))]));
}
