import { CheckpointMismatchError } from '../../core/run-errors.ts';
import { numel, type StateDict } from '../../core/tensors/tensor.ts';

/** A state-dict entry the model declares (worker/models ParamSpec: open_clip's names and shapes). */
export interface ExpectedEntry {
  name: string;
  shape: readonly number[];
}

/**
 * What open_clip's load_checkpoint (factory.py, v3.3.0) does to a state dict before its strict
 * `model.load_state_dict(state_dict, strict=True)`, besides what the loader already does (`state_dict` of a
 * training checkpoint, the `module.` prefix: worker/checkpoint/load.ts):
 * - deletes `text.transformer.embeddings.position_ids` when the model has no such entry (HF text towers after
 *   transformers 4.31; no model here has one), so it is dropped without a word;
 * - reshapes `logit_scale` (and `logit_bias`) to the model's rank when the ranks differ (a [1] scale into a []);
 * - adds a zero `logit_bias` when the model has one and the file does not (SigLIP; no config here has one);
 * - interpolates a position embedding of another grid or context length (resize_pos_embed): not done here, such
 *   a checkpoint is refused with both shapes.
 * Everything else must match: attn_mask buffers are non-persistent in open_clip (never saved, refused when present),
 * a `logit_bias` the model lacks is refused (open_clip fails on it too).
 */
const DROPPED_WHEN_ABSENT = new Set(['text.transformer.embeddings.position_ids']);
const RESHAPED_SCALARS = new Set(['logit_scale', 'logit_bias']);

/** Keys named in an error line: the first LIST_LIMIT, then a count. */
export const LIST_LIMIT = 5;

export interface MatchOptions {
  /** The checkpoint file or URI, named first in the error. */
  source: string;
  /** The config and how it was chosen, e.g. `config ViT-B-32 (from the file name "RemoteCLIP-ViT-B-32.pt")`. */
  config: string;
  /** Load without the keys the config does not declare instead of refusing them (open_clip's strict=False). */
  ignoreUnexpectedKeys?: boolean;
}

export interface MatchResult {
  /** Exactly the expected entries (the tensors of the input, not copies). */
  dict: StateDict;
  /** Unexpected keys left out under ignoreUnexpectedKeys, in file order. */
  ignored: string[];
}

const listed = (keys: readonly string[]): string =>
  keys.slice(0, LIST_LIMIT).join(', ') + (keys.length > LIST_LIMIT ? `, and ${keys.length - LIST_LIMIT} more` : '');
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The state dict a model config loads from `dict`, or a CheckpointMismatchError naming what does not fit. */
export function matchStateDict(dict: StateDict, expected: readonly ExpectedEntry[], opts: MatchOptions): MatchResult {
  const want = new Map(expected.map((e) => [e.name, e.shape]));
  const unexpected: string[] = [];
  const wrongShape: { key: string; checkpoint: number[]; config: number[] }[] = [];
  const out: StateDict = new Map();
  for (const [key, t] of dict) {
    const shape = want.get(key);
    if (!shape) {
      if (!DROPPED_WHEN_ABSENT.has(key)) unexpected.push(key);
      continue;
    }
    if (t.shape.join() === shape.join()) {
      out.set(key, t);
    } else if (RESHAPED_SCALARS.has(key) && t.shape.length !== shape.length && t.data.length === numel([...shape])) {
      out.set(key, { shape: [...shape], data: t.data });
    } else {
      wrongShape.push({ key, checkpoint: [...t.shape], config: [...shape] });
    }
  }
  const missing = expected.filter((e) => !dict.has(e.name)).map((e) => e.name);
  const refusedUnexpected = opts.ignoreUnexpectedKeys ? [] : unexpected;
  if (refusedUnexpected.length || missing.length || wrongShape.length) {
    const parts: string[] = [];
    if (refusedUnexpected.length) parts.push(`${plural(unexpected.length, 'unexpected key')} the config does not declare (${listed(unexpected)})`);
    if (missing.length) parts.push(`${plural(missing.length, 'missing key')} (${listed(missing)})`);
    if (wrongShape.length) {
      const shown = wrongShape.map((w) => `${w.key} is [${w.checkpoint}] in the file, [${w.config}] in the config`);
      parts.push(`${plural(wrongShape.length, 'tensor')} of another shape (${listed(shown)})`);
    }
    const hint =
      missing.length || wrongShape.length
        ? 'is it a checkpoint of another architecture? name the config with --config or train.json "model"'
        : 'set "ignoreUnexpectedKeys": true in train.json to load it without them';
    throw new CheckpointMismatchError(
      `${opts.source}: does not match ${opts.config}, as open_clip's strict load_state_dict refuses it: ${parts.join('; ')}; ${hint}`,
      unexpected,
      missing,
      wrongShape,
    );
  }
  return { dict: out, ignored: unexpected };
}
