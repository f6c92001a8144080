/**
 * The two inner loops of Pillow's bicubic resampling (pillow-resample.ts) as WebAssembly SIMD, assembled here
 * from opcodes, with the same integer arithmetic as the scalar code and as Pillow (22-bit coefficients, round
 * with 2^21, shift 22, clamp 0..255), so results are bit-identical: the vertical loop multiplies four int32 lanes
 * per tap, the horizontal one takes two taps per int16 dot product (see horizontalBody).
 *
 * The vertical loop loads 4 bytes where it needs 1 to 4, the horizontal one 8 per tap pair, and both store 4
 * bytes per result: the Arena leaves 8 bytes of slack after every allocation.
 */

const HALF = 1 << 21;
const PRECISION_BITS = 22;

// Opcodes (core spec and SIMD proposal final encoding).
const BLOCK = 0x02, LOOP = 0x03, BR = 0x0c, BR_IF = 0x0d, END = 0x0b, VOID = 0x40;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_LOAD = 0x28, I32_STORE = 0x36, I32_CONST = 0x41;
const I32_EQZ = 0x45, I32_GE_U = 0x4f, I32_ADD = 0x6a, I32_MUL = 0x6c, I32_SHL = 0x74;
const I32 = 0x7f, V128 = 0x7b;
const simd = (op: number): number[] => [0xfd, ...uleb(op)];
const V128_LOAD = simd(0x00);
const V128_LOAD32_ZERO = simd(0x5c);
const V128_LOAD64_ZERO = simd(0x5d);
const I8X16_SWIZZLE = simd(0x0e);
const I32X4_SPLAT = simd(0x11);
const I32X4_EXTRACT_LANE = simd(0x1b);
const I8X16_NARROW_I16X8_U = simd(0x66);
const I16X8_NARROW_I32X4_U = simd(0x86);
const I16X8_EXTEND_LOW_I8X16_U = simd(0x89);
const I32X4_EXTEND_LOW_I16X8_U = simd(0xa9);
const I32X4_SHL = simd(0xab);
const I32X4_SHR_S = simd(0xac);
const I32X4_ADD = simd(0xae);
const I32X4_MUL = simd(0xb5);
const I32X4_MIN_S = simd(0xb6);
const I32X4_MAX_S = simd(0xb8);
const I32X4_DOT_I16X8_S = simd(0xba);
const MEMARG0 = [0, 0];

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const get = (i: number): number[] => [LOCAL_GET, i];
const set = (i: number): number[] => [LOCAL_SET, i];
const i32 = (v: number): number[] => [I32_CONST, ...sleb(v)];
const inc = (local: number, by: number[]): number[] => [...get(local), ...by, I32_ADD, ...set(local)];
/** `while (!cond) body`: `exitIf` leaves 1 when the loop is done. */
const loop = (exitIf: number[], body: number[]): number[] => [BLOCK, VOID, LOOP, VOID, ...exitIf, BR_IF, 1, ...body, BR, 0, END, END];

/** acc += widen(4 bytes at p) * splat(int32 at k) */
const mac = (acc: number, p: number, k: number): number[] => [
  ...get(acc),
  ...get(p), ...V128_LOAD32_ZERO, ...MEMARG0, ...I16X8_EXTEND_LOW_I8X16_U, ...I32X4_EXTEND_LOW_I16X8_U,
  ...get(k), I32_LOAD, 2, 0, ...I32X4_SPLAT,
  ...I32X4_MUL, ...I32X4_ADD, ...set(acc),
];

/** Stores clip8 of the four lanes of acc as 4 bytes at the address on the stack. */
const storeClipped = (acc: number): number[] => [
  ...get(acc), ...i32(PRECISION_BITS), ...I32X4_SHR_S,
  ...i32(0), ...I32X4_SPLAT, ...I32X4_MAX_S,
  ...i32(255), ...I32X4_SPLAT, ...I32X4_MIN_S,
  LOCAL_TEE, acc, ...get(acc), ...I16X8_NARROW_I32X4_U,
  LOCAL_TEE, acc, ...get(acc), ...I8X16_NARROW_I16X8_U,
  ...I32X4_EXTRACT_LANE, 0,
  I32_STORE, 0, 0,
];

/** vertical(src, stride, n, kk, taps, dst): dst[i] = clip8(HALF + sum_t src[t*stride + i] * kk[t]) for i < n. */
function verticalBody(): number[] {
  const [src, stride, n, kk, taps, dst, i, p, k, t, acc] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  return [
    ...i32(0), ...set(i),
    ...loop([...get(i), ...get(n), I32_GE_U], [
      ...i32(HALF), ...I32X4_SPLAT, ...set(acc),
      ...get(src), ...get(i), I32_ADD, ...set(p),
      ...get(kk), ...set(k),
      ...get(taps), ...set(t),
      ...loop([...get(t), I32_EQZ], [...mac(acc, p, k), ...inc(p, get(stride)), ...inc(k, i32(4)), ...inc(t, i32(-1))]),
      ...get(dst), ...get(i), I32_ADD, ...storeClipped(acc),
      ...inc(i, i32(4)),
    ]),
  ];
}

/**
 * horizontal(src, srcStride, rows, outW, c, bounds, kk, kkStride, dst, swizzle): for each row and output pixel x,
 * the c channels of clip8(HALF + sum_t src[row + bounds[2x] + t*c] * k_x[t]), bounds[2x] in bytes (xmin * c),
 * bounds[2x+1] the number of tap PAIRS.
 *
 * Two taps per step with i32x4.dot_i16x8_s: each 22-bit coefficient is split as k = hi * 2^11 + lo (lo in
 * 0..2047, both fit int16), the pair's two pixels are spread to int16 lanes (ch0 t, ch0 t+1, ch1 t, ...) by the
 * `swizzle` indices, and sum(p*k) = (sum(p*hi) << 11) + sum(p*lo). Every partial sum is an exact int32 and the
 * total is the same integer as the scalar sum, so results stay bit-identical. kk holds, per output pixel and
 * pair, 8 int16 of hi then 8 of lo (the pair's two coefficients, repeated per channel); a missing second tap has
 * coefficient 0. Reads 8 bytes per pair: callers leave 8 bytes of slack after the input.
 */
function horizontalBody(): number[] {
  const [src, srcStride, rows, outW, c, bounds, kk, kkStride, dst, swz] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [y, xo, p, k, t, rowSrc, out] = [10, 11, 12, 13, 14, 15, 16];
  const [acc, hi, lo, idx, px] = [17, 18, 19, 20, 21];
  const dot = (sum: number, at: number): number[] => [
    ...get(sum), ...get(px), ...get(k), ...V128_LOAD, 4, at, ...I32X4_DOT_I16X8_S, ...I32X4_ADD, ...set(sum),
  ];
  return [
    ...get(swz), ...V128_LOAD, 4, 0, ...set(idx),
    ...i32(0), ...set(y),
    ...get(dst), ...set(out),
    ...loop([...get(y), ...get(rows), I32_GE_U], [
      ...get(src), ...get(y), ...get(srcStride), I32_MUL, I32_ADD, ...set(rowSrc),
      ...i32(0), ...set(xo),
      ...loop([...get(xo), ...get(outW), I32_GE_U], [
        ...get(rowSrc), ...get(bounds), ...get(xo), ...i32(8), I32_MUL, I32_ADD, I32_LOAD, 2, 0, I32_ADD, ...set(p),
        ...get(bounds), ...get(xo), ...i32(8), I32_MUL, I32_ADD, I32_LOAD, 2, 4, ...set(t),
        ...get(kk), ...get(xo), ...get(kkStride), I32_MUL, I32_ADD, ...set(k),
        ...i32(0), ...I32X4_SPLAT, LOCAL_TEE, hi, ...set(lo),
        ...loop([...get(t), I32_EQZ], [
          ...get(p), ...V128_LOAD64_ZERO, ...MEMARG0, ...get(idx), ...I8X16_SWIZZLE, ...set(px),
          ...dot(hi, 0), ...dot(lo, 16),
          ...inc(p, [...get(c), ...i32(1), I32_SHL]), ...inc(k, i32(32)), ...inc(t, i32(-1)),
        ]),
        ...get(hi), ...i32(11), ...I32X4_SHL, ...get(lo), ...I32X4_ADD, ...i32(HALF), ...I32X4_SPLAT, ...I32X4_ADD, ...set(acc),
        ...get(out), ...storeClipped(acc),
        ...inc(out, get(c)),
        ...inc(xo, i32(1)),
      ]),
      ...inc(y, i32(1)),
    ]),
  ];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];

function assemble(): Uint8Array {
  const funcType = (params: number): number[] => [0x60, ...vec(Array.from({ length: params }, () => [I32])), 0];
  const body = (locals: [count: number, type: number][], code: number[]): number[] => {
    const b = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...code, END];
    return [...uleb(b.length), ...b];
  };
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([funcType(6), funcType(10)])),
    ...section(3, vec([[0], [1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...str('mem'), 0x02, 0], [...str('vertical'), 0x00, 0], [...str('horizontal'), 0x00, 1]])),
    ...section(10, vec([body([[4, I32], [1, V128]], verticalBody()), body([[7, I32], [5, V128]], horizontalBody())])),
  ]);
}

/** The few WebAssembly APIs used here; the project's TypeScript lib (ES2023, no DOM) does not declare them. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const Wasm = (globalThis as unknown as {
  WebAssembly: {
    validate(bytes: Uint8Array): boolean;
    Module: new (bytes: Uint8Array) => object;
    Instance: new (module: object) => { exports: Record<string, unknown> };
  };
}).WebAssembly;

interface Kernels {
  memory: WasmMemory;
  vertical: (src: number, stride: number, n: number, kk: number, taps: number, dst: number) => void;
  horizontal: (src: number, srcStride: number, rows: number, outW: number, c: number, bounds: number, kk: number, kkStride: number, dst: number, swizzle: number) => void;
}

let kernels: Kernels | undefined;

/** The kernels, instantiated once (WebAssembly SIMD is in every Node since 16.4). */
export function simdKernels(): Kernels {
  if (kernels) return kernels;
  const bytes = assemble();
  if (!Wasm.validate(bytes)) throw new Error('resample kernels: this runtime rejects the WebAssembly SIMD module');
  const e = new Wasm.Instance(new Wasm.Module(bytes)).exports as unknown as Kernels & { mem: WasmMemory };
  return (kernels = { memory: e.mem, vertical: e.vertical, horizontal: e.horizontal });
}

/** The kernels read up to 8 bytes past the data they use. */
const SLACK = 8;

/** A bump allocator over the kernels' memory, reset per resize; grows the memory when needed. */
export class Arena {
  private top = 0;
  constructor(private readonly k: Kernels) {}

  alloc(bytes: number): number {
    const at = this.top;
    this.top = (at + bytes + SLACK + 15) & ~15;
    const need = this.top - this.k.memory.buffer.byteLength;
    if (need > 0) this.k.memory.grow(Math.ceil(need / 65536));
    return at;
  }

  bytes(at: number, n: number): Uint8Array {
    return new Uint8Array(this.k.memory.buffer, at, n);
  }

  ints(at: number, n: number): Int32Array {
    return new Int32Array(this.k.memory.buffer, at, n);
  }

  shorts(at: number, n: number): Int16Array {
    return new Int16Array(this.k.memory.buffer, at, n);
  }
}
