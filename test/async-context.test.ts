/**
 * A task runs in the async context of the add() that made it (issue 12): each task here is added
 * inside its own AsyncLocalStorage.run(), and what it sees of the store is checked, in every lane
 * and on every path — queued behind the limit, retried (and its retryIf), timed out, delayed,
 * after another task, each run of a periodic task, and the main-thread side of a worker task
 * (its failure's log entry).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { injectable } from 'tsyringe';
import { afterEach, expect, it } from 'vitest';
import { Background, defineTask, shutdown, TaskContext, type BackgroundLogger, type TaskHandle } from '../src/index.js';
import { throwsCustom } from './fixtures/worker-tasks.js';
import { deferred, freshApp, watchProcessErrors } from './helpers.js';

const als = new AsyncLocalStorage<string>();
const roots: ReturnType<typeof freshApp>[] = [];

watchProcessErrors();
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 2_000 })));
});

/** A logger that notes the store each entry is written in, by message. */
function storeLogger(): BackgroundLogger & { seen: { message: string; store: string | undefined }[] } {
  const seen: { message: string; store: string | undefined }[] = [];
  const note = (_fields: Record<string, unknown>, message: string) => {
    seen.push({ message, store: als.getStore() });
  };
  return { seen, error: note, warn: note, info: note, debug: note };
}

it('every lane and path runs a task in the context of the add() that made it', async () => {
  const logger = storeLogger();
  const root = freshApp({ logger, concurrency: 1, pool: { maxThreads: 1, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) } });
  roots.push(root);
  const bg = root.createChildContainer().resolve(Background);
  const seen: Record<string, (string | undefined)[]> = {};
  const see = (label: string) => {
    (seen[label] ??= []).push(als.getStore());
  };
  const gate = deferred();

  // Holds the only slot: everything after it queues behind the limit.
  const holder = als.run('holder', () =>
    bg.add(async () => {
      see('holder');
      await gate.promise;
      see('holder');
    }),
  );
  const queued = als.run('queued', () => bg.add(async () => see('queued')));
  const sync = als.run('sync', () => bg.add(() => see('sync')));
  let attempts = 0;
  const retried = als.run('retried', () =>
    bg
      .with({
        retries: 1,
        backoff: { baseMs: 1 },
        retryIf: () => {
          see('retryIf');
          return true;
        },
      })
      .add(
        defineTask({ name: 'flaky', inject: [TaskContext] }, async (ctx) => {
          see('retried');
          if (++attempts === 1) throw new Error(`attempt ${ctx.attempt} fails`);
        }),
      ),
  );
  @injectable()
  class Reindex {
    run() {
      see('class');
      return Promise.resolve();
    }
  }
  const klass = als.run('class', () => bg.add(Reindex));
  const delayed = als.run('delayed', () => bg.with({ delayMs: 5 }).add(async () => see('delayed')));
  const after = als.run('after', () => bg.with({ after: [queued] }).add(async () => see('after')));
  const timedOut = als.run('timedOut', () => bg.with({ timeoutMs: 5 }).add(async function slow() {
    see('timedOut');
    await new Promise(() => undefined);
  }));
  let ticks = 0;
  const periodic = als.run('periodic', () =>
    bg.with({ every: 5 }).add(async () => {
      see('periodic');
      ticks++;
    }),
  );
  const worker = als.run('worker', () => bg.add(throwsCustom));

  // Other contexts meanwhile, and the gate opened from yet another one.
  await als.run('elsewhere', async () => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    gate.resolve();
  });
  const oneOffs: TaskHandle[] = [holder, queued, sync, retried, klass, delayed, after, timedOut, worker];
  await Promise.allSettled(oneOffs.map((handle) => handle.result()));
  while (ticks < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  periodic.cancel();

  for (const label of ['holder', 'queued', 'sync', 'retried', 'retryIf', 'class', 'delayed', 'after', 'timedOut', 'periodic']) {
    expect(seen[label], label).toBeDefined();
    expect(new Set(seen[label]), label).toEqual(new Set([label === 'retryIf' ? 'retried' : label]));
  }
  expect(seen.retried).toHaveLength(2);
  expect(seen.periodic!.length).toBeGreaterThanOrEqual(2);
  // The main thread's side of tasks: their log entries are written in their own context.
  const logged = (pattern: RegExp) => logger.seen.filter((entry) => pattern.test(entry.message)).map((entry) => entry.store);
  expect(logged(/^task "throwsCustom" failed$/)).toEqual(['worker']);
  expect(logged(/^task "flaky" failed \(attempt 1 of 2\)/)).toEqual(['retried']);
  expect(logged(/^task "slow" timed out$/)).toEqual(['timedOut']);
}, 20_000);
