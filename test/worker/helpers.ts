import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeShard, type Shard, type Split } from '../../core/shard-format.ts';
import { FsStore, type ObjectStore } from '../../core/store.ts';
import { shardName } from '../../core/s3-layout.ts';
import { tokenizeAll } from '../../core/tokenizer/index.ts';
import { makeRng } from '../../cli/demo-data/rng.ts';
import { SCENES } from '../../cli/demo-data/scenes.ts';

export function tempDir(prefix: string): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), `rsclip-${prefix}-`));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface SyntheticImage {
  id: string;
  split: Split;
  label: string | null;
  captions: string[];
  /** Fills the image's pixels: (y, x, channel) -> 0..255. */
  paint: (y: number, x: number, c: number) => number;
}

/** A shard from explicit images; tokens are [SOT, row, image, EOT] so tests can tell rows apart. */
export function makeShard(size: number, images: SyntheticImage[], tokenize?: (texts: string[]) => Int32Array): Shard {
  const pixels = new Uint8Array(images.length * size * size * 3);
  images.forEach((img, i) => {
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) pixels[((i * size + y) * size + x) * 3 + c] = img.paint(y, x, c);
  });
  const captions = images.flatMap((img) => img.captions);
  const captionImage = Int32Array.from(images.flatMap((img, i) => img.captions.map(() => i)));
  let tokens: Int32Array;
  if (tokenize) tokens = tokenize(captions);
  else {
    tokens = new Int32Array(captions.length * 77);
    captions.forEach((_, r) => tokens.set([49406, 1000 + r, 2000 + captionImage[r]!, 49407], r * 77));
  }
  return {
    imageSize: size,
    pixels,
    imageIds: images.map((i) => i.id),
    splits: images.map((i) => i.split),
    labels: images.map((i) => i.label),
    captions,
    captionImage,
    lines: Int32Array.from(captions.map((_, r) => r + 2)),
    tokens,
  };
}

/** `nShards` shards of `perShard` images each with two captions; every fifth image is val. */
export function simpleShards(nShards: number, perShard: number, size = 8): Shard[] {
  return Array.from({ length: nShards }, (_, s) =>
    makeShard(
      size,
      Array.from({ length: perShard }, (_, i) => {
        const g = s * perShard + i;
        return {
          id: `img${g}.png`,
          split: g % 5 === 4 ? ('val' as const) : ('train' as const),
          label: `class${g % 3}`,
          captions: [`image ${g} a`, `image ${g} b`],
          paint: (y: number, x: number, c: number) => (g * 37 + y * 11 + x * 5 + c * 70) % 256,
        };
      }),
    ),
  );
}

export async function writeShards(store: ObjectStore, shards: Shard[], prefix = ''): Promise<void> {
  for (const [i, s] of shards.entries()) await store.put(`${prefix}${shardName(i)}`, encodeShard(s));
}

export function fsStore(path: string): FsStore {
  return new FsStore(path);
}

/**
 * Land-cover tiles from the demo generator (cli/demo-data), tokenised with the real tokenizer, split into shards:
 * `val` images per class go to the val split, the rest train.
 */
export function sceneShards(opts: { perClass: number; valPerClass: number; size: number; shards: number; seed?: number }): Shard[] {
  const rng = makeRng(opts.seed ?? 11);
  const images: SyntheticImage[] = [];
  for (const scene of SCENES) {
    for (let i = 0; i < opts.perClass; i++) {
      const { rgb, captions } = scene.sample(rng, opts.size);
      images.push({
        id: `${scene.label}-${i}.png`,
        split: i < opts.valPerClass ? 'val' : 'train',
        label: scene.label,
        captions,
        paint: (y, x, c) => rgb[(y * opts.size + x) * 3 + c]!,
      });
    }
  }
  const per = Math.ceil(images.length / opts.shards);
  return Array.from({ length: opts.shards }, (_, s) => makeShard(opts.size, images.slice(s * per, (s + 1) * per), (t) => tokenizeAll(t)));
}
