/**
 * The worker_thread side of session.ts: owns one onnxruntime-node InferenceSession, so that its blocking run()
 * stalls this thread instead of the caller's event loop. Messages: see ThreadRequest/ThreadReply in session.ts.
 * session.ts runs this file as CommonJS stripped of types (Node 20 workers do not inherit tsx's loader), so it
 * has no top-level await and imports only packages and type-only modules.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { HostArray, IdentityModel, SessionInit, ThreadReply, ThreadRequest } from './session.ts';

const port = parentPort!;
const init = workerData as SessionInit;

/**
 * A full garbage collection of this thread's heap. onnxruntime-node returns each pre-allocated output as a copy
 * (the fed buffer, which goes back, already holds the values): for a ViT-B-32 step 1.8 GB that only this thread's
 * collector frees, and an idle thread does not run it, so it would stay resident through the evaluation and
 * checkpoint that follow.
 */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

function toOrt(name: string, a: HostArray): ort.Tensor {
  const { data, dims } = a;
  if (Array.isArray(data)) return new ort.Tensor('bool', data, dims);
  if (a.bool) return new ort.Tensor('bool', data as Uint8Array, dims);
  const type =
    data instanceof Float32Array ? 'float32'
    : data instanceof Float64Array ? 'float64'
    : data instanceof BigInt64Array ? 'int64'
    : data instanceof Int32Array ? 'int32'
    : data instanceof Uint8Array ? 'uint8'
    : undefined;
  if (!type) throw new Error(`feed ${name}: unsupported array type`);
  return new ort.Tensor(type, data as Float32Array, dims);
}

function fromOrt(t: ort.Tensor): HostArray {
  const data = t.data as HostArray['data'];
  return t.type === 'bool' ? { data, dims: [...t.dims], bool: true } : { data, dims: [...t.dims] };
}

/** Carried input name -> its current value (on the GPU with WebGPU). */
const carried = new Map<string, ort.Tensor>();
/** Output -> the input it becomes next run. */
const carriedInput = new Map(init.carry.flatMap((c) => (c.output ? [[c.output, c.input] as const] : [])));
/** Inputs kept as last fed (no output). */
const fixedInputs = init.carry.flatMap((c) => (c.output ? [] : [c.input]));
const helpers = new Map<IdentityModel, Promise<ort.InferenceSession>>();

/**
 * Passes `values` through an identity model on the session's provider (same device): with `toGpu` the outputs stay
 * in GPU memory (an upload), else they come back to the host (a read).
 */
async function passThrough(model: IdentityModel, values: Record<string, ort.Tensor>, toGpu: boolean): Promise<Record<string, ort.Tensor>> {
  let s = helpers.get(model);
  if (!s) {
    const location = Object.fromEntries(Object.values(model.outputOf).map((o) => [o, 'gpu-buffer' as const]));
    s = ort.InferenceSession.create(model.bytes, { executionProviders: [init.ep], ...(toGpu ? { preferredOutputLocation: location } : {}) });
    helpers.set(model, s);
  }
  const out = await (await s).run(values);
  return Object.fromEntries(Object.keys(values).map((i) => [i, out[model.outputOf[i]!]!]));
}

/** Replaces a held value, releasing GPU memory the old one held. */
function hold(input: string, value: ort.Tensor): void {
  const old = carried.get(input);
  carried.set(input, value);
  if (old && old !== value && old.location === 'gpu-buffer') old.dispose();
}

async function open(): Promise<ort.InferenceSession> {
  const onDevice = init.ep === 'webgpu' && carriedInput.size > 0;
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [init.ep],
    graphOptimizationLevel: init.optimization,
    executionMode: 'sequential',
    // Without the arena, what a run allocates (outputs before they are copied out, gradients, AdamW temporaries)
    // goes back to the system when the run ends instead of staying reserved at the run's peak (session.ts).
    ...(init.cpuMemArena === false ? { enableCpuMemArena: false } : {}),
    ...(init.threads ? { intraOpNumThreads: init.threads } : {}),
    ...(onDevice ? { preferredOutputLocation: Object.fromEntries([...carriedInput.keys()].map((o) => [o, 'gpu-buffer' as const])) } : {}),
  };
  try {
    return typeof init.model === 'string'
      ? await ort.InferenceSession.create(init.model, options)
      : await ort.InferenceSession.create(init.model, options);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    // EP lists never fall back, so any creation failure on a non-CPU provider is that provider's.
    if (init.ep !== 'cpu') throw new Error(`execution provider '${init.ep}' could not be loaded: ${reason}`);
    throw new Error(`onnxruntime could not create the session: ${reason}`);
  }
}

const reply = (r: ThreadReply, transfer: ArrayBuffer[] = []) => port.postMessage(r, transfer);

/**
 * A run: carried inputs the request does not feed take their held values, fed ones replace them; carried outputs
 * are held, not returned. Fixed inputs are held as fed, or through the upload model: with WebGPU they then stay
 * on the GPU.
 */
async function run(
  session: ort.InferenceSession,
  hostFeeds: Record<string, HostArray>,
  outputs?: string[],
  into: Record<string, string> = {},
): Promise<Record<string, HostArray>> {
  const feeds = Object.fromEntries(Object.entries(hostFeeds).map(([k, v]) => [k, toOrt(k, v)]));
  const fed = fixedInputs.filter((i) => feeds[i]);
  if (fed.length) {
    if (fed.length !== fixedInputs.length) throw new Error(`fixed inputs are fed all together: got ${fed.length} of ${fixedInputs.length}`);
    const up = init.uploadModel ? await passThrough(init.uploadModel, Object.fromEntries(fed.map((i) => [i, feeds[i]!])), true) : feeds;
    for (const i of fed) hold(i, up[i]!);
  }
  const held = (input: string): ort.Tensor => {
    const t = carried.get(input);
    if (!t) throw new Error(`carried input ${input} has no value: feed it on the first run`);
    return t;
  };
  // A fed evolving input is used as fed; fixed inputs are always their held (uploaded) values.
  for (const input of carriedInput.values()) feeds[input] ??= held(input);
  for (const input of fixedInputs) feeds[input] = held(input);
  const fetch = outputs ? [...new Set([...outputs, ...carriedInput.keys()])] : undefined;
  const results = Object.keys(into).length
    ? await session.run(feeds, preallocated(fetch ?? session.outputNames, hostFeeds, into))
    : fetch
      ? await session.run(feeds, fetch)
      : await session.run(feeds);
  for (const [output, input] of carriedInput) hold(input, results[output]!);
  // onnxruntime-node returns a copy of a pre-allocated output; the fed buffer holds the same values and goes back.
  return Object.fromEntries(
    Object.entries(results).flatMap(([k, v]) => (carriedInput.has(k) ? [] : [[k, into[k] ? hostFeeds[into[k]!]! : fromOrt(v)]])),
  );
}

/** Fetches with each `into` output backed by its fed input's buffer (unknown names are refused, as a name list refuses them). */
function preallocated(fetch: readonly string[], hostFeeds: Record<string, HostArray>, into: Record<string, string>): Record<string, ort.Tensor | null> {
  const fetches: Record<string, ort.Tensor | null> = {};
  for (const name of fetch) {
    const input = into[name];
    const fed = input === undefined ? undefined : hostFeeds[input];
    if (input !== undefined && !fed) throw new Error(`output ${name} is to be written into ${input}, which is not fed`);
    fetches[name] = fed ? toOrt(input!, fed) : null;
  }
  return fetches;
}

/** Host copies of the carried values that change, through an identity model on the session's provider. */
async function read(): Promise<Record<string, HostArray>> {
  const inputs = [...carriedInput.values()];
  const missing = inputs.filter((i) => !carried.has(i));
  if (missing.length) throw new Error(`read: nothing carried yet for ${missing.slice(0, 3).join(', ')}`);
  const results = await passThrough(init.readModel!, Object.fromEntries(inputs.map((i) => [i, carried.get(i)!])), false);
  return Object.fromEntries(inputs.map((i) => [i, fromOrt(results[i]!)]));
}

open().then(
  (session) => {
    reply({ kind: 'ready', inputs: [...session.inputNames], outputs: [...session.outputNames] });
    // One request at a time, in arrival order: a close never releases the session under a running run.
    let queue = Promise.resolve();
    const handle = async (req: ThreadRequest) => {
      if (req.kind === 'close') {
        for (const t of carried.values()) if (t.location === 'gpu-buffer') t.dispose();
        for (const h of helpers.values()) await (await h).release();
        await session.release();
        reply({ kind: 'closed' });
        return;
      }
      try {
        const out = req.kind === 'read' ? await read() : await run(session, req.feeds, req.outputs, req.into);
        const buffers = [...new Set(Object.values(out).flatMap((a) => (Array.isArray(a.data) ? [] : [a.data.buffer as ArrayBuffer])))];
        reply({ kind: 'result', id: req.id, results: out }, buffers);
        if (req.kind === 'run' && req.into && Object.keys(req.into).length) collectGarbage();
      } catch (e) {
        reply({ kind: 'failed', id: req.id, message: e instanceof Error ? e.message : String(e) });
      }
    };
    port.on('message', (req: ThreadRequest) => {
      queue = queue.then(() => handle(req));
    });
  },
  (e) => reply({ kind: 'failed', id: -1, message: e instanceof Error ? e.message : String(e) }),
);
