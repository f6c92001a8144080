import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { constants as zlib, deflateRawSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesSource, type ByteSource, openFileSource } from '../../core/tensors/byte-source.ts';
import { CheckpointError } from '../../core/tensors/errors.ts';
import { loadStateDict, loadStateDictFile } from '../../worker/checkpoint/load.ts';
import { readSafetensors, writeSafetensors } from '../../core/tensors/safetensors.ts';
import { MAX_DIRECTORY_BYTES, MAX_INFLATE_RATIO, ZipArchive } from '../../worker/checkpoint/torch-zip.ts';
import { bytesOf, Pickle, type SaveValue, type TensorSpec, writeValue, writeZip, type ZipInput } from '../../worker/checkpoint/torch-writer.ts';

const f32 = (n: number): TensorSpec['storage'] => ({ key: '0', type: 'FloatStorage', numel: n });
const pickleOf = (v: SaveValue): Uint8Array => writeValue(new Pickle(2), v).stop();
const one = (t: TensorSpec): Map<string, SaveValue> => new Map<string, SaveValue>([['w', t]]);

/** A torch archive of `value` whose storage '0' is `data`, deflated when asked. */
function archive(value: SaveValue, data: Uint8Array, deflate = false, opts: { zip64?: boolean } = {}): Buffer {
  const entries: ZipInput[] = [
    { name: 'archive/data.pkl', data: pickleOf(value) },
    { name: 'archive/data/0', data, deflate },
  ];
  return Buffer.from(writeZip(entries, opts));
}

/** Offset of the central directory record of `name` (its name is the record's last occurrence in the file). */
const centralRecord = (b: Buffer, name: string): number => b.lastIndexOf(Buffer.from(name)) - 46;

/**
 * `count` copies of a sync-flushed deflate run of 1 MiB of zeros, then a final empty block: a stream of `count` MiB
 * built without holding it. Level 9 shrinks zeros about 1000:1, level 1 about 229:1.
 */
function zeroStream(count: number, level: number): Buffer {
  const block = deflateRawSync(Buffer.alloc(1 << 20), { level, finishFlush: zlib.Z_SYNC_FLUSH });
  return Buffer.concat([...Array.from({ length: count }, () => block), Buffer.from([0x03, 0x00])]);
}

/** A torch archive of `value` whose storage '0' is the deflate `stream`, declaring `declared` bytes. */
function deflatedArchive(value: SaveValue, stream: Buffer, declared: number): Buffer {
  const b = Buffer.from(writeZip([{ name: 'archive/data.pkl', data: pickleOf(value) }, { name: 'archive/data/0', data: stream }]));
  const cd = centralRecord(b, 'archive/data/0');
  for (const at of [b.indexOf(Buffer.from('archive/data/0')) - 30 + 8, cd + 10]) b.writeUInt16LE(8, at);
  b.writeUInt32LE(declared, cd + 24);
  return b;
}

function refusal(load: () => unknown): string {
  try {
    load();
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    const msg = (e as Error).message;
    expect(msg).toMatch(/^bomb\.pt: /);
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('expected a refusal');
}

describe('inflation is bounded by what the entry declares and what its tensors need', () => {
  it(`refuses an entry declaring more than ${MAX_INFLATE_RATIO}:1 before inflating anything`, () => {
    const b = archive(one({ storage: f32(1 << 18), size: [1 << 18] }), new Uint8Array(1 << 20), true);
    const cd = centralRecord(b, 'archive/data/0');
    const compressed = b.readUInt32LE(cd + 20);
    b.writeUInt32LE(3.5 * 1024 ** 3, cd + 24);
    const msg = refusal(() => loadStateDict(b, 'bomb.pt'));
    expect(msg).toBe(`bomb.pt: entry archive/data/0 declares 3758096384 bytes from ${compressed} compressed (${Math.round(3758096384 / compressed)}:1), over the 1000:1 inflation bound`);
  });

  it('stops inflating as soon as the stream passes its declared size (a stream of 4 GiB declaring 16 MiB)', () => {
    const declared = 16 << 20;
    const b = deflatedArchive(one({ storage: f32(declared / 4), size: [declared / 4] }), zeroStream(4096, 9), declared);
    const t0 = performance.now();
    expect(refusal(() => loadStateDict(b, 'bomb.pt'))).toBe('bomb.pt: entry archive/data/0 does not inflate to its declared 16777216 bytes (inflating was stopped where it passed them)');
    // Inflating the whole 4 GiB would take many seconds and gigabytes.
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('refuses a deflate entry whose compressed bytes far exceed what it declares', () => {
    const noise = Uint8Array.from({ length: 1 << 16 }, (_, i) => (i * 2654435761) >>> 24);
    const b = archive(one({ storage: f32(25), size: [25] }), noise, true);
    b.writeUInt32LE(100, centralRecord(b, 'archive/data/0') + 24);
    expect(refusal(() => loadStateDict(b, 'bomb.pt'))).toMatch(/^bomb\.pt: entry archive\/data\/0 has \d+ compressed bytes for 100 declared, more than any deflate stream needs$/);
  });

  it('refuses a storage larger than every tensor of the pickle reaches', () => {
    const b = archive(one({ storage: f32(1 << 18), size: [1] }), new Uint8Array(1 << 20));
    expect(refusal(() => loadStateDict(b, 'bomb.pt'))).toBe('bomb.pt: storage archive/data/0 declares 1048576 bytes, but the tensors that use it reach only the first 4');
  });

  it('charges a decoded storage against the budget the file justifies (a strided view reaching a 229:1 storage)', () => {
    const n = 2 << 20;
    const b = deflatedArchive(one({ storage: f32(n), size: [2], stride: [n - 1] }), zeroStream(8, 1), 4 * n);
    expect(b.length).toBeLessThan(64 * 1024);
    expect(refusal(() => loadStateDict(b, 'bomb.pt'))).toBe(`bomb.pt: storage archive/data/0 (${n} FloatStorage elements) would need more memory than the checkpoint can justify`);
  });

  it('still loads views that together cover their storage, and empty tensors without reading their storage', () => {
    const s = f32(4);
    const value = new Map<string, SaveValue>([
      ['a', { storage: s, size: [2] }],
      ['b', { storage: s, offset: 2, size: [2] }],
      ['empty', { storage: { key: 'gone', type: 'FloatStorage', numel: 0 }, size: [0, 3] }],
    ]);
    const sd = loadStateDict(archive(value, bytesOf(Float32Array.of(1, 2, 3, 4))), 'views.pt');
    expect(sd.get('a')!.data).toEqual(Float32Array.of(1, 2));
    expect(sd.get('b')!.data).toEqual(Float32Array.of(3, 4));
    expect(sd.get('empty')).toEqual({ shape: [0, 3], data: new Float32Array(0) });
  });
});

describe('central directory sizes and offsets stay within the file', () => {
  const valid = (zip64 = false): Buffer => archive(one({ storage: f32(4), size: [4] }), bytesOf(new Float32Array(4)), false, { zip64 });
  const eocd = (b: Buffer): number => b.length - 22;
  const locator = (b: Buffer): number => eocd(b) - 20;
  const zip64Record = (b: Buffer): number => Number(b.readBigUInt64LE(locator(b) + 8));
  const cases: [string, () => Buffer, RegExp][] = [
    ['directory size past the end', () => patch(valid(), (b) => b.writeUInt32LE(0x7fffffff, eocd(b) + 12)), /central directory lies outside the archive/],
    ['ZIP64 directory offset past the end', () => patch(valid(true), (b) => b.writeBigUInt64LE(1n << 40n, zip64Record(b) + 48)), /central directory lies outside the archive/],
    ['ZIP64 directory size past the end', () => patch(valid(true), (b) => b.writeBigUInt64LE(1n << 40n, zip64Record(b) + 40)), /central directory lies outside the archive/],
    ['ZIP64 offset beyond 2^53', () => patch(valid(true), (b) => b.writeBigUInt64LE(1n << 63n, zip64Record(b) + 48)), /central directory offset 9223372036854775808 is out of range/],
    ['ZIP64 record offset past the locator', () => patch(valid(true), (b) => b.writeBigUInt64LE(1n << 40n, locator(b) + 8)), /ZIP64 end-of-central-directory record is missing or corrupt/],
    ['ZIP64 entry offset past the data', () => patch(valid(true), (b) => b.writeBigUInt64LE(1n << 40n, centralRecord(b, 'archive/data/0') + 46 + 14 + 20)), /entry archive\/data\/0 lies outside the archive data/],
    ['entry data running into the directory', () => patch(valid(), (b) => b.writeUInt16LE(0xffff, b.indexOf(Buffer.from('archive/data/0')) - 30 + 28)), /entry archive\/data\/0 runs into the central directory/],
    [
      `directory over ${MAX_DIRECTORY_BYTES} bytes`,
      () =>
        patch(archive(one({ storage: f32(4), size: [4] }), new Uint8Array(MAX_DIRECTORY_BYTES + 1)), (b) => {
          b.writeUInt32LE(eocd(b), eocd(b) + 12);
          b.writeUInt32LE(0, eocd(b) + 16);
        }),
      /central directory is 16777\d+ bytes, over the 16777216-byte limit/,
    ],
  ];
  it.each(cases)('%s', (_name, build, reason) => {
    expect(refusal(() => loadStateDict(build(), 'bomb.pt'))).toMatch(reason);
  });
});

function patch(b: Buffer, mutate: (b: Buffer) => void): Buffer {
  mutate(b);
  return b;
}

/** A stored-only ZIP written by position, so an entry given as `hole` bytes is a hole in a sparse file. */
async function writeSparseZip(path: string, entries: { name: string; data?: Uint8Array; hole?: number }[]): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const central: Buffer[] = [];
    let pos = 0;
    for (const e of entries) {
      const name = Buffer.from(e.name);
      const size = e.data?.length ?? e.hole!;
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(20, 4);
      local.writeUInt32LE(size, 18);
      local.writeUInt32LE(size, 22);
      local.writeUInt16LE(name.length, 26);
      await fh.write(Buffer.concat([local, name, e.data ?? Buffer.alloc(0)]), 0, undefined, pos);
      const cd = Buffer.alloc(46);
      cd.writeUInt32LE(0x02014b50, 0);
      cd.writeUInt16LE(20, 4);
      cd.writeUInt16LE(20, 6);
      cd.writeUInt32LE(size, 20);
      cd.writeUInt32LE(size, 24);
      cd.writeUInt16LE(name.length, 28);
      cd.writeUInt32LE(pos, 42);
      central.push(cd, name);
      pos += 30 + name.length + size;
    }
    const dir = Buffer.concat(central);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(entries.length, 8);
    end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(dir.length, 12);
    end.writeUInt32LE(pos, 16);
    await fh.write(Buffer.concat([dir, end]), 0, undefined, pos);
  } finally {
    await fh.close();
  }
}

/** Counts the bytes a loader reads through a source. */
function counting(src: ByteSource): ByteSource & { bytesRead: number; largestRead: number } {
  const c = {
    size: src.size,
    bytesRead: 0,
    largestRead: 0,
    read(pos: number, length: number) {
      c.bytesRead += length;
      c.largestRead = Math.max(c.largestRead, length);
      return src.read(pos, length);
    },
  };
  return c;
}

describe('large checkpoints are read by position, never whole', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rsclip-hostile-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads the weights of a 3 GiB open_clip training checkpoint (a sparse file: its optimizer state is a hole) reading only kilobytes', async () => {
    const optimizerBytes = 3 * 1024 ** 3;
    const value = new Map<string, SaveValue>([
      ['epoch', 32],
      ['state_dict', new Map<string, SaveValue>([['module.visual.proj', { storage: f32(4), size: [2, 2] }]])],
      ['optimizer', new Map<string, SaveValue>([['state', new Map<number, SaveValue>([[0, new Map<string, SaveValue>([['exp_avg', { storage: { key: '1', type: 'FloatStorage', numel: optimizerBytes / 4 }, size: [optimizerBytes / 4] }]])]])]])],
    ]);
    const path = join(dir, 'epoch_32.pt');
    await writeSparseZip(path, [
      { name: 'archive/data.pkl', data: pickleOf(value) },
      { name: 'archive/data/0', data: bytesOf(Float32Array.of(1, 2, 3, 4)) },
      { name: 'archive/data/1', hole: optimizerBytes },
      { name: 'archive/version', data: Buffer.from('3\n') },
    ]);
    const st = statSync(path);
    expect(st.size).toBeGreaterThan(optimizerBytes);
    // Where the filesystem has no sparse files the hole is written out as zeros: slower, the same test.
    console.log(`sparse checkpoint: ${st.size} bytes, ${st.blocks * 512} on disk`);
    // What the loader used to do, whole-file reads, cannot even start on it.
    await expect(readFile(path)).rejects.toMatchObject({ code: 'ERR_FS_FILE_TOO_LARGE' });

    expect(await loadStateDictFile(path)).toEqual(new Map([['visual.proj', { shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) }]]));
    const file = openFileSource(path);
    try {
      const src = counting(file);
      loadStateDict(src, path);
      expect(src.bytesRead).toBeLessThan(100_000);
    } finally {
      file.close();
    }
  });

  it('reads a safetensors file as its header, then each tensor at its offset', async () => {
    const sd = new Map([
      ['a', { shape: [1000], data: Float32Array.from({ length: 1000 }, (_, i) => i) }],
      ['b', { shape: [3], data: Float32Array.of(-1, 0, 1) }],
    ]);
    const path = join(dir, 'model.safetensors');
    await writeFile(path, writeSafetensors(sd));
    const file = openFileSource(path);
    try {
      const src = counting(file);
      expect(readSafetensors(src, path).get('a')!.data).toEqual(sd.get('a')!.data);
      // Every byte once: the length, the header, then the two tensors, none read with another.
      expect(src.bytesRead).toBe(file.size);
      expect(src.largestRead).toBe(4000);
    } finally {
      file.close();
    }
    expect(await loadStateDictFile(path)).toEqual(sd);
  });

  it('reads a ZIP by position from memory too: the directory from the end, then the entry asked for', () => {
    const b = archive(one({ storage: f32(4), size: [4] }), bytesOf(Float32Array.of(5, 6, 7, 8)));
    const src = counting(bytesSource(b));
    const zip = new ZipArchive(src, 'mem.pt');
    const afterDirectory = src.bytesRead;
    expect(new Float32Array(zip.read('archive/data/0', 16).buffer)).toEqual(Float32Array.of(5, 6, 7, 8));
    expect(src.bytesRead - afterDirectory).toBe(30 + 16);
  });
});

describe('rsclip bench-hostile', () => {
  it('refuses the 2000000x1 PNG and the 1 MiB .pt declaring 3.5 GiB, each in one line under 512 MB peak RSS, and ends with the JSON result', async () => {
    const { stdout } = await promisify(execFile)('npx', ['tsx', 'cli/main.ts', 'bench-hostile'], { timeout: 120_000 });
    const lines = stdout.trim().split('\n');
    const r = JSON.parse(lines.at(-1)!) as { cases: { name: string; outcome: string; peak_rss_mb: number }[]; limit_mb: number; within_limit: boolean };
    expect(r.cases.map((c) => c.name)).toEqual(['png-2000000x1', 'pt-3.5GiB-storage']);
    expect(r.cases[0]!.outcome).toMatch(/^refused: .*thin-2000000x1\.png: image is 2000000 x 1: its short side resized to 224 makes it 448000000 x 224, over the limit/);
    expect(r.cases[1]!.outcome).toMatch(/^refused: .*bomb-3\.5GiB-storage\.pt: entry archive\/data\/0 declares 3758096384 bytes from \d+ compressed \(\d+:1\), over the 1000:1 inflation bound$/);
    for (const c of r.cases) {
      expect(c.peak_rss_mb, c.name).toBeGreaterThan(0);
      expect(c.peak_rss_mb, c.name).toBeLessThan(512);
      expect(lines.some((l) => l.startsWith(`${c.name} (`) && l.endsWith(`peak RSS ${c.peak_rss_mb} MB`))).toBe(true);
    }
    expect(r).toMatchObject({ limit_mb: 512, within_limit: true });
  }, 120_000);
});
