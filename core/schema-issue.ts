import type { z } from 'zod';

/**
 * The first problem a schema found, where (a dotted path; `(root)` for the value itself) and what: one line a
 * user can act on, where zod's own message lists every issue as JSON.
 */
export function firstIssue(error: z.ZodError): { at: string; message: string } {
  const issue = error.issues[0];
  return { at: issue?.path.join('.') || '(root)', message: issue?.message ?? error.message };
}

/** firstIssue as `at: message`. */
export function issueLine(error: z.ZodError): string {
  const { at, message } = firstIssue(error);
  return `${at}: ${message}`;
}
