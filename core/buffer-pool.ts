/**
 * Keeps the largest released buffer for the next caller. Fresh memory costs a page fault per 4 KiB, and inside a
 * Firecracker microVM (Lambda's, and the one the benchmarks ran in) that is about 5 ms per MiB: writing a new
 * 38 MB shard buffer cost more CPU than decoding a tenth of its images. A warm Lambda writes many shards, so it
 * reuses one buffer for all of them.
 */
export class BufferPool {
  private idle: Uint8Array | undefined;

  /** A zeroed buffer of `n` bytes, reused when one big enough was released; give it back with release(). */
  take(n: number): Uint8Array {
    const reuse = this.idle && this.idle.length >= n ? this.idle : undefined;
    if (!reuse) return new Uint8Array(n);
    // Taken out, so overlapping users (the local runner calls handlers concurrently) never share one.
    this.idle = undefined;
    return reuse.subarray(0, n).fill(0);
  }

  /** Returns a buffer from take() once nothing reads it any more. */
  release(b: Uint8Array): void {
    const whole = new Uint8Array(b.buffer, 0, b.buffer.byteLength);
    if (!this.idle || whole.length > this.idle.length) this.idle = whole;
  }
}
