/**
 * open_clip's `cosine_lr` (training/scheduler.py): linear warm-up `base * (step + 1) / warmup`, then
 * `0.5 * (1 + cos(pi * e / es)) * base` with e = step - warmup and es = total - warmup. `step` is zero-based.
 */
export function cosineLr(step: number, baseLr: number, warmupSteps: number, totalSteps: number): number {
  if (step < warmupSteps) return (baseLr * (step + 1)) / warmupSteps;
  const e = step - warmupSteps;
  const es = totalSteps - warmupSteps;
  // es = 0 only when every step is warm-up; open_clip would divide by zero there.
  return es <= 0 ? baseLr : 0.5 * (1 + Math.cos((Math.PI * e) / es)) * baseLr;
}
