import { readFile } from 'node:fs/promises';
import type { ShardRequest } from '../core/dataset/types.ts';
import { preprocessImage } from '../core/preprocess/index.ts';
import { serveParent } from './child-process.ts';

/**
 * The process bench-shard forks to run the Shard handler with the Lambda's environment (DECODER_ENV), so its CPU
 * time is the handler's alone: the S3 server and the baseline run in processes of their own.
 */
export type RunnerRequest = { pass: ShardRequest[] } | { preprocess: string[]; size: number };
export interface RunnerReply {
  images: number;
  seconds: number;
  cpuSeconds: number;
  peakRssMb: number;
}

// The handler's CloudWatch metrics and logs would print to stdout, whose last line is bench-shard's result.
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
const { handler } = await import('../lambdas/shard/handler.ts');

async function timed(work: () => Promise<number>): Promise<RunnerReply> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const images = await work();
  const cpu = process.cpuUsage(cpu0);
  return {
    images,
    seconds: (performance.now() - t0) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

async function serve(m: RunnerRequest): Promise<RunnerReply> {
  if ('pass' in m) {
    return timed(async () => {
      let images = 0;
      for (const item of m.pass) images += (await handler(item)).images;
      return images;
    });
  }
  // Decode and resample alone, from files read beforehand: no S3 requests, tokenizing or shard encoding.
  const local = await Promise.all(m.preprocess.map((p) => readFile(p)));
  return timed(async () => {
    for (const bytes of local) await preprocessImage(bytes, { size: m.size });
    return local.length;
  });
}

serveParent(serve);
