/**
 * The trainer's evaluation encoders: one session per tower, in evaluation mode, over fixed-size chunks. Each keeps
 * the parameters fed last (carried inputs without outputs), so an evaluation sends them once, not with every
 * chunk, and again only after training has moved them.
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

export interface EncoderSource {
  /** Runs that moved the parameters so far. */
  readonly runs: number;
  /** The current host value of a parameter or buffer. */
  tensor(name: string): Float32Array;
}

export class Encoders {
  private readonly sessions = new Map<Tower, Promise<EngineSession>>();
  private readonly fedAt = new Map<Tower, number>();

  constructor(
    private readonly config: ClipModelConfig,
    private readonly specOf: (name: string) => ParamSpec,
    private readonly session: { ep: ExecutionProvider; threads: number },
  ) {}

  private open(tower: Tower): Promise<EngineSession> {
    let s = this.sessions.get(tower);
    if (!s) {
      const carry = towerParamNames(this.config, tower).map((name) => ({ input: names.param(name), dims: [...this.specOf(name).shape] }));
      s = openSession(buildEncoderGraph(this.config, tower, { batch: ENCODE_CHUNK }), { ...this.session, carry });
      this.sessions.set(tower, s);
    }
    return s;
  }

  /** L2-normalised embeddings [n, embed_dim] of `n` rows of `input` with the source's current parameters. */
  async encode(tower: Tower, input: Float32Array | Int32Array, n: number, source: EncoderSource): Promise<Float32Array> {
    const { config } = this;
    const session = await this.open(tower);
    const size = config.vision_cfg.image_size;
    const per = tower === 'image' ? 3 * size * size : textDims(config).context;
    if (input.length !== n * per) throw new Error(`encode ${tower}: ${input.length} values for ${n} rows of ${per}`);
    const feeds: Record<string, HostArray> = {};
    if (this.fedAt.get(tower) !== source.runs) {
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
      this.fedAt.set(tower, source.runs);
      result.set((out.embedding.data as Float32Array).subarray(0, rows * embed), at * embed);
    }
    return result;
  }

  /** The sessions that opened (one that failed has reported its error to the call that needed it). */
  async opened(): Promise<EngineSession[]> {
    const settled = await Promise.allSettled(this.sessions.values());
    return settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }
}
