import { describe, expect, it } from 'vitest';
import { bytesSource } from '../../core/tensors/byte-source.ts';
import { loadStateDict, loadStateDictFile } from '../../worker/checkpoint/load.ts';
import { readSafetensorsF32, writeSafetensors } from '../../core/tensors/safetensors.ts';
import { ZipArchive } from '../../worker/checkpoint/torch-zip.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { fixtureBytes, fixtureJson } from './fixtures.ts';
import { toBf16, toF16 } from './half-encode.ts';
import { bytesOf, Pickle, type SaveValue, type TensorSpec, torchSave, writeTensor, writeZip, type ZipInput } from '../../worker/checkpoint/torch-writer.ts';

const TINY_PT = 'open_clip-tiny/model.pt';

function expectBitEqual(got: StateDict, want: StateDict): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, w] of want) {
    const g = got.get(k)!;
    expect(g.shape, k).toEqual(w.shape);
    const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    expect(Buffer.compare(bytes(g.data), bytes(w.data)), k).toBe(0);
  }
}

/** Every entry of a torch zip, to repack in another layout. */
function entriesOf(bytes: Uint8Array): ZipInput[] {
  const zip = new ZipArchive(bytesSource(bytes), 'fixture');
  return zip.names.map((name) => ({ name, data: zip.read(name, bytes.length) }));
}

const tinyReference = (): StateDict => readSafetensorsF32(fixtureBytes('open_clip-tiny/model.safetensors'));

describe('torch zip checkpoints: the open_clip fixtures', () => {
  it('loads open_clip-tiny/model.pt bit-identical to model.safetensors', () => {
    expectBitEqual(loadStateDict(fixtureBytes(TINY_PT), TINY_PT), tinyReference());
  });

  it('loads open_clip-tiny-rn/model.pt with its BatchNorm buffers (num_batches_tracked int64 -> 2)', async () => {
    const sd = await loadStateDictFile(new URL('../fixtures/open_clip-tiny-rn/model.pt', import.meta.url).pathname);
    const meta = fixtureJson<{ state_dict_keys: [string, number[], string][]; batchnorm_modules: string[] }>('open_clip-tiny-rn/meta.json');
    expect(new Map([...sd].map(([k, t]) => [k, t.shape]))).toEqual(new Map(meta.state_dict_keys.map(([k, s]) => [k, s])));
    for (const bn of meta.batchnorm_modules) {
      expect(Array.from(sd.get(`${bn}.num_batches_tracked`)!.data), bn).toEqual([2]);
      expect(sd.get(`${bn}.running_var`)!.data.every((v) => v > 0), bn).toBe(true);
    }
    expect(meta.state_dict_keys.filter(([, , d]) => d === 'int64').length).toBe(meta.batchnorm_modules.length);
  });

  it('loads the same weights repacked in the newer-torch layout (other top folder, byteorder, alignment, serialization_id)', () => {
    const old = entriesOf(fixtureBytes(TINY_PT));
    const renamed = old.map((e) => ({ ...e, name: e.name.replace(/^model\//, 'RemoteCLIP-ViT-B-32/') }));
    const extras: ZipInput[] = [
      { name: 'RemoteCLIP-ViT-B-32/.format_version', data: Buffer.from('1') },
      { name: 'RemoteCLIP-ViT-B-32/.storage_alignment', data: Buffer.from('64') },
      { name: 'RemoteCLIP-ViT-B-32/byteorder', data: Buffer.from('little') },
      { name: 'RemoteCLIP-ViT-B-32/.data/serialization_id', data: Buffer.from('0123456789') },
    ];
    const bytes = writeZip([renamed[0]!, ...extras, ...renamed.slice(1)], { align: 64 });
    expectBitEqual(loadStateDict(bytes, 'newer.pt'), tinyReference());
  });

  it('loads the weights from a deflated, ZIP64 archive', () => {
    const bytes = writeZip(entriesOf(fixtureBytes(TINY_PT)).map((e) => ({ ...e, deflate: true })), { zip64: true });
    expect(bytes.length).toBeLessThan(fixtureBytes(TINY_PT).length);
    expectBitEqual(loadStateDict(bytes, 'zip64.pt'), tinyReference());
  });

  it('loads safetensors through the same entry point, and a file path', async () => {
    expectBitEqual(loadStateDict(fixtureBytes('open_clip-tiny/model.safetensors'), 'model.safetensors'), tinyReference());
    const path = new URL('../fixtures/open_clip-tiny/model.safetensors', import.meta.url).pathname;
    expectBitEqual(await loadStateDictFile(path), tinyReference());
    await expect(loadStateDictFile(path, 1000)).rejects.toThrow(/6909308 bytes exceeds the 1000-byte checkpoint limit/);
    await expect(loadStateDictFile(`${path}.missing`)).rejects.toThrow(/model\.safetensors\.missing: no such checkpoint file/);
    // A folder (a checkpoint's directory named instead of its file) is said to be one, not "not found".
    const folder = new URL('../fixtures/open_clip-tiny', import.meta.url).pathname;
    await expect(loadStateDictFile(folder)).rejects.toThrow(/open_clip-tiny: is a folder, not a checkpoint file: name the \.pt or \.safetensors file in it$/);
  });
});

const f32 = (xs: number[]): Uint8Array => bytesOf(Float32Array.from(xs));
const storage = (key: string, type: TensorSpec['storage']['type'], numel: number): TensorSpec['storage'] => ({ key, type, numel });

describe('torch zip checkpoints built without torch', () => {
  const iota = Array.from({ length: 12 }, (_, i) => i);
  const shared = storage('0', 'FloatStorage', 12);

  it('assembles views that share one storage: strided, offset, 0-d and empty', () => {
    const sd = loadStateDict(
      torchSave(
        new Map<string, SaveValue>([
          ['full', { storage: shared, size: [3, 4] }],
          ['transposed', { storage: shared, size: [4, 3], stride: [1, 4] }],
          ['every_other_col', { storage: shared, offset: 1, size: [3, 2], stride: [4, 2] }],
          ['row1', { storage: shared, offset: 4, size: [4] }],
          ['scalar', { storage: shared, offset: 7, size: [] }],
          ['broadcast', { storage: shared, offset: 2, size: [2, 3], stride: [0, 1] }],
          ['empty', { storage: shared, offset: 12, size: [0, 5] }],
        ]),
        { '0': f32(iota) },
      ),
      'views.pt',
    );
    expect(sd.get('full')).toEqual({ shape: [3, 4], data: Float32Array.from(iota) });
    expect(sd.get('transposed')).toEqual({ shape: [4, 3], data: Float32Array.from([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]) });
    expect(sd.get('every_other_col')).toEqual({ shape: [3, 2], data: Float32Array.from([1, 3, 5, 7, 9, 11]) });
    expect(sd.get('row1')).toEqual({ shape: [4], data: Float32Array.from([4, 5, 6, 7]) });
    expect(sd.get('scalar')).toEqual({ shape: [], data: Float32Array.from([7]) });
    expect(sd.get('broadcast')).toEqual({ shape: [2, 3], data: Float32Array.from([2, 3, 4, 2, 3, 4]) });
    expect(sd.get('empty')).toEqual({ shape: [0, 5], data: new Float32Array(0) });
    // Each view owns its data: writing one must not change another.
    sd.get('full')!.data[4] = -1;
    expect(sd.get('row1')!.data[0]).toBe(4);
  });

  it('gives a tensor pickled twice (one object under two keys) two independent copies', () => {
    const p = new Pickle(2).global('collections', 'OrderedDict').emptyTuple().reduce().put().mark().str('a');
    writeTensor(p, { storage: shared, size: [12] });
    const tensorSlot = p.nextMemo - 1; // writeTensor memoizes the tensor last
    p.str('b').get(tensorSlot).setitems();
    const pkl = p.stop();
    const sd = loadStateDict(writeZip([{ name: 'm/data.pkl', data: pkl }, { name: 'm/data/0', data: f32(iota) }]), 'tied.pt');
    expect(sd.get('a')).toEqual({ shape: [12], data: Float32Array.from(iota) });
    expect(sd.get('b')).toEqual(sd.get('a'));
    sd.get('b')!.data[0] = 99;
    expect(sd.get('a')!.data[0]).toBe(0);
  });

  it('upcasts float16, bfloat16 and float64 storages and converts integer and bool buffers', () => {
    const halfVals = [1, -0.5, 65504, 2 ** -24, 0.099975586];
    const bfVals = [1, -3.5, 2 ** 100, 1.5 * 2 ** -100];
    const sd = loadStateDict(
      torchSave(
        new Map<string, SaveValue>([
          ['h', { storage: storage('h', 'HalfStorage', 5), size: [5] }],
          ['bh', { storage: storage('b', 'BFloat16Storage', 4), size: [2, 2] }],
          ['d', { storage: storage('d', 'DoubleStorage', 2), size: [2] }],
          ['l', { storage: storage('l', 'LongStorage', 1), size: [] }],
          ['i', { storage: storage('i', 'IntStorage', 2), size: [2] }],
          ['u', { storage: storage('u', 'ByteStorage', 2), size: [2] }],
          ['flag', { storage: storage('f', 'BoolStorage', 2), size: [2] }],
        ]),
        {
          h: bytesOf(toF16(halfVals)),
          b: bytesOf(toBf16(bfVals)),
          d: bytesOf(Float64Array.from([0.1, 1e300])),
          l: bytesOf(BigInt64Array.from([123456789n])),
          i: bytesOf(Int32Array.from([-7, 2 ** 30])),
          u: Uint8Array.from([0, 255]),
          f: Uint8Array.from([1, 0]),
        },
        { protocol: 4 },
      ),
      'dtypes.pt',
    );
    expect(sd.get('h')!.data).toEqual(Float32Array.from([1, -0.5, 65504, 2 ** -24, 0.0999755859375]));
    expect(sd.get('bh')).toEqual({ shape: [2, 2], data: Float32Array.from(bfVals) });
    expect(sd.get('d')!.data).toEqual(Float32Array.from([0.1, Infinity]));
    expect(Array.from(sd.get('l')!.data)).toEqual([123456792]);
    expect(Array.from(sd.get('i')!.data)).toEqual([-7, 2 ** 30]);
    expect(Array.from(sd.get('u')!.data)).toEqual([0, 255]);
    expect(Array.from(sd.get('flag')!.data)).toEqual([1, 0]);
  });

  it('honours byteorder "big" by swapping storage bytes', () => {
    const swapped = Buffer.from(f32([1.5, -2, 3]));
    swapped.swap32();
    const h = Buffer.from(bytesOf(toF16([0.25, 8])));
    h.swap16();
    const value = new Map<string, SaveValue>([
      ['w', { storage: storage('0', 'FloatStorage', 3), size: [3] }],
      ['h', { storage: storage('1', 'HalfStorage', 2), size: [2] }],
    ]);
    const entries = entriesOf(torchSave(value, { '0': swapped, '1': h }));
    const bytes = writeZip([...entries, { name: 'archive/byteorder', data: Buffer.from('big') }]);
    const sd = loadStateDict(bytes, 'big.pt');
    expect(Array.from(sd.get('w')!.data)).toEqual([1.5, -2, 3]);
    expect(Array.from(sd.get('h')!.data)).toEqual([0.25, 8]);
  });

  it('takes state_dict from an open_clip training checkpoint, strips module. and skips the optimizer', () => {
    const w = storage('0', 'FloatStorage', 6);
    const ckpt = new Map<string, SaveValue>([
      ['epoch', 3],
      ['name', 'remoteclip-finetune'],
      [
        'state_dict',
        new Map<string, SaveValue>([
          ['module.visual.proj', { storage: w, size: [2, 2] }],
          ['module.logit_scale', { storage: w, offset: 5, size: [] }],
        ]),
      ],
      [
        'optimizer',
        new Map<string, SaveValue>([
          [
            'state',
            new Map<number, SaveValue>([
              [0, new Map<string, SaveValue>([['step', { storage: storage('1', 'FloatStorage', 1), size: [] }], ['exp_avg', { storage: storage('2', 'FloatStorage', 4), size: [2, 2] }]])],
            ]),
          ],
          ['param_groups', [new Map<string, SaveValue>([['lr', 0.001], ['betas', { tuple: [0.9, 0.98] }], ['amsgrad', false], ['foreach', null], ['params', [0, 1]]])]],
        ]),
      ],
      ['scaler', new Map<string, SaveValue>([['scale', 65536.0], ['_growth_tracker', 2 ** 40]])],
    ]);
    // The optimizer storages are deliberately absent: they must never be read.
    const sd = loadStateDict(torchSave(ckpt, { '0': f32([1, 2, 3, 4, 5, 6]) }, { newer: true, align: 64 }), 'epoch_3.pt');
    expect(sd).toEqual(
      new Map([
        ['visual.proj', { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }],
        ['logit_scale', { shape: [], data: Float32Array.from([6]) }],
      ]),
    );
  });

  it('strips module. from safetensors keys too', () => {
    const st = writeSafetensors(new Map([['module.a', { shape: [1], data: Float32Array.from([2]) }]]));
    expect([...loadStateDict(st, 'ddp.safetensors').keys()]).toEqual(['a']);
  });
});
