import { describe, expect, it } from 'vitest';
import { startLocalS3 } from '../../cli/local-s3.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsStore } from '../../core/store.ts';
import { readSafetensorsF32, writeSafetensors } from '../../core/tensors/safetensors.ts';
import { loadStateDictFile, readStoreObject } from '../../worker/checkpoint/load.ts';
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

describe('readStoreObject', () => {
  it('reads an object by position from its streamed copy and holds it to the limit as it arrives', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'read-store-object-'));
    try {
      const store = new FsStore(join(dir, 'store'));
      const bytes = writeSafetensors(new Map([['w', { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }]]));
      await store.put('checkpoints/step-1/model.safetensors', bytes);
      const read = await readStoreObject(store, 'checkpoints/step-1/model.safetensors', 'model', bytes.length, (f) => {
        expect(f.size).toBe(bytes.length);
        return readSafetensorsF32(f, 'model');
      });
      expect(read.get('w')!.data).toEqual(Float32Array.from([1, 2, 3, 4]));
      await expect(readStoreObject(store, 'checkpoints/step-1/model.safetensors', 'model', bytes.length - 1, () => 0)).rejects.toThrow(
        `model: more than the ${bytes.length - 1}-byte limit arrived`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
