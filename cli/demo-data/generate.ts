import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { CAPTIONS_FILE } from '../../core/s3-layout.ts';
import { makeRng } from './rng.ts';
import { SCENES } from './scenes.ts';

export interface DemoDataOptions {
  /** Images per land-cover class. */
  perClass: number;
  /** Of those, how many go to the validation and test splits (the rest train). */
  valPerClass: number;
  testPerClass: number;
  /** Tile edge in pixels. */
  size?: number;
  seed?: number;
}

export interface DemoDataSummary {
  images: number;
  captions: number;
  labels: string[];
}

const csvField = (s: string): string => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/**
 * Writes a small remote-sensing-like dataset into `dir`: PNG tiles of eight land-cover classes and a
 * captions.csv (`filename,caption,split,label`, one row per caption, 1-5 captions per tile). The split is
 * explicit and stratified so validation holds every class.
 */
export async function generateDemoDataset(dir: string, opts: DemoDataOptions): Promise<DemoDataSummary> {
  const size = opts.size ?? 64;
  const rng = makeRng(opts.seed ?? 7);
  await mkdir(join(dir, 'images'), { recursive: true });
  const tiles: string[][] = [];
  for (const scene of SCENES) {
    for (let i = 0; i < opts.perClass; i++) {
      const split = i < opts.valPerClass ? 'val' : i < opts.valPerClass + opts.testPerClass ? 'test' : 'train';
      const { rgb, captions } = scene.sample(rng, size);
      const filename = `images/${scene.label}-${String(i).padStart(3, '0')}.png`;
      const png = await sharp(rgb, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
      await writeFile(join(dir, filename), png);
      tiles.push(captions.map((caption) => [filename, caption, split, scene.label].map(csvField).join(',')));
    }
  }
  // Rows in random tile order, as a real export would be: the pipeline shards in CSV order and the worker
  // shuffles within a shard, so class-sorted rows would make every batch nearly one class.
  for (let i = tiles.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [tiles[i], tiles[j]] = [tiles[j]!, tiles[i]!];
  }
  const rows = tiles.flat();
  await writeFile(join(dir, CAPTIONS_FILE), `${['filename,caption,split,label', ...rows].join('\n')}\n`);
  return { images: tiles.length, captions: rows.length, labels: SCENES.map((s) => s.label) };
}
