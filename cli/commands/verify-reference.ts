import { existsSync } from 'node:fs';
import { z } from 'zod';
import { STAGES, type StageResult } from '../../worker/verify/reference.ts';
import { verifyReference } from '../../worker/verify/verify.ts';
import { defineCommand, option, toggle, UserError } from '../command.ts';

const fmt = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

function line(r: StageResult): string {
  const verdict = r.skipped ? 'skip' : r.ok ? 'ok' : 'FAIL';
  const numbers = r.skipped ? ''.padEnd(22) : `${fmt(r.worst).padStart(9)}  <= ${fmt(r.tolerance).padStart(9)}`;
  return `${r.stage.padEnd(28)} ${numbers}  ${verdict.padEnd(4)}  ${r.detail ?? ''}`.trimEnd();
}

const stageNames = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()))
  .refine((names) => names.every((n) => STAGES.some((s) => s.name === n)), `must list stages among ${STAGES.map((s) => s.name).join(', ')}`);

export default defineCommand({
  name: 'verify-reference',
  summary: 'check tokenizer, preprocessing, forward, loss, gradients and AdamW steps against an open_clip reference folder',
  positional: { value: '<dir>', help: 'an open_clip reference folder (model, inputs and PyTorch outputs)' },
  flags: {
    only: option('<stage,...>', 'run only these stages', stageNames.optional()),
    json: toggle('print a JSON summary of the stages last'),
  },
  async run(f, dir) {
    if (!existsSync(dir!)) throw new UserError(`${dir}: no such folder`);
    const stages = f.only ? STAGES.filter((s) => f.only!.includes(s.name)) : STAGES;
    let results: StageResult[];
    try {
      results = await verifyReference(dir!, (r) => console.log(line(r)), stages, (ref) => {
        console.log(`model ${ref.modelFile} (${ref.params.size} tensors), ${ref.n} image/caption pairs`);
        console.log(`${'stage'.padEnd(28)} ${'worst'.padStart(9)}     ${'tolerance'.padStart(9)}  verdict`);
      });
    } catch (e) {
      throw new UserError((e as Error).message);
    }
    const failed = results.filter((r) => !r.ok);
    console.log(failed.length ? `${failed.length} stage(s) beyond tolerance: ${failed.map((r) => r.stage).join(', ')}` : 'all stages within tolerance');
    if (f.json) {
      const summary = Object.fromEntries(
        results.map((r) => [r.stage, { worst: Number.isFinite(r.worst) ? r.worst : String(r.worst), tolerance: r.tolerance, ok: r.ok, ...(r.skipped ? { skipped: true } : {}) }]),
      );
      console.log(JSON.stringify(summary));
    }
    return failed.length ? 1 : 0;
  },
});
