/**
 * The bucket layout, in one place: every writer and reader of the pipeline builds its keys here.
 *
 *   datasets/<name>/captions.csv, datasets/<name>/train.json, datasets/<name>/<images...>
 *   runs/<runId>/validation.json
 *   runs/<runId>/shard-plan.json, runs/<runId>/plan/rows-<0000>.jsonl
 *   runs/<runId>/shards/shard-<00000>.rsshard, shard-<00000>.json (what the item found), index.json
 *   runs/<runId>/checkpoints/step-<n>/{model.safetensors, optimizer.safetensors, trainer.json}
 *   runs/<runId>/checkpoints/latest.json, best.json
 *   runs/<runId>/final/{model.safetensors, image_encoder.onnx, text_encoder.onnx, metrics.json, *.svg, README.md}
 *   models/<name>/latest.json
 */
export const DATASETS = 'datasets';
export const CAPTIONS_FILE = 'captions.csv';
export const TRAIN_OPTIONS_FILE = 'train.json';

export const datasetPrefix = (name: string): string => `${DATASETS}/${name}`;
export const captionsKey = (name: string): string => `${datasetPrefix(name)}/${CAPTIONS_FILE}`;
export const trainOptionsKey = (name: string): string => `${datasetPrefix(name)}/${TRAIN_OPTIONS_FILE}`;
export const imageKey = (name: string, filename: string): string => `${datasetPrefix(name)}/${filename}`;

/** S3 keys end at 1024 bytes: this leaves an image's path inside the dataset at least 500 of them. */
export const MAX_DATASET_NAME_BYTES = 512;

/**
 * Why `name` cannot name a dataset, or undefined when it can. A dataset is one key segment under datasets/; any
 * other UTF-8 is fine (run ids are derived to pass the AWS name rules whatever the name is).
 */
export function datasetNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name.includes('/') || name.includes('\\')) return "has a '/' or '\\' (a dataset is one folder under datasets/)";
  if (name === '.' || name === '..') return `is '${name}', which is not a folder name`;
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'has control characters';
  const bytes = new TextEncoder().encode(name).length;
  if (bytes > MAX_DATASET_NAME_BYTES) return `is ${bytes} bytes long, over the limit of ${MAX_DATASET_NAME_BYTES}`;
  return undefined;
}

/** `datasets/<name>/captions.csv` -> `<name>`; undefined for any other key, or a name datasetNameProblem refuses. */
export function datasetOfCaptionsKey(key: string): string | undefined {
  const name = /^datasets\/([^/]+)\/captions\.csv$/.exec(key)?.[1];
  return name !== undefined && datasetNameProblem(name) === undefined ? name : undefined;
}

export const runPrefix = (runId: string): string => `runs/${runId}`;
export const validationKey = (runId: string): string => `${runPrefix(runId)}/validation.json`;
/** JSON array of Shard handler inputs, read by the Distributed Map. */
export const shardPlanKey = (runId: string): string => `${runPrefix(runId)}/shard-plan.json`;
/** The plan's row spills, which the items name by byte range. */
export const planPartsPrefix = (runId: string): string => `${runPrefix(runId)}/plan`;
export const shardsPrefix = (runId: string): string => `${runPrefix(runId)}/shards`;
/** Where the Distributed Map's ResultWriter puts the Shard items' results (manifest.json + result files). */
export const shardResultsPrefix = (runId: string): string => `${runPrefix(runId)}/shard-results`;
export const shardName = (index: number): string => `shard-${String(index).padStart(5, '0')}.rsshard`;
/** What the Shard item for `index` found (core/dataset/types.ts ShardSummary), beside the shard. */
export const shardSummaryName = (index: number): string => `shard-${String(index).padStart(5, '0')}.json`;
export const shardKey = (runId: string, index: number): string => `${shardsPrefix(runId)}/${shardName(index)}`;

/** Relative to a run's output root (a run prefix in S3 or a local `--out` folder). */
export const CHECKPOINTS = 'checkpoints';
export const LATEST_CHECKPOINT = `${CHECKPOINTS}/latest.json`;
export const BEST_CHECKPOINT = `${CHECKPOINTS}/best.json`;
export const checkpointDir = (step: number): string => `${CHECKPOINTS}/step-${step}`;
/** In a checkpoint's step folder: the weights (open_clip names), AdamW's moments (`m.<name>`, `v.<name>`), the loop's state. */
export const CHECKPOINT_FILES = { model: 'model.safetensors', optimizer: 'optimizer.safetensors', trainer: 'trainer.json' } as const;
export const FINAL = 'final';

/**
 * A run's published files, in final/: the weights in open_clip's names, standalone ONNX encoders, plots, a model
 * card and metrics.json, written last so that its presence marks the folder complete.
 */
export const FINAL_FILES = {
  model: 'model.safetensors',
  imageEncoder: 'image_encoder.onnx',
  textEncoder: 'text_encoder.onnx',
  lossPlot: 'loss.svg',
  lrPlot: 'lr.svg',
  recallPlot: 'recall.svg',
  card: 'README.md',
  metrics: 'metrics.json',
} as const;
/** What Publish refuses a run without (the plots are for people and may be missing). */
export const REQUIRED_FINAL_FILES = [FINAL_FILES.model, FINAL_FILES.imageEncoder, FINAL_FILES.textEncoder, FINAL_FILES.card, FINAL_FILES.metrics];
export const finalPrefix = (runId: string): string => `${runPrefix(runId)}/${FINAL}`;
export const finalKey = (runId: string, file: string): string => `${finalPrefix(runId)}/${file}`;

export const modelLatestKey = (dataset: string): string => `models/${dataset}/latest.json`;

/**
 * models/: what Publish writes (models/<dataset>/latest.json) and base checkpoints an operator uploads (e.g.
 * models/base/RemoteCLIP-ViT-B-32.pt); every dataset's train.json `init` may name a checkpoint here.
 */
export const MODELS = 'models';
