import { availableParallelism } from 'node:os';
import { resourceUsage } from 'node:process';
import { exportImageEncoder, exportTextEncoder } from '../../worker/clip/export.ts';
import { openSession, type EngineSession, type HostArray } from '../../worker/engine/session.ts';
import { initParams } from '../../worker/models/init.ts';
import { randomBatch } from '../../worker/verify/random-batch.ts';
import { Rng } from '../../worker/data/rng.ts';
import { defineCommand, integer, option } from '../command.ts';
import { archConfig, chooseEp, FLAGS } from '../flags.ts';
import { median } from '../stats.ts';

/**
 * The published encoders (dynamic batch) against the same tower exported for exactly N rows, which is the
 * fastest the graph can be for that N: the gap is what serving any batch size costs.
 */
export default defineCommand({
  name: 'bench-encoders',
  summary: 'time the published image/text encoders (any batch size) against a fixed-batch export; last line is JSON',
  flags: {
    arch: FLAGS.archRequired,
    'batch-size': FLAGS.batchSize(16),
    runs: option('N', 'timed runs of each encoder', integer(1).default(5)),
    threads: FLAGS.threads,
    ep: FLAGS.ep,
  },
  async run(f) {
    const n = f['batch-size'];
    const runs = f.runs;
    // Every core, as the trainer does: onnxruntime's default pool ran these graphs markedly slower here.
    const threads = f.threads ?? availableParallelism();
    const ep = (await chooseEp(f.ep)) ?? 'cpu';
    const config = archConfig(f.arch);
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
});
