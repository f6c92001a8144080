import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zlib, deflateRawSync } from 'node:zlib';
import sharp from 'sharp';
import type { HostileReply, HostileRequest } from '../bench-hostile-runner.ts';
import { forkModule } from '../child-process.ts';
import { defineCommand } from '../command.ts';
const LIMIT_MB = 512;
const IMAGE_SIZE = 224;
const STORAGE_DECLARED = 3.5 * 1024 ** 3;
const PT_BYTES = 1024 * 1024;

/** A 2000000 x 1 solid PNG: about 6 KB that a resampler holding the whole resized width would turn into gigabytes. */
const thinPng = (): Promise<Buffer> =>
  sharp({ create: { width: 2_000_000, height: 1, channels: 3, background: { r: 40, g: 120, b: 200 } } })
    .png({ compressionLevel: 9 })
    .toBuffer();

const u16 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff];
const u32 = (n: number): number[] => [...u16(n & 0xffff), ...u16(n >>> 16)];
const str = (s: string): number[] => [0x58, ...u32(Buffer.byteLength(s)), ...Buffer.from(s)]; // BINUNICODE
const global = (module: string, name: string): number[] => [0x63, ...Buffer.from(`${module}\n${name}\n`)];

/**
 * data.pkl of `{'w': tensor}` as torch.save pickles it (protocol 2): a one-element view of a float32 storage of
 * `numel` elements, so that only the storage, not the tensor, is large.
 */
function statePickle(numel: number): Buffer {
  const storage = [0x28, ...str('storage'), ...global('torch', 'FloatStorage'), ...str('0'), ...str('cpu'), 0x4a, ...u32(numel), 0x74, 0x51];
  const one = [0x4b, 1, 0x85]; // (1,)
  const noHooks = [...global('collections', 'OrderedDict'), 0x29, 0x52];
  const rebuild = [...global('torch._utils', '_rebuild_tensor_v2'), 0x28, ...storage, 0x4b, 0, ...one, ...one, 0x89, ...noHooks, 0x74, 0x52];
  return Buffer.from([0x80, 2, 0x7d, ...str('w'), ...rebuild, 0x73, 0x2e]);
}

/**
 * About `bytes` of deflate stream that declares `declared` bytes: copies of a sync-flushed block run of zeros (each
 * starts at a byte boundary and refers to nothing before it), then an empty final block. Built in milliseconds,
 * without ever holding what it inflates to.
 */
function zeroBomb(bytes: number): Buffer {
  const block = deflateRawSync(Buffer.alloc(1024 * 1024), { level: 9, finishFlush: zlib.Z_SYNC_FLUSH });
  const copies = Math.max(1, Math.floor((bytes - 2) / block.length));
  return Buffer.concat([...Array.from({ length: copies }, () => block), Buffer.from([0x03, 0x00])]);
}

interface ZipItem {
  name: string;
  data: Buffer;
  method: 0 | 8;
  size: number;
}

/** A minimal ZIP (no CRCs, which torch may omit too) whose central directory states each entry's declared size. */
function zip(items: ZipItem[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const it of items) {
    const name = Buffer.from(it.name);
    const sizes = [...u32(it.data.length), ...u32(it.size), ...u16(name.length), ...u16(0)];
    const local = Buffer.from([...u32(0x04034b50), ...u16(20), ...u16(0), ...u16(it.method), ...u32(0), ...u32(0), ...sizes]);
    central.push(Buffer.from([...u32(0x02014b50), ...u16(20), ...u16(20), ...u16(0), ...u16(it.method), ...u32(0), ...u32(0), ...sizes, ...u16(0), ...u16(0), ...u16(0), ...u32(0), ...u32(pos)]), name);
    parts.push(local, name, it.data);
    pos += local.length + name.length + it.data.length;
  }
  const dir = Buffer.concat(central);
  const eocd = Buffer.from([...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(items.length), ...u16(items.length), ...u32(dir.length), ...u32(pos), ...u16(0)]);
  return Buffer.concat([...parts, dir, eocd]);
}

/** A torch.save-shaped archive of about 1 MiB whose one storage entry declares 3.5 GiB. */
function bombCheckpoint(): Buffer {
  const pkl = statePickle(STORAGE_DECLARED / 4);
  return zip([
    { name: 'archive/data.pkl', data: pkl, method: 0, size: pkl.length },
    { name: 'archive/data/0', data: zeroBomb(PT_BYTES - 512), method: 8, size: STORAGE_DECLARED },
    { name: 'archive/version', data: Buffer.from('3\n'), method: 0, size: 2 },
  ]);
}

interface CaseResult {
  name: string;
  outcome: string;
  peak_rss_mb: number | null;
  seconds: number | null;
}

/** One case in a fresh process; a child that dies (killed for memory, say) is reported, not thrown. */
async function runCase(name: string, request: HostileRequest): Promise<CaseResult> {
  const child = forkModule(new URL('../bench-hostile-runner.ts', import.meta.url));
  try {
    await child.next();
    const r = await child.request<HostileReply>(request);
    return { name, outcome: r.outcome, peak_rss_mb: r.peakRssMb, seconds: Number(r.seconds.toFixed(3)) };
  } catch (e) {
    return { name, outcome: `failed: ${String((e as Error).message).split('\n')[0]}`, peak_rss_mb: null, seconds: null };
  } finally {
    await child.stop();
  }
}

/** Refused or handled, in one line, within the memory limit. */
const withinLimit = (c: CaseResult): boolean => /^(refused|decoded|loaded): [^\n]*$/.test(c.outcome) && c.peak_rss_mb !== null && c.peak_rss_mb <= LIMIT_MB;

export default defineCommand({
  name: 'bench-hostile',
  summary: `decode a 2000000x1 PNG and load a 1 MiB .pt declaring a 3.5 GiB storage, each in its own process: refused in one line under ${LIMIT_MB} MB peak RSS; last line is JSON`,
  flags: {},
  async run() {
    const dir = await mkdtemp(join(tmpdir(), 'rsclip-bench-hostile-'));
    try {
      const png = join(dir, 'thin-2000000x1.png');
      const pt = join(dir, 'bomb-3.5GiB-storage.pt');
      const pngBytes = await thinPng();
      const ptBytes = bombCheckpoint();
      await writeFile(png, pngBytes);
      await writeFile(pt, ptBytes);
      const cases: CaseResult[] = [];
      const run = async (what: string, name: string, request: HostileRequest): Promise<void> => {
        const c = await runCase(name, request);
        console.log(`${name} (${what}): ${c.outcome}; peak RSS ${c.peak_rss_mb ?? '?'} MB`);
        cases.push(c);
      };
      await run(`${pngBytes.length}-byte PNG through preprocessImage, size ${IMAGE_SIZE}`, 'png-2000000x1', { kind: 'image', path: png, size: IMAGE_SIZE });
      await run(`${ptBytes.length}-byte .pt declaring ${STORAGE_DECLARED} bytes through loadStateDictFile`, 'pt-3.5GiB-storage', { kind: 'checkpoint', path: pt });
      const within = cases.every(withinLimit);
      console.log(JSON.stringify({ cases, limit_mb: LIMIT_MB, within_limit: within }));
      return within ? 0 : 1;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
