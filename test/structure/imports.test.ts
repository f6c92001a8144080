import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The import structure, read from the sources with TypeScript's own pre-processor: the top folders form layers
 * (core <- lambdas | worker <- cdk <- cli; lambdas and worker are separate deployables and never import each
 * other), no folder imports a folder that imports it back, and the only circle between files is the op table's
 * (ops.ts and the rules that emit through it, in worker/engine).
 */
const ROOT = join(import.meta.dirname, '..', '..');
const LAYER: Record<string, number> = { core: 0, lambdas: 1, worker: 1, cdk: 2, cli: 3 };
const ALLOWED_FILE_CYCLE = /^worker\/engine\/(ops|rules(-[a-z]+)?)\.ts$/;

function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) out.push(p);
    }
  };
  for (const top of Object.keys(LAYER)) walk(top);
  return out;
}

/** Relative imports (static, re-exports and literal dynamic ones), as repo paths. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName).filter((f) => f.startsWith('.')).map((f) => normalize(join(dirname(file), f)));
}

const files = sources();
const edges = files.flatMap((from) => importsOf(from).map((to) => ({ from, to })));
const top = (f: string): string => f.split('/')[0]!;

/** Strongly connected components of more than one node (Tarjan). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const graphOf = (pairs: { from: string; to: string }[]): Map<string, Set<string>> => {
  const g = new Map<string, Set<string>>();
  for (const { from, to } of pairs) {
    if (!g.has(from)) g.set(from, new Set());
    g.get(from)!.add(to);
  }
  return g;
};

describe('the import structure', () => {
  it('reads the imports it checks', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(edges).toContainEqual({ from: 'worker/clip/trainer.ts', to: 'worker/engine/session.ts' });
  });

  it('never imports upward or sideways between the top folders', () => {
    const bad = edges
      .filter(({ from, to }) => top(to) in LAYER && top(from) !== top(to) && LAYER[top(to)]! >= LAYER[top(from)]!)
      .map(({ from, to }) => `${from} -> ${to}`);
    expect(bad).toEqual([]);
  });

  it('has no circle between folders', () => {
    const crossing = edges.filter(({ from, to }) => dirname(from) !== dirname(to)).map(({ from, to }) => ({ from: dirname(from), to: dirname(to) }));
    expect(cycles(graphOf(crossing))).toEqual([]);
  });

  it('has no circle between files but the op table', () => {
    const circles = cycles(graphOf(edges)).filter((c) => !c.every((f) => ALLOWED_FILE_CYCLE.test(f)));
    expect(circles.map((c) => c.map((f) => relative('.', f)))).toEqual([]);
  });
});
