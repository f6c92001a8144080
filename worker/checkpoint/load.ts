import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openStore, type ObjectStore } from '../../core/store.ts';
import type { HostTensor, StateDict } from '../../core/tensors/tensor.ts';
import { asSource, type ByteSource, openFileSource } from '../../core/tensors/byte-source.ts';
import { CheckpointError } from '../../core/tensors/errors.ts';
import { readSafetensorsF32 } from '../../core/tensors/safetensors.ts';
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
function fromTorchZip(src: ByteSource, source: string): StateDict {
  const root = readTorchZip(src, source);
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

/**
 * Weights from a torch zip checkpoint (.pt/.pth/.bin) or safetensors, detected by content; keys lose `module.`.
 * A ByteSource is read by position: only the directory or header and the tensors' own bytes are ever in memory.
 */
export function loadStateDict(input: Uint8Array | ByteSource, source: string, maxBytes = MAX_CHECKPOINT_BYTES): StateDict {
  const src = asSource(input);
  if (src.size > maxBytes) throw new CheckpointError(source, `${src.size} bytes exceeds the ${maxBytes}-byte checkpoint limit`);
  const head = src.read(0, Math.min(src.size, 16));
  if (looksLikeZip(head)) return fromTorchZip(src, source);
  if (looksLikeSafetensors(head)) return stripModulePrefix([...readSafetensorsF32(src, source)], source);
  if (looksLikeLegacyTorch(head)) {
    throw new CheckpointError(source, 'legacy (pre-1.6) torch serialization is not supported; re-save it with a current torch.save');
  }
  throw new CheckpointError(source, 'neither a torch zip checkpoint nor a safetensors file (unrecognised leading bytes)');
}

function loadLocal(path: string, source: string, maxBytes: number): StateDict {
  const file = openFileSource(path, source);
  try {
    return loadStateDict(file, source, maxBytes);
  } finally {
    file.close();
  }
}

/**
 * Reads a store object by position: it is streamed to a temporary file first (held to `maxBytes` as it arrives),
 * so that only a header or directory and the tensors' own bytes are ever in memory, never the whole object.
 */
export async function readStoreObject<T>(store: ObjectStore, key: string, source: string, maxBytes: number, read: (file: ByteSource) => T): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'rsclip-checkpoint-'));
  try {
    const path = join(dir, 'object');
    await pipeline(
      store.stream(key),
      // The object may have been replaced since a HEAD: the limit holds for what actually arrives.
      async function* (chunks: AsyncIterable<Uint8Array>) {
        let n = 0;
        for await (const chunk of chunks) {
          n += chunk.length;
          if (n > maxBytes) throw new CheckpointError(source, `more than the ${maxBytes}-byte limit arrived`);
          yield chunk;
        }
      },
      createWriteStream(path),
    );
    const file = openFileSource(path, source);
    try {
      return read(file);
    } finally {
      file.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function loadS3(uri: string, maxBytes: number): Promise<StateDict> {
  const m = /^(s3:\/\/[^/]+)\/(.+)$/.exec(uri);
  if (!m) throw new CheckpointError(uri, 'an s3:// checkpoint URI needs a bucket and a key');
  const store = openStore(m[1]!);
  const info = await store.head(m[2]!);
  if (!info) throw new CheckpointError(uri, 'no such checkpoint object', 'missing');
  if (info.size > maxBytes) throw new CheckpointError(uri, `${info.size} bytes exceeds the ${maxBytes}-byte checkpoint limit`);
  return readStoreObject(store, m[2]!, uri, maxBytes, (file) => loadStateDict(file, uri, maxBytes));
}

/** loadStateDict for a local path or an s3://bucket/key URI; a missing file or object is a CheckpointError of kind 'missing'. */
export async function loadStateDictFile(pathOrUri: string, maxBytes = MAX_CHECKPOINT_BYTES): Promise<StateDict> {
  return pathOrUri.startsWith('s3://') ? loadS3(pathOrUri, maxBytes) : loadLocal(pathOrUri, pathOrUri, maxBytes);
}
