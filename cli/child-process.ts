import { fork } from 'node:child_process';
import { once } from 'node:events';

/** A TypeScript module running in a forked Node process, spoken to one request at a time over IPC. */
export interface Child {
  /** The next message the child sends; a message with an `error` field rejects. */
  next<T>(): Promise<T>;
  request<T>(message: unknown): Promise<T>;
  /** Disconnects (the child exits on that) and waits for it to exit. */
  stop(): Promise<void>;
}

export function forkModule(module: URL, env: NodeJS.ProcessEnv = process.env): Child {
  const child = fork(module, [], { execArgv: ['--import', 'tsx'], env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = once(child, 'exit');
  const next = async <T>(): Promise<T> => {
    const [m] = (await Promise.race([
      once(child, 'message'),
      exited.then(([code]) => {
        throw new Error(`${module.pathname} exited (code ${code})`);
      }),
    ])) as [T & { error?: string }];
    if (m.error !== undefined) throw new Error(`${module.pathname}: ${m.error}`);
    return m;
  };
  return {
    next,
    request<T>(message: unknown) {
      const reply = next<T>();
      child.send(message as never);
      return reply;
    },
    async stop() {
      if (child.connected) child.disconnect();
      await exited;
    },
  };
}

/**
 * The child's side of forkModule: says it is ready, answers each request with `serve`'s reply (a failure as
 * `{ error }`, which the parent's next() rejects with), and exits when the parent disconnects.
 */
export function serveParent<Req, Rep>(serve: (m: Req) => Promise<Rep>): void {
  process.on('message', (m: Req) => {
    serve(m).then(
      (reply) => process.send!(reply),
      (e: unknown) => process.send!({ error: String((e as Error).stack ?? e) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true });
}
