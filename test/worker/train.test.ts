import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { LATEST_CHECKPOINT, runPrefix, shardsPrefix } from '../../core/s3-layout.ts';
import { sha256Hex } from '../../core/store.ts';
import { tokenizeAll } from '../../core/tokenizer/index.ts';
import { readSafetensorsF32 } from '../../core/tensors/safetensors.ts';
import type { ClipTrainer, TrainerOptions } from '../../worker/clip/api.ts';
import { createTrainer } from '../../worker/clip/trainer.ts';
import { silentLogger } from '../../worker/train/log.ts';
import { FINAL_FILES } from '../../core/s3-layout.ts';
import { runTraining, type TrainOutput } from '../../worker/train/run.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { sceneShards, writeShards } from './helpers.ts';

const SIZE = 32;
const runId = 'tiny-0123456789ab';

/** Pixels and prompts the trained model is probed with after training (before its sessions close). */
const probeImages = Float32Array.from({ length: 2 * 3 * SIZE * SIZE }, (_, i) => Math.sin(i * 0.37));
const probeTexts = tokenizeAll(['a satellite photo of forest.', 'blue water and a sandy beach']);

describe('training on S3 shards (fauxqs)', () => {
  let s3: LocalS3;
  let output: TrainOutput;
  let final: { params: StateDict; image: Float32Array; text: Float32Array } | undefined;

  beforeAll(async () => {
    s3 = await startLocalS3('worker-test');
    // 8 classes x 6 tiles: 2 per class for val, the rest train; 3 shards.
    await writeShards(s3.store.child(shardsPrefix(runId)), sceneShards({ perClass: 6, valPerClass: 2, size: SIZE, shards: 3 }));
    /** Captures what the trainer that trained computes, when the loop hands it back for closing. */
    const capturing = async (opts: TrainerOptions): Promise<ClipTrainer> => {
      const t = await createTrainer(opts);
      return {
        train: (s) => t.train(s),
        encodeImages: (x, n) => t.encodeImages(x, n),
        encodeTexts: (x, n) => t.encodeTexts(x, n),
        snapshot: () => t.snapshot(),
        close: async () => {
          final = {
            params: (await t.snapshot()).params,
            image: await t.encodeImages(probeImages, 2),
            text: await t.encodeTexts(probeTexts, 2),
          };
          await t.close();
        },
      };
    };
    output = await runTraining(
      {
        runId,
        bucket: s3.bucket,
        dataset: 'tiny',
        options: { init: 'random:ViT-tiny', epochs: 4, batchSize: 16, lr: 2e-3, warmupSteps: 2, seed: 3, checkpointEvery: 5 },
      },
      { bucket: s3.store, createTrainer: capturing, log: silentLogger },
    );
  }, 300_000);
  afterAll(async () => s3?.stop());

  it('raises validation mean recall clearly above the untrained model', () => {
    expect(output.runId).toBe(runId);
    const mR = `mR ${output.before.mean_recall} -> ${output.after.mean_recall}`;
    expect(output.after.mean_recall, mR).toBeGreaterThan(output.before.mean_recall + 10);
    expect(output.after.images).toBe(16);
    expect(output.after.zeroshot_top1).toBeDefined();
  });

  it('publishes final/ with metrics written last and a sha256 that matches', async () => {
    const fin = s3.store.child(`${runPrefix(runId)}/final`);
    for (const f of Object.values(FINAL_FILES)) expect((await fin.head(f))?.size ?? 0).toBeGreaterThan(0);
    expect(output.finalPrefix).toBe(`runs/${runId}/final/`);
    expect(sha256Hex(await fin.get(FINAL_FILES.model))).toBe(output.sha256);
    const metrics = JSON.parse(Buffer.from(await fin.get(FINAL_FILES.metrics)).toString('utf8'));
    expect(metrics.sha256).toBe(output.sha256);
    expect(metrics.epochs.map((e: { epoch: number }) => e.epoch)).toEqual([0, 1, 2, 3, 4]);
    expect(metrics.best.mean_recall).toBe(Math.max(...metrics.epochs.slice(1).map((e: { metrics: { mean_recall: number } }) => e.metrics.mean_recall)));
    const card = Buffer.from(await fin.get(FINAL_FILES.card)).toString('utf8');
    expect(card).toContain("create_model_and_transforms('ViT-tiny', pretrained='model.safetensors')");
    const latest = JSON.parse(Buffer.from(await s3.store.get(`${runPrefix(runId)}/${LATEST_CHECKPOINT}`)).toString('utf8'));
    expect(latest.step).toBe(output.steps);
  });

  it('the published safetensors and ONNX encoders reproduce the trained model', async () => {
    const fin = s3.store.child(`${runPrefix(runId)}/final`);
    const params = readSafetensorsF32(await fin.get(FINAL_FILES.model));
    expect([...params.keys()].sort()).toEqual([...final!.params.keys()].sort());
    const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const differing = [...final!.params].filter(([k, t]) => !bytes(params.get(k)!.data).equals(bytes(t.data))).map(([k]) => k);
    expect(differing).toEqual([]);

    const image = await ort.InferenceSession.create(await fin.get(FINAL_FILES.imageEncoder));
    const text = await ort.InferenceSession.create(await fin.get(FINAL_FILES.textEncoder));
    const dim = final!.image.length / 2;
    for (let i = 0; i < 2; i++) {
      const px = probeImages.slice(i * 3 * SIZE * SIZE, (i + 1) * 3 * SIZE * SIZE);
      const img = (await image.run({ image: new ort.Tensor('float32', px, [1, 3, SIZE, SIZE]) })).embedding!.data as Float32Array;
      const tok = BigInt64Array.from(probeTexts.subarray(i * 77, (i + 1) * 77), (v) => BigInt(v));
      const txt = (await text.run({ text: new ort.Tensor('int64', tok, [1, 77]) })).embedding!.data as Float32Array;
      for (let d = 0; d < dim; d++) {
        expect(img[d]).toBeCloseTo(final!.image[i * dim + d]!, 5);
        expect(txt[d]).toBeCloseTo(final!.text[i * dim + d]!, 5);
      }
    }
    await image.release();
    await text.release();
  });
});
