/**
 * A map from strings to small numeric records, keyed by a 64-bit hash of the string instead of the string itself:
 * Validate remembers every image and caption of a 5-million-row CSV in it at 8 bytes per key plus the record's
 * lanes, where a Map<string, object> takes ~100 bytes per entry. Two different strings share a key with
 * probability ~n²/2⁶⁵ (7e-7 at 5M): such a pair would be taken for one image, which the Shard step still checks.
 */
export class KeyTable {
  private hi: Uint32Array;
  private lo: Uint32Array;
  private used: Uint8Array;
  private lanes: Int32Array[];
  private mask: number;
  size = 0;

  constructor(
    /** Int32 numbers stored per key. */
    readonly laneCount: number,
    capacity = 1024,
  ) {
    const n = 2 ** Math.ceil(Math.log2(Math.max(16, capacity * 2)));
    this.mask = n - 1;
    this.hi = new Uint32Array(n);
    this.lo = new Uint32Array(n);
    this.used = new Uint8Array(n);
    this.lanes = Array.from({ length: laneCount }, () => new Int32Array(n));
  }

  /** The slot of `key`, or -1 when absent. */
  find(key: string): number {
    const [h, l] = hash64(key);
    return this.probe(h, l, false);
  }

  /** The slot of `key`, added (lanes zero) when absent; `added` says which. */
  insert(key: string): { slot: number; added: boolean } {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    const [h, l] = hash64(key);
    const before = this.size;
    const slot = this.probe(h, l, true);
    return { slot, added: this.size > before };
  }

  get(slot: number, lane: number): number {
    return this.lanes[lane]![slot]!;
  }

  set(slot: number, lane: number, value: number): void {
    this.lanes[lane]![slot] = value;
  }

  /** Bytes held, for the memory figures of bench-scale. */
  get bytes(): number {
    return (this.mask + 1) * (9 + 4 * this.laneCount);
  }

  private probe(h: number, l: number, add: boolean): number {
    for (let i = (l ^ Math.imul(h, 0x9e3779b1)) & this.mask; ; i = (i + 1) & this.mask) {
      if (!this.used[i]) {
        if (!add) return -1;
        this.used[i] = 1;
        this.hi[i] = h;
        this.lo[i] = l;
        this.size++;
        return i;
      }
      if (this.hi[i] === h && this.lo[i] === l) return i;
    }
  }

  private grow(): void {
    const { hi, lo, used, lanes } = this;
    const n = (this.mask + 1) * 2;
    this.mask = n - 1;
    this.hi = new Uint32Array(n);
    this.lo = new Uint32Array(n);
    this.used = new Uint8Array(n);
    this.lanes = lanes.map(() => new Int32Array(n));
    this.size = 0;
    for (let i = 0; i < used.length; i++) {
      if (!used[i]) continue;
      const slot = this.probe(hi[i]!, lo[i]!, true);
      lanes.forEach((lane, k) => (this.lanes[k]![slot] = lane[i]!));
    }
  }
}

/** Two independently seeded 32-bit murmur3-style hashes of the string's UTF-16 code units. */
export function hash64(s: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x5bd1e995 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0xcc9e2d51);
    a = (a << 15) | (a >>> 17);
    b = Math.imul(b ^ c, 0x1b873593);
    b = (b << 13) | (b >>> 19);
    b = Math.imul(b, 5) + 0xe6546b64;
  }
  return [fmix(a ^ s.length) >>> 0, fmix(b) >>> 0];
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
