import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { planShards, DEFAULT_SHARD_SIZE, type DatasetRow, type ShardRequest } from '../../core/dataset.ts';
import { preprocessImage } from '../../core/preprocess.ts';
import { datasetPrefix } from '../../core/s3-layout.ts';
import { UserError, type Command } from '../command.ts';
import { listFolder, startLocalS3, uploadFolder } from '../local-s3.ts';
import { numberFlag, parseFlags } from '../flags.ts';

const USAGE = 'bench-shard --images <dir> [--size 224] [--generate N]';
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

const command: Command = {
  summary: 'time the Shard Lambda code path on a folder of images through a loopback S3 server; last line is JSON',
  async run(argv) {
    const f = parseFlags(argv, { images: { type: 'string' }, size: { type: 'string' }, generate: { type: 'string' } }, USAGE);
    if (!f.images) throw new UserError(`--images is required\nusage: ${USAGE}`);
    const size = numberFlag('size', f.size, true) ?? 224;
    const generate = numberFlag('generate', f.generate, true);
    if (generate !== undefined) await generateJpegs(f.images, generate);
    const files = (await listFolder(f.images).catch(() => [])).filter((k) => IMAGE_FILE.test(k));
    if (files.length === 0) throw new UserError(`no images in ${f.images} (use --generate N to make some)`);

    const s3 = await startLocalS3('rsclip-bench');
    try {
      const dataset = 'bench';
      await uploadFolder(s3, datasetPrefix(dataset), f.images);
      // The handler builds its S3 client when loaded, so load it once the loopback endpoint is set; its
      // CloudWatch metrics would print to stdout, whose last line is this command's result.
      process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
      const { handler } = await import('../../lambdas/shard/handler.ts');
      const rows: DatasetRow[] = files.map((filename, i) => ({ line: i + 2, filename, caption: `an image named ${filename}`, split: 'train' }));
      const plan: ShardRequest[] = planShards(rows, DEFAULT_SHARD_SIZE).map((r, shard) => ({
        bucket: s3.bucket,
        runId: 'bench',
        dataset,
        shard,
        imageSize: size,
        rows: r,
      }));
      // One small shard first: loading the tokenizer's vocabulary and compiling the kernels is a cold-start
      // cost, not per-image throughput.
      await handler({ ...plan[0]!, runId: 'bench-warmup', rows: plan[0]!.rows.slice(0, 2) });
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      let images = 0;
      for (const item of plan) images += (await handler(item)).images;
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      // The same images through preprocessImage alone, one at a time from local disk: what the decode and
      // resample cost without the S3 round trips (whose server runs in this process too).
      const local = await Promise.all(files.map((k) => readFile(join(f.images!, ...k.split('/')))));
      const cpu1 = process.cpuUsage();
      for (const bytes of local) await preprocessImage(bytes, { size });
      const preCpu = process.cpuUsage(cpu1);
      const result = {
        images,
        size,
        shards: plan.length,
        seconds: Number(seconds.toFixed(3)),
        images_per_s: Number((images / seconds).toFixed(1)),
        cpu_seconds: Number(cpuSeconds.toFixed(3)),
        images_per_cpu_s: Number((images / cpuSeconds).toFixed(1)),
        preprocess_images_per_cpu_s: Number((local.length / ((preCpu.user + preCpu.system) / 1e6)).toFixed(1)),
        cores: availableParallelism(),
        peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      };
      console.log(`${images} images in ${seconds.toFixed(2)} s: ${result.images_per_s} images/s wall, ${result.images_per_cpu_s} per CPU-second (includes the in-process S3 server)`);
      console.log(JSON.stringify(result));
      return 0;
    } finally {
      await s3.stop();
    }
  },
};
export default command;
