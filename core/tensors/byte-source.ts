import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CheckpointError } from './errors.ts';

/**
 * Random access to a checkpoint's bytes. Loaders read what they need by position (a ZIP's directory from the end,
 * a safetensors header, then each tensor), so a file is never held whole: memory follows the tensors loaded, and
 * files past fs.readFile's 2 GiB limit load. Reads are synchronous because the decoders that consume them are,
 * which keeps one code path for bytes in memory and for files.
 */
export interface ByteSource {
  readonly size: number;
  /**
   * Bytes [pos, pos + length) in a buffer no one else uses, at offset 0 of its ArrayBuffer: the caller may modify
   * it and view it as any typed array. The caller keeps the range inside `size`.
   */
  read(pos: number, length: number): Uint8Array;
}

export function bytesSource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: (pos, length) => new Uint8Array(bytes.subarray(pos, pos + length)) };
}

export const asSource = (input: Uint8Array | ByteSource): ByteSource => (input instanceof Uint8Array ? bytesSource(input) : input);

/** readSync moves at most 2 GiB - 1 per call. */
const MAX_READ = 1 << 30;

export interface FileSource extends ByteSource {
  close(): void;
}

/** A local file read with positioned reads; `source` names it in errors. */
export function openFileSource(path: string, source = path): FileSource {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CheckpointError(source, 'no such checkpoint file', 'missing');
    throw new CheckpointError(source, `cannot be read (${code ?? (e as Error).message})`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new CheckpointError(source, st.isDirectory() ? 'is a folder, not a checkpoint file: name the .pt or .safetensors file in it' : 'not a regular file');
  }
  return {
    size: st.size,
    read(pos, length) {
      const out = new Uint8Array(length);
      for (let done = 0; done < length; ) {
        const n = readSync(fd, out, done, Math.min(length - done, MAX_READ), pos + done);
        if (n === 0) throw new CheckpointError(source, `file ends at byte ${pos + done}, not ${st.size} (changed while being read?)`);
        done += n;
      }
      return out;
    },
    close: () => closeSync(fd),
  };
}
