import { describe, expect, it } from 'vitest';
import { MAX_HEADER_BYTES, readSafetensors, readSafetensorsF32, safetensorsParts, writeSafetensors } from '../../core/tensors/safetensors.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { bitsOf, fixtureBytes, fixtureJson } from './fixtures.ts';
import { toBf16, toF16 } from './half-encode.ts';

/** A safetensors file from a literal header object and raw data bytes, so malformed headers can be built. */
function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

describe('safetensors', () => {
  it('reads the open_clip-tiny fixture with the keys and shapes open_clip reported', () => {
    const sd = readSafetensorsF32(fixtureBytes('open_clip-tiny/model.safetensors'), 'model.safetensors');
    const meta = fixtureJson<{ state_dict_keys: [string, number[]][]; param_count: number }>('open_clip-tiny/meta.json');
    expect(new Map([...sd].map(([k, t]) => [k, t.shape]))).toEqual(new Map(meta.state_dict_keys));
    expect([...sd.values()].reduce((n, t) => n + t.data.length, 0)).toBe(meta.param_count);
    // logit_scale is initialised to ln(1/0.07) in float32.
    expect(sd.get('logit_scale')!.data[0]).toBe(Math.fround(Math.log(1 / 0.07)));
  });

  it('rewrites the fixture byte for byte (same sort order, metadata and padding as the Python writer)', () => {
    const bytes = fixtureBytes('open_clip-tiny/model.safetensors');
    const again = writeSafetensors(readSafetensorsF32(bytes), { format: 'pt' });
    expect(Buffer.compare(Buffer.from(again), Buffer.from(bytes))).toBe(0);
  });

  it('round-trips values bit-exactly, including 0-d, empty, NaN and -0 tensors', () => {
    const sd: StateDict = new Map([
      ['b.weight', { shape: [2, 3], data: Float32Array.from([1.5, -2, 3e-38, 1e38, Number.NaN, -0]) }],
      ['a.scalar', { shape: [], data: Float32Array.from([Math.PI]) }],
      ['c.empty', { shape: [0, 4], data: new Float32Array(0) }],
      ['é.unicode', { shape: [1], data: Float32Array.from([7]) }],
    ]);
    const bytes = writeSafetensors(sd, { note: 'x' });
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);
    const back = readSafetensors(bytes);
    expect([...back.keys()].sort()).toEqual([...sd.keys()].sort());
    for (const [k, t] of sd) {
      expect(back.get(k)!.dtype).toBe('F32');
      expect(back.get(k)!.shape).toEqual(t.shape);
      expect(bitsOf(back.get(k)!.data as Float32Array)).toEqual(bitsOf(t.data));
    }
  });

  it('writes BatchNorm batch counters as I64, as torch state dicts hold them, and reads them back as numbers', () => {
    const sd: StateDict = new Map([
      ['visual.bn1.num_batches_tracked', { shape: [], data: Float32Array.of(5) }],
      ['visual.bn1.running_mean', { shape: [2], data: Float32Array.of(0.25, -1) }],
    ]);
    const bytes = writeSafetensors(sd);
    const raw = readSafetensors(bytes);
    expect(raw.get('visual.bn1.num_batches_tracked')).toMatchObject({ dtype: 'I64', shape: [] });
    expect(raw.get('visual.bn1.num_batches_tracked')!.data).toEqual(BigInt64Array.of(5n));
    expect(raw.get('visual.bn1.running_mean')!.dtype).toBe('F32');
    expect(readSafetensorsF32(bytes).get('visual.bn1.num_batches_tracked')!.data).toEqual(Float32Array.of(5));
  });

  it('streams as a header and views of the tensors themselves, in file order, which concatenate to the file', () => {
    const sd = readSafetensorsF32(fixtureBytes('open_clip-tiny/model.safetensors'));
    const parts = safetensorsParts(sd, { format: 'pt' });
    expect(Buffer.concat(parts).equals(Buffer.from(writeSafetensors(sd, { format: 'pt' })))).toBe(true);
    const float = [...sd].filter(([k]) => !k.endsWith('num_batches_tracked'));
    // No copy of the state: every float32 part is a view of its tensor's own buffer.
    for (const [, t] of float) expect(parts.some((p) => p.buffer === t.data.buffer && p.byteOffset === t.data.byteOffset)).toBe(true);
  });

  it('refuses to write a tensor whose data does not match its shape', () => {
    expect(() => writeSafetensors(new Map([['x', { shape: [2, 2], data: new Float32Array(3) }]]))).toThrow(/"x" has 3 values but shape \[2,2\] needs 4/);
  });

  it('reads every supported dtype and upcasts float types in readSafetensorsF32', () => {
    const f16 = toF16([1, -2, 65504, 2 ** -24]);
    const bf16 = toBf16([1, -3.5, 2 ** 100]);
    const f64 = Float64Array.from([0.1, -1e300]);
    const i64 = BigInt64Array.from([0n, 49407n, -5n]);
    const i32 = Int32Array.from([7, -8]);
    const u8 = Uint8Array.from([0, 255]);
    const parts = [f16, bf16, f64, i64, i32, u8].map(bytesOf);
    const offsets: [number, number][] = [];
    let o = 0;
    for (const p of parts) offsets.push([o, (o += p.length)]);
    const header = {
      h: { dtype: 'F16', shape: [4], data_offsets: offsets[0] },
      bh: { dtype: 'BF16', shape: [3], data_offsets: offsets[1] },
      d: { dtype: 'F64', shape: [2], data_offsets: offsets[2] },
      l: { dtype: 'I64', shape: [3], data_offsets: offsets[3] },
      i: { dtype: 'I32', shape: [2, 1], data_offsets: offsets[4] },
      u: { dtype: 'U8', shape: [2], data_offsets: offsets[5] },
      __metadata__: { format: 'pt' },
    };
    const file = rawSafetensors(header, concat(parts));
    const all = readSafetensors(file, 'mixed.safetensors');
    expect(all.get('h')).toEqual({ dtype: 'F16', shape: [4], data: Float32Array.from([1, -2, 65504, 2 ** -24]) });
    expect(all.get('bh')).toEqual({ dtype: 'BF16', shape: [3], data: Float32Array.from([1, -3.5, 2 ** 100]) });
    expect(all.get('d')!.data).toEqual(Float32Array.from([0.1, -Infinity]));
    expect(all.get('l')!.data).toEqual(i64);
    expect(all.get('i')).toEqual({ dtype: 'I32', shape: [2, 1], data: i32 });
    expect(all.get('u')!.data).toEqual(u8);
    const f32 = readSafetensorsF32(file);
    expect(f32.get('l')!.data).toEqual(Float32Array.from([0, 49407, -5]));
    expect(f32.get('u')!.data).toEqual(Float32Array.from([0, 255]));
    expect(f32.has('__metadata__')).toBe(false);
  });

  describe('refuses malformed files with a one-line error naming the file', () => {
    const four = new Uint8Array(16);
    const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } };
    const cases: [string, Uint8Array, RegExp][] = [
      ['empty file', new Uint8Array(0), /shorter than the 8-byte header length/],
      ['truncated header length', new Uint8Array(5), /shorter than the 8-byte header length/],
      ['header length past the end', rawSafetensors(ok, four).subarray(0, 40), /runs past the end of the 40-byte file/],
      ['huge header length', (() => { const b = rawSafetensors(ok, four); new DataView(b.buffer).setBigUint64(0, 2n ** 63n, true); return b; })(), new RegExp(`exceeds the ${MAX_HEADER_BYTES}-byte limit`)],
      ['header not JSON', rawSafetensors(null, four, '{"a": [1,'), /header is not UTF-8 JSON/],
      ['header not an object', rawSafetensors(null, four, '[1, 2]'), /does not start with "\{"/],
      ['header not UTF-8', rawSafetensors(null, four, '{"ab": 1}').map((b, i) => (i === 10 ? 0xff : b)), /header is not UTF-8 JSON/],
      ['unknown dtype', rawSafetensors({ a: { dtype: 'C64', shape: [2], data_offsets: [0, 16] } }, four), /"a" has unsupported dtype "C64"/],
      ['negative dim', rawSafetensors({ a: { dtype: 'F32', shape: [-4], data_offsets: [0, 16] } }, four), /"a" has an invalid shape \[-4\]/],
      ['negative offset', rawSafetensors({ a: { dtype: 'F32', shape: [4], data_offsets: [-1, 15] } }, four), /"a" has invalid data_offsets \[-1,15\]/],
      ['offset out of range', rawSafetensors({ a: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, four), /\[0, 32\] outside the 16-byte buffer/],
      ['reversed offsets', rawSafetensors({ a: { dtype: 'F32', shape: [0], data_offsets: [16, 0] } }, four), /\[16, 0\] outside/],
      ['shape disagrees with offsets', rawSafetensors({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, four), /needs 12 bytes, data_offsets give 16/],
      ['huge shape product', rawSafetensors({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 0x10000], data_offsets: [0, 16] } }, four), /data_offsets give 16/],
      ['overlapping tensors', rawSafetensors({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, four), /"b" overlaps the previous tensor at byte 8/],
      ['hole in the buffer', rawSafetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, four), /hole in the buffer at byte 4/],
      ['trailing bytes', rawSafetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, four), /tensors cover 8 bytes but the buffer holds 16/],
    ];
    it.each(cases)('%s', (_name, bytes, reason) => {
      let err: Error | undefined;
      try {
        readSafetensors(bytes, 'bad.safetensors');
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).toMatch(/^bad\.safetensors: not a valid safetensors file: /);
      expect(err?.message).toMatch(reason);
      expect(err?.message).not.toContain('\n');
    });
    it('accepts the well-formed file those cases were derived from', () => {
      expect([...readSafetensors(rawSafetensors(ok, four)).keys()]).toEqual(['a', 'b']);
    });
  });
});
