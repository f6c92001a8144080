/**
 * What a trainer carries between runs: parameters, BatchNorm buffers and AdamW moments by open_clip name, and the
 * optimizer step. The arrays live on the host and are handed to the session thread for each run (no copies); with
 * resident state the newest values stay in the session that ran last and reach the host only when read.
 */
import type { OptimizerState } from './api.ts';
import type { CarriedState, EngineSession, HostArray } from '../engine/session.ts';
import { numel, type StateDict } from '../../core/tensors/tensor.ts';
import type { ParamSpec } from '../models/spec.ts';
import { names, type TrainGraph } from './train-graph.ts';

type Arrays = Map<string, Float32Array>;

/** A training graph and the session that runs it. */
export interface TrainSession {
  graph: TrainGraph;
  session: EngineSession;
}

export interface StateSpecs {
  params: ParamSpec[];
  buffers: ParamSpec[];
  /** The parameters the optimizer updates (not frozen), which have moments. */
  trained: ParamSpec[];
}

/** Takes the dict's arrays over, checked against the specs: they are handed to the session thread on every run. */
function adopt(what: string, specs: ParamSpec[], dict: StateDict): Arrays {
  const out: Arrays = new Map();
  for (const s of specs) {
    const t = dict.get(s.name);
    if (!t) throw new Error(`${what} lacks ${s.name}`);
    if (t.shape.join() !== s.shape.join() || t.data.length !== numel(s.shape)) {
      throw new Error(`${what}: ${s.name} has shape [${t.shape}], the model config needs [${s.shape}]`);
    }
    out.set(s.name, t.data);
  }
  return out;
}

const zeros = (specs: ParamSpec[]): Arrays => new Map(specs.map((s) => [s.name, new Float32Array(numel(s.shape))]));

/** Views of the arrays, valid until the next run hands them over. */
const views = (specs: ParamSpec[], arrays: Arrays): StateDict => new Map(specs.map((s) => [s.name, { shape: [...s.shape], data: arrays.get(s.name)! }]));

export class TrainerState {
  private readonly params: Arrays;
  private readonly buffers: Arrays;
  private readonly m: Arrays;
  private readonly v: Arrays;
  step: number;
  /** With resident state, the session holding the newest values, and whether the host arrays caught up with it. */
  private holder: TrainSession | undefined;
  private hostCurrent = true;

  /** The arrays of `init` (and `optimizer`) become the trainer's: callers pass copies of what they still read. */
  constructor(
    private readonly specs: StateSpecs,
    init: StateDict,
    optimizer?: OptimizerState,
  ) {
    this.params = adopt('initial parameters', specs.params, init);
    this.buffers = adopt('initial parameters', specs.buffers, init);
    this.m = optimizer ? adopt('optimizer state m', specs.trained, optimizer.m) : zeros(specs.trained);
    this.v = optimizer ? adopt('optimizer state v', specs.trained, optimizer.v) : zeros(specs.trained);
    this.step = optimizer?.step ?? 0;
  }

  /** Brings the host arrays up to date with a resident session that has run since they were last read. */
  async syncHost(): Promise<void> {
    if (!this.holder || this.hostCurrent) return;
    const { graph, session } = this.holder;
    const state = await session.read();
    for (const p of graph.trained) {
      this.params.set(p.name, state[names.param(p.name)].data as Float32Array);
      this.m.set(p.name, state[names.m(p.name)].data as Float32Array);
      this.v.set(p.name, state[names.v(p.name)].data as Float32Array);
    }
    for (const b of graph.buffers) this.buffers.set(b.name, state[names.buffer(b.name)].data as Float32Array);
    this.hostCurrent = true;
  }

  /**
   * The state feeds for a run of `trained`, handed over rather than copied (the arrays come back as outputs), or
   * none when that session holds the state already. Resident state moves between sessions through the host.
   */
  async feedsFor(trained: TrainSession): Promise<Record<string, HostArray> | undefined> {
    if (this.holder === trained) return undefined;
    if (this.holder) await this.syncHost();
    const { graph } = trained;
    const feeds: Record<string, HostArray> = {};
    for (const p of graph.trained) {
      feeds[names.param(p.name)] = { data: this.params.get(p.name)!, dims: p.shape };
      feeds[names.m(p.name)] = { data: this.m.get(p.name)!, dims: p.shape };
      feeds[names.v(p.name)] = { data: this.v.get(p.name)!, dims: p.shape };
    }
    for (const b of graph.buffers) feeds[names.buffer(b.name)] = { data: this.buffers.get(b.name)!, dims: b.shape };
    // Frozen parameters are not returned, so the thread gets copies of them (a resident session keeps those).
    for (const p of graph.frozen) feeds[names.param(p.name)] = { data: this.params.get(p.name)!.slice(), dims: p.shape };
    return feeds;
  }

  /** Records a run of `k` steps: a resident session now holds the state, or the outputs carry it back. */
  afterRun(trained: TrainSession, k: number, resident: boolean, out: Record<string, HostArray>): void {
    if (resident) {
      this.holder = trained;
      this.hostCurrent = false;
    } else {
      const { graph } = trained;
      for (const p of graph.trained) {
        this.params.set(p.name, out[names.newParam(p.name)].data as Float32Array);
        this.m.set(p.name, out[names.newM(p.name)].data as Float32Array);
        this.v.set(p.name, out[names.newV(p.name)].data as Float32Array);
      }
      for (const b of graph.buffers) this.buffers.set(b.name, out[names.newBuffer(b.name)].data as Float32Array);
    }
    this.step += k;
  }

  /** A parameter or buffer as the host holds it (call syncHost first). */
  tensor(name: string): Float32Array {
    return (this.params.get(name) ?? this.buffers.get(name))!;
  }

  /**
   * Views of the host state (call syncHost first), valid until the next run: a checkpoint of a ViT-B-32 writes
   * 1.8 GB of parameters and moments, which a copy would double.
   */
  views(): { params: StateDict; optimizer: OptimizerState } {
    const params = new Map([...views(this.specs.params, this.params), ...views(this.specs.buffers, this.buffers)]);
    return { params, optimizer: { step: this.step, m: views(this.specs.trained, this.m), v: views(this.specs.trained, this.v) } };
  }
}

/** What a resident training session keeps between runs: parameters (frozen ones as fed), moments, BatchNorm buffers. */
export function carriedState(graph: TrainGraph): CarriedState[] {
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
