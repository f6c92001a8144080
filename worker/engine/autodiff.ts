/**
 * Reverse mode over a graph's tape: walks the recorded op applications backwards from `loss`, asks each op's VJP
 * (rules.ts) for the input gradients it needs and sums gradients of tensors used more than once. Gradient nodes
 * are ordinary ops, emitted into the loss's graph, and read the forward values directly (nothing is recomputed).
 * Gradients do not flow through Loop/If nodes (they are raw nodes); a loss inside a Loop body differentiates the body.
 */
import { isFloat, type Graph, type TapeEntry, type Tensor } from './graph.ts';
import { add, expand } from './ops.ts';

/** d(sum(seed * loss))/d(wrt[i]); undefined where wrt[i] does not influence loss. The seed defaults to ones. */
export function gradients(loss: Tensor, wrt: Tensor[], seed?: Tensor): (Tensor | undefined)[] {
  const graph = loss.graph;
  if (seed && (seed.dtype !== loss.dtype || seed.shape.join() !== loss.shape.join())) {
    throw new Error(`gradients: seed ${seed} does not match loss ${loss}`);
  }
  // Inside a Loop body, ops on outer tensors alone were emitted (and taped) in the enclosing graphs; they precede
  // everything in the body, so the enclosing tapes come first. Their VJPs read body gradients, so they emit here.
  const scopes: Graph[] = [];
  for (let g: Graph | undefined = graph; g; g = g.parent) scopes.unshift(g);
  const tape: TapeEntry[] = scopes.flatMap((g) => g.tape);
  const depends = new Set<Tensor>(wrt.filter((t) => isFloat(t.dtype)));
  const active = tape.map((e) => {
    const on = e.inputs.some((t) => depends.has(t));
    if (on) for (const o of e.outputs) depends.add(o);
    return on;
  });
  const grads = new Map<Tensor, Tensor>();
  if (!depends.has(loss)) return wrt.map(() => undefined);
  grads.set(loss, seed ?? expand(graph.constant(1, [], loss.dtype), [...loss.shape]));
  for (let i = tape.length - 1; i >= 0; i--) {
    const entry = tape[i];
    if (!active[i]) continue;
    const outGrads = entry.outputs.map((o) => grads.get(o));
    if (outGrads.every((g) => g === undefined)) continue;
    const need = entry.inputs.map((t) => depends.has(t));
    const inGrads = entry.vjp(outGrads, need);
    entry.inputs.forEach((t, k) => {
      const g = inGrads[k];
      if (!need[k] || !g) return;
      const prev = grads.get(t);
      grads.set(t, prev ? add(prev, g) : g);
    });
  }
  return wrt.map((t) => grads.get(t));
}
