import type { RetrievalMetrics } from '../../worker/train/metrics.ts';

export interface Thumb {
  /** data: URI, so the page works offline and as a single file. */
  src: string;
  title: string;
  score: number;
  relevant: boolean;
}

export interface GalleryRow {
  query: string;
  label: string | null;
  before: Thumb[];
  after: Thumb[];
}

export interface ReportData {
  dataset: string;
  runId: string;
  model: string;
  baseModel: string;
  steps: number;
  /** Split the metrics were measured on. */
  split: string;
  sha256: string;
  before: RetrievalMetrics;
  after: RetrievalMetrics;
  test?: RetrievalMetrics;
  /** Standalone SVG documents (the worker's plots). */
  charts: { name: string; svg: string }[];
  gallery: GalleryRow[];
  gallerySplit: string;
  galleryPool: number;
  seconds?: number;
  generatedAt: string;
}

export const METRIC_ROWS: [keyof RetrievalMetrics, string][] = [
  ['image_to_text_R@1', 'Image → text R@1'],
  ['image_to_text_R@5', 'Image → text R@5'],
  ['image_to_text_R@10', 'Image → text R@10'],
  ['text_to_image_R@1', 'Text → image R@1'],
  ['text_to_image_R@5', 'Text → image R@5'],
  ['text_to_image_R@10', 'Text → image R@10'],
  ['mean_recall', 'Mean recall (mR)'],
  ['zeroshot_top1', 'Zero-shot top-1 accuracy'],
];

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const fmt = (v: number | undefined): string => (v === undefined ? '–' : v.toFixed(1));

function metricsTable(d: ReportData): string {
  const rows = METRIC_ROWS.filter(([k]) => d.before[k] !== undefined || d.after[k] !== undefined).map(([k, label]) => {
    const b = d.before[k];
    const a = d.after[k];
    const delta = a !== undefined && b !== undefined ? a - b : undefined;
    const cls = delta === undefined || Math.abs(delta) < 0.05 ? '' : delta > 0 ? 'up' : 'down';
    const strong = k === 'mean_recall' ? ' class="key"' : '';
    return `<tr${strong}><th scope="row">${esc(label)}</th><td>${fmt(b)}</td><td>${fmt(a)}</td><td class="${cls}">${delta === undefined ? '–' : `${delta >= 0 ? '+' : ''}${delta.toFixed(1)}`}</td>${d.test ? `<td>${fmt(d.test[k])}</td>` : ''}</tr>`;
  });
  return `<table id="metrics">
<caption>Retrieval on the ${esc(d.split)} split (${d.after.images} images, ${d.after.captions} captions), percent</caption>
<thead><tr><th scope="col">Metric</th><th scope="col">Before</th><th scope="col">After</th><th scope="col">Change</th>${d.test ? '<th scope="col">Test (after)</th>' : ''}</tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`;
}

const svgUri = (svg: string): string => `data:image/svg+xml;base64,${Buffer.from(svg, 'utf8').toString('base64')}`;

function charts(d: ReportData): string {
  if (!d.charts.length) return '<p>No training curves were published.</p>';
  // As <img>: an SVG in an image context cannot run script or reach the network.
  return `<div class="charts">${d.charts.map((c) => `<figure><img src="${svgUri(c.svg)}" alt="${esc(c.name)}"><figcaption>${esc(c.name)}</figcaption></figure>`).join('')}</div>`;
}

function strip(thumbs: Thumb[]): string {
  const hits = thumbs.filter((t) => t.relevant).length;
  const cells = thumbs
    .map((t) => `<li class="${t.relevant ? 'hit' : 'miss'}"><img src="${t.src}" alt="${esc(t.title)}" title="${esc(t.title)} (${t.score.toFixed(3)})"><span>${t.score.toFixed(2)}</span></li>`)
    .join('');
  return `<ol class="strip">${cells}</ol><p class="count">${hits}/${thumbs.length} correct</p>`;
}

function gallery(d: ReportData): string {
  if (!d.gallery.length) return '<p>No gallery: the split has no captions.</p>';
  const rows = d.gallery.map(
    (g) => `<tr><th scope="row"><q>${esc(g.query)}</q>${g.label ? `<br><small>label: ${esc(g.label)}</small>` : ''}</th><td>${strip(g.before)}</td><td>${strip(g.after)}</td></tr>`,
  );
  return `<table id="gallery">
<caption>Top ${d.gallery[0]!.after.length} of ${d.galleryPool} ${esc(d.gallerySplit)} images per text query; green: correct (same label as the query's image), red: wrong</caption>
<thead><tr><th scope="col">Query</th><th scope="col">Before fine-tuning</th><th scope="col">After fine-tuning</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`;
}

const CSS = `
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:24px;color:#1d2330;background:#fafbfc}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 10px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 16px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}dt{color:#5b6475}dd{margin:0;font-family:ui-monospace,monospace;font-size:13px;word-break:break-all}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001}caption{caption-side:top;text-align:left;color:#5b6475;padding:4px 0}
th,td{padding:6px 12px;border-bottom:1px solid #e6e9ef;text-align:right;vertical-align:top}th[scope=row],thead th:first-child{text-align:left}
#metrics tr.key{font-weight:700;background:#f2f6ff}td.up{color:#137333}td.down{color:#b3261e}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts figure{margin:0;background:#fff;box-shadow:0 1px 2px #0001;padding:6px}.charts img{width:340px;height:auto;display:block}
.charts figcaption{font-size:12px;color:#5b6475;text-align:center}
#gallery th[scope=row]{max-width:240px;font-weight:400}#gallery td,#gallery thead th{text-align:left}
.strip{display:flex;gap:6px;list-style:none;margin:0;padding:0}.strip li{display:flex;flex-direction:column;align-items:center;font-size:11px;color:#5b6475}
.strip img{width:64px;height:64px;image-rendering:pixelated;border:3px solid #ccc;border-radius:3px}.strip li.hit img{border-color:#1e8e3e}.strip li.miss img{border-color:#d93025}
.count{margin:2px 0 0;font-size:12px;color:#5b6475}
`;

/** The run report: one self-contained HTML page (inline CSS, images as data: URIs, no script, no network). */
export function renderReport(d: ReportData): string {
  const facts: [string, string][] = [
    ['dataset', d.dataset],
    ['run', d.runId],
    ['model', d.model],
    ['base weights', d.baseModel],
    ['optimizer steps', String(d.steps)],
    ...(d.seconds !== undefined ? ([['wall time', `${d.seconds.toFixed(1)} s`]] as [string, string][]) : []),
    ['model.safetensors sha256', d.sha256],
  ];
  const mr = (m: RetrievalMetrics): string => m.mean_recall.toFixed(1);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>rsclip report: ${esc(d.dataset)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>Fine-tuning report: ${esc(d.dataset)}</h1>
<p class="sub">Mean recall ${mr(d.before)} → ${mr(d.after)} on the ${esc(d.split)} split. Generated ${esc(d.generatedAt)}.</p>
<dl>${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>
<h2>Metrics</h2>
${metricsTable(d)}
<h2>Training curves</h2>
${charts(d)}
<h2>Retrieval gallery</h2>
${gallery(d)}
</body>
</html>
`;
}
