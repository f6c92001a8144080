/**
 * Conformance stages for BatchNorm towers (open_clip's ModifiedResNet; the test/fixtures/open_clip-tiny-rn format).
 * They replace reference.ts's `forward` stage (`forward.json` is an evaluation-mode pass there and
 * `forward_train.json` the training-mode one) and add to its `steps` stages (which compare the BatchNorm buffers and
 * the evaluation-mode numbers after the last step) the evaluation-mode training variant (BatchNorm statistics frozen).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Graph, type Tensor } from '../engine/graph.ts';
import { openSession } from '../engine/session.ts';
import { names } from '../clip/train-graph.ts';
import { clipBuffers, clipParams } from '../models/clip.ts';
import {
  Diff,
  forwardStages,
  maxAbs,
  result,
  runProbe,
  sameBatchSteps,
  stepStages,
  tolerance,
  withTrainer,
  type ReferenceFolder,
  type Stage,
  type StageResult,
} from './reference.ts';
import { encodeImageResnet } from '../models/resnet.ts';

const readJson = (file: string): Record<string, unknown> => JSON.parse(readFileSync(file, 'utf8'));

/** Renames stage results (`forward` -> `forward_train`). */
const suffixed = (rs: StageResult[], suffix: string) => rs.map((r) => ({ ...r, stage: `${r.stage}${suffix}` }));

/** The image tower alone, outputting every tapped intermediate as `debug.<name>`. */
async function imageTowerTaps(ref: ReferenceFolder, train: boolean): Promise<Map<string, Float32Array>> {
  const g = new Graph({ name: 'resnet_debug' });
  const specs = [...clipParams(ref.config), ...clipBuffers(ref.config)].filter((p) => p.name.startsWith('visual.'));
  const P = new Map(specs.map((p) => [p.name, g.input(names.param(p.name), 'float32', p.shape)]));
  const s = ref.config.vision_cfg.image_size;
  const images = g.input('images', 'float32', [ref.n, 3, s, s]);
  const taps: string[] = [];
  encodeImageResnet(ref.config, (name) => P.get(name)!, images, train, (name: string, t: Tensor) => {
    taps.push(`debug.${name}`);
    g.output(t, `debug.${name}`);
  });
  const session = await openSession(g.toModel(), { threads: 1 });
  try {
    const feeds: Record<string, { data: Float32Array; dims: number[] }> = { images: { data: ref.pixels.slice(), dims: [ref.n, 3, s, s] } };
    for (const p of specs) feeds[names.param(p.name)] = { data: ref.params.get(p.name)!.data.slice(), dims: p.shape };
    const out = await session.run(feeds, taps);
    return new Map(taps.map((n) => [n, out[n].data as Float32Array]));
  } finally {
    await session.close();
  }
}

/** Per-tensor rel-L2 of every `debug.visual.*` tensor of `file` (intermediates and BatchNorm batch statistics). */
async function debugStage(ref: ReferenceFolder, file: string, train: boolean, stage: string): Promise<StageResult> {
  if (!existsSync(join(ref.dir, file))) return result(stage, Infinity, 0, `no ${file}`);
  const expected = [...ref.read(file)].filter(([n]) => n.startsWith('debug.visual.'));
  const ours = await imageTowerTaps(ref, train);
  let worst = 0;
  let where = '';
  for (const [name, entry] of expected) {
    const mine = ours.get(name);
    if (!mine) return result(stage, Infinity, 0, `the image tower does not produce ${name}`);
    const d = new Diff();
    (entry.data as Float32Array).forEach((v, i) => d.add(mine[i], v));
    if (!(d.relL2 <= worst)) [worst, where] = [d.relL2, name];
  }
  return result(stage, worst, tolerance(ref, 'debug', 'rel_l2'), `${expected.length} tensors, worst ${where}`);
}

/**
 * steps.json's `eval_mode_variant`: the same steps with BatchNorm in evaluation mode throughout (freezeBnStats).
 * Step-1 loss within the loss tolerance, later losses within the step-loss tolerance, grad norms relative 2e-3.
 */
async function evalModeVariant(ref: ReferenceFolder): Promise<StageResult[]> {
  const v = ref.steps.eval_mode_variant as { losses: number[]; grad_global_norm_before_clip: number[] } | undefined;
  if (!v) return [];
  return withTrainer(ref, { freezeBnStats: true }, async (trainer) => {
    const rs = await trainer.train(sameBatchSteps(ref, v.losses.length));
    const buffers = (await trainer.snapshot()).params;
    const moved = clipBuffers(ref.config).filter((b) => buffers.get(b.name)!.data.some((x, i) => x !== ref.params.get(b.name)!.data[i]));
    const normRel = Math.max(...rs.map((r, i) => Math.abs(r.gradNorm - v.grad_global_norm_before_clip[i]) / v.grad_global_norm_before_clip[i]));
    return [
      result('eval_mode_variant.loss1', Math.abs(rs[0].loss - v.losses[0]), tolerance(ref, 'loss', 'abs')),
      result('eval_mode_variant.losses', maxAbs(rs.slice(1).map((r) => r.loss), v.losses.slice(1)), tolerance(ref, 'step_losses', 'abs')),
      result('eval_mode_variant.grad_norm_rel', normRel, EVAL_VARIANT_GRAD_NORM_REL),
      result('eval_mode_variant.buffers_kept', moved.length, 0, moved[0]?.name),
    ];
  });
}

/** The README's tolerance for the variant's global gradient norms (tolerances.json has no key for it). */
const EVAL_VARIANT_GRAD_NORM_REL = 2e-3;

export const BATCHNORM_STAGES: Record<string, Stage['run']> = {
  async forward(ref, probe) {
    const evalMode = forwardStages(ref, await runProbe(ref, ref.params, false));
    const trainFile = join(ref.dir, 'forward_train.json');
    const trainMode = existsSync(trainFile) ? suffixed(forwardStages({ ...ref, forward: readJson(trainFile) }, await probe()), '_train') : [];
    return [
      ...evalMode,
      ...trainMode,
      await debugStage(ref, 'forward.safetensors', false, 'debug'),
      ...(existsSync(join(ref.dir, 'forward_train.safetensors')) ? [await debugStage(ref, 'forward_train.safetensors', true, 'debug_train')] : []),
    ];
  },
  async steps(ref) {
    return [...(await stepStages(ref)), ...(await evalModeVariant(ref))];
  },
};
