import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { ShardRequest } from '../../core/dataset/types.ts';
import { validateCaptions } from '../../core/dataset/validate.ts';
import { DECODER_ENV } from '../../core/preprocess/decoder-env.ts';
import type { RunnerReply, RunnerRequest } from '../bench-shard-runner.ts';
import { forkModule } from '../child-process.ts';
import { CAPTIONS_FILE, datasetPrefix, planPartsPrefix } from '../../core/s3-layout.ts';
import { z } from 'zod';
import { decimal, defineCommand, integer, option, toggle, UserError } from '../command.ts';
import { listFolder, startLocalS3, uploadFolder, type LocalS3 } from '../local-s3.ts';
import { median } from '../stats.ts';

const IMAGE_FILE = /\.(jpe?g|png|webp|tiff?|gif)$/i;

/**
 * The seed pipeline's workload: a mix of 600x600 and 256x256 JPEGs (quality 90) with smooth content and some
 * texture, so the decoder does realistic work.
 */
async function generateJpegs(dir: string, n: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const s = i % 2 === 0 ? 600 : 256;
    const px = new Uint8Array(s * s * 3);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const o = (y * s + x) * 3;
        px[o] = (128 + 100 * Math.sin((x + i * 17) / 23) * Math.cos(y / 31)) & 255;
        px[o + 1] = (x * 255) / s + ((x * y + i) % 13);
        px[o + 2] = (y * 255) / s + (((x ^ y) + i) % 9);
      }
    }
    const jpg = await sharp(px, { raw: { width: s, height: s, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    await writeFile(join(dir, `gen-${String(i).padStart(5, '0')}-${s}.jpg`), jpg);
  }
}

const PIL_SCRIPT = fileURLToPath(new URL('../../scripts/baselines/pil_pipeline.py', import.meta.url));
/** Interpreters tried for the baseline when --python is not given; the first that has Pillow and numpy is used. */
const PYTHONS = ['python3', '/usr/bin/python3'];

interface Pass {
  images: number;
  seconds: number;
  cpuSeconds: number;
}

interface BaselinePass extends Pass {
  pillow: string;
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));
const perCpu = (passes: Pass[]): number => round(median(passes.map((p) => p.images / p.cpuSeconds)));

async function findPython(explicit: string | undefined): Promise<{ exe?: string; why: string }> {
  const tried: string[] = [];
  for (const exe of explicit ? [explicit] : PYTHONS) {
    try {
      await promisify(execFile)(exe, ['-c', 'import PIL, numpy']);
      return { exe, why: '' };
    } catch {
      tried.push(exe);
    }
  }
  return { why: `no Python with Pillow and numpy (tried ${tried.join(', ')})` };
}

/** One pass of the Pillow pipeline in a fresh single-threaded Python process. */
async function pillowPass(python: string, paths: string[], size: number, env: NodeJS.ProcessEnv): Promise<BaselinePass> {
  const child = execFile(python, [PIL_SCRIPT, String(size)], { env: { ...env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' } });
  child.stdin!.end(paths.join('\n'));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`the Pillow baseline (${python} ${PIL_SCRIPT}) exited with code ${code}`);
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { pillow: string; images: number; seconds: number; cpu_seconds: number };
  return { pillow: r.pillow, images: r.images, seconds: r.seconds, cpuSeconds: r.cpu_seconds };
}

export default defineCommand({
  name: 'bench-shard',
  summary: 'time the Shard Lambda code path on a folder of images through a loopback S3 server against the Pillow pipeline; last line is JSON',
  flags: {
    images: option('<dir>', 'a folder of images (JPEG, PNG, TIFF)', z.string()),
    size: option('N', 'image side in pixels', integer(1).default(224)),
    generate: option('N', 'first write N synthetic JPEGs into --images', integer(1).optional()),
    passes: option('N', 'timed passes, alternated with the baseline', integer(1).default(3)),
    python: option('<exe>', 'the Python with Pillow for the baseline (default: found on PATH)', z.string().optional()),
    's3-latency-ms': option('N', 'latency the loopback S3 server adds to each request', decimal().pipe(z.number().min(0, 'must be >= 0')).default(0)),
    's3-checksums': toggle('whole-object GETs carry the CRC64NVME checksum real S3 returns, which the SDK then checks'),
  },
  async run(f) {
    const { size, passes, generate } = f;
    if (generate !== undefined) await generateJpegs(f.images, generate);
    const files = (await listFolder(f.images).catch(() => [])).filter((k) => IMAGE_FILE.test(k));
    if (files.length === 0) throw new UserError(`no images in ${f.images} (use --generate N to make some)`);
    const paths = files.map((k) => resolve(f.images, ...k.split('/')));
    const python = await findPython(f.python);
    if (!python.exe) console.log(`no baseline: ${python.why}`);

    // Three processes, each timed by its own CPU clock: the S3 server, the handler (with the Lambda's
    // environment), and the Pillow baseline.
    const latencyMs = f['s3-latency-ms'];
    const checksums = f['s3-checksums'];
    const s3: LocalS3 = await startLocalS3('rsclip-bench', { separateProcess: true, latencyMs, checksums });
    const runner = forkModule(new URL('../bench-shard-runner.ts', import.meta.url), { ...process.env, ...DECODER_ENV });
    try {
      const dataset = 'bench';
      await uploadFolder(s3, datasetPrefix(dataset), f.images);
      const csv = ['filename,caption,split', ...files.map((filename) => `"${filename.replace(/"/g, '""')}",an image named ${filename.replace(/[",]/g, ' ')},train`)];
      await s3.store.put(`${datasetPrefix(dataset)}/${CAPTIONS_FILE}`, `${csv.join('\n')}\n`);
      await runner.next();
      // The plan as Validate writes it (rows spilled under each run's plan/), outside the timed passes.
      const plan = async (runId: string): Promise<ShardRequest[]> => {
        const planned = await validateCaptions(s3.store.child(datasetPrefix(dataset)), dataset, { store: s3.store, prefix: planPartsPrefix(runId), bucket: s3.bucket, runId });
        if (!planned.plan) throw new UserError(`bench-shard: the generated dataset is invalid: ${planned.report.summary}`);
        return planned.plan.map((item) => ({ ...item, imageSize: size }));
      };
      const plans = await Promise.all(Array.from({ length: passes }, (_, p) => plan(`bench-${p}`)));
      const pass = (p: number): Promise<RunnerReply> => runner.request<RunnerReply>({ pass: plans[p]! } satisfies RunnerRequest);
      // One shard first: loading the tokenizer's vocabulary and compiling the kernels is a cold-start cost, not
      // per-image throughput.
      await runner.request({ pass: (await plan('bench-warmup')).slice(0, 1) } satisfies RunnerRequest);

      const ours: RunnerReply[] = [];
      const seed: BaselinePass[] = [];
      const sameMalloc: BaselinePass[] = [];
      let serverCpu = 0;
      // Passes alternate with the baseline's so that both see the same machine load. The baseline runs as the
      // seed ran it (default allocator) and with the allocator setting our handler gets.
      for (let p = 0; p < passes; p++) {
        const server0 = await s3.serverCpuMicros();
        ours.push(await pass(p));
        serverCpu += (await s3.serverCpuMicros()) - server0;
        let line = `pass ${p + 1}: handler ${(ours[p]!.images / ours[p]!.cpuSeconds).toFixed(1)} images per CPU-second`;
        if (python.exe) {
          seed.push(await pillowPass(python.exe, paths, size, process.env));
          sameMalloc.push(await pillowPass(python.exe, paths, size, { ...process.env, ...DECODER_ENV }));
          line += `; Pillow ${(seed[p]!.images / seed[p]!.cpuSeconds).toFixed(1)}, with our allocator setting ${(sameMalloc[p]!.images / sameMalloc[p]!.cpuSeconds).toFixed(1)}`;
        }
        console.log(line);
      }
      const pre = await runner.request<RunnerReply>({ preprocess: paths, size } satisfies RunnerRequest);
      const images = ours[0]!.images;
      const handlerPerCpu = perCpu(ours);
      const baseline = python.exe
        ? { pipeline: 'PIL', pillow: seed[0]!.pillow, images_per_cpu_s: perCpu(seed), images_per_cpu_s_same_malloc: perCpu(sameMalloc) }
        : null;
      const result = {
        images,
        size,
        shards: plans[0]!.length,
        passes,
        seconds: round(median(ours.map((r) => r.seconds)), 3),
        images_per_s: round(median(ours.map((r) => r.images / r.seconds))),
        cpu_seconds: round(median(ours.map((r) => r.cpuSeconds)), 3),
        images_per_cpu_s: handlerPerCpu,
        server_cpu_seconds_per_pass: round(serverCpu / 1e6 / passes, 3),
        preprocess_images_per_cpu_s: perCpu([pre]),
        baseline,
        speedup_per_core: baseline ? round(handlerPerCpu / baseline.images_per_cpu_s, 2) : null,
        speedup_per_core_same_malloc: baseline ? round(handlerPerCpu / baseline.images_per_cpu_s_same_malloc, 2) : null,
        s3_latency_ms: latencyMs,
        s3_checksums: checksums,
        cores: availableParallelism(),
        peak_rss_mb: Math.max(...ours.map((r) => r.peakRssMb), pre.peakRssMb),
      };
      console.log(
        `${images} images: ${result.images_per_s} images/s wall, ${handlerPerCpu} per CPU-second in the handler (decode + resample alone: ${result.preprocess_images_per_cpu_s})` +
          (baseline ? `; Pillow ${baseline.images_per_cpu_s} (${baseline.images_per_cpu_s_same_malloc} with our allocator setting): ${result.speedup_per_core}x (${result.speedup_per_core_same_malloc}x) per core` : ''),
      );
      console.log(JSON.stringify(result));
      return 0;
    } finally {
      await runner.stop();
      await s3.stop();
    }
  },
});
