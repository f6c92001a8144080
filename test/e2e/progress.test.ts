import { describe, expect, it } from 'vitest';
import { createProgress, logLine } from '../../cli/progress.ts';

function sink(isTTY: boolean): { write(s: string): boolean; isTTY: boolean; text(): string } {
  let out = '';
  return {
    isTTY,
    write(s: string) {
      out += s;
      return true;
    },
    text: () => out,
  };
}

describe('createProgress without a terminal', () => {
  it('logs one plain line per 10% and a final line carrying the latest info', () => {
    const s = sink(false);
    const p = createProgress('train', 100, { stream: s, minIntervalMs: 1e9 });
    for (let i = 0; i < 100; i++) p.tick(1, { loss: 1 / (i + 1), step: i + 1 });
    p.done();
    p.done();
    const lines = s.text().trim().split('\n');
    expect(lines).toHaveLength(10);
    expect(lines[0]).toMatch(/^train: 10\/100 \(10%\) [\d.]+s loss=0\.1000 step=10$/);
    expect(lines[9]).toMatch(/^train: 100\/100 \(100%\) [\d.]+s loss=0\.01000 step=100$/);
    expect(s.text()).not.toContain('\x1b');
  });

  it('never counts past the total and handles an empty task', () => {
    const s = sink(false);
    const p = createProgress('upload', 3, { stream: s, minIntervalMs: 1e9 });
    p.tick(5);
    p.done();
    expect(s.text().trim()).toMatch(/^upload: 3\/3 \(100%\)/);
    const e = sink(false);
    createProgress('none', 0, { stream: e }).done();
    expect(e.text().trim()).toMatch(/^none: 0\/0 \(100%\)/);
  });
});

describe('logLine', () => {
  it('clears a live bar line first on a terminal and writes the plain line otherwise', () => {
    const tty = sink(true);
    logLine('eval: mR 50', tty);
    expect(tty.text()).toBe('\r\x1b[Keval: mR 50\n');
    const plain = sink(false);
    logLine('eval: mR 50', plain);
    expect(plain.text()).toBe('eval: mR 50\n');
  });
});
