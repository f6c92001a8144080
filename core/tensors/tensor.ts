/** A float32 host tensor, row-major. Checkpoints, the engine and the exporters all speak this. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Parameters and buffers by open_clip's state-dict key (e.g. `visual.conv1.weight`). */
export type StateDict = Map<string, HostTensor>;

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A copy with arrays of its own, for a caller that keeps reading a dict it hands over (e.g. to a trainer). */
export const copyDict = (dict: StateDict): StateDict => new Map([...dict].map(([k, t]) => [k, { shape: [...t.shape], data: t.data.slice() }]));

/** `parts` end to end in one new array of their type (chunked embeddings, a file's parts). */
export function concatArrays<T extends Float32Array | Uint8Array>(parts: readonly T[], make: new (length: number) => T): T {
  const out = new make(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
