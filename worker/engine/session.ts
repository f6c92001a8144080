/**
 * onnxruntime-node sessions in a worker_thread: InferenceSession.run is a synchronous native call that would
 * otherwise freeze the caller's event loop for the whole training step. One persistent thread per session.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { transformSync } from 'esbuild';
import type { ExecutionProvider } from './options.ts';
import { DataType, encodeModel } from './onnx-proto.ts';

export interface HostArray {
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | boolean[];
  dims: number[];
  /** A Uint8Array holding ONNX bool values (bool outputs come back this way). */
  bool?: true;
}

export interface SessionOptions {
  ep?: ExecutionProvider;
  /** intraOpNumThreads; onnxruntime's default (all cores) when absent. */
  threads?: number;
  /** 'basic' for float64 graphs: level 'all' fuses into contrib ops that lack double kernels. Default 'all'. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** State the session keeps between runs (see CarriedState); float32 only. */
  carry?: CarriedState[];
  /**
   * onnxruntime's CPU memory arena (enableCpuMemArena), default off: with it, the arena keeps what the largest run
   * needed (for a ViT-B-32 training step, the new parameters and moments, gradients and temporaries: several GB)
   * reserved between runs, on top of the host's own copies, so checkpoints and evaluations stacked on it. Without
   * it large blocks go back to the system when the run ends.
   */
  cpuMemArena?: boolean;
  /**
   * Hold carried inputs without outputs through an identity model on the provider (default: every provider but
   * the CPU), so that with WebGPU they stay in GPU memory. On the CPU a fed array already lies where the session
   * reads it, and the pass-through would only copy it: 350 MB for a ViT-B-32 image encoder's parameters.
   */
  uploadFixed?: boolean;
}

/**
 * A float32 value a session keeps from one run to the next, such as a parameter and its AdamW moments: `output`
 * after a run is `input` for the next one, unless a run feeds `input` itself. Without `output` the input keeps the
 * value last fed (a frozen parameter). Carried outputs are not returned by run(); read() copies the current values
 * of the inputs that have outputs. With WebGPU all of them stay in GPU memory between runs, which is the point: a
 * ViT-B-32 step otherwise moves 1.8 GB of parameters and moments to the GPU and back.
 */
export interface CarriedState {
  output?: string;
  input: string;
  dims: number[];
}

export interface RunOptions {
  /**
   * Hand the feeds' backing buffers to the session thread instead of copying the feeds; the caller's arrays (and
   * every other view of those buffers) become detached.
   */
  transfer?: boolean;
  /**
   * Output -> the fed input whose buffer it is written into (onnxruntime's pre-allocated outputs); only pairs that
   * engine/in-place.ts found safe for the model. With `transfer`, the result then carries the input's own buffer:
   * the run needs no second copy of what it updates.
   */
  into?: Record<string, string>;
}

export interface EngineSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Runs the model; all outputs when `outputs` is absent. Output buffers are transferred, not copied. */
  run(feeds: Record<string, HostArray>, outputs?: string[], opts?: RunOptions): Promise<Record<string, HostArray>>;
  /** The current value of every carried input that has an output (fails before the first run). */
  read(): Promise<Record<string, HostArray>>;
  close(): Promise<void>;
}

/** What the thread receives as workerData. */
export interface SessionInit {
  model: Uint8Array | string;
  ep: ExecutionProvider;
  threads?: number;
  optimization: NonNullable<SessionOptions['optimization']>;
  carry: { output?: string; input: string }[];
  cpuMemArena: boolean;
  /**
   * Identity over the carried inputs with outputs, run on the same provider to copy GPU-resident state out, and
   * (SessionOptions.uploadFixed) over those without, whose outputs stay on the GPU (uploads them once). The CPU
   * runs the read path too, which WebGPU depends on (it ignores the requested GPU location).
   */
  readModel?: IdentityModel;
  uploadModel?: IdentityModel;
}

/** An ONNX model that passes each input through unchanged, and the output each input comes out as. */
export interface IdentityModel {
  bytes: Uint8Array;
  outputOf: Record<string, string>;
}
export type ThreadRequest =
  | { kind: 'run'; id: number; feeds: Record<string, HostArray>; outputs?: string[]; into?: Record<string, string> }
  | { kind: 'read'; id: number }
  | { kind: 'close' };
export type ThreadReply =
  | { kind: 'ready'; inputs: string[]; outputs: string[] }
  | { kind: 'result'; id: number; results: Record<string, HostArray> }
  | { kind: 'failed'; id: number; message: string }
  | { kind: 'closed' };

const THREAD_SOURCE = fileURLToPath(new URL('./session-thread.ts', import.meta.url));
let threadCode: string | undefined;

/**
 * The thread's code: session-thread.ts as CommonJS with types stripped by esbuild (tsx's own transformer), because
 * Node 20 workers do not inherit tsx's loader. Its requires resolve from its own location.
 */
function threadScript(): string {
  threadCode ??= transformSync(readFileSync(THREAD_SOURCE, 'utf8'), { loader: 'ts', format: 'cjs', target: 'node20' }).code;
  return `((require) => {\n${threadCode}\n})(require('node:module').createRequire(${JSON.stringify(THREAD_SOURCE)}));`;
}

function identityModel(values: { input: string; dims: number[] }[]): IdentityModel {
  const outputOf = Object.fromEntries(values.map((v) => [v.input, `${v.input}:identity`]));
  const info = (name: string, dims: number[]) => ({ name, elemType: DataType.FLOAT, shape: dims });
  const bytes = encodeModel({
    irVersion: 8,
    opsets: [{ domain: '', version: 18 }],
    producerName: 'rsclip',
    graph: {
      name: 'identity',
      nodes: values.map((v) => ({ opType: 'Identity', inputs: [v.input], outputs: [outputOf[v.input]!], attributes: [] })),
      initializers: [],
      inputs: values.map((v) => info(v.input, v.dims)),
      outputs: values.map((v) => info(outputOf[v.input]!, v.dims)),
    },
  });
  return { bytes, outputOf };
}

function identityModels(carry: CarriedState[], upload: boolean): Pick<SessionInit, 'readModel' | 'uploadModel'> {
  const evolving = carry.filter((c) => c.output);
  const fixed = carry.filter((c) => !c.output);
  return {
    ...(evolving.length ? { readModel: identityModel(evolving) } : {}),
    ...(fixed.length && upload ? { uploadModel: identityModel(fixed) } : {}),
  };
}

/** Opens `model` (ONNX bytes, or a path when its initializers live in an external data file). */
export async function openSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<EngineSession> {
  const carry = opts.carry ?? [];
  const ep = opts.ep ?? 'cpu';
  const init: SessionInit = {
    model,
    ep,
    threads: opts.threads,
    optimization: opts.optimization ?? 'all',
    carry: carry.map(({ output, input }) => ({ output, input })),
    cpuMemArena: opts.cpuMemArena ?? false,
    ...identityModels(carry, opts.uploadFixed ?? ep !== 'cpu'),
  };
  const worker = new Worker(threadScript(), { eval: true, workerData: init });
  const pending = new Map<number, { kind: 'run' | 'read'; resolve: (r: Record<string, HostArray>) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let dead: Error | undefined;
  let onClosed: (() => void) | undefined;

  const ready = new Promise<{ inputs: string[]; outputs: string[] }>((resolve, reject) => {
    const fail = (e: Error) => {
      dead = e;
      reject(e);
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (onClosed) onClosed();
      else fail(new Error(`session thread exited (code ${code})`));
    });
    worker.on('message', (m: ThreadReply) => {
      if (m.kind === 'ready') resolve(m);
      else if (m.kind === 'closed') void worker.terminate();
      else if (m.kind === 'failed' && m.id === -1) fail(new Error(m.message));
      else {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (!pending.size) worker.unref();
        if (m.kind === 'result') p?.resolve(m.results);
        else p?.reject(new Error(`session.${p.kind}: ${m.message}`));
      }
    });
  });
  let names: { inputs: string[]; outputs: string[] };
  try {
    names = await ready;
    // An idle session does not keep the process alive; a pending run or close does.
    worker.unref();
  } catch (e) {
    await worker.terminate();
    throw e;
  }

  return {
    inputNames: names.inputs,
    outputNames: names.outputs,
    run(feeds, outputs, runOpts = {}) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      // Without transfer, each feed is copied compactly and the copy handed over: posting a view would clone its
      // whole backing buffer (once per view of a shared buffer).
      const sent = runOpts.transfer
        ? feeds
        : Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, Array.isArray(f.data) ? f : { ...f, data: f.data.slice() }]));
      const transfer = [...new Set(Object.values(sent).flatMap((f) => (Array.isArray(f.data) ? [] : [f.data.buffer as ArrayBuffer])))];
      return new Promise((resolve, reject) => {
        pending.set(id, { kind: 'run', resolve, reject });
        worker.ref();
        worker.postMessage({ kind: 'run', id, feeds: sent, outputs, into: runOpts.into } satisfies ThreadRequest, transfer);
      });
    },
    read() {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { kind: 'read', resolve, reject });
        worker.ref();
        worker.postMessage({ kind: 'read', id } satisfies ThreadRequest);
      });
    },
    close() {
      if (dead) return Promise.resolve();
      dead = new Error('session is closed');
      return new Promise<void>((resolve) => {
        onClosed = resolve;
        worker.ref();
        worker.postMessage({ kind: 'close' } satisfies ThreadRequest);
      });
    },
  };
}

export interface ProviderChoice {
  ep: ExecutionProvider;
  /** Providers tried before it, and why each could not be used. */
  skipped: { ep: ExecutionProvider; reason: string }[];
}

/**
 * The first of `candidates` that can run a session here, tried in order by opening a one-node model on it: a GPU
 * provider fails at that point when its libraries, driver or adapter are missing. onnxruntime's own provider lists
 * do not fall back, so this is where a worker image that lists `cuda,webgpu` finds the one this host supports.
 * Throws with every provider's reason when none loads.
 */
export async function chooseProvider(candidates: readonly ExecutionProvider[]): Promise<ProviderChoice> {
  const skipped: ProviderChoice['skipped'] = [];
  for (const ep of candidates) {
    if (ep === 'cpu') return { ep, skipped };
    try {
      await runOnce(identityModel([{ input: 'x', dims: [1] }]).bytes, { x: { data: Float32Array.of(1), dims: [1] } }, { ep, threads: 1 });
      return { ep, skipped };
    } catch (e) {
      skipped.push({ ep, reason: (e as Error).message.split('\n')[0]! });
    }
  }
  throw new Error(`no execution provider could be used: ${skipped.map((s) => `${s.ep}: ${s.reason}`).join('; ')}`);
}

/** Opens, runs once (all outputs) and closes: for tests and one-off checks. */
export async function runOnce(
  model: Uint8Array | string,
  feeds: Record<string, HostArray>,
  opts: SessionOptions = {},
): Promise<Record<string, HostArray>> {
  const session = await openSession(model, opts);
  try {
    return await session.run(feeds);
  } finally {
    await session.close();
  }
}
