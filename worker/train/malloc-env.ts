/**
 * glibc malloc settings for the training worker (both worker images set them; bench-worker-memory runs with them).
 *
 * glibc gives each onnxruntime thread an arena of its own and keeps freed blocks below its thresholds, so what a
 * training step frees stays resident under the evaluation and checkpoint that follow. Two arenas, and blocks of
 * 128 KiB and up straight from mmap (returned when freed), bring the ViT-B-32 worker's peak (batch 8, .pt base,
 * bench-worker-memory) from 4936 to 3814 MiB. The Shard Lambda wants the opposite (core/preprocess/decoder-env.ts):
 * inside Firecracker fresh pages cost more than the memory they save.
 */
export const TRAINER_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '131072',
  MALLOC_TRIM_THRESHOLD_: '131072',
};
