import { clipBuffers } from '../models/clip.ts';
import { openReference, runProbe, STAGES, type ReferenceFolder, type Stage, type StageResult } from './reference.ts';
import { BATCHNORM_STAGES } from './verify-resnet.ts';

/**
 * Every stage of an open_clip fixture folder in order (tokenizer, preprocessing, forward, gradients, steps), each
 * compared with the fixture's tolerances; the CLI's verify-reference and the parity tests both run this.
 */
export async function verifyReference(
  dir: string,
  onStage?: (r: StageResult) => void,
  stages: Stage[] = STAGES,
  onOpen?: (ref: ReferenceFolder) => void,
): Promise<StageResult[]> {
  const ref = await openReference(dir);
  onOpen?.(ref);
  // BatchNorm towers differ between evaluation and training mode and carry buffers: their module replaces some stages.
  const batchNorm: Record<string, Stage['run'] | undefined> = clipBuffers(ref.config).length ? BATCHNORM_STAGES : {};
  let cached: Promise<Record<string, Float32Array>> | undefined;
  const probe = () => (cached ??= runProbe(ref));
  const all: StageResult[] = [];
  for (const stage of stages) {
    let results: StageResult[];
    try {
      results = await (batchNorm[stage.name] ?? stage.run)(ref, probe);
    } catch (err) {
      results = [{ stage: stage.name, worst: Infinity, tolerance: 0, ok: false, detail: (err as Error).message }];
    }
    for (const r of results) {
      all.push(r);
      onStage?.(r);
    }
  }
  return all;
}

