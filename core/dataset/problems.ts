import { MAX_REPORTED_PROBLEMS, type DatasetProblem } from './types.ts';

/**
 * The problems of a dataset, of which a report shows the first MAX_REPORTED_PROBLEMS by line: at most twice that
 * many are held, whatever the number found, and every one is counted.
 */
export class ProblemList {
  private kept: DatasetProblem[] = [];
  total = 0;
  /** A problem of the file as a whole (no line, or the header): no policy skips it. */
  fatal = false;

  add(p: DatasetProblem): void {
    this.total++;
    if (p.line === undefined || p.line === 1) this.fatal = true;
    this.kept.push(p);
    if (this.kept.length >= 2 * MAX_REPORTED_PROBLEMS) this.trim();
  }

  addAll(ps: Iterable<DatasetProblem>): void {
    for (const p of ps) this.add(p);
  }

  sorted(): { problems: DatasetProblem[]; problemsOmitted: number } {
    this.trim();
    return { problems: [...this.kept], problemsOmitted: this.total - this.kept.length };
  }

  private trim(): void {
    this.kept.sort(byLine);
    this.kept.length = Math.min(this.kept.length, MAX_REPORTED_PROBLEMS);
  }
}

/** File-level problems (no line) first, then by line; stable otherwise. */
const byLine = (a: DatasetProblem, b: DatasetProblem): number => (a.line ?? 0) - (b.line ?? 0);

export function problemLine(p: DatasetProblem): string {
  return `${p.file}${p.line !== undefined ? ` line ${p.line}` : ''} ${p.field}: ${p.reason}`;
}

/** The one-line cause of an invalid dataset: the first three problems and how many more. */
export function summarize(first: DatasetProblem[], total: number, bad: number, rows: number): string {
  const shown = first.slice(0, 3).map(problemLine).join('; ');
  const more = total > 3 ? `; +${total - 3} more` : '';
  const count = rows > 0 ? `${bad} of ${rows} rows are bad: ` : '';
  return `${count}${shown}${more}`;
}
