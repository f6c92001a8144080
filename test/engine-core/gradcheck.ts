/**
 * Central finite differences against the graph's own gradients. The loss is sum(out_i * R_i) with fixed random R,
 * so every output element carries a distinct weight. Runs onnxruntime in-process (session.ts is tested apart).
 */
import { Rng } from '../../worker/data/rng.ts';
import * as ort from 'onnxruntime-node';
import { gradients } from '../../worker/engine/autodiff.ts';
import { Graph, isFloat, type DType, type Tensor } from '../../worker/engine/graph.ts';
import { add, mul, reduceSum } from '../../worker/engine/ops.ts';

export interface InputSpec {
  shape: number[];
  dtype?: DType;
  /** Values; default uniform in [-1, 1) from a seeded generator. */
  values?: number[];
}

/** Deterministic uniform [-1, 1) values. */
export function random(seed: number): () => number {
  const rng = Rng.fromSeed(seed);
  return () => rng.uniform(-1, 1);
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function toOrt(dtype: DType, values: ArrayLike<number>, shape: number[]): ort.Tensor {
  switch (dtype) {
    case 'float32': return new ort.Tensor('float32', Float32Array.from(values), shape);
    case 'float64': return new ort.Tensor('float64', Float64Array.from(values), shape);
    case 'int64': return new ort.Tensor('int64', BigInt64Array.from(Array.from(values), (v) => BigInt(v)), shape);
    case 'int32': return new ort.Tensor('int32', Int32Array.from(values), shape);
    case 'bool': return new ort.Tensor('bool', Uint8Array.from(values), shape);
    case 'uint8': return new ort.Tensor('uint8', Uint8Array.from(values), shape);
  }
}

export interface CheckResult {
  /** Worst |analytic - numeric| / max(1, |numeric|) over all float input elements. */
  maxError: number;
  /** Float inputs whose gradient came back undefined. */
  missing: number[];
  checked: number;
}

/**
 * Builds `f` over the given inputs in a graph of `dtype`, then compares d loss / d input for every element of every
 * float input with central differences of step `h`.
 */
export async function gradcheck(
  specs: InputSpec[],
  f: (...xs: Tensor[]) => Tensor | Tensor[],
  opts: { dtype?: 'float32' | 'float64'; h?: number; seed?: number } = {},
): Promise<CheckResult> {
  const dtype = opts.dtype ?? 'float64';
  const h = opts.h ?? (dtype === 'float64' ? 1e-6 : 1e-2);
  const rnd = random(opts.seed ?? 1);
  const g = new Graph({ dtype });
  const round = dtype === 'float32' ? Math.fround : (v: number) => v;
  const values = specs.map((s) => (s.values ?? Array.from({ length: numel(s.shape) }, rnd)).map(round));
  const ins = specs.map((s, i) => g.input(`in${i}`, s.dtype ?? dtype, s.shape));
  const outs = [f(...ins)].flat();
  let loss: Tensor | undefined;
  for (const o of outs) {
    const r = g.constant(Array.from({ length: numel(o.shape) }, rnd), [...o.shape], o.dtype);
    const term = reduceSum(mul(o, r), o.shape.map((_, i) => i));
    loss = loss ? add(loss, term) : term;
  }
  const floatIdx = specs.flatMap((s, i) => (isFloat(s.dtype ?? dtype) ? [i] : []));
  const grads = gradients(loss!, floatIdx.map((i) => ins[i]));
  g.output(loss!, 'loss');
  const missing: number[] = [];
  grads.forEach((gr, k) => (gr ? g.output(gr, `grad${floatIdx[k]}`) : missing.push(floatIdx[k])));

  const session = await ort.InferenceSession.create(g.toModel(), { graphOptimizationLevel: 'basic', intraOpNumThreads: 1 });
  const feeds = (vals: number[][]) =>
    Object.fromEntries(specs.map((s, i) => [`in${i}`, toOrt(s.dtype ?? dtype, vals[i], s.shape)]));
  const base = await session.run(feeds(values));
  const lossAt = async (vals: number[][]) => Number((await session.run(feeds(vals), ['loss'])).loss.data[0]);
  let maxError = 0;
  let checked = 0;
  for (const i of floatIdx) {
    if (missing.includes(i)) continue;
    const analytic = base[`grad${i}`].data as Float32Array | Float64Array;
    for (let e = 0; e < values[i].length; e++) {
      const x = values[i][e];
      // The step actually taken once the perturbed value is stored in the graph's float type.
      const at = (v: number) => values.map((vs, j) => (j === i ? vs.map((old, k) => (k === e ? v : old)) : vs));
      const numeric = ((await lossAt(at(round(x + h)))) - (await lossAt(at(round(x - h))))) / (round(x + h) - round(x - h));
      maxError = Math.max(maxError, Math.abs(analytic[e] - numeric) / Math.max(1, Math.abs(numeric)));
      checked++;
    }
  }
  await session.release();
  return { maxError, missing, checked };
}
