/**
 * Every command declares its flags once (cli/command.ts defineCommand): the parser, the usage line and --help
 * come from that declaration, and a flag name means one thing in every command.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UserError, type Command } from '../../cli/command.ts';
import trainCommand from '../../cli/commands/train.ts';
import runCommand from '../../cli/commands/run.ts';
import benchEncoders from '../../cli/commands/bench-encoders.ts';

const dir = join(import.meta.dirname, '../../cli/commands');
const names = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.slice(0, -3));

async function load(name: string): Promise<Command> {
  return ((await import(join(dir, `${name}.ts`))) as { default: Command }).default;
}

/**
 * Each flag of a command's help and the kind of value it takes: its placeholder's first alternative (`<dir|s3://...>`
 * is a dir, where some commands also take S3), a list (`N[,N...]`, where a bench measures several) as its item.
 */
function flagsOf(help: string): Map<string, string> {
  const kind = (placeholder: string): string => placeholder.replace(/\[,.*\]$/, '').replace(/^<|>$/g, '').split('|')[0]!;
  return new Map([...help.matchAll(/^ {2}--([a-z0-9-]+)(?: (\S+))?/gm)].map((m) => [m[1]!, kind(m[2] ?? '')]));
}

afterEach(() => vi.restoreAllMocks());

describe('CLI flags', () => {
  it('every command file exports a command of its own name with a usage line and help for each flag', async () => {
    for (const name of names) {
      const c = await load(name);
      expect(c.name, name).toBe(name);
      const usage = c.usage();
      expect(usage.startsWith(`${name}`)).toBe(true);
      const help = c.help();
      const flags = [...usage.matchAll(/--([a-z0-9-]+)/g)].map((m) => m[1]!);
      expect([...flagsOf(help).keys()].sort()).toEqual([...flags].sort());
      for (const line of help.split('\n').filter((l) => l.startsWith('  --'))) expect(line, name).toMatch(/^ {2}--\S+(?: \S+)? {2,}\S/);
    }
  });

  it('a flag name takes the same kind of value in every command', async () => {
    const seen = new Map<string, { value: string; in: string }>();
    for (const name of names) {
      for (const [flag, value] of flagsOf((await load(name)).help())) {
        const before = seen.get(flag);
        if (before) expect(value, `--${flag} in ${name} vs ${before.in}`).toBe(before.value);
        else seen.set(flag, { value, in: name });
      }
    }
    // The names that once meant two things or had a synonym.
    expect(seen.has('config')).toBe(false);
    expect(seen.has('batch')).toBe(false);
  });

  it('--help prints the derived help, with defaults and required flags marked', async () => {
    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    expect(await benchEncoders.run(['--help'])).toBe(0);
    expect(out.join('\n')).toMatch(/^usage: bench-encoders --arch <name\|json> \[--batch-size N\]/);
    expect(out.join('\n')).toMatch(/--batch-size N +rows per batch \(default 16\)/);
    expect(out.join('\n')).toMatch(/--arch <name\|json> +model architecture.*\(required\)/);
  });

  it('refuses bad values, missing flags and retired names in one line with the usage', async () => {
    const refusal = async (c: Command, argv: string[]): Promise<string> => {
      const e = await c.run(argv).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(UserError);
      return (e as Error).message;
    };
    expect(await refusal(benchEncoders, ['--arch', 'ViT-tiny', '--batch-size', 'many'])).toMatch(/^--batch-size 'many': must be an integer\nusage: bench-encoders /);
    expect(await refusal(benchEncoders, ['--arch', 'ViT-tiny', '--threads', '0'])).toMatch(/^--threads '0': must be >= 1\n/);
    expect(await refusal(benchEncoders, ['--arch', 'ViT-tiny', '--ep', 'cuda,tpu'])).toMatch(/^--ep 'cuda,tpu': must list providers among cpu, cuda, webgpu, got 'tpu'/);
    expect(await refusal(benchEncoders, [])).toMatch(/^--arch is required\n/);
    expect(await refusal(trainCommand, ['--config', 'ViT-tiny'])).toMatch(/--config was split in two: --arch <name\|json> .*--options <train\.json>/);
    expect(await refusal(runCommand, ['--data', '.', '--batch', '8'])).toMatch(/--batch.*use --batch-size/);
    expect(await refusal(trainCommand, ['--shards', 's', '--model', 'm', '--out', 'o', '--lr', '1e-3x'])).toMatch(/^--lr '1e-3x': must be a number/);
  });
});
