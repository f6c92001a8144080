import { readFile } from 'node:fs/promises';
import { serveParent } from './child-process.ts';

/**
 * The process bench-hostile forks for each case, so that each peak RSS is the case's own. Each case imports only
 * the code it exercises, so the baseline is that code's, not every loader's.
 */
export type HostileRequest = { kind: 'image'; path: string; size: number } | { kind: 'checkpoint'; path: string };
export interface HostileReply {
  outcome: string;
  seconds: number;
  peakRssMb: number;
}

async function attempt(m: HostileRequest): Promise<string> {
  if (m.kind === 'image') {
    const { ImageError, preprocessImage } = await import('../core/preprocess/index.ts');
    try {
      const px = await preprocessImage(await readFile(m.path), { size: m.size, source: m.path });
      return `decoded: ${px.length} bytes`;
    } catch (e) {
      if (e instanceof ImageError) return `refused: ${e.message}`;
      throw e;
    }
  }
  const [{ CheckpointError }, { loadStateDictFile }] = await Promise.all([import('../core/tensors/errors.ts'), import('../worker/checkpoint/load.ts')]);
  try {
    return `loaded: ${(await loadStateDictFile(m.path)).size} tensors`;
  } catch (e) {
    if (e instanceof CheckpointError) return `refused: ${e.message}`;
    throw e;
  }
}

async function serve(m: HostileRequest): Promise<HostileReply> {
  const t0 = performance.now();
  const outcome = await attempt(m);
  return { outcome, seconds: (performance.now() - t0) / 1000, peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024) };
}

serveParent(serve);
