import sharp from 'sharp';
import type { ObjectStore } from '../../core/store.ts';
import { exportImageEncoder, exportTextEncoder } from '../../worker/clip/export.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { FINAL_FILES } from '../../core/s3-layout.ts';
import type { MetricsFile } from '../../worker/train/run-summary.ts';
import { chooseQueries, loadPool, onnxEncoders, rankPool, type Encoders, type Hit } from './gallery.ts';
import { renderReport, type Thumb } from './html.ts';

export const REPORT_FILE = 'report.html';

export interface ReportInputs {
  /** The run's published files (FINAL_FILES); report.html is written here too. */
  out: ObjectStore;
  /** The run's shards: the gallery searches their evaluation split. */
  shards: ObjectStore;
  /** The weights training started from, for the "before" column of the gallery. */
  base: { uri: string; config: ClipModelConfig; params: StateDict };
  runId: string;
  seconds?: number;
  /** Text queries in the gallery. */
  queries?: number;
}

const decode = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');

/** Embeds the pool and the queries with both models and writes report.html into `out`; returns its key. */
export async function writeReport(inp: ReportInputs): Promise<string> {
  const metrics = JSON.parse(decode(await inp.out.get(FINAL_FILES.metrics))) as MetricsFile;
  const pool = await loadPool(inp.shards);
  const queries = chooseQueries(pool, inp.queries ?? 8);
  const rank = async (enc: Encoders): Promise<Hit[][]> => {
    try {
      return await rankPool(enc, pool, queries);
    } finally {
      await enc.close();
    }
  };
  const before = await rank(await onnxEncoders(exportImageEncoder(inp.base.config, inp.base.params), exportTextEncoder(inp.base.config, inp.base.params)));
  const after = await rank(await onnxEncoders(await inp.out.get(FINAL_FILES.imageEncoder), await inp.out.get(FINAL_FILES.textEncoder)));

  const per = pool.imageSize * pool.imageSize * 3;
  const uris = new Map<number, string>();
  const thumb = async (h: Hit): Promise<Thumb> => {
    if (!uris.has(h.image)) {
      const raw = pool.pixels.subarray(h.image * per, (h.image + 1) * per);
      const png = await sharp(raw, { raw: { width: pool.imageSize, height: pool.imageSize, channels: 3 } }).png().toBuffer();
      uris.set(h.image, `data:image/png;base64,${png.toString('base64')}`);
    }
    const label = pool.labels[h.image];
    return { src: uris.get(h.image)!, title: `${pool.ids[h.image]}${label ? ` [${label}]` : ''}`, score: h.score, relevant: h.relevant };
  };
  const gallery = [];
  for (let q = 0; q < queries.length; q++) {
    gallery.push({
      query: queries[q]!.text,
      label: queries[q]!.label,
      before: await Promise.all(before[q]!.map(thumb)),
      after: await Promise.all(after[q]!.map(thumb)),
    });
  }

  const charts = [];
  for (const [name, file] of [
    ['Training loss', FINAL_FILES.lossPlot],
    ['Learning rate', FINAL_FILES.lrPlot],
    ['Retrieval recall', FINAL_FILES.recallPlot],
  ] as const) {
    const svg = await inp.out.tryGet(file);
    if (svg) charts.push({ name, svg: decode(svg) });
  }

  const html = renderReport({
    dataset: metrics.dataset,
    runId: inp.runId,
    model: metrics.model,
    baseModel: inp.base.uri,
    steps: metrics.steps,
    split: metrics.split,
    sha256: metrics.sha256,
    before: metrics.before,
    after: metrics.after,
    test: metrics.test,
    charts,
    gallery,
    gallerySplit: pool.split,
    galleryPool: pool.ids.length,
    seconds: inp.seconds,
    generatedAt: new Date().toISOString(),
  });
  await inp.out.put(REPORT_FILE, html);
  return REPORT_FILE;
}
