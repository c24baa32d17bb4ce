/**
 * A task runs in the async context of the add() that made it (issue 12): each task here is added
 * inside its own AsyncLocalStorage.run(), and what it sees of the store is checked, in every lane
 * and on every path — queued behind the limit, retried (and its retryIf), timed out, delayed,
 * after another task, each run of a periodic task, and the main-thread side of a worker task
 * (its failure's log entry); and its end by cancel() or a drain deadline, whichever context
 * calls or sets it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { injectable } from 'tsyringe';
import { afterEach, expect, it } from 'vitest';
import { Background, defineTask, observeTasks, shutdown, TaskContext, type BackgroundLogger, type TaskHandle } from '../src/index.js';
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

it("a task's end by cancel() or abandonment comes in its own context, whichever context ends it: its observers' event, its abort listeners, its log entries", async () => {
  const logger = storeLogger();
  const root = freshApp({ logger, drainTimeoutMs: 30 });
  roots.push(root);
  const seen: string[] = [];
  observeTasks((event) => {
    if (event.type === 'cancelled' || event.type === 'abandoned') seen.push(`${event.type} of ${event.name} in ${als.getStore()}`);
  }, { container: root });
  const started = deferred();
  let running = 0;
  const waiting = defineTask({ name: 'waiting', inject: [TaskContext] }, async (ctx: TaskContext) => {
    const label = als.getStore();
    ctx.signal.addEventListener('abort', () => seen.push(`abort listener of ${label} in ${als.getStore()}`));
    if (++running === 4) started.resolve();
    await new Promise(() => undefined);
  });

  // Cancelled from request-b's context.
  const bg = root.createChildContainer().resolve(Background);
  const a = als.run('request-a', () => bg.add(waiting));
  // Three request scopes disposed in their own contexts: their drain deadlines share one timer.
  const scopes = ['request-1', 'request-2', 'request-3'].map((label) => {
    const scope = root.createChildContainer().resolve(Background);
    als.run(label, () => scope.add(waiting));
    return { label, scope };
  });
  await started.promise;
  als.run('request-b', () => a.cancel());
  const disposals: Promise<void>[] = [];
  for (const { label, scope } of scopes) {
    als.run(label, () => disposals.push(scope.dispose()));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await Promise.all(disposals);
  expect(seen.sort()).toEqual(
    [
      'abort listener of request-a in request-a',
      'cancelled of waiting in request-a',
      ...['request-1', 'request-2', 'request-3'].flatMap((label) => [`abandoned of waiting in ${label}`, `abort listener of ${label} in ${label}`]),
    ].sort(),
  );
  const entries = logger.seen.filter(({ message }) => message.startsWith('scope disposed') || message.endsWith('was cancelled'));
  expect(entries.map(({ message, store }) => `${message.slice(0, 20)} in ${store}`).sort()).toEqual(
    ['task "waiting" was c in request-a', 'scope disposed with  in request-1', 'scope disposed with  in request-2', 'scope disposed with  in request-3'].sort(),
  );
});
