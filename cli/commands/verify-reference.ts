import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { STAGES, type StageResult } from '../../worker/verify/reference.ts';
import { verifyReference } from '../../worker/verify/verify.ts';
import { UserError, type Command } from '../command.ts';

const USAGE = `verify-reference <dir> [--json] [--only ${STAGES.map((s) => s.name).join(',')}]`;

const fmt = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

function line(r: StageResult): string {
  const verdict = r.skipped ? 'skip' : r.ok ? 'ok' : 'FAIL';
  const numbers = r.skipped ? ''.padEnd(22) : `${fmt(r.worst).padStart(9)}  <= ${fmt(r.tolerance).padStart(9)}`;
  return `${r.stage.padEnd(28)} ${numbers}  ${verdict.padEnd(4)}  ${r.detail ?? ''}`.trimEnd();
}

const command: Command = {
  summary: 'check tokenizer, preprocessing, forward, loss, gradients and AdamW steps against an open_clip reference folder',
  async run(argv) {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: { json: { type: 'boolean' }, only: { type: 'string' } }, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UserError(`${(e as Error).message}\nusage: ${USAGE}`);
    }
    const [dir, ...extra] = parsed.positionals;
    if (!dir || extra.length) throw new UserError(`usage: ${USAGE}`);
    if (!existsSync(dir)) throw new UserError(`${dir}: no such folder`);
    const only = parsed.values.only?.split(',').map((s) => s.trim());
    const unknown = only?.filter((n) => !STAGES.some((s) => s.name === n));
    if (unknown?.length) throw new UserError(`--only: unknown stage(s) ${unknown.join(', ')}\nusage: ${USAGE}`);
    const stages = only ? STAGES.filter((s) => only.includes(s.name)) : STAGES;
    let results: StageResult[];
    try {
      results = await verifyReference(dir, (r) => console.log(line(r)), stages, (ref) => {
        console.log(`model ${ref.modelFile} (${ref.params.size} tensors), ${ref.n} image/caption pairs`);
        console.log(`${'stage'.padEnd(28)} ${'worst'.padStart(9)}     ${'tolerance'.padStart(9)}  verdict`);
      });
    } catch (e) {
      throw new UserError((e as Error).message);
    }
    const failed = results.filter((r) => !r.ok);
    console.log(failed.length ? `${failed.length} stage(s) beyond tolerance: ${failed.map((r) => r.stage).join(', ')}` : 'all stages within tolerance');
    if (parsed.values.json) {
      const summary = Object.fromEntries(
        results.map((r) => [r.stage, { worst: Number.isFinite(r.worst) ? r.worst : String(r.worst), tolerance: r.tolerance, ok: r.ok, ...(r.skipped ? { skipped: true } : {}) }]),
      );
      console.log(JSON.stringify(summary));
    }
    return failed.length ? 1 : 0;
  },
};

export default command;
