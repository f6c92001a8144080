import { BEST_CHECKPOINT, CHECKPOINT_FILES, CHECKPOINTS, LATEST_CHECKPOINT, checkpointDir } from '../../core/s3-layout.ts';
import type { ObjectStore } from '../../core/store.ts';
import { readSafetensorsF32, safetensorsParts } from '../../core/tensors/safetensors.ts';
import { readStoreObject } from '../checkpoint/load.ts';
import type { Split } from '../../core/shard-format.ts';
import type { DataCursor } from '../data/shard-stream.ts';
import type { RngState } from '../data/rng.ts';
import type { OptimizerState } from '../clip/api.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import type { RetrievalMetrics } from './metrics.ts';

/**
 * Checkpoints under <output root>/checkpoints/step-<n>/ (CHECKPOINT_FILES). Every file is published atomically,
 * and checkpoints/latest.json is written last, so a reader (or a resumed worker) never sees half a checkpoint.
 */
const { model: MODEL_FILE, optimizer: OPTIMIZER_FILE, trainer: TRAINER_FILE } = CHECKPOINT_FILES;

export interface StepRecord {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  logit_scale: number;
  grad_norm: number;
}

export interface EvalRecord {
  /** Optimizer steps taken when evaluated (0 = the base model). */
  step: number;
  /** Epochs completed. */
  epoch: number;
  split: Split;
  metrics: RetrievalMetrics;
}

export interface CheckpointPointer {
  step: number;
  /** Directory relative to the output root, e.g. checkpoints/step-40. */
  dir: string;
  mean_recall?: number;
}

/** trainer.json: everything besides tensors that makes a resumed run continue exactly. */
export interface TrainerState {
  step: number;
  /** The next training sample. */
  cursor: DataCursor;
  augmentRng: RngState;
  /** What the run was planned as; a resume with a different plan would not reproduce the run. */
  fingerprint: Record<string, unknown>;
  history: StepRecord[];
  evals: EvalRecord[];
  best?: CheckpointPointer;
}

export interface Checkpoint {
  params: StateDict;
  optimizer: OptimizerState;
  state: TrainerState;
}

function optimizerTensors(o: OptimizerState): StateDict {
  const out: StateDict = new Map();
  for (const [k, t] of o.m) out.set(`m.${k}`, t);
  for (const [k, t] of o.v) out.set(`v.${k}`, t);
  return out;
}

function splitOptimizer(tensors: StateDict, step: number, source: string): OptimizerState {
  const m: StateDict = new Map();
  const v: StateDict = new Map();
  for (const [k, t] of tensors) {
    if (k.startsWith('m.')) m.set(k.slice(2), t);
    else if (k.startsWith('v.')) v.set(k.slice(2), t);
    else throw new Error(`${source}: unexpected tensor ${k} (expected m.* or v.*)`);
  }
  return { step, m, v };
}

/** Writes the checkpoint's files, then moves latest.json (and best.json when `best` is this step) onto it. */
export async function saveCheckpoint(out: ObjectStore, ck: Checkpoint): Promise<CheckpointPointer> {
  const dir = checkpointDir(ck.state.step);
  await out.put(`${dir}/${MODEL_FILE}`, safetensorsParts(ck.params, { format: 'pt' }));
  await out.put(`${dir}/${OPTIMIZER_FILE}`, safetensorsParts(optimizerTensors(ck.optimizer), { step: String(ck.optimizer.step) }));
  await out.put(`${dir}/${TRAINER_FILE}`, JSON.stringify({ ...ck.state, optimizerStep: ck.optimizer.step }));
  const pointer: CheckpointPointer = { step: ck.state.step, dir };
  if (ck.state.best?.step === ck.state.step) await out.put(BEST_CHECKPOINT, JSON.stringify(ck.state.best));
  await out.put(LATEST_CHECKPOINT, JSON.stringify(pointer));
  await pruneCheckpoints(out, [dir, ck.state.best?.dir]);
  return pointer;
}

/** Removes checkpoint directories other than `keep` (the latest and the best), which nothing points at. */
async function pruneCheckpoints(out: ObjectStore, keep: (string | undefined)[]): Promise<void> {
  const kept = new Set(keep.filter(Boolean));
  for (const o of await out.list(`${CHECKPOINTS}/step-`)) {
    const dir = o.key.split('/').slice(0, 2).join('/');
    if (!kept.has(dir)) await out.delete(o.key);
  }
}

export async function readPointer(out: ObjectStore, key: string): Promise<CheckpointPointer | undefined> {
  const bytes = await out.tryGet(key);
  if (!bytes) return undefined;
  const p = JSON.parse(Buffer.from(bytes).toString('utf8')) as CheckpointPointer;
  if (!Number.isInteger(p.step) || typeof p.dir !== 'string') throw new Error(`${out.uri}/${key}: not a checkpoint pointer`);
  return p;
}

export async function loadCheckpoint(out: ObjectStore, pointer: CheckpointPointer): Promise<Checkpoint> {
  const where = `${out.uri.replace(/\/$/, '')}/${pointer.dir}`;
  const state = JSON.parse(Buffer.from(await out.get(`${pointer.dir}/${TRAINER_FILE}`)).toString('utf8')) as TrainerState & {
    optimizerStep: number;
  };
  if (state.step !== pointer.step) throw new Error(`${where}/${TRAINER_FILE}: step ${state.step} but the pointer says ${pointer.step}`);
  // Read by position, never whole: a ViT-B-32's optimizer file is 1.2 GB, which a whole read would hold twice.
  const read = (file: string) => readStoreObject(out, `${pointer.dir}/${file}`, `${where}/${file}`, Number.MAX_SAFE_INTEGER, (src) => readSafetensorsF32(src, `${where}/${file}`));
  const params = await read(MODEL_FILE);
  const optimizer = splitOptimizer(await read(OPTIMIZER_FILE), state.optimizerStep, `${where}/${OPTIMIZER_FILE}`);
  const { optimizerStep: _, ...rest } = state;
  return { params, optimizer, state: rest };
}

/** The checkpoint latest.json points at, if any. */
export async function loadLatestCheckpoint(out: ObjectStore): Promise<Checkpoint | undefined> {
  const pointer = await readPointer(out, LATEST_CHECKPOINT);
  return pointer && loadCheckpoint(out, pointer);
}
