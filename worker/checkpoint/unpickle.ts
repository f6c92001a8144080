import { CheckpointError } from '../../core/tensors/errors.ts';

/**
 * A restricted pickle reader: a stack machine over the opcodes a torch state dict (or an open_clip training
 * checkpoint with its optimizer state) uses, and nothing else. It never imports or calls anything by name:
 * GLOBAL resolves only through the caller's allowlist, REDUCE calls only what that allowlist provides, and
 * every length is checked against the bytes that remain, so a hostile pickle gets a one-line error.
 */

/** Base for objects that allowlisted callables construct (tensors, storages). */
export abstract class PyObject {
  abstract readonly typeName: string;
}

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

export class PyList {
  constructor(readonly items: PyValue[]) {}
}

export type PyKey = string | number | bigint | boolean | null;

export class PyDict {
  readonly map = new Map<PyKey, PyValue>();
}

/** An allowlisted global: storage types are plain markers, constructors carry `call`. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call?: (args: PyValue[]) => PyValue,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

export type PyValue = null | boolean | number | bigint | string | PyTuple | PyList | PyDict | PyGlobal | PyObject;

export interface UnpickleOptions {
  /** Named in every error. */
  source: string;
  /** `module.name` -> what GLOBAL/STACK_GLOBAL may produce; anything else is refused. */
  globals: ReadonlyMap<string, PyGlobal>;
  /** BINPERSID: turns a persistent id (torch: the storage tuple) into a value; absent = refused. */
  persistentLoad?: (pid: PyValue) => PyValue;
  /** Most opcodes to run; each can allocate a value, so this bounds memory as well as time. */
  maxOps?: number;
}

/** A state dict of ViT-L-14 with its optimizer state runs ~50k opcodes. */
export const MAX_PICKLE_OPS = 2_000_000;

export function typeName(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyList) return 'list';
  if (v instanceof PyDict) return 'dict';
  if (v instanceof PyGlobal) return v.qualname;
  return v.typeName;
}

// Names of every pickle opcode, so a refusal says which one it met.
const OPCODE_NAMES: Record<number, string> = Object.fromEntries(
  (
    [
      ['(', 'MARK'], ['.', 'STOP'], ['0', 'POP'], ['1', 'POP_MARK'], ['2', 'DUP'], ['F', 'FLOAT'], ['I', 'INT'],
      ['J', 'BININT'], ['K', 'BININT1'], ['L', 'LONG'], ['M', 'BININT2'], ['N', 'NONE'], ['P', 'PERSID'],
      ['Q', 'BINPERSID'], ['R', 'REDUCE'], ['S', 'STRING'], ['T', 'BINSTRING'], ['U', 'SHORT_BINSTRING'],
      ['V', 'UNICODE'], ['X', 'BINUNICODE'], ['a', 'APPEND'], ['b', 'BUILD'], ['c', 'GLOBAL'], ['d', 'DICT'],
      ['}', 'EMPTY_DICT'], ['e', 'APPENDS'], ['g', 'GET'], ['h', 'BINGET'], ['i', 'INST'], ['j', 'LONG_BINGET'],
      ['l', 'LIST'], [']', 'EMPTY_LIST'], ['o', 'OBJ'], ['p', 'PUT'], ['q', 'BINPUT'], ['r', 'LONG_BINPUT'],
      ['s', 'SETITEM'], ['t', 'TUPLE'], [')', 'EMPTY_TUPLE'], ['u', 'SETITEMS'], ['G', 'BINFLOAT'],
      ['\x80', 'PROTO'], ['\x81', 'NEWOBJ'], ['\x82', 'EXT1'], ['\x83', 'EXT2'], ['\x84', 'EXT4'], ['\x85', 'TUPLE1'],
      ['\x86', 'TUPLE2'], ['\x87', 'TUPLE3'], ['\x88', 'NEWTRUE'], ['\x89', 'NEWFALSE'], ['\x8a', 'LONG1'],
      ['\x8b', 'LONG4'], ['B', 'BINBYTES'], ['C', 'SHORT_BINBYTES'], ['\x8c', 'SHORT_BINUNICODE'],
      ['\x8d', 'BINUNICODE8'], ['\x8e', 'BINBYTES8'], ['\x8f', 'EMPTY_SET'], ['\x90', 'ADDITEMS'],
      ['\x91', 'FROZENSET'], ['\x92', 'NEWOBJ_EX'], ['\x93', 'STACK_GLOBAL'], ['\x94', 'MEMOIZE'], ['\x95', 'FRAME'],
      ['\x96', 'BYTEARRAY8'], ['\x97', 'NEXT_BUFFER'], ['\x98', 'READONLY_BUFFER'],
    ] as const
  ).map(([c, n]) => [c.charCodeAt(0), n]),
);

const MAX_PROTOCOL = 5;
const MAX_GLOBAL_LINE = 256;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Runs the pickle in `bytes` and returns what STOP leaves on the stack. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): PyValue {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: PyValue[] = [];
  // Stack heights at each open MARK; values below the innermost mark are out of reach until it is popped.
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opAt = 0;
  let ops = 0;
  const maxOps = opts.maxOps ?? MAX_PICKLE_OPS;

  function fail(reason: string): never {
    throw new CheckpointError(opts.source, `refused pickle at byte ${opAt}: ${reason}`);
  }
  function need(n: number): number {
    if (n < 0 || pos + n > bytes.length) fail(`needs ${n} bytes but ${bytes.length - pos} remain (truncated or corrupt)`);
    const at = pos;
    pos += n;
    return at;
  }
  const u8 = (): number => bytes[need(1)]!;
  const u16 = (): number => dv.getUint16(need(2), true);
  const u32 = (): number => dv.getUint32(need(4), true);
  function text(n: number): string {
    const at = need(n);
    try {
      return utf8.decode(bytes.subarray(at, at + n));
    } catch {
      return fail('string is not valid UTF-8');
    }
  }
  function line(): string {
    const len = bytes.subarray(pos, pos + MAX_GLOBAL_LINE + 1).indexOf(0x0a);
    if (len < 0) fail('GLOBAL name is unterminated or too long');
    const s = text(len);
    pos++;
    return s;
  }
  function reachable(): void {
    if (stack.length === 0 || (marks.length > 0 && stack.length === marks[marks.length - 1])) fail('stack underflow');
  }
  function pop(): PyValue {
    reachable();
    return stack.pop()!;
  }
  function top(): PyValue {
    reachable();
    return stack[stack.length - 1]!;
  }
  function popMark(): PyValue[] {
    const m = marks.pop();
    if (m === undefined) fail('no MARK to pop to');
    return stack.splice(m);
  }
  function push(v: PyValue): void {
    stack.push(v);
  }
  function resolve(module: string, name: string): PyGlobal {
    const g = opts.globals.get(`${module}.${name}`);
    if (!g) fail(`global '${module} ${name}' (${module}.${name}) is not allowed in a checkpoint`);
    return g;
  }
  function key(k: PyValue): PyKey {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return k;
    return fail(`dict key of type ${typeName(k)} is not supported`);
  }
  function setItems(target: PyValue, kv: PyValue[]): void {
    if (!(target instanceof PyDict)) fail(`SETITEM(S) on ${typeName(target)}`);
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) target.map.set(key(kv[i]!), kv[i + 1]!);
  }
  function append(target: PyValue, items: PyValue[]): void {
    if (!(target instanceof PyList)) fail(`APPEND(S) on ${typeName(target)}`);
    for (const v of items) target.items.push(v);
  }
  function int(v: bigint): number | bigint {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  for (;;) {
    opAt = pos;
    if (++ops > maxOps) fail(`more than ${maxOps} opcodes; too large for a checkpoint`);
    const op = u8();
    switch (op) {
      case 0x80: {
        const v = u8();
        if (v > MAX_PROTOCOL) fail(`pickle protocol ${v} is not supported`);
        break;
      }
      case 0x95: // FRAME: a length hint; the data that follows is ordinary opcodes
        need(8);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail('STOP with an unbalanced stack');
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x5d: // EMPTY_LIST
        push(new PyList([]));
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x4a: // BININT
        push(dv.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: { // LONG1: little-endian two's complement
        const n = u8();
        const at = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
        if (n > 0 && bytes[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        push(int(v));
        break;
      }
      case 0x47: // BINFLOAT: big-endian double
        push(dv.getFloat64(need(8), false));
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x63: { // GLOBAL
        const module = line();
        push(resolve(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(resolve(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const callable = pop();
        if (!(callable instanceof PyGlobal) || !callable.call) fail(`REDUCE on ${typeName(callable)}, which is not callable here`);
        if (!(args instanceof PyTuple)) fail(`REDUCE arguments for ${callable.qualname} are a ${typeName(args)}, not a tuple`);
        push(callable.call(args.items));
        break;
      }
      case 0x62: { // BUILD: only the `_metadata` attribute torch sets on a state dict, which is dropped
        pop();
        if (!(top() instanceof PyDict)) fail(`BUILD on ${typeName(top())}`);
        break;
      }
      case 0x51: { // BINPERSID
        if (!opts.persistentLoad) fail('persistent ids are not allowed here');
        push(opts.persistentLoad(pop()));
        break;
      }
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`memo slot ${i} is empty`);
        push(memo.get(i)!);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      default:
        fail(`opcode ${OPCODE_NAMES[op] ?? 'unknown'} (0x${op.toString(16).padStart(2, '0')}) is not allowed in a checkpoint`);
    }
  }
}
