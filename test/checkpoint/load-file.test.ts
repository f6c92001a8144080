import { describe, expect, it } from 'vitest';
import { startLocalS3 } from '../../cli/local-s3.ts';
import { loadStateDictFile } from '../../worker/checkpoint/load.ts';
import { bytesOf, type SaveValue, torchSave } from '../../worker/checkpoint/torch-writer.ts';

describe('loadStateDictFile from s3://', () => {
  it('reads a checkpoint object, bounds its size by HEAD first, and names a missing object', async () => {
    const pt = torchSave(new Map<string, SaveValue>([['module.w', { storage: { key: '0', type: 'FloatStorage', numel: 3 }, size: [3] }]]), {
      '0': bytesOf(Float32Array.from([1, 2, 3])),
    });
    const s3 = await startLocalS3('ckpt-bucket');
    try {
      await s3.store.put('base/RemoteCLIP-ViT-B-32.pt', pt);
      const uri = 's3://ckpt-bucket/base/RemoteCLIP-ViT-B-32.pt';
      expect(await loadStateDictFile(uri)).toEqual(new Map([['w', { shape: [3], data: Float32Array.from([1, 2, 3]) }]]));
      await expect(loadStateDictFile(uri, 100)).rejects.toThrow(new RegExp(`^${uri}: ${pt.length} bytes exceeds the 100-byte checkpoint limit$`));
      await expect(loadStateDictFile('s3://ckpt-bucket/base/nothing.pt')).rejects.toThrow(/^s3:\/\/ckpt-bucket\/base\/nothing\.pt: no such checkpoint object$/);
      await expect(loadStateDictFile('s3://ckpt-bucket')).rejects.toThrow(/needs a bucket and a key/);
    } finally {
      await s3.stop();
    }
  });
});
