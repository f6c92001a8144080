import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { readSafetensors } from '../../core/tensors/safetensors.ts';
import { preprocessImage } from '../../core/preprocess/index.ts';

export interface ParityResult {
  /** Mean and max absolute difference in grey levels over every pixel of every image. */
  meanAbs: number;
  maxAbs: number;
  perImage: { file: string; meanAbs: number; maxAbs: number }[];
}

/**
 * Compares preprocessImage with open_clip's pixels in a reference fixture folder (images/captions.csv names the
 * images in order; preprocess.safetensors holds `pixels_uint8_hwc` [n,S,S,3]).
 */
export async function preprocessParity(fixtureDir: string): Promise<ParityResult> {
  const refPath = join(fixtureDir, 'preprocess.safetensors');
  const ref = readSafetensors(await readFile(refPath), refPath).get('pixels_uint8_hwc');
  if (!ref || ref.dtype !== 'U8' || ref.shape.length !== 4) throw new Error(`${refPath}: no U8 [n,S,S,3] pixels_uint8_hwc tensor`);
  const [n, size] = ref.shape as [number, number];
  const rows = parse(await readFile(join(fixtureDir, 'images', 'captions.csv')), { columns: true, bom: true }) as { filename: string }[];
  if (rows.length !== n) throw new Error(`${fixtureDir}: captions.csv has ${rows.length} rows, the reference ${n} images`);
  const per = size * size * 3;
  const perImage: ParityResult['perImage'] = [];
  let sum = 0;
  let maxAbs = 0;
  for (const [i, { filename }] of rows.entries()) {
    const path = join(fixtureDir, 'images', filename);
    const got = await preprocessImage(await readFile(path), { size, source: path });
    const want = (ref.data as Uint8Array).subarray(i * per, (i + 1) * per);
    let s = 0;
    let m = 0;
    for (let k = 0; k < per; k++) {
      const d = Math.abs(got[k]! - want[k]!);
      s += d;
      if (d > m) m = d;
    }
    perImage.push({ file: filename, meanAbs: s / per, maxAbs: m });
    sum += s;
    maxAbs = Math.max(maxAbs, m);
  }
  return { meanAbs: sum / (n * per), maxAbs, perImage };
}
