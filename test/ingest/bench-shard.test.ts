import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const cli = (...args: string[]) => promisify(execFile)('npx', ['tsx', 'cli/main.ts', ...args], { timeout: 120_000 });

describe('rsclip bench-shard', () => {
  it('times the Shard handler in its own process against a loopback S3 server (here behind a proxy adding 5 ms and S3\'s CRC64NVME checksums, which the SDK verifies) and ends with the JSON result', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rsclip-bench-shard-'));
    // No interpreter by that name: the run reports no baseline instead of failing.
    const { stdout } = await cli('bench-shard', '--images', dir, '--generate', '6', '--size', '32', '--passes', '2', '--python', 'no-such-python', '--s3-latency-ms', '5', '--s3-checksums');
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^no baseline: no Python with Pillow and numpy \(tried no-such-python\)/);
    expect(lines.filter((l) => l.startsWith('pass '))).toHaveLength(2);
    const r = JSON.parse(lines.at(-1)!);
    expect(r).toMatchObject({ images: 6, size: 32, shards: 1, passes: 2, baseline: null, speedup_per_core: null, s3_latency_ms: 5, s3_checksums: true });
    for (const k of ['images_per_s', 'images_per_cpu_s', 'preprocess_images_per_cpu_s', 'server_cpu_seconds_per_pass', 'peak_rss_mb']) {
      expect(r[k], k).toBeGreaterThan(0);
    }
  }, 120_000);

  it('refuses a folder without images', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rsclip-bench-empty-'));
    await expect(cli('bench-shard', '--images', dir)).rejects.toMatchObject({ stderr: expect.stringMatching(/no images in .* \(use --generate N to make some\)/) });
  }, 60_000);
});
