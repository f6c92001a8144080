/**
 * The trainer's evaluation encoders: one session per tower, in evaluation mode, over fixed-size chunks. Each keeps
 * the parameters fed when it opened (carried inputs without outputs), so an evaluation sends them once, not with
 * every chunk. That copy (600 MB for ViT-B-32) is stale once training moves on: release() closes the sessions,
 * and the next evaluation opens them again from the graphs built the first time.
 */
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { textDims } from '../../core/model-config/config.ts';
import type { ExecutionProvider } from '../engine/options.ts';
import { openSession, type EngineSession, type HostArray } from '../engine/session.ts';
import type { ParamSpec } from '../models/spec.ts';
import { buildEncoderGraph, towerParamNames, type Tower } from './export.ts';
import { names } from './train-graph.ts';

/** Rows per encoder run: a fixed shape, the last chunk padded. */
const ENCODE_CHUNK = 32;

/** Where the current parameters and buffers are read from. */
export interface EncoderSource {
  tensor(name: string): Float32Array;
}

export class Encoders {
  private readonly graphs = new Map<Tower, Uint8Array>();
  /** Open sessions, and whether each has been fed the parameters. */
  private readonly sessions = new Map<Tower, { session: Promise<EngineSession>; fed: boolean }>();

  constructor(
    private readonly config: ClipModelConfig,
    private readonly specOf: (name: string) => ParamSpec,
    private readonly session: { ep: ExecutionProvider; threads: number },
  ) {}

  private open(tower: Tower): { session: Promise<EngineSession>; fed: boolean } {
    let s = this.sessions.get(tower);
    if (!s) {
      let graph = this.graphs.get(tower);
      if (!graph) this.graphs.set(tower, (graph = buildEncoderGraph(this.config, tower, { batch: ENCODE_CHUNK })));
      const carry = towerParamNames(this.config, tower).map((name) => ({ input: names.param(name), dims: [...this.specOf(name).shape] }));
      s = { session: openSession(graph, { ...this.session, carry }), fed: false };
      this.sessions.set(tower, s);
    }
    return s;
  }

  /** L2-normalised embeddings [n, embed_dim] of `n` rows of `input` with the source's current parameters. */
  async encode(tower: Tower, input: Float32Array | Int32Array, n: number, source: EncoderSource): Promise<Float32Array> {
    const { config } = this;
    const opened = this.open(tower);
    const session = await opened.session;
    const size = config.vision_cfg.image_size;
    const per = tower === 'image' ? 3 * size * size : textDims(config).context;
    if (input.length !== n * per) throw new Error(`encode ${tower}: ${input.length} values for ${n} rows of ${per}`);
    const feeds: Record<string, HostArray> = {};
    if (!opened.fed) {
      for (const name of towerParamNames(config, tower)) feeds[names.param(name)] = { data: source.tensor(name), dims: this.specOf(name).shape };
    }
    const embed = config.embed_dim;
    const result = new Float32Array(n * embed);
    const dims = [ENCODE_CHUNK, ...(tower === 'image' ? [3, size, size] : [per])];
    for (let at = 0; at < n; at += ENCODE_CHUNK) {
      const rows = Math.min(ENCODE_CHUNK, n - at);
      const chunk = input.subarray(at * per, (at + rows) * per);
      const data = tower === 'image' ? new Float32Array(ENCODE_CHUNK * per) : new BigInt64Array(ENCODE_CHUNK * per);
      if (data instanceof Float32Array) data.set(chunk as Float32Array);
      else chunk.forEach((t, i) => (data[i] = BigInt(t)));
      const out = await session.run({ ...(at === 0 ? feeds : {}), [tower]: { data, dims } }, ['embedding']);
      opened.fed = true;
      result.set((out.embedding.data as Float32Array).subarray(0, rows * embed), at * embed);
    }
    return result;
  }

  /** Closes the open sessions, which frees their copies of the parameters (a session thread's memory goes with it). */
  async release(): Promise<void> {
    const open = [...this.sessions.values()];
    this.sessions.clear();
    // One that failed to open has reported its error to the call that needed it.
    const settled = await Promise.allSettled(open.map((s) => s.session));
    await Promise.all(settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value.close()] : [])));
  }
}
