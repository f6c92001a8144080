import { describe, expect, it } from 'vitest';
import { chooseQueries, onnxEncoders, rankPool, type Encoders, type GalleryPool } from '../../cli/report/gallery.ts';
import { renderReport, type ReportData } from '../../cli/report/html.ts';
import { exportImageEncoder, exportTextEncoder } from '../../worker/clip/export.ts';
import { loadModelConfig } from '../../core/model-config/config.ts';
import { initParams } from '../../worker/models/init.ts';
import type { RetrievalMetrics } from '../../worker/train/metrics.ts';

const metrics = (mr: number, zs?: number): RetrievalMetrics => ({
  'image_to_text_R@1': mr / 2,
  'image_to_text_R@5': mr,
  'image_to_text_R@10': mr + 5,
  'text_to_image_R@1': mr / 3,
  'text_to_image_R@5': mr,
  'text_to_image_R@10': mr + 10,
  mean_recall: mr,
  images: 12,
  captions: 30,
  ...(zs === undefined ? {} : { zeroshot_top1: zs }),
});

const thumb = (relevant: boolean) => ({ src: 'data:image/png;base64,AAAA', title: 'images/a.png', score: 0.5, relevant });

function data(over: Partial<ReportData> = {}): ReportData {
  return {
    dataset: 'coast<script>alert(1)</script>',
    runId: 'coast-0123456789ab',
    model: 'ViT-tiny',
    baseModel: 'random:ViT-tiny',
    steps: 40,
    split: 'val',
    sha256: 'ab'.repeat(32),
    before: metrics(7.3, 14),
    after: metrics(54, 90.6),
    charts: [{ name: 'Training loss', svg: '<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>' }],
    gallery: [
      { query: 'a beach & "sea"', label: 'beach', before: [thumb(false), thumb(true)], after: [thumb(true), thumb(true)] },
      { query: 'a forest', label: null, before: [thumb(false), thumb(false)], after: [thumb(true), thumb(false)] },
    ],
    gallerySplit: 'val',
    galleryPool: 12,
    generatedAt: '2026-11-27T00:00:00Z',
    ...over,
  };
}

describe('renderReport', () => {
  it('renders the before/after table, curves and gallery as one inert page', () => {
    const html = renderReport(data());
    const metricsTable = /<table id="metrics">([\s\S]*?)<\/table>/.exec(html)![1]!;
    expect(metricsTable.match(/<tr/g)).toHaveLength(9); // header + 8 metrics
    expect(metricsTable).toMatch(/Mean recall \(mR\)<\/th><td>7\.3<\/td><td>54\.0<\/td><td class="up">\+46\.7<\/td>/);
    expect(metricsTable).toMatch(/Zero-shot top-1 accuracy<\/th><td>14\.0<\/td><td>90\.6<\/td>/);
    const gallery = /<table id="gallery">([\s\S]*?)<\/table>/.exec(html)![1]!;
    expect(gallery.match(/<li class="(hit|miss)">/g)).toHaveLength(8);
    expect(gallery).toContain('0/2 correct');
    expect(gallery).toContain('&quot;sea&quot;');
    // Nothing executable, nothing fetched: the dataset name is escaped and the SVG travels as an image.
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain('coast&lt;script&gt;');
    expect(html).toContain('<img src="data:image/svg+xml;base64,');
    expect(html).not.toMatch(/(src|href)="(?!data:)/);
  });

  it('leaves out zero-shot when the data has no labels and shows a test column when there is one', () => {
    const html = renderReport(data({ before: metrics(5), after: metrics(9), test: metrics(8) }));
    expect(html).not.toContain('Zero-shot');
    expect(html).toContain('<th scope="col">Test (after)</th>');
  });
});

/** 4 images (2 per label) with 2-d embeddings; texts are embedded by which label word they contain. */
const pool: GalleryPool = {
  split: 'val',
  imageSize: 1,
  pixels: Uint8Array.from([0, 0, 0, 10, 10, 10, 200, 200, 200, 250, 250, 250]),
  ids: ['d0.png', 'd1.png', 'b0.png', 'b1.png'],
  labels: ['dark', 'dark', 'bright', 'bright'],
  captions: [
    { text: 'a dark tile', image: 0 },
    { text: 'another dark tile', image: 1 },
    { text: 'a bright tile', image: 2 },
  ],
};

const brightness: Encoders = {
  async encodeImages(chw, n) {
    const out = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      const t = Math.atan(chw[i * 3]!) + Math.PI / 2; // monotone in the normalised red value
      out.set([Math.cos(t / 2), Math.sin(t / 2)], i * 2);
    }
    return out;
  },
  async encodeTexts(_tokens, n) {
    // Query order is known: the chosen queries are "a dark tile" then "a bright tile".
    return Float32Array.from({ length: n * 2 }, (_, i) => (i === 0 || i === 3 ? 1 : 0));
  },
  async close() {},
};

describe('gallery ranking', () => {
  it('picks one query per label and marks same-label hits as correct', async () => {
    const queries = chooseQueries(pool);
    expect(queries).toEqual([
      { text: 'a dark tile', image: 0, label: 'dark' },
      { text: 'a bright tile', image: 2, label: 'bright' },
    ]);
    const hits = await rankPool(brightness, pool, queries, 3);
    expect(hits[0]!.map((h) => h.image)).toEqual([0, 1, 2]);
    expect(hits[0]!.map((h) => h.relevant)).toEqual([true, true, false]);
    expect(hits[1]!.map((h) => h.image)).toEqual([3, 2, 1]);
    expect(hits[1]![0]!.score).toBeGreaterThan(hits[1]![2]!.score);
  });

  it('without labels, one query per image and only that image is correct', () => {
    const unlabelled = { ...pool, labels: [null, null, null, null] };
    expect(chooseQueries(unlabelled).map((q) => [q.image, q.label])).toEqual([
      [0, null],
      [1, null],
      [2, null],
    ]);
  });
});

describe('onnxEncoders', () => {
  it('runs exported static-batch encoders over any number of rows, matching one-at-a-time results', async () => {
    const config = loadModelConfig('ViT-tiny');
    const params = initParams(config, 3);
    const enc = await onnxEncoders(exportImageEncoder(config, params), exportTextEncoder(config, params));
    try {
      const s = config.vision_cfg.image_size;
      const images = Float32Array.from({ length: 3 * 3 * s * s }, (_, i) => Math.sin(i * 0.37));
      const all = await enc.encodeImages(images, 3);
      expect(all).toHaveLength(3 * config.embed_dim);
      const third = await enc.encodeImages(images.subarray(2 * 3 * s * s), 1);
      expect(Array.from(all.subarray(2 * config.embed_dim))).toEqual(Array.from(third));
      const tokens = new Int32Array(2 * 77);
      tokens.set([49406, 320, 49407], 0);
      tokens.set([49406, 1929, 2368, 49407], 77);
      const texts = await enc.encodeTexts(tokens, 2);
      for (let r = 0; r < 2; r++) {
        const row = texts.subarray(r * config.embed_dim, (r + 1) * config.embed_dim);
        expect(Math.hypot(...row)).toBeCloseTo(1, 5);
      }
      expect(Array.from(texts.subarray(0, config.embed_dim))).not.toEqual(Array.from(texts.subarray(config.embed_dim)));
    } finally {
      await enc.close();
    }
  });
});
