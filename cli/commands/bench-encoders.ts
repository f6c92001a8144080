import { availableParallelism } from 'node:os';
import { resourceUsage } from 'node:process';
import { exportImageEncoder, exportTextEncoder } from '../../worker/clip/export.ts';
import { openSession, type EngineSession, type HostArray } from '../../worker/engine/session.ts';
import { initParams } from '../../worker/models/init.ts';
import { randomBatch } from '../../worker/verify/random-batch.ts';
import { Rng } from '../../worker/data/rng.ts';
import { UserError, type Command } from '../command.ts';
import { epFlag, modelConfigFlag, numberFlag, parseFlags } from '../flags.ts';
import { median } from '../stats.ts';

const USAGE = 'bench-encoders --arch <config name|path> [--batch N] [--runs N] [--threads N] [--ep cpu|cuda|webgpu]';

/**
 * The published encoders (dynamic batch) against the same tower exported for exactly N rows, which is the
 * fastest the graph can be for that N: the gap is what serving any batch size costs.
 */
const command: Command = {
  summary: 'time the published image/text encoders (any batch size) against a fixed-batch export; last line is JSON',
  async run(argv) {
    const f = parseFlags(
      argv,
      { arch: { type: 'string' }, batch: { type: 'string' }, runs: { type: 'string' }, threads: { type: 'string' }, ep: { type: 'string' } },
      USAGE,
    );
    if (!f.arch) throw new UserError(`--arch is required\nusage: ${USAGE}`);
    const n = numberFlag('batch', f.batch, true) ?? 16;
    const runs = numberFlag('runs', f.runs, true) ?? 5;
    // Every core, as the trainer does: onnxruntime's default pool ran these graphs markedly slower here.
    const threads = numberFlag('threads', f.threads, true) ?? availableParallelism();
    if (n < 1 || runs < 1 || threads < 1) throw new UserError('--batch, --runs and --threads must be >= 1');
    const ep = (await epFlag(f.ep)) ?? 'cpu';
    const config = modelConfigFlag(f.arch);
    const params = initParams(config, 0);
    const batch = randomBatch(Rng.fromSeed(1), config, n);
    const s = config.vision_cfg.image_size;
    const feeds: Record<'image' | 'text', Record<string, HostArray>> = {
      image: { image: { data: batch.images, dims: [n, 3, s, s] } },
      text: { text: { data: BigInt64Array.from(batch.tokens, BigInt), dims: [n, config.text_cfg.context_length] } },
    };
    const result: Record<string, number | string> = { arch: f.arch, batch: n, ep, threads };
    for (const tower of ['image', 'text'] as const) {
      const exportTower = tower === 'image' ? exportImageEncoder : exportTextEncoder;
      const sessions: Record<'fixed' | 'dynamic', EngineSession> = {
        fixed: await openSession(exportTower(config, params, { batch: n }), { ep, threads }),
        dynamic: await openSession(exportTower(config, params), { ep, threads }),
      };
      try {
        const ms: Record<'fixed' | 'dynamic', number[]> = { fixed: [], dynamic: [] };
        for (const kind of ['fixed', 'dynamic'] as const) await sessions[kind].run(feeds[tower]);
        // Alternated, so both see the same machine load.
        for (let r = 0; r < runs; r++) {
          for (const kind of ['fixed', 'dynamic'] as const) {
            const t = performance.now();
            await sessions[kind].run(feeds[tower]);
            ms[kind].push(performance.now() - t);
          }
        }
        for (const kind of ['fixed', 'dynamic'] as const) result[`${tower}_${kind}_ms`] = Number(median(ms[kind]).toFixed(1));
        console.log(`${tower}: ${n} rows in ${result[`${tower}_dynamic_ms`]} ms (published, any batch) vs ${result[`${tower}_fixed_ms`]} ms (exported for exactly ${n})`);
      } finally {
        await Promise.all(Object.values(sessions).map((x) => x.close()));
      }
    }
    result.peak_rss_mb = Math.round(resourceUsage().maxRSS / 1024);
    console.log(JSON.stringify(result));
    return 0;
  },
};
export default command;
