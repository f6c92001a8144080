import type { ClipTrainer } from '../clip/api.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { ExecutionProvider } from '../engine/options.ts';
import { exportImageEncoder, exportTextEncoder } from '../clip/export.ts';
import { openSession, type EngineSession } from '../engine/session.ts';
import { concatArrays, type StateDict } from '../../core/tensors/tensor.ts';

/**
 * Encoders for evaluating a saved model without building a training graph: the exported ONNX towers (static
 * batch), fed in padded chunks.
 */
export type Encoders = Pick<ClipTrainer, 'encodeImages' | 'encodeTexts' | 'close'>;

async function runChunks(
  session: EngineSession,
  input: string,
  batch: number,
  rowSize: number,
  n: number,
  fill: (dst: Float32Array | BigInt64Array, from: number, rows: number) => void,
  make: (len: number) => Float32Array | BigInt64Array,
  dims: number[],
): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (let from = 0; from < n; from += batch) {
    const rows = Math.min(batch, n - from);
    const feed = make(batch * rowSize);
    fill(feed, from, rows);
    const out = (await session.run({ [input]: { data: feed, dims: [batch, ...dims] } }))['embedding']!;
    const emb = out.data as Float32Array;
    parts.push(emb.subarray(0, (emb.length / batch) * rows));
  }
  return concatArrays(parts, Float32Array);
}

export async function openEncoders(config: ClipModelConfig, params: StateDict, opts: { ep?: ExecutionProvider; batch?: number } = {}): Promise<Encoders> {
  const batch = opts.batch ?? 32;
  const s = config.vision_cfg.image_size;
  const ctx = config.text_cfg.context_length;
  const image = await openSession(exportImageEncoder(config, params, { batch }), { ep: opts.ep });
  const text = await openSession(exportTextEncoder(config, params, { batch }), { ep: opts.ep });
  const pixels = 3 * s * s;
  return {
    encodeImages: (images, n) =>
      runChunks(image, 'image', batch, pixels, n, (dst, from, rows) => (dst as Float32Array).set(images.subarray(from * pixels, (from + rows) * pixels)), (len) => new Float32Array(len), [3, s, s]),
    encodeTexts: (tokens, n) =>
      runChunks(
        text,
        'text',
        batch,
        ctx,
        n,
        (dst, from, rows) => {
          for (let i = 0; i < rows * ctx; i++) (dst as BigInt64Array)[i] = BigInt(tokens[from * ctx + i]!);
        },
        (len) => new BigInt64Array(len),
        [ctx],
      ),
    close: async () => {
      await image.close();
      await text.close();
    },
  };
}
