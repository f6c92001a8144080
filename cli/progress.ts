import cliProgress from 'cli-progress';

export type ProgressInfo = Record<string, string | number>;

export interface Progress {
  /** Advances by `n` (default 1); `info` replaces the key=value details shown beside the count. */
  tick(n?: number, info?: ProgressInfo): void;
  done(): void;
}

export interface ProgressOptions {
  /** Where progress goes; stderr by default so stdout stays free for results (`--json`). */
  stream?: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean };
  /** Plain mode: the least time between two lines that are not at a 10% boundary. */
  minIntervalMs?: number;
}

function formatInfo(info: ProgressInfo): string {
  return Object.entries(info)
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toPrecision(4) : v}`)
    .join(' ');
}

/**
 * A progress bar on a terminal, plain log lines otherwise (CI logs, pipes, Batch/CloudWatch): one line at each
 * 10% boundary and at most one more every `minIntervalMs`, so long runs show life without flooding the log.
 */
export function createProgress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  return stream.isTTY ? barProgress(label, total, stream as NodeJS.WriteStream) : lineProgress(label, total, stream, opts);
}

function barProgress(label: string, total: number, stream: NodeJS.WriteStream): Progress {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {value}/{total} {percentage}% | ETA {eta_formatted} {info}`,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { info: '' });
  let finished = false;
  return {
    tick(n = 1, info) {
      bar.increment(n, info ? { info: formatInfo(info) } : undefined);
    },
    done() {
      if (finished) return;
      finished = true;
      bar.stop();
    },
  };
}

function lineProgress(
  label: string,
  total: number,
  stream: { write(s: string): unknown },
  opts: ProgressOptions,
): Progress {
  const minIntervalMs = opts.minIntervalMs ?? 10_000;
  const start = Date.now();
  let value = 0;
  let lastInfo: ProgressInfo = {};
  let lastDecile = 0;
  let lastLineAt = start;
  let finished = false;
  const line = (): void => {
    const pct = total > 0 ? Math.floor((100 * value) / total) : 100;
    const secs = ((Date.now() - start) / 1000).toFixed(1);
    const info = formatInfo(lastInfo);
    stream.write(`${label}: ${value}/${total} (${pct}%) ${secs}s${info ? ` ${info}` : ''}\n`);
    lastLineAt = Date.now();
  };
  return {
    tick(n = 1, info) {
      value = Math.min(total, value + n);
      if (info) lastInfo = info;
      const decile = total > 0 ? Math.floor((10 * value) / total) : 10;
      if (decile > lastDecile || Date.now() - lastLineAt >= minIntervalMs) {
        lastDecile = decile;
        if (value < total) line();
      }
    },
    done() {
      if (finished) return;
      finished = true;
      line();
    },
  };
}

/**
 * A log line that coexists with a live bar: on a terminal the bar's line is cleared first and the bar redraws
 * below on its next tick.
 */
export function logLine(line: string, stream: ProgressOptions['stream'] = process.stderr): void {
  stream.write(`${stream.isTTY ? '\r\x1b[K' : ''}${line}\n`);
}
