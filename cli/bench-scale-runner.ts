import type { ShardRequest } from '../core/dataset/types.ts';
import { makeS3Client } from '../core/s3-client.ts';
import { shardsPrefix } from '../core/s3-layout.ts';
import { openStore } from '../core/store.ts';
import { serveParent } from './child-process.ts';
import { jsonBytes, jsonShape } from './payload-size.ts';

/**
 * The process bench-scale forks for each stage, so that a stage's peak RSS is its own (a fresh process per
 * stage, as a cold Lambda or a new worker is): it runs the real handler (or the worker's code) and reports its
 * time, peak RSS and the bytes of what went in and came out.
 */
export type ScaleRequest =
  | { stage: 'validate' | 'collect'; input: Record<string, unknown> }
  | { stage: 'shard'; bucket: string; planKey: string }
  | { stage: 'worker'; bucket: string; runId: string };

export interface StageReply {
  seconds: number;
  peakRssMb: number;
  /** Largest handler input and output, as JSON bytes (each is a Lambda payload and a state). */
  inputBytes: number;
  outputBytes: number;
  /** The same with every number as one digit (bench-scale's test that payloads do not grow but for digits). */
  inputShape: number;
  outputShape: number;
  output?: unknown;
  /** For `worker`: the two parts measured one after the other. */
  parts?: { name: string; seconds: number; peakRssMb: number }[];
  invocations?: number;
}

process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';

const rss = (): number => Math.round(process.resourceUsage().maxRSS / 1024);

async function serve(m: ScaleRequest): Promise<StageReply> {
  const t0 = performance.now();
  if (m.stage === 'validate' || m.stage === 'collect') {
    const { handler } = (await import(`../lambdas/${m.stage}/handler.ts`)) as { handler: (e: unknown) => Promise<unknown> };
    const started = performance.now();
    const output = await handler(m.input);
    return { seconds: (performance.now() - started) / 1000, peakRssMb: rss(), inputBytes: jsonBytes(m.input), outputBytes: jsonBytes(output), inputShape: jsonShape(m.input), outputShape: jsonShape(output), output };
  }
  if (m.stage === 'shard') {
    const { handler } = await import('../lambdas/shard/handler.ts');
    const plan = JSON.parse(Buffer.from(await openStore(`s3://${m.bucket}/`, makeS3Client()).get(m.planKey)).toString('utf8')) as ShardRequest[];
    // One warm Lambda's sequence of items: the slowest item is what its timeout must cover.
    let slowest = 0;
    let inputBytes = 0;
    let outputBytes = 0;
    let inputShape = 0;
    let outputShape = 0;
    for (const item of plan) {
      const started = performance.now();
      const out = await handler(item);
      slowest = Math.max(slowest, (performance.now() - started) / 1000);
      inputBytes = Math.max(inputBytes, jsonBytes(item));
      outputBytes = Math.max(outputBytes, jsonBytes(out));
      inputShape = Math.max(inputShape, jsonShape({ ...item, runId: 'r', dataset: 'd' }));
      outputShape = Math.max(outputShape, jsonShape(out));
    }
    return { seconds: slowest, peakRssMb: rss(), inputBytes, outputBytes, inputShape, outputShape, invocations: plan.length };
  }
  if (m.stage !== 'worker') throw new Error(`unknown stage ${JSON.stringify(m)}`);
  const { indexShards } = await import('../worker/data/shard-stream.ts');
  const { evaluateSplit } = await import('../worker/train/evaluate.ts');
  const store = openStore(`s3://${m.bucket}/${shardsPrefix(m.runId)}`, makeS3Client());
  const index = await indexShards(store);
  const indexed = { name: 'index', seconds: (performance.now() - t0) / 1000, peakRssMb: rss() };
  const started = performance.now();
  const metrics = await evaluateSplit(hashEncoder, store, index, 'val');
  const evaluated = { name: 'evaluate', seconds: (performance.now() - started) / 1000, peakRssMb: rss() };
  return { seconds: indexed.seconds + evaluated.seconds, peakRssMb: rss(), inputBytes: 0, outputBytes: jsonBytes(metrics), inputShape: 0, outputShape: 0, output: metrics, parts: [indexed, evaluated] };
}

/** ViT-B-32's embedding width: the ranking's cost grows with it. */
const DIM = 512;
/**
 * Embeddings without a model: a fixed random projection of the inputs. The evaluation's cost is in ranking
 * N x M similarities, which this keeps, not in the encoders, which the GPU benchmarks measure.
 */
const hashEncoder = {
  async encodeImages(chw: Float32Array, n: number): Promise<Float32Array> {
    return project(chw, n);
  },
  async encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array> {
    return project(Float32Array.from(tokens, (t) => Math.sin(t)), n);
  },
};

function project(x: Float32Array, n: number): Float32Array {
  const per = x.length / n;
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < per; k += 7) out[i * DIM + (k % DIM)]! += x[i * per + k]! * (((k * 2654435761) >>> 0) / 2 ** 32 - 0.5);
    let norm = 0;
    for (let d = 0; d < DIM; d++) norm += out[i * DIM + d]! ** 2;
    for (let d = 0; d < DIM; d++) out[i * DIM + d]! /= Math.sqrt(norm) || 1;
  }
  return out;
}

serveParent(serve);
