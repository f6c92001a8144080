/**
 * The engine side of training (api.ts ClipTrainer): drives the fused training-step model (K steps per run where
 * the provider has Loop kernels) over the state in trainer-state.ts, and the evaluation encoders (encoders.ts)
 * that read the current parameters.
 */
import { availableParallelism } from 'node:os';
import type { ClipTrainer, StepInput, StepResult, TrainerOptions } from './api.ts';
import type { Batch } from '../data/batch.ts';
import { Encoders } from './encoders.ts';
import type { Tower } from './export.ts';
import { frozenMatcher } from '../engine/optimizer.ts';
import { RUNS_LOOP } from '../engine/options.ts';
import { openSession, type HostArray } from '../engine/session.ts';
import { buildTrainGraph, type TrainGraphOptions } from './train-graph.ts';
import { carriedState, TrainerState, type TrainSession } from './trainer-state.ts';
import { clipBuffers, clipParams } from '../models/clip.ts';
import { textDims } from '../../core/model-config/config.ts';
import type { ParamSpec } from '../models/spec.ts';

class EngineTrainer implements ClipTrainer {
  private readonly accumulate: number;
  private readonly stepsPerRun: number;
  private readonly resident: boolean;
  private readonly session: { ep: NonNullable<TrainerOptions['ep']>; threads: number };
  private readonly graphOptions: Omit<TrainGraphOptions, 'stepsPerRun'>;
  private readonly state: TrainerState;
  private readonly encoders: Encoders;
  /** One training session per steps-per-run count (K, and 1 for a remainder). */
  private readonly trainSessions = new Map<number, Promise<TrainSession>>();
  /** A failed run has handed its state buffers to the session thread; nothing after it can be trusted. */
  private broken: Error | undefined;

  private readonly batchSize: number;
  /** One micro-batch's shapes: image side, token context, and the values each feed row holds. */
  private readonly size: number;
  private readonly context: number;
  private readonly imageLen: number;
  private readonly tokenLen: number;

  /** Takes over the arrays of opts.init and opts.optimizer (trainer-state.ts). */
  constructor(opts: TrainerOptions) {
    const { config } = opts;
    this.batchSize = opts.batchSize;
    this.size = config.vision_cfg.image_size;
    this.context = textDims(config).context;
    this.imageLen = this.batchSize * 3 * this.size * this.size;
    this.tokenLen = this.batchSize * this.context;
    const ep = opts.ep ?? 'cpu';
    this.accumulate = opts.accumulate ?? 1;
    this.stepsPerRun = Math.max(1, opts.stepsPerRun ?? 1);
    if (this.stepsPerRun > 1 && !RUNS_LOOP[ep]) throw new Error(`${ep} runs no Loop operator: one step per run there, not ${this.stepsPerRun}`);
    const params = clipParams(config);
    const buffers = clipBuffers(config);
    const isFrozen = frozenMatcher(opts.freeze);
    for (const pattern of opts.freeze ?? []) {
      if (!params.some((p) => new RegExp(pattern).test(p.name))) throw new Error(`freeze pattern ${JSON.stringify(pattern)} matches no parameter`);
    }
    this.state = new TrainerState({ params, buffers, trained: params.filter((p) => !isFrozen(p.name)) }, opts.init, opts.optimizer);
    // Every core, set explicitly: onnxruntime's own default pool ran the ViT-B-32 step 22 % slower on 2 cores
    // (5734 vs 4691 ms/step, bench-train batch 8, K=5), with CPU time barely above wall time.
    this.session = { ep, threads: opts.threads ?? availableParallelism() };
    this.resident = opts.residentState ?? ep === 'webgpu';
    this.graphOptions = { config, batchSize: this.batchSize, accumulate: this.accumulate, hyper: opts.hyper, isFrozen, freezeBnStats: opts.freezeBnStats };
    const specs = new Map<string, ParamSpec>([...params, ...buffers].map((s) => [s.name, s]));
    this.encoders = new Encoders(config, (name) => specs.get(name)!, this.session);
  }

  private trainSession(k: number): Promise<TrainSession> {
    let s = this.trainSessions.get(k);
    if (!s) {
      s = (async () => {
        const graph = buildTrainGraph({ ...this.graphOptions, stepsPerRun: k });
        return { graph, session: await openSession(graph.model, { ...this.session, carry: this.resident ? carriedState(graph) : undefined }) };
      })();
      this.trainSessions.set(k, s);
    }
    return s;
  }

  private usable(): void {
    if (this.broken) throw new Error(`trainer is unusable after a failed step: ${this.broken.message}`);
  }

  private checkStep(s: StepInput, i: number): void {
    const { batchSize, size, context, imageLen, tokenLen } = this;
    if (s.micro.length !== this.accumulate) throw new Error(`step ${i}: ${s.micro.length} micro-batches, the trainer accumulates ${this.accumulate}`);
    if (!(Number.isFinite(s.lr) && s.lr >= 0)) throw new Error(`step ${i}: learning rate ${s.lr} is not a finite number >= 0`);
    s.micro.forEach((b: Batch, j) => {
      if (b.images.length !== imageLen) throw new Error(`step ${i} micro-batch ${j}: ${b.images.length} pixel values, expected ${imageLen} ([${batchSize},3,${size},${size}])`);
      if (b.tokens.length !== tokenLen) throw new Error(`step ${i} micro-batch ${j}: ${b.tokens.length} tokens, expected ${tokenLen} ([${batchSize},${context}])`);
    });
  }

  /** The batches of `chunk` as one [K, accumulate, batch, ...] feed each. */
  private batchFeeds(chunk: StepInput[]): Record<string, HostArray> {
    const { accumulate, batchSize, size, context, imageLen, tokenLen } = this;
    const k = chunk.length;
    const images = new Float32Array(k * accumulate * imageLen);
    const tokens = new BigInt64Array(k * accumulate * tokenLen);
    chunk.forEach((s, i) =>
      s.micro.forEach((b, j) => {
        const at = i * accumulate + j;
        images.set(b.images, at * imageLen);
        for (let t = 0; t < tokenLen; t++) tokens[at * tokenLen + t] = BigInt(b.tokens[t]);
      }),
    );
    return {
      images: { data: images, dims: [k, accumulate, batchSize, 3, size, size] },
      tokens: { data: tokens, dims: [k, accumulate, batchSize, context] },
      lr: { data: Float64Array.from(chunk, (s) => s.lr), dims: [k] },
      step: { data: Float64Array.of(this.state.step), dims: [] },
    };
  }

  private async runChunk(chunk: StepInput[]): Promise<StepResult[]> {
    const trained = await this.trainSession(chunk.length);
    const stateFeeds = await this.state.feedsFor(trained);
    // Fed state comes back holding the new values (graph.inPlace): a step allocates no second copy of it.
    const into = stateFeeds && !this.resident ? Object.fromEntries(trained.graph.inPlace.map((p) => [p.output, p.input])) : undefined;
    let out: Record<string, HostArray>;
    try {
      out = await trained.session.run({ ...this.batchFeeds(chunk), ...stateFeeds }, undefined, { transfer: true, into });
    } catch (err) {
      this.broken = err as Error;
      throw err;
    }
    this.state.afterRun(trained, chunk.length, this.resident, out);
    const [loss, gradNorm, logitScale] = ['loss', 'grad_norm', 'logit_scale'].map((n) => out[n].data as Float32Array);
    return chunk.map((_, i) => ({ loss: loss[i], gradNorm: gradNorm[i], logitScale: logitScale[i] }));
  }

  async train(steps: StepInput[]): Promise<StepResult[]> {
    this.usable();
    steps.forEach((s, i) => this.checkStep(s, i));
    await this.encoders.release();
    const results: StepResult[] = [];
    let i = 0;
    // Full Loop runs first; a remainder shorter than K runs one step at a time (one more model, not one per length).
    for (; steps.length - i >= this.stepsPerRun; i += this.stepsPerRun) results.push(...(await this.runChunk(steps.slice(i, i + this.stepsPerRun))));
    for (; i < steps.length; i++) results.push(...(await this.runChunk([steps[i]])));
    return results;
  }

  private async encode(tower: Tower, input: Float32Array | Int32Array, n: number): Promise<Float32Array> {
    this.usable();
    await this.state.syncHost();
    return this.encoders.encode(tower, input, n, this.state);
  }

  encodeImages(images: Float32Array, n: number): Promise<Float32Array> {
    return this.encode('image', images, n);
  }

  encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array> {
    return this.encode('text', tokens, n);
  }

  async snapshot() {
    this.usable();
    // What reads a snapshot (a checkpoint, the final export) is not an evaluation: the encoders' copies can go.
    await this.encoders.release();
    await this.state.syncHost();
    return this.state.views();
  }

  async close(): Promise<void> {
    // A session that failed to open has already reported its error to the call that needed it.
    const train = await Promise.allSettled(this.trainSessions.values());
    await Promise.all([...train.flatMap((r) => (r.status === 'fulfilled' ? [r.value.session.close()] : [])), this.encoders.release()]);
  }
}

export async function createTrainer(opts: TrainerOptions): Promise<ClipTrainer> {
  return new EngineTrainer(opts);
}
