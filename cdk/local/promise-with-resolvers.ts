/**
 * aws-local-stepfunctions 3.0.0 calls Promise.withResolvers (Node 22); the project runs on Node 20. Imported by
 * the runner before the library runs, so every caller (tests, `rsclip run`) gets it.
 */
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.assign(Promise, {
    withResolvers<T>() {
      let resolve!: (v: T | PromiseLike<T>) => void;
      let reject!: (e?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
