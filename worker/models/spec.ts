/**
 * What a model declares about each state-dict entry: its open_clip name, shape and how open_clip initialises it.
 * Forward code, random init and the optimizer all read these lists, so a name is spelled in one place.
 */
export type Init =
  | { normal: number }
  /** U(-bound, bound), torch's default for Linear/Conv weights and Linear biases. */
  | { uniform: number }
  | { fill: number };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
}

/** Parameters a forward reads, by open_clip name. */
export type ParamLookup<T> = (name: string) => T;
