import { describe, expect, it } from 'vitest';
import { PyDict, PyGlobal, PyList, PyTuple, type PyValue, unpickle } from '../../worker/checkpoint/unpickle.ts';

// Python 3.11 `pickle.dumps(v, protocol)` of this value (test data only; the hex stands in for running Python):
// v = {'ints': [0, 255, 256, 65535, 65536, -1, -2**31, 2**31, 2**63, -2**70],
//      'floats': [1.5, -0.0, 1e300, float('inf')],
//      'misc': [None, True, False, (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), 'héllo ✓', 'x' * 256],
//      3: {'nested': [[], {}]},
//      'od': collections.OrderedDict([('a', 1), ('b', 2)])}
const LONG_X = '78'.repeat(256);
const PYTHON_PICKLES: Record<number, string> = {
  2: `80027d7100285804000000696e747371015d7102284b004bff4d00014dffff4a000001004affffffff4a000000808a0500000080008a090000000000000080008a090000000000000000c0655806000000666c6f61747371035d710428473ff8000000000000478000000000000000477e37e43c8800759c477ff00000000000006558040000006d69736371055d7106284e8889294b018571074b014b028671084b014b024b03877109284b014b024b034b0474710a580a00000068c3a96c6c6f20e29c93710b5800010000${LONG_X}710c654b037d710d58060000006e6573746564710e5d710f285d71107d7111657358020000006f64711263636f6c6c656374696f6e730a4f726465726564446963740a7113295271142858010000006171154b0158010000006271164b0275752e`,
  4: `80049500020000000000007d94288c04696e7473945d94284b004bff4d00014dffff4a000001004affffffff4a000000808a0500000080008a090000000000000080008a090000000000000000c0658c06666c6f617473945d9428473ff8000000000000478000000000000000477e37e43c8800759c477ff0000000000000658c046d697363945d94284e8889294b0185944b014b0286944b014b024b038794284b014b024b034b0474948c0a68c3a96c6c6f20e29c93945800010000${LONG_X}94654b037d948c066e6573746564945d94285d947d9465738c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b018c0162944b0275752e`,
};

/** Plain JS for comparison: tuples become {tuple: [...]}, dicts Maps. */
function plain(v: PyValue): unknown {
  if (v instanceof PyTuple) return { tuple: v.items.map(plain) };
  if (v instanceof PyList) return v.items.map(plain);
  if (v instanceof PyDict) return new Map([...v.map].map(([k, x]) => [k, plain(x)]));
  return v;
}

const orderedDict = new PyGlobal('collections', 'OrderedDict', () => new PyDict());
const globals = new Map([[orderedDict.qualname, orderedDict]]);

describe('restricted unpickler', () => {
  it.each([2, 4])('reads what Python writes with protocol %i', (protocol) => {
    const bytes = Uint8Array.from(Buffer.from(PYTHON_PICKLES[protocol]!, 'hex'));
    const got = plain(unpickle(bytes, { source: `p${protocol}.pkl`, globals }));
    expect(got).toEqual(
      new Map<unknown, unknown>([
        ['ints', [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31, 2n ** 63n, -(2n ** 70n)]],
        ['floats', [1.5, -0, 1e300, Infinity]],
        ['misc', [null, true, false, { tuple: [] }, { tuple: [1] }, { tuple: [1, 2] }, { tuple: [1, 2, 3] }, { tuple: [1, 2, 3, 4] }, 'héllo ✓', 'x'.repeat(256)]],
        [3, new Map([['nested', [[], new Map()]]])],
        ['od', new Map([['a', 1], ['b', 2]])],
      ]),
    );
    expect(Object.is((got as Map<string, number[]>).get('floats')![1], -0)).toBe(true);
  });

  it('refuses the OrderedDict global when the caller does not allow it', () => {
    const bytes = Uint8Array.from(Buffer.from(PYTHON_PICKLES[2]!, 'hex'));
    expect(() => unpickle(bytes, { source: 'p2.pkl', globals: new Map() })).toThrow(
      /^p2\.pkl: refused pickle at byte \d+: global 'collections OrderedDict' \(collections\.OrderedDict\) is not allowed in a checkpoint$/,
    );
  });

  it('stops after maxOps opcodes, so a pickle cannot allocate without bound', () => {
    const lists = (n: number): Uint8Array => Uint8Array.from([0x80, 2, ...new Array<number>(n).fill(0x5d), ...new Array<number>(n - 1).fill(0x61), 0x2e]);
    expect(plain(unpickle(lists(49), { source: 'ok.pkl', globals, maxOps: 100 }))).toHaveLength(1);
    expect(() => unpickle(lists(50), { source: 'many.pkl', globals, maxOps: 100 })).toThrow(/^many\.pkl: refused pickle at byte 101: more than 100 opcodes; too large for a checkpoint$/);
  });

  it('refuses persistent ids when no persistentLoad is given', () => {
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x4e, 0x51, 0x2e]), { source: 'pid.pkl', globals })).toThrow(/persistent ids are not allowed here/);
  });
});
