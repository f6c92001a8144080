import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startLocalS3, uploadFolder } from '../../cli/local-s3.ts';
import { S3Store } from '../../core/store.ts';

let dir = '';
afterAll(async () => {
  if (!dir) return;
  await rm(dir, { recursive: true, force: true });
  await rm(`${dir}-c.png`, { force: true });
});

describe('local S3 server', () => {
  it('serves the SDK on loopback, uploads a folder with captions.csv last, and restores the environment', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rsclip-local-s3-'));
    await mkdir(join(dir, 'img', 'sub'), { recursive: true });
    await writeFile(join(dir, 'captions.csv'), 'filename,caption\nimg/a.png,one\n');
    await writeFile(join(dir, 'img', 'a.png'), new Uint8Array([1, 2, 3]));
    await writeFile(join(dir, 'img', 'sub', 'b.png'), new Uint8Array(70_000).fill(7));
    await writeFile(join(dir, '.DS_Store'), 'junk');
    await writeFile(`${dir}-c.png`, 'linked');
    await symlink(`${dir}-c.png`, join(dir, 'img', 'c.png'));
    const before = process.env.AWS_ENDPOINT_URL_S3;

    const s3 = await startLocalS3('test-bucket');
    try {
      expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(process.env.AWS_ENDPOINT_URL_S3).toBe(s3.endpoint);
      const uploaded = await uploadFolder(s3, 'datasets/tiny', dir, { replace: new Map([['train.json', '{"epochs":1}']]) });
      expect(uploaded).toEqual(['captions.csv', 'img/a.png', 'img/c.png', 'img/sub/b.png', 'train.json']);

      // A fresh client built from the environment (as the handlers do) sees the same objects.
      const fresh = new S3Store('test-bucket', '');
      expect((await fresh.list('datasets/')).map((o) => o.key)).toEqual([
        'datasets/tiny/captions.csv',
        'datasets/tiny/img/a.png',
        'datasets/tiny/img/c.png',
        'datasets/tiny/img/sub/b.png',
        'datasets/tiny/train.json',
      ]);
      expect(Buffer.from(await fresh.get('datasets/tiny/train.json')).toString()).toBe('{"epochs":1}');
      expect(await fresh.get('datasets/tiny/img/sub/b.png')).toEqual(new Uint8Array(70_000).fill(7));
      // A link is uploaded as its target, as `aws s3 cp --recursive` does and `rsclip validate` lists it.
      expect(Buffer.from(await fresh.get('datasets/tiny/img/c.png')).toString()).toBe('linked');

      const created = s3.server.spy
        .getAllMessages()
        .filter((m) => m.service === 's3' && m.key.startsWith('datasets/') && (m.status === 'uploaded' || m.status === 'copied'))
        .map((m) => (m as { key: string }).key);
      expect(created.at(-1)).toBe('datasets/tiny/captions.csv');
      expect(new Set(created)).toEqual(new Set(['datasets/tiny/img/a.png', 'datasets/tiny/img/c.png', 'datasets/tiny/img/sub/b.png', 'datasets/tiny/train.json', 'datasets/tiny/captions.csv']));
    } finally {
      await s3.stop();
    }
    expect(process.env.AWS_ENDPOINT_URL_S3).toBe(before);
  });
});
