/** An absent result travels as null. */
const json = (v: unknown): string => JSON.stringify(v) ?? 'null';

/** What a payload costs against Step Functions' and Lambda's quotas: its JSON bytes. */
export const jsonBytes = (v: unknown): number => Buffer.byteLength(json(v));

/**
 * The same with every number written as one digit: counts gain digits as a dataset grows, so this is what must
 * stay the same between two sizes for a payload not to grow with the dataset.
 */
export const jsonShape = (v: unknown): number => json(v).replace(/\d+/g, '0').length;
