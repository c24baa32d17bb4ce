/**
 * TaskContext in a worker task: progress() reports cross back to the main thread, and the
 * signal crosses in (here, a cancellation), for a task that yields to its event loop.
 * Every worker thread imports this module to find the task, so importing it has no effect.
 * Run: npx tsx test/docs-examples/worker-context.ts
 */
import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, shutdown, TaskContext, workerTask } from '../../src/index.js';

/** Hashes in slices, yielding between them so that the abort message can arrive. */
export const hashChunks = workerTask(import.meta.url, { name: 'hashChunks', inject: [TaskContext] }, async (ctx, seen: Int32Array) => {
  for (let chunk = 1; ; chunk++) {
    if (ctx.signal.aborted) {
      Atomics.store(seen, 0, 1); // tell the main thread, through shared memory, that the abort arrived
      throw ctx.signal.reason;
    }
    ctx.progress(Math.min(chunk / 1_000, 1), `chunk ${chunk}`);
    await sleep(1); // a yield: without one, the signal could never abort (see the docs)
  }
});

export async function main() {
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, pool: { maxThreads: 1, terminateAfterMs: 1_000 } } });
  const bg = app.createChildContainer().resolve(Background);

  const seen = new Int32Array(new SharedArrayBuffer(4));
  const handle = bg.add(hashChunks, seen);
  while (handle.progress === undefined) await sleep(5); // the first report has crossed back
  const progress = handle.progress;
  const cancelled = handle.cancel('the user left');
  const statusAtOnce = handle.status;
  while (Atomics.load(seen, 0) === 0) await sleep(5); // the worker's signal aborted
  await shutdown({ container: app });
  return { progressSeen: progress.message?.startsWith('chunk ') === true, cancelled, statusAtOnce, workerSawAbort: true };
}

if (isMainThread && process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
