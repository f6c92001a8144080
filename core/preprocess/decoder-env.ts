/**
 * Environment for a process that decodes images in bulk (the Shard Lambda; bench-shard's handler process).
 *
 * glibc hands large allocations (a decoded 600x600 RGB image is 1 MB) fresh mmap'd pages, and trims freed memory
 * at the heap top back to the kernel, so every image's buffers are new pages again. A page fault per 4 KiB is
 * cheap on bare metal but not inside a Firecracker microVM (Lambda's, and the machine these figures come from):
 * about 5 ms per MiB touched, as much as the decode. Serving those sizes from a heap that keeps its pages makes
 * every image reuse the previous one's memory. `rsclip bench-shard` measures the effect: sharp's decode of its
 * JPEGs (600x600 and 256x256) went from 4.1 to 2.8 ms of CPU per image; the Pillow baseline gains even more (it
 * is run both ways).
 */
export const DECODER_ENV: Readonly<Record<string, string>> = {
  GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=67108864',
};

/** The packages with native binaries that image decoding loads (core/preprocess/index.ts, core/preprocess/jpeg-turbo.ts). */
export const DECODER_PACKAGES: readonly string[] = ['sharp', 'koffi', '@julusian/jpeg-turbo'];
