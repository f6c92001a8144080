import { open, stat } from 'node:fs/promises';
import { openStore } from '../../core/store.ts';
import type { HostTensor, StateDict } from '../engine/tensor.ts';
import { CheckpointError } from './errors.ts';
import { readSafetensorsF32 } from './safetensors.ts';
import { readTorchZip, TorchTensor } from './torch-load.ts';
import { looksLikeZip } from './torch-zip.ts';
import { PyDict, typeName } from './unpickle.ts';

/** Larger than any CLIP checkpoint in use (RemoteCLIP ViT-L-14 fp32 is ~1.7 GB); bigger files are refused unread. */
export const MAX_CHECKPOINT_BYTES = 4 * 1024 ** 3 - 1;

const MODULE_PREFIX = 'module.';

const looksLikeSafetensors = (b: Uint8Array): boolean => b.length >= 9 && b[8] === 0x7b /* '{' */;
// Pre-1.6 torch.save wrote a bare pickle stream (protocol 2 starts with PROTO 2).
const looksLikeLegacyTorch = (b: Uint8Array): boolean => b.length >= 2 && b[0] === 0x80 && b[1] === 0x02;

/** open_clip saves DataParallel/DDP weights with `module.` in front of every key. */
function stripModulePrefix(entries: [string, HostTensor][], source: string): StateDict {
  const out: StateDict = new Map();
  for (const [k, v] of entries) {
    const name = k.startsWith(MODULE_PREFIX) ? k.slice(MODULE_PREFIX.length) : k;
    if (out.has(name)) throw new CheckpointError(source, `key ${name} appears both with and without the "module." prefix`);
    out.set(name, v);
  }
  if (out.size === 0) throw new CheckpointError(source, 'the state dict holds no tensors');
  return out;
}

/** The tensors of a torch checkpoint: a plain state dict, or an open_clip training checkpoint's `state_dict`. */
function fromTorchZip(bytes: Uint8Array, source: string): StateDict {
  const root = readTorchZip(bytes, source);
  if (!(root instanceof PyDict)) throw new CheckpointError(source, `holds a ${typeName(root)}, not a state dict`);
  const inner = root.map.get('state_dict');
  const dict = inner instanceof PyDict ? inner : root;
  const tensors: [string, TorchTensor][] = [];
  for (const [k, v] of dict.map) {
    if (typeof k !== 'string') throw new CheckpointError(source, `state dict key ${String(k)} is not a string`);
    if (!(v instanceof TorchTensor)) {
      const what = dict === root ? 'a state dict or an open_clip checkpoint with "state_dict"' : 'its "state_dict"';
      throw new CheckpointError(source, `entry "${k}" is a ${typeName(v)}, not a tensor; expected ${what}`);
    }
    tensors.push([k, v]);
  }
  return stripModulePrefix(
    tensors.map(([k, t]) => [k, t.toHost(k)]),
    source,
  );
}

/** Weights from a torch zip checkpoint (.pt/.pth/.bin) or safetensors, detected by content; keys lose `module.`. */
export function loadStateDict(bytes: Uint8Array, source: string, maxBytes = MAX_CHECKPOINT_BYTES): StateDict {
  if (bytes.length > maxBytes) throw new CheckpointError(source, `${bytes.length} bytes exceeds the ${maxBytes}-byte checkpoint limit`);
  if (looksLikeZip(bytes)) return fromTorchZip(bytes, source);
  if (looksLikeSafetensors(bytes)) return stripModulePrefix([...readSafetensorsF32(bytes, source)], source);
  if (looksLikeLegacyTorch(bytes)) {
    throw new CheckpointError(source, 'legacy (pre-1.6) torch serialization is not supported; re-save it with a current torch.save');
  }
  throw new CheckpointError(source, 'neither a torch zip checkpoint nor a safetensors file (unrecognised leading bytes)');
}

/** Reads a local file into one buffer (fs.readFile stops at 2 GiB), refusing it before reading if it is too large. */
async function readLocalBounded(path: string, maxBytes: number): Promise<Uint8Array> {
  const s = await stat(path).catch(() => undefined);
  if (!s?.isFile()) throw new CheckpointError(path, 'no such checkpoint file');
  if (s.size > maxBytes) throw new CheckpointError(path, `${s.size} bytes exceeds the ${maxBytes}-byte checkpoint limit`);
  const out = new Uint8Array(s.size);
  const fh = await open(path, 'r');
  try {
    for (let pos = 0; pos < out.length; ) {
      const { bytesRead } = await fh.read(out, pos, Math.min(out.length - pos, 1 << 30), pos);
      if (bytesRead === 0) throw new CheckpointError(path, `file shrank while being read (${pos} of ${s.size} bytes)`);
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
}

async function readS3Bounded(uri: string, maxBytes: number): Promise<Uint8Array> {
  const m = /^(s3:\/\/[^/]+)\/(.+)$/.exec(uri);
  if (!m) throw new CheckpointError(uri, 'an s3:// checkpoint URI needs a bucket and a key');
  const store = openStore(m[1]!);
  const info = await store.head(m[2]!);
  if (!info) throw new CheckpointError(uri, 'no such checkpoint object');
  if (info.size > maxBytes) throw new CheckpointError(uri, `${info.size} bytes exceeds the ${maxBytes}-byte checkpoint limit`);
  return store.get(m[2]!);
}

/** loadStateDict for a local path or an s3://bucket/key URI. */
export async function loadStateDictFile(pathOrUri: string, maxBytes = MAX_CHECKPOINT_BYTES): Promise<StateDict> {
  const bytes = pathOrUri.startsWith('s3://') ? await readS3Bounded(pathOrUri, maxBytes) : await readLocalBounded(pathOrUri, maxBytes);
  return loadStateDict(bytes, pathOrUri, maxBytes);
}
