import { afterEach, describe, expect, it, vi } from 'vitest';
import benchEncoders from '../../cli/commands/bench-encoders.ts';

afterEach(() => vi.restoreAllMocks());

describe('rsclip bench-encoders', () => {
  it('times the published encoders against a fixed-batch export and ends with the JSON result', async () => {
    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    expect(await benchEncoders.run(['--arch', 'ViT-tiny', '--batch-size', '5', '--runs', '2', '--threads', '1'])).toBe(0);
    expect(out.slice(0, 2)).toEqual([
      expect.stringMatching(/^image: 5 rows in [\d.]+ ms \(published, any batch\) vs [\d.]+ ms \(exported for exactly 5\)$/),
      expect.stringMatching(/^text: 5 rows in /),
    ]);
    const r = JSON.parse(out.at(-1)!);
    expect(r).toMatchObject({ arch: 'ViT-tiny', batch: 5, ep: 'cpu', threads: 1 });
    for (const k of ['image_fixed_ms', 'image_dynamic_ms', 'text_fixed_ms', 'text_dynamic_ms', 'peak_rss_mb']) expect(r[k], k).toBeGreaterThan(0);
  });

  it('refuses a missing --arch and a zero batch', async () => {
    await expect(benchEncoders.run([])).rejects.toThrow(/--arch is required/);
    await expect(benchEncoders.run(['--arch', 'ViT-tiny', '--batch-size', '0'])).rejects.toThrow(/must be >= 1/);
  });
});
