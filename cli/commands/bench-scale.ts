import { PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { mapLimit } from '../../core/dataset/map-limit.ts';
import { captionsKey, datasetPrefix, TRAIN_OPTIONS_FILE } from '../../core/s3-layout.ts';
import { MAX_STATE_PAYLOAD_BYTES } from '../../cdk/local/aws-rules.ts';
import { synthesizeTemplate } from '../../cdk/local/synth.ts';
import type { ScaleRequest, StageReply } from '../bench-scale-runner.ts';
import { forkModule } from '../child-process.ts';
import { defineCommand, integer, option } from '../command.ts';
import { jsonBytes, jsonShape } from '../payload-size.ts';
import { startLocalS3, type LocalS3 } from '../local-s3.ts';

/** Synchronous Lambda invocation payloads, request and response (Lambda quotas). */
const MAX_LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 32;

interface Limit {
  limit_s: number;
  limit_mb: number;
}

interface Stage extends Limit {
  name: string;
  seconds: number;
  peak_rss_mb: number;
}

interface Measured {
  rows: number;
  stages: Stage[];
  maxState: number;
  maxLambda: number;
  /** The same payloads with every number written as one digit: what grows with the dataset beyond its counts' digits. */
  shape: number;
}

/** What each stage may use on AWS, read from the synthesized template: the Lambdas' memory and timeout, the Batch job's. */
function deployedLimits(): Record<string, Limit> {
  const resources = Object.values(synthesizeTemplate('aws').Resources ?? {}) as { Type: string; Properties: Record<string, any> }[];
  const fn = (service: string): Limit => {
    const f = resources.find((r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME === `rsclip-${service}`);
    if (!f) throw new Error(`no rsclip-${service} function in the template`);
    return { limit_s: f.Properties.Timeout, limit_mb: f.Properties.MemorySize };
  };
  const job = resources.find((r) => r.Type === 'AWS::Batch::JobDefinition')!.Properties;
  const memory = (job.ContainerProperties.ResourceRequirements as { Type: string; Value: string }[]).find((r) => r.Type === 'MEMORY')!;
  const worker = { limit_s: job.Timeout.AttemptDurationSeconds as number, limit_mb: Number(memory.Value) };
  return { validate: fn('validate'), shard: fn('shard'), collect: fn('collect'), index: worker, evaluate: worker };
}

/** `images` tiny PNGs (the decode cost is the Shard benchmark's business) and `rows` captions, grouped per image as datasets ship them. */
async function generate(s3: LocalS3, dataset: string, rows: number, perImage: number): Promise<void> {
  const images = Math.ceil(rows / perImage);
  const png = await sharp(Buffer.alloc(12 * 12 * 3, 90), { raw: { width: 12, height: 12, channels: 3 } }).png().toBuffer();
  const name = (i: number): string => `tiles/${String(i % 1000).padStart(3, '0')}/tile-${i}.png`;
  await mapLimit(Array.from({ length: images }, (_, i) => i), UPLOAD_CONCURRENCY, (i) =>
    s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${datasetPrefix(dataset)}/${name(i)}`, Body: png })),
  );
  const lines = ['filename,caption,label'];
  for (let r = 0; r < rows; r++) {
    const i = Math.floor(r / perImage);
    lines.push(`${name(i)},"a satellite tile, number ${i}, seen ${r % perImage} times",class${i % 30}`);
  }
  await s3.store.put(`${datasetPrefix(dataset)}/${TRAIN_OPTIONS_FILE}`, '{"model": "ViT-tiny"}');
  // Multipart (the store's put): one PUT of a large CSV is over the local server's body limit.
  await s3.store.put(captionsKey(dataset), `${lines.join('\n')}\n`);
}

/** Each stage in a fresh process, as Step Functions would run it, against the local S3 server. */
async function measure(s3: LocalS3, rows: number, perImage: number, limits: Record<string, Limit>, log: (s: string) => void): Promise<Measured> {
  const dataset = `scale-${rows}`;
  const runId = `scale-${rows}-0123456789ab`;
  await generate(s3, dataset, rows, perImage);
  const stage = async (request: ScaleRequest): Promise<StageReply> => {
    const child = forkModule(new URL('../bench-scale-runner.ts', import.meta.url));
    try {
      await child.next();
      return await child.request<StageReply>(request);
    } finally {
      await child.stop();
    }
  };
  const validate = await stage({ stage: 'validate', input: { bucket: s3.bucket, key: captionsKey(dataset), runId } });
  const planned = validate.output as { shards: number; planKey: string; options: unknown };
  log(`  ${rows} rows: validate ${validate.seconds.toFixed(1)} s, ${planned.shards} shards`);
  const shard = await stage({ stage: 'shard', bucket: s3.bucket, planKey: planned.planKey });
  log(`  ${rows} rows: shard items, slowest ${shard.seconds.toFixed(2)} s`);
  const collectInput = { bucket: s3.bucket, runId, dataset, shards: planned.shards };
  const collect = await stage({ stage: 'collect', input: collectInput });
  const worker = await stage({ stage: 'worker', bucket: s3.bucket, runId });
  log(`  ${rows} rows: collect ${collect.seconds.toFixed(1)} s, index + evaluate ${worker.seconds.toFixed(1)} s`);
  // The largest state: Validate's result, with Collect's and the run spec added by later states.
  const state = { ...(validate.output as object), collected: collect.output, runSpec: { runId: 'r', bucket: s3.bucket, dataset: 'd', options: planned.options } };
  const row = (name: string, r: { seconds: number; peakRssMb: number }): Stage => ({ name, seconds: round(r.seconds), peak_rss_mb: r.peakRssMb, ...limits[name]! });
  return {
    rows,
    stages: [row('validate', validate), row('shard', shard), row('collect', collect), ...worker.parts!.map((p) => row(p.name, p))],
    maxState: Math.max(jsonBytes(state), shard.inputBytes, shard.outputBytes),
    maxLambda: Math.max(validate.inputBytes, validate.outputBytes, shard.inputBytes, shard.outputBytes, collect.inputBytes, collect.outputBytes),
    shape: jsonShape(state) + validate.outputShape + collect.outputShape + shard.inputShape + shard.outputShape,
  };
}

const round = (x: number): number => Number(x.toFixed(3));

/**
 * Extrapolates each stage from two sizes measured in the same run: per-row cost from the difference (never below
 * what was measured), the evaluation's time quadratically (images x captions). A Shard item's work does not grow
 * with the dataset (items do), so it is projected as measured.
 */
function project(small: Measured, large: Measured, rows: number): Stage[] {
  return large.stages.map((l, i) => {
    const s = small.stages[i]!;
    if (l.name === 'shard') return l;
    const slope = (a: number, b: number): number => Math.max(0, (b - a) / (large.rows - small.rows));
    const quadratic = Math.max(0, (l.seconds - s.seconds) / (large.rows ** 2 - small.rows ** 2));
    const seconds = l.name === 'evaluate' ? l.seconds + quadratic * (rows ** 2 - large.rows ** 2) : l.seconds + slope(s.seconds, l.seconds) * (rows - large.rows);
    return { ...l, seconds: round(seconds), peak_rss_mb: Math.round(l.peak_rss_mb + slope(s.peak_rss_mb, l.peak_rss_mb) * (rows - large.rows)) };
  });
}

export default defineCommand({
  name: 'bench-scale',
  summary: 'measure Validate, Shard, Collect, the worker\'s indexing and one evaluation at N rows against the local S3 server, and project them to 5M rows; last line is JSON',
  flags: {
    rows: option('N', 'caption rows of the measured dataset (a tenth of them, at least 100, is the baseline)', integer(100)),
    'captions-per-image': option('N', 'captions per image', integer(1).default(5)),
    project: option('N', 'rows to project the measurements to', integer(1).default(5_000_000)),
  },
  async run(f) {
    const { rows, 'captions-per-image': perImage, project: target } = f;
    const limits = deployedLimits();
    // The server in a process of its own: its memory and CPU are not any stage's.
    const s3 = await startLocalS3('rsclip-scale', { separateProcess: true });
    try {
      const log = (s: string): void => console.log(s);
      const baseline = Math.max(100, Math.round(rows / 10));
      log(`baseline at ${baseline} rows, then ${rows} rows (${perImage} captions per image)`);
      const small = await measure(s3, baseline, perImage, limits, log);
      const large = await measure(s3, rows, perImage, limits, log);
      const projected = project(small, large, target);
      // Counts gain digits; nothing else in a payload may grow with the dataset.
      const payloadsGrew = large.shape > small.shape;
      const withinLimits =
        projected.every((s) => s.seconds <= s.limit_s && s.peak_rss_mb <= s.limit_mb) &&
        large.maxState <= MAX_STATE_PAYLOAD_BYTES &&
        large.maxLambda <= MAX_LAMBDA_PAYLOAD_BYTES &&
        !payloadsGrew;
      for (const s of large.stages) log(`${s.name.padEnd(9)} ${String(s.seconds).padStart(8)} s ${String(s.peak_rss_mb).padStart(6)} MB   (limit ${s.limit_s} s, ${s.limit_mb} MB)`);
      log(`largest state ${large.maxState} B (${small.maxState} B at ${small.rows} rows), largest Lambda payload ${large.maxLambda} B (${small.maxLambda} B)${payloadsGrew ? '; PAYLOADS GREW' : ''}`);
      console.log(
        JSON.stringify({
          rows,
          stages: large.stages,
          max_state_payload_bytes: large.maxState,
          max_lambda_payload_bytes: large.maxLambda,
          baseline: { rows: small.rows, stages: small.stages, max_state_payload_bytes: small.maxState, max_lambda_payload_bytes: small.maxLambda },
          payloads_grew: payloadsGrew,
          projection: { rows: target, stages: projected, within_limits: withinLimits },
        }),
      );
      return 0;
    } finally {
      await s3.stop();
    }
  },
});
