import type { RetrievalMetrics } from './metrics.ts';
import type { MetricsFile, RunSummary } from './run-summary.ts';

const ROWS: [keyof RetrievalMetrics, string][] = [
  ['image_to_text_R@1', 'image→text R@1'],
  ['image_to_text_R@5', 'image→text R@5'],
  ['image_to_text_R@10', 'image→text R@10'],
  ['text_to_image_R@1', 'text→image R@1'],
  ['text_to_image_R@5', 'text→image R@5'],
  ['text_to_image_R@10', 'text→image R@10'],
  ['mean_recall', 'mean recall (mR)'],
  ['zeroshot_top1', 'zero-shot top-1'],
];

const num = (v: number | undefined): string => (v === undefined ? '–' : v.toFixed(2));

/** The published README.md: data, hyper-parameters, metrics and how to load the files. */
export function modelCard(run: RunSummary, m: MetricsFile): string {
  const r = run.recipe;
  const hp: [string, string | number][] = [
    ['model config', run.modelName],
    ['base weights', run.baseModel],
    ['steps', run.steps],
    ['epochs', run.plan.epochs],
    ['batch size × accumulation', `${run.plan.batchSize} × ${r.accumulate}`],
    ['learning rate (peak)', r.lr],
    ['schedule', `linear warm-up ${run.plan.warmupSteps} steps, then cosine`],
    ['AdamW betas / eps', `${r.hyper.beta1}, ${r.hyper.beta2} / ${r.hyper.eps}`],
    ['weight decay', r.hyper.weightDecay],
    ['gradient clipping (global norm)', r.hyper.gradClip || 'off'],
    ['augmentation', Object.entries(r.augment).filter(([, on]) => on).map(([k]) => k).join(', ') || 'none'],
    ['frozen parameters', r.freeze.length ? r.freeze.join(', ') : 'none'],
    ['seed', r.seed],
  ];
  const cols = m.test ? ['before', 'after', 'test (after)'] : ['before', 'after'];
  const metricRows = ROWS.filter(([k]) => m.before[k] !== undefined).map(
    ([k, label]) => `| ${label} | ${num(m.before[k])} | ${num(m.after[k])} |${m.test ? ` ${num(m.test[k])} |` : ''}`,
  );
  return `# ${run.dataset}: fine-tuned ${run.modelName}

A CLIP model fine-tuned on the \`${run.dataset}\` dataset (captioned satellite images) from \`${run.baseModel}\`.
sha256 of \`model.safetensors\`: \`${m.sha256}\`

## Data

${run.trainRows} training caption rows in ${run.shards} shards (each caption row is one sample), ${run.plan.stepsPerEpoch} steps
per epoch; evaluated on the ${run.evalSplit} split
(${m.after.images} images, ${m.after.captions} captions) before training and after every epoch.

## Hyper-parameters

| setting | value |
|---|---|
${hp.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}

## Metrics (${run.evalSplit} split, percent)

Retrieval recall counts a query as a hit when any of its correct items is in the top k (RSICD/RSITMD protocol).

| metric | ${cols.join(' | ')} |
|---|${cols.map(() => '---|').join('')}
${metricRows.join('\n')}
${m.best ? `\nBest checkpoint by mR: step ${m.best.step} (mR ${num(m.best.mean_recall)}).\n` : ''}
Plots: \`loss.svg\`, \`lr.svg\`, \`recall.svg\`. Every number is in \`metrics.json\`.

## Use it

open_clip (PyTorch):

\`\`\`python
import open_clip
model, _, preprocess = open_clip.create_model_and_transforms('${run.modelName}', pretrained='model.safetensors')
tokenizer = open_clip.get_tokenizer('${run.modelName}')
\`\`\`

onnxruntime (\`image_encoder.onnx\`: input \`image\` float32 [N,3,${run.config.vision_cfg.image_size},${run.config.vision_cfg.image_size}]
normalised with CLIP mean/std; \`text_encoder.onnx\`: input \`text\` int64 [N,77] CLIP BPE tokens; both output an
L2-normalised \`embedding\` [N,${run.config.embed_dim}] for any batch N):

\`\`\`ts
import * as ort from 'onnxruntime-node';
const image = await ort.InferenceSession.create('image_encoder.onnx');
const { embedding } = await image.run({ image: new ort.Tensor('float32', pixels, [n, 3, ${run.config.vision_cfg.image_size}, ${run.config.vision_cfg.image_size}]) });
\`\`\`
`;
}
