import { resourceUsage } from 'node:process';
import type { StepInput } from '../../worker/clip/api.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { createTrainer } from '../../worker/clip/trainer.ts';
import { RUNS_LOOP } from '../../worker/engine/options.ts';
import { initParams } from '../../worker/models/init.ts';
import { randomBatch } from '../../worker/verify/random-batch.ts';
import { Rng } from '../../worker/data/rng.ts';
import { defineCommand, integer, option, toggle, UserError } from '../command.ts';
import { archConfig, chooseEp, FLAGS } from '../flags.ts';
import { median } from '../stats.ts';

/** Random pixels (roughly normalised) and token rows shaped like captions: SOT, random ids, EOT, padding. */
function randomStep(rng: Rng, config: ClipModelConfig, batch: number, accumulate: number): StepInput {
  return { micro: Array.from({ length: accumulate }, () => randomBatch(rng, config, batch)), lr: 1e-5 };
}

/** A provider that cannot load is the user's choice of --ep, not a bug: one line, no stack. */
async function providerErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (/execution provider/.test((e as Error).message)) throw new UserError((e as Error).message);
    throw e;
  }
}

export default defineCommand({
  name: 'bench-train',
  summary: 'time training steps of a model config on random weights and data; last line is JSON',
  flags: {
    arch: FLAGS.archRequired,
    'batch-size': FLAGS.batchSize(8),
    steps: option('N', 'timed steps', integer(1).default(5)),
    accumulate: option('N', 'micro-batches per optimizer step', integer(1).default(1)),
    // Parameters and AdamW moments cross the host boundary once per K steps.
    'steps-per-run': option('K', 'optimizer steps per session run (default 5, 1 where the provider runs no Loop)', integer(1).optional()),
    threads: FLAGS.threads,
    ep: FLAGS.ep,
    'host-state': toggle("the trainer's behaviour before resident state: parameters and moments cross the host every run"),
  },
  async run(f) {
    const { 'batch-size': batch, steps, accumulate, threads } = f;
    const ep = (await chooseEp(f.ep)) ?? 'cpu';
    const k = f['steps-per-run'] ?? (RUNS_LOOP[ep] ? 5 : 1);
    const config = archConfig(f.arch);
    const rng = Rng.fromSeed(1);
    let t = performance.now();
    const init = initParams(config, 0);
    const trainer = await createTrainer({
      config,
      init,
      batchSize: batch,
      accumulate,
      stepsPerRun: k,
      threads,
      ep,
      ...(f['host-state'] ? { residentState: false } : {}),
      hyper: { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, gradClip: 1 },
    });
    try {
      // The first run builds the graph and opens the session; it is reported apart from the timed runs.
      const warm = await providerErrors(() => trainer.train(Array.from({ length: k }, () => randomStep(rng, config, batch, accumulate))));
      console.log(`arch ${f.arch}, ep ${ep}, ${threads ?? 'default'} thread(s), batch ${batch} x ${accumulate}, ${k} step(s) per run: setup + first run ${(performance.now() - t).toFixed(0)} ms, loss ${warm[0].loss.toFixed(4)}`);
      // CPU time of the whole process (all session threads): on a shared machine it varies less than wall time.
      const perStep: number[] = [];
      const cpuPerStep: number[] = [];
      for (let run = 0; run < Math.ceil(steps / k); run++) {
        const inputs = Array.from({ length: k }, () => randomStep(rng, config, batch, accumulate));
        t = performance.now();
        const cpu0 = process.cpuUsage();
        const r = await trainer.train(inputs);
        const ms = (performance.now() - t) / k;
        const cpu = process.cpuUsage(cpu0);
        const cpuMs = (cpu.user + cpu.system) / 1000 / k;
        perStep.push(ms);
        cpuPerStep.push(cpuMs);
        console.log(`run ${run + 1}: ${ms.toFixed(0)} ms/step (${cpuMs.toFixed(0)} ms CPU/step), loss ${r[r.length - 1].loss.toFixed(4)}, grad norm ${r[r.length - 1].gradNorm.toFixed(3)}`);
      }
      const stepMs = median(perStep);
      console.log(
        JSON.stringify({
          arch: f.arch,
          batch_size: batch,
          accumulate,
          steps_per_run: k,
          threads: threads ?? null,
          ep,
          samples_per_s: Number(((batch * accumulate * 1000) / stepMs).toFixed(3)),
          step_ms_median: Number(stepMs.toFixed(1)),
          cpu_ms_per_step_median: Number(median(cpuPerStep).toFixed(1)),
          peak_rss_mb: Math.round(resourceUsage().maxRSS / 1024),
        }),
      );
      return 0;
    } finally {
      await trainer.close();
    }
  },
});
