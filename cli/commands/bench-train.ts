import { resourceUsage } from 'node:process';
import type { StepInput } from '../../worker/clip/api.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { createTrainer } from '../../worker/clip/trainer.ts';
import { initParams } from '../../worker/models/init.ts';
import { randomBatch } from '../../worker/verify/random-batch.ts';
import { Rng } from '../../worker/data/rng.ts';
import { UserError, type Command } from '../command.ts';
import { epFlag, modelConfigFlag, numberFlag, parseFlags } from '../flags.ts';
import { median } from '../stats.ts';

const USAGE =
  'bench-train --arch <config name|path> [--batch-size N] [--steps N] [--accumulate N] [--steps-per-run K] [--threads N] [--ep cpu|cuda|webgpu] [--host-state]';

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

const DEFAULT_STEPS_PER_RUN = 5;

const command: Command = {
  summary: 'time training steps of a model config on random weights and data; last line is JSON',
  async run(argv) {
    const f = parseFlags(
      argv,
      {
        arch: { type: 'string' },
        'batch-size': { type: 'string' },
        steps: { type: 'string' },
        accumulate: { type: 'string' },
        'steps-per-run': { type: 'string' },
        threads: { type: 'string' },
        ep: { type: 'string' },
        // The trainer's behaviour before resident state: parameters and moments cross the host every run.
        'host-state': { type: 'boolean' },
      },
      USAGE,
    );
    if (!f.arch) throw new UserError(`--arch is required\nusage: ${USAGE}`);
    const batch = numberFlag('batch-size', f['batch-size'], true) ?? 8;
    const steps = numberFlag('steps', f.steps, true) ?? 5;
    const accumulate = numberFlag('accumulate', f.accumulate, true) ?? 1;
    // K steps per run by default: parameters and AdamW moments then cross the host boundary once per K steps.
    const k = numberFlag('steps-per-run', f['steps-per-run'], true) ?? DEFAULT_STEPS_PER_RUN;
    const threads = numberFlag('threads', f.threads, true);
    const ep = (await epFlag(f.ep)) ?? 'cpu';
    if (batch < 1 || steps < 1 || accumulate < 1 || k < 1 || (threads !== undefined && threads < 1)) {
      throw new UserError('--batch-size, --steps, --accumulate, --steps-per-run and --threads must be >= 1');
    }
    const config = modelConfigFlag(f.arch);
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
};

export default command;
