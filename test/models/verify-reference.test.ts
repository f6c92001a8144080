import { mkdtempSync, readdirSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import command from '../../cli/commands/verify-reference.ts';
import { UserError } from '../../cli/command.ts';

const fixture = resolve('test/fixtures/open_clip-tiny');

/** A copy of the fixture folder (by symlink) whose tolerances.json demands more than float32 can give. */
function strictCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'verify-ref-'));
  for (const f of readdirSync(fixture)) if (f !== 'tolerances.json') symlinkSync(join(fixture, f), join(dir, f));
  const tol = JSON.parse(readFileSync(join(fixture, 'tolerances.json'), 'utf8'));
  writeFileSync(join(dir, 'tolerances.json'), JSON.stringify({ ...tol, forward: { abs: 1e-9 } }));
  return dir;
}

afterEach(() => vi.restoreAllMocks());

describe('rsclip verify-reference', () => {
  it('exits non-zero when a stage is beyond its tolerance; --json puts the verdicts on the last line', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((s: string) => void lines.push(s));
    const code = await command.run([strictCopy(), '--only', 'forward', '--json']);
    expect(code).toBe(1);
    const summary = JSON.parse(lines[lines.length - 1]);
    expect(summary.forward.ok).toBe(false);
    expect(summary.forward.tolerance).toBe(1e-9);
    expect(summary.forward.worst).toBeGreaterThan(0);
    expect(summary.loss.ok).toBe(true);
    expect(Object.keys(summary)).toEqual(['forward', 'loss']);
  });

  it('rejects unknown stages and missing folders as user errors', async () => {
    await expect(command.run([fixture, '--only', 'nope'])).rejects.toThrow(UserError);
    await expect(command.run(['/no/such/folder'])).rejects.toThrow(/no such folder/);
    await expect(command.run([tmpdir()])).rejects.toThrow(/not an open_clip reference folder/);
  });
});
