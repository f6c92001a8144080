import { describe, expect, it } from 'vitest';
import { CheckpointError } from '../../core/tensors/errors.ts';
import { loadStateDict } from '../../worker/checkpoint/load.ts';
import { MAX_PICKLE_OPS } from '../../worker/checkpoint/unpickle.ts';
import { fixtureBytes } from './fixtures.ts';
import { bytesOf, Pickle, type SaveValue, type TensorSpec, torchSave, writeTensor, writeZip, type ZipInput } from '../../worker/checkpoint/torch-writer.ts';

/** A torch archive around a hand-written data.pkl, with an optional float storage '0' of 4 values. */
function withPickle(pkl: Uint8Array, storages: Record<string, Uint8Array> = { '0': bytesOf(new Float32Array(4)) }): Uint8Array {
  const entries: ZipInput[] = [{ name: 'archive/data.pkl', data: pkl }];
  for (const [k, v] of Object.entries(storages)) entries.push({ name: `archive/data/${k}`, data: v });
  return writeZip(entries);
}

const p2 = (): Pickle => new Pickle(2);
const four: TensorSpec['storage'] = { key: '0', type: 'FloatStorage', numel: 4 };
const one = (t: TensorSpec): Map<string, SaveValue> => new Map<string, SaveValue>([['w', t]]);
const saved = (v: SaveValue, storages: Record<string, Uint8Array> = { '0': bytesOf(new Float32Array(4)) }): Uint8Array => torchSave(v, storages);

function zipWith(mutate: (b: Buffer) => void): Uint8Array {
  const b = Buffer.from(saved(one({ storage: four, size: [4] })));
  mutate(b);
  return new Uint8Array(b);
}
const eocdAt = (b: Buffer): number => b.length - 22;

const cases: [string, () => Uint8Array, RegExp][] = [
  // Pickle payloads that would run code under torch.load(weights_only=False).
  ['os.system GLOBAL', () => withPickle(p2().global('os', 'system').mark().str('touch /tmp/pwned').tuple().reduce().stop()), /global 'os system' \(os\.system\) is not allowed/],
  ['posix.system GLOBAL', () => withPickle(p2().global('posix', 'system').stop()), /global 'posix system' \(posix\.system\) is not allowed/],
  ['builtins.eval via STACK_GLOBAL', () => withPickle(new Pickle(4).global('builtins', 'eval').mark().str('1+1').tuple().reduce().stop()), /global 'builtins eval' \(builtins\.eval\) is not allowed/],
  ['torch.storage._load_from_bytes', () => withPickle(p2().global('torch.storage', '_load_from_bytes').stop()), /torch\.storage\._load_from_bytes\) is not allowed/],
  ['REDUCE on a storage type', () => withPickle(p2().global('torch', 'FloatStorage').emptyTuple().reduce().stop()), /REDUCE on torch\.FloatStorage, which is not callable here/],
  ['GLOBAL without a newline', () => withPickle(Uint8Array.from([0x80, 2, 0x63, ...Buffer.from('os'.repeat(200))])), /GLOBAL name is unterminated or too long/],
  ['INST opcode', () => withPickle(p2().op(0x69, ...Buffer.from('os\nsystem\n')).stop()), /opcode INST \(0x69\) is not allowed/],
  ['NEWOBJ opcode', () => withPickle(p2().op(0x81).stop()), /opcode NEWOBJ \(0x81\) is not allowed/],
  ['unknown opcode', () => withPickle(p2().op(0xff).stop()), /opcode unknown \(0xff\) is not allowed/],
  ['unsupported protocol', () => withPickle(Uint8Array.from([0x80, 9, 0x4e, 0x2e])), /pickle protocol 9 is not supported/],
  ['pickle without STOP', () => withPickle(p2().emptyDict().stop().subarray(0, 3)), /needs 1 bytes but 0 remain/],
  ['BINUNICODE length past the end', () => withPickle(Uint8Array.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x61, 0x2e])), /needs 4294967295 bytes but 2 remain/],
  ['FRAME length past the end', () => withPickle(Uint8Array.from([0x80, 4, 0x95, 1, 2])), /needs 8 bytes but 2 remain/],
  ['empty memo slot', () => withPickle(p2().op(0x6a, 0xff, 0xff, 0xff, 0x7f).stop()), /memo slot 2147483647 is empty/],
  ['stack underflow', () => withPickle(p2().op(0x73).stop()), /stack underflow/],
  ['items below a MARK are out of reach', () => withPickle(p2().emptyDict().mark().op(0x85).stop()), /stack underflow/],
  ['unbalanced STOP', () => withPickle(p2().none().none().stop()), /STOP with an unbalanced stack/],
  ['SETITEMS on a list', () => withPickle(p2().emptyList().mark().str('a').none().setitems().stop()), /SETITEM\(S\) on list/],
  ['invalid UTF-8 string', () => withPickle(Uint8Array.from([0x80, 2, 0x58, 1, 0, 0, 0, 0xff, 0x2e])), /string is not valid UTF-8/],
  ['unhashable dict key', () => withPickle(p2().emptyDict().emptyList().none().op(0x73).stop()), /dict key of type list is not supported/],
  // Structure that is valid pickle but not a state dict.
  ['root is a list', () => saved([1, 2]), /holds a list, not a state dict/],
  ['non-tensor entry in a state dict', () => saved(new Map<string, SaveValue>([['w', { storage: four, size: [4] }], ['note', 'hi']])), /entry "note" is a str, not a tensor; expected a state dict/],
  ['state_dict holding a non-tensor', () => saved(new Map<string, SaveValue>([['state_dict', new Map<string, SaveValue>([['x', 1.5]])]])), /entry "x" is a float, not a tensor; expected its "state_dict"/],
  ['empty state dict', () => saved(new Map()), /the state dict holds no tensors/],
  ['module. prefix collides', () => saved(new Map<string, SaveValue>([['a', { storage: four, size: [4] }], ['module.a', { storage: four, size: [4] }]])), /key a appears both with and without the "module\." prefix/],
  // Tensors and storages that disagree.
  ['shape larger than its storage', () => saved(one({ storage: four, size: [2, 3] })), /tensor w \(size \[2,3\], stride \[3,1\], offset 0\) reaches element 5 of storage 0, which has 4/],
  ['offset past the storage', () => saved(one({ storage: four, offset: 4, size: [1] })), /reaches element 4 of storage 0, which has 4/],
  ['huge shape', () => saved(one({ storage: four, size: [2 ** 40, 2 ** 40] })), /reaches element [\d.e+]+ of storage 0, which has 4/],
  ['stride-0 view of absurd size', () => saved(one({ storage: four, size: [2 ** 20, 2 ** 20], stride: [0, 0] })), /tensor w .* would need more memory than the checkpoint can justify/],
  ['storage entry smaller than its numel', () => saved(one({ storage: { key: '0', type: 'FloatStorage', numel: 2 ** 50 }, size: [4] })), /storage archive\/data\/0 holds 16 bytes, but 1125899906842624 FloatStorage elements need 4503599627370496/],
  ['storage entry missing', () => saved(one({ storage: four, size: [4] }), {}), /storage entry archive\/data\/0 is missing/],
  ['negative storage offset', () => withPickle(writeTensor(p2().emptyDict().str('w'), { storage: four, offset: -1, size: [4] }).op(0x73).stop()), /storage_offset is not a non-negative int/],
  ['negative size', () => saved(one({ storage: four, size: [-1] })), /tensor size must be a tuple of non-negative ints, got \(-1\)/],
  ['size and stride of different rank', () => saved(one({ storage: four, size: [4], stride: [1, 1] })), /differ in length/],
  ['storage key with a path', () => saved(one({ storage: { key: '../x', type: 'FloatStorage', numel: 4 }, size: [4] })), /storage key "\.\.\/x" is not a plain name/],
  ['unknown persistent id', () => withPickle(p2().mark().str('module').str('x').tuple().op(0x51).stop()), /persistent id is not \('storage', type, key, location, numel\)/],
  ['byteorder neither little nor big', () => writeZip([{ name: 'a/data.pkl', data: p2().emptyDict().stop() }, { name: 'a/byteorder', data: Buffer.from('middle') }]), /a\/byteorder says "middle"/],
  // Archives.
  ['data.pkl missing', () => writeZip([{ name: 'archive/data/0', data: new Uint8Array(4) }]), /archive\/data\.pkl is missing/],
  ['TorchScript archive', () => writeZip([{ name: 'ViT-B-32/data.pkl', data: p2().emptyDict().stop() }, { name: 'ViT-B-32/constants.pkl', data: p2().emptyTuple().stop() }]), /a TorchScript archive \(torch\.jit\.save\), not a state dict/],
  ['entries outside a top folder', () => writeZip([{ name: 'data.pkl', data: p2().emptyDict().stop() }]), /first entry "data\.pkl" is not inside a top folder/],
  ['truncated zip (half the fixture)', () => fixtureBytes('open_clip-tiny/model.pt').subarray(0, 3_000_000), /no end-of-central-directory record; truncated/],
  ['truncated zip (end record cut)', () => zipWith(() => undefined).subarray(0, zipWith(() => undefined).length - 10), /no end-of-central-directory record/],
  ['wrong magic', () => Uint8Array.from(Buffer.from('GIF89a this is not a checkpoint at all')), /neither a torch zip checkpoint nor a safetensors file/],
  ['legacy torch pickle', () => Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]), /legacy \(pre-1\.6\) torch serialization is not supported/],
  ['empty file', () => new Uint8Array(0), /neither a torch zip checkpoint nor a safetensors file/],
  ['central directory offset out of range', () => zipWith((b) => b.writeUInt32LE(0x7fffffff, eocdAt(b) + 16)), /central directory lies outside the archive/],
  ['absurd entry count', () => zipWith((b) => b.writeUInt16LE(60000, eocdAt(b) + 10)), /cannot hold 60000 entries/],
  ['local header offset out of range', () => zipWith((b) => b.writeUInt32LE(0x7ffffff0, b.indexOf(Buffer.from([0x50, 0x4b, 1, 2])) + 42)), /lies outside the archive data/],
  ['corrupt local header', () => zipWith((b) => b.writeUInt32LE(0, 0)), /neither a torch zip checkpoint nor a safetensors file/],
  ['corrupt local header of a later entry', () => zipWith((b) => b.writeUInt32LE(0, b.indexOf(Buffer.from('archive/data/0')) - 30)), /local header of entry archive\/data\/0 is corrupt/],
  ['unsupported compression', () => zipWith((b) => b.writeUInt16LE(12, b.indexOf(Buffer.from([0x50, 0x4b, 1, 2])) + 10)), /uses compression method 12/],
  ['encrypted entry', () => zipWith((b) => b.writeUInt16LE(1, b.indexOf(Buffer.from([0x50, 0x4b, 1, 2])) + 8)), /is encrypted/],
  [
    'deflate entry larger than declared',
    () => {
      const b = Buffer.from(writeZip([{ name: 'archive/data.pkl', data: p2().emptyDict().stop(), deflate: true }]));
      b.writeUInt32LE(2, b.indexOf(Buffer.from([0x50, 0x4b, 1, 2])) + 24);
      return new Uint8Array(b);
    },
    /entry archive\/data\.pkl does not inflate to its declared 2 bytes/,
  ],
  ['duplicate entry', () => writeZip([{ name: 'a/data.pkl', data: p2().emptyDict().stop() }, { name: 'a/data.pkl', data: p2().emptyDict().stop() }]), /entry a\/data\.pkl appears twice/],
  // safetensors through the same door.
  ['safetensors header truncated', () => fixtureBytes('open_clip-tiny/model.safetensors').subarray(0, 1000), /not a valid safetensors file: header length 6384 runs past the end of the 1000-byte file/],
];

describe('malformed checkpoints are refused with one clear line', () => {
  it.each(cases)('%s', (_name, build, reason) => {
    const bytes = build();
    let err: unknown;
    try {
      loadStateDict(bytes, 'bad.pt');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CheckpointError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^bad\.pt/);
    expect(msg).toMatch(reason);
    expect(msg).not.toContain('\n');
  });

  it('refuses a checkpoint over the size limit before looking inside', () => {
    expect(() => loadStateDict(new Uint8Array(100), 'big.pt', 99)).toThrow(/^big\.pt: 100 bytes exceeds the 99-byte checkpoint limit$/);
  });

  it('walks an absurdly nested pickle without recursion and refuses it as not a state dict', () => {
    const p = p2();
    for (let i = 0; i < 200_000; i++) p.emptyList();
    for (let i = 0; i < 199_999; i++) p.op(0x61);
    expect(() => loadStateDict(withPickle(p.stop()), 'deep.pt')).toThrow(/^deep\.pt: holds a list, not a state dict$/);
  });

  it(`refuses a pickle of more than ${MAX_PICKLE_OPS} opcodes (each could allocate)`, () => {
    const pkl = Uint8Array.from([0x80, 2, ...new Array<number>(MAX_PICKLE_OPS).fill(0x4e), 0x2e]);
    expect(() => loadStateDict(withPickle(pkl), 'wide.pt')).toThrow(/^wide\.pt \(archive\/data\.pkl\): refused pickle at byte \d+: more than 2000000 opcodes/);
  });

  it('keeps self-referencing structures cheap (a list appended to itself)', () => {
    const p = p2().emptyList().put();
    for (let i = 0; i < 10_000; i++) p.get(0).op(0x61);
    expect(() => loadStateDict(withPickle(p.stop()), 'loop.pt')).toThrow(/holds a list, not a state dict/);
  });
});
