/**
 * Which graph outputs may be written into the buffer of a graph input (onnxruntime's pre-allocated outputs), so a
 * training step updates parameters and moments where they lie instead of allocating a second copy of them: for
 * ViT-B-32 that second copy is 1.8 GB. ONNX has no in-place semantics, so this is sound only where the graph
 * itself orders the write after every read of the input.
 */
import type { GraphProto, NodeProto } from './onnx-proto.ts';

export interface InPlace {
  output: string;
  input: string;
}

/**
 * Ops whose output element i is computed from input element i alone when the input has the output's shape, in one
 * pass: such a node may read the buffer it writes.
 */
const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Sqrt', 'Clip', 'Identity', 'Neg', 'Abs', 'Relu', 'Max', 'Min']);

/** Every name a node reads, including outer-scope names its subgraphs (Loop/If bodies) read. */
function reads(node: NodeProto, into: Set<string> = new Set()): Set<string> {
  for (const i of node.inputs) if (i) into.add(i);
  for (const a of node.attributes) if (a.kind === 'graph') for (const n of a.value.nodes) reads(n, into);
  return into;
}

/**
 * The pairs of `pairs` whose write cannot overtake a read: the input and output have one shape, the node producing
 * the output reads the input only if it is element-wise, and every other node reading the input is an ancestor of
 * that node, so any valid schedule runs it first. Pairs that fail stay ordinary outputs. In a step without gradient
 * clipping, for instance, the input-gradient of a layer reads its weight but nothing in that weight's update
 * depends on it.
 */
export function inPlaceSafe(graph: GraphProto, pairs: readonly InPlace[]): InPlace[] {
  const producer = new Map<string, number>();
  const readBy = new Map<string, number[]>();
  const nodeReads = graph.nodes.map((n) => reads(n));
  graph.nodes.forEach((n, i) => {
    for (const o of n.outputs) producer.set(o, i);
    for (const r of nodeReads[i]!) {
      const list = readBy.get(r);
      if (list) list.push(i);
      else readBy.set(r, [i]);
    }
  });
  const shapeOf = (list: GraphProto['inputs'], name: string) => list.find((v) => v.name === name)?.shape.join(',');
  const ancestors = (of: number): Set<number> => {
    const seen = new Set<number>();
    const stack = [of];
    while (stack.length) {
      for (const r of nodeReads[stack.pop()!]!) {
        const p = producer.get(r);
        if (p !== undefined && !seen.has(p)) {
          seen.add(p);
          stack.push(p);
        }
      }
    }
    return seen;
  };
  return pairs.filter(({ output, input }) => {
    const at = producer.get(output);
    const shape = shapeOf(graph.inputs, input);
    if (at === undefined || shape === undefined || shape !== shapeOf(graph.outputs, output)) return false;
    const readers = readBy.get(input) ?? [];
    if (readers.includes(at) && !ELEMENTWISE.has(graph.nodes[at]!.opType)) return false;
    const before = ancestors(at);
    return readers.every((r) => r === at || before.has(r));
  });
}
