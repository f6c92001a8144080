/**
 * The worker_thread side of session.ts: owns one onnxruntime-node InferenceSession, so that its blocking run()
 * stalls this thread instead of the caller's event loop. Messages: see ThreadRequest/ThreadReply in session.ts.
 * session.ts runs this file as CommonJS stripped of types (Node 20 workers do not inherit tsx's loader), so it
 * has no top-level await and imports only packages and type-only modules.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { HostArray, SessionInit, ThreadReply, ThreadRequest } from './session.ts';

const port = parentPort!;
const init = workerData as SessionInit;

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

async function open(): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [init.ep],
    graphOptimizationLevel: init.optimization,
    executionMode: 'sequential',
    ...(init.threads ? { intraOpNumThreads: init.threads } : {}),
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

open().then(
  (session) => {
    reply({ kind: 'ready', inputs: [...session.inputNames], outputs: [...session.outputNames] });
    // One request at a time, in arrival order: a close never releases the session under a running run.
    let queue = Promise.resolve();
    const handle = async (req: ThreadRequest) => {
      if (req.kind === 'close') {
        await session.release();
        reply({ kind: 'closed' });
        return;
      }
      try {
        const feeds = Object.fromEntries(Object.entries(req.feeds).map(([k, v]) => [k, toOrt(k, v)]));
        const results = req.outputs ? await session.run(feeds, req.outputs) : await session.run(feeds);
        const out = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, fromOrt(v)]));
        const buffers = [...new Set(Object.values(out).flatMap((a) => (Array.isArray(a.data) ? [] : [a.data.buffer as ArrayBuffer])))];
        reply({ kind: 'result', id: req.id, results: out }, buffers);
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
