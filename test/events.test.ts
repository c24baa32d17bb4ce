/**
 * Lifecycle events (issue 13, item 3): observeTasks() sees every task of an application, in
 * order, with its id, name, scope, attempt and durations; an observer cannot hurt a task; nothing
 * is observed after it stops. The order of events under random programs is checked by the
 * lifecycle model (test/model/lifecycle-program.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  defineTask,
  observeTasks,
  wrapAttempts,
  shutdown,
  TaskAbandonedError,
  TaskCancelledError,
  TaskSkippedError,
  TaskTimeoutError,
  type AttemptWrapper,
  TaskContext,
  type TaskEvent,
  type TaskHandle,
} from '../src/index.js';
import { sumBytes } from './fixtures/worker-tasks.js';
import { captureLogger, deferred, freshApp, observedApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 1_000 })));
});

function app(options: Parameters<typeof freshApp>[0] = {}) {
  return observedApp(roots, options);
}

/** Each event as `type@attempt`, for the task `id`. */
function story(events: readonly TaskEvent[], id: string): string[] {
  return events.filter((event) => event.id === id).map((event) => `${event.type}@${event.attempt}`);
}

describe('observeTasks()', () => {
  it('sees a task added, started and succeeded, with its id, name, scope, times and durations', async () => {
    const { events, bg } = app();
    const before = Date.now();
    const handle = bg.add(async function sendMail() {
      return 'sent';
    });
    await handle.result();
    expect(story(events, handle.id)).toEqual(['added@0', 'started@1', 'succeeded@1']);
    const [added, started, succeeded] = events as [TaskEvent, TaskEvent & { waitedMs: number }, TaskEvent & { durationMs: number }];
    for (const event of [added, started, succeeded]) {
      expect(event).toMatchObject({ id: handle.id, name: 'sendMail', scope: expect.stringMatching(/^scope #\d+$/) as unknown });
      expect(event.at).toBeGreaterThanOrEqual(before);
    }
    expect(started.waitedMs).toBeGreaterThanOrEqual(0);
    expect(succeeded.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('sees each failed attempt, its retry, and the final failure with its error', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { events, bg } = app();
    const handle = bg.with({ retries: 1, backoff: { baseMs: 100, jitter: 0 } }).add(async function flaky() {
      throw new Error('down');
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(story(events, handle.id)).toEqual(['added@0', 'started@1', 'attemptFailed@1']);
    expect(events.at(-1)).toMatchObject({ type: 'attemptFailed', retryInMs: 100, error: { message: 'down' } });
    await vi.advanceTimersByTimeAsync(100);
    await handle.result().catch(() => undefined);
    expect(story(events, handle.id)).toEqual(['added@0', 'started@1', 'attemptFailed@1', 'retrying@1', 'started@2', 'failed@2']);
    expect(events.at(-1)).toMatchObject({ type: 'failed', error: { message: 'down' } });
  });

  it('sees a timeout, a cancellation in the queue (no duration), a skip and an abandonment, each with its error', async () => {
    const { events, bg, scope } = app({ concurrency: 1, drainTimeoutMs: 0 });
    const gate = deferred();
    const slow = bg.with({ timeoutMs: 5 }).add(async function slow() {
      await gate.promise;
    });
    const waiting = bg.add(async function waiting() {});
    waiting.cancel('not needed');
    const dependent = bg.with({ after: [slow] }).add(async function dependent() {});
    await slow.result().catch(() => undefined);
    const stuck = bg.add(async function stuck() {
      await gate.promise;
    });
    await new Promise((resolve) => setImmediate(resolve));
    await scope.dispose();
    gate.resolve();
    const last = (id: string) => events.filter((event) => event.id === id).at(-1);
    expect(last(slow.id)).toMatchObject({ type: 'timedOut', error: expect.any(TaskTimeoutError) as unknown, durationMs: expect.any(Number) as unknown });
    expect(last(waiting.id)).toMatchObject({ type: 'cancelled', error: expect.any(TaskCancelledError) as unknown, durationMs: undefined, attempt: 0 });
    expect(last(dependent.id)).toMatchObject({ type: 'skipped', error: expect.any(TaskSkippedError) as unknown, durationMs: undefined });
    expect(last(stuck.id)).toMatchObject({ type: 'abandoned', error: expect.any(TaskAbandonedError) as unknown, durationMs: expect.any(Number) as unknown });
    expect(story(events, stuck.id)).toEqual(['added@0', 'started@1', 'abandoned@1']);
  });

  it('sees worker tasks and the tasks of every scope of its application, and of no other application', async () => {
    const { root, events, bg } = app({ pool: { inline: true } });
    const other = freshApp({ logger: captureLogger() });
    roots.push(other);
    await other.resolve(Background).add(async () => 'elsewhere').result();
    const worker = bg.add(sumBytes, new Uint8Array([1]));
    const fromRoot = root.resolve(Background).add(async function onRoot() {});
    await Promise.all([worker.result(), fromRoot.result()]);
    expect(new Set(events.map((event) => event.id))).toEqual(new Set([worker.id, fromRoot.id]));
    expect(events.find((event) => event.id === fromRoot.id)?.scope).toBe('the application root');
    expect(story(events, worker.id)).toEqual(['added@0', 'started@1', 'succeeded@1']);
  });

  it("calls the observer of a task's start inside the async context of the add() that made it", async () => {
    const { root } = app();
    const request = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    const stop = observeTasks((event) => {
      if (event.type === 'started') seen.push(request.getStore());
    }, { container: root });
    const bg = root.createChildContainer().resolve(Background);
    const handles = ['r1', 'r2', 'r3'].map((id) => request.run(id, () => bg.add(async () => id)));
    await Promise.all(handles.map((handle) => handle.result()));
    stop();
    expect(seen).toEqual(['r1', 'r2', 'r3']);
  });

  it('survives an observer that throws or rejects: logged, the task and the other observers go on', async () => {
    const { root, events, logger, bg } = app();
    observeTasks(() => {
      throw new Error('observer bug');
    }, { container: root });
    // An observer is typed to return nothing; one that returns a rejected promise is survived too.
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- the mistake under test
    observeTasks(() => Promise.reject(new Error('async observer bug')), { container: root });
    const handle = bg.add(async () => 'fine');
    await expect(handle.result()).resolves.toBe('fine');
    await new Promise((resolve) => setImmediate(resolve));
    expect(story(events, handle.id)).toEqual(['added@0', 'started@1', 'succeeded@1']);
    const errors = logger.at('error');
    expect(errors).toHaveLength(6);
    expect(errors[0]!.message).toBe(`an observer of task events threw on "added" of task "${handle.name}"; the task goes on`);
    expect(errors.map((entry) => (entry.fields.err as Error).message).sort()).toEqual([...Array<string>(3).fill('async observer bug'), ...Array<string>(3).fill('observer bug')]);
  });

  it('sees nothing once stopped, whether called or disposed; stopping twice is harmless', async () => {
    const { root, events, stop, bg } = app();
    const second: TaskEvent[] = [];
    {
      using observation = observeTasks((event) => void second.push(event), { container: root });
      await bg.add(async () => 1).result();
      expect(observation).toBeTypeOf('function');
    }
    stop();
    stop();
    await bg.add(async () => 2).result();
    expect(events).toHaveLength(3);
    expect(second).toHaveLength(3);
  });

  it("a task an observer of its start cancels never ran that attempt's code: its end carries no duration (none to measure)", async () => {
    const { root, events, bg } = app();
    let runs = 0;
    observeTasks(
      (event) => {
        if (event.type === 'started' && (event.name === 'stoppedAtOnce' || event.attempt === 2)) bg.get(event.id)?.cancel('not now');
      },
      { container: root },
    );
    const first = bg.add(async function stoppedAtOnce() {
      runs++;
    });
    await expect(first.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect(runs).toBe(0);
    expect(first.attempt).toBe(1);
    expect(events.filter((event) => event.id === first.id).map((event) => [event.type, 'durationMs' in event ? event.durationMs : '-'])).toEqual([
      ['added', '-'],
      ['started', '-'],
      ['cancelled', undefined],
    ]);
    // Its first attempt ran and failed; its second, stopped as it started, did not run.
    const second = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(async function failsThenStopped() {
      runs++;
      throw new Error('first attempt fails');
    });
    await expect(second.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect(runs).toBe(1);
    expect(second.attempt).toBe(2);
    const ended = events.filter((event) => event.id === second.id && (event.type === 'attemptFailed' || event.type === 'cancelled'));
    expect(ended.map((event) => [event.type, typeof (event as { durationMs?: number }).durationMs])).toEqual([
      ['attemptFailed', 'number'],
      ['cancelled', 'undefined'],
    ]);
  });

  it('a task that starts in the slot an observer frees (it cancels a sync task as it starts) is told started before it runs, and does not run when cancelled then', async () => {
    const { root, bg } = app({ concurrency: 1 });
    const ran: string[] = [];
    const told: string[] = [];
    observeTasks(
      (event) => {
        told.push(`${event.type} ${event.name}`);
        if (event.type === 'started') bg.get(event.id)?.cancel('not now');
      },
      { container: root },
    );
    // The sync task starts from setImmediate, outside the lane's pump: its cancellation frees the slot there.
    const first = bg.add(function syncFirst() {
      ran.push('syncFirst');
    });
    const second = bg.add(async function asyncSecond() {
      ran.push('asyncSecond');
    });
    await Promise.all([first, second].map((handle) => expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError)));
    expect(ran).toEqual([]);
    expect(told).toEqual(['added syncFirst', 'added asyncSecond', 'started syncFirst', 'cancelled syncFirst', 'started asyncSecond', 'cancelled asyncSecond']);
  });

  it('tells progress in the async context of the add(), as every other event, not in the attempt\'s (a wrapper\'s)', async () => {
    const { root } = app();
    const store = new AsyncLocalStorage<string>();
    wrapAttempts((_event, attempt) => store.run('the attempt', attempt), { container: root });
    const seen: string[] = [];
    observeTasks((event) => void seen.push(`${event.type} in ${store.getStore()}`), { container: root });
    const bg = root.createChildContainer().resolve(Background);
    const reports = defineTask({ name: 'reports', inject: [TaskContext] }, async (ctx) => {
      ctx.progress(0.25); // in the attempt's first turn, inside the wrapper's run()
      await Promise.resolve(); // past its first await, in the attempt's own context
      ctx.progress(0.5);
    });
    const handle = store.run('the request', () => bg.add(reports));
    await handle.result();
    expect(seen).toEqual(['added in the request', 'started in the request', 'progress in the request', 'progress in the request', 'succeeded in the request']);
  });

  it("dates a failed attempt when it failed, not after the tasks its freed slot starts", async () => {
    const { events, bg } = app({ concurrency: 1 });
    const failing = bg.with({ retries: 1, backoff: { baseMs: 50, jitter: 0 } }).add(async function failsOnce() {
      if (failing.attempt === 1) throw new Error('once');
    });
    let blockerStartedAt = 0;
    // Queued behind it: it starts in the slot the failure frees, and holds the event loop a while.
    bg.add(async function blocksWhenStarted() {
      blockerStartedAt = Date.now();
      const until = blockerStartedAt + 40;
      while (Date.now() < until);
    });
    await failing.result();
    const failed = events.find((event) => event.id === failing.id && event.type === 'attemptFailed');
    expect(failed!.at).toBeLessThanOrEqual(blockerStartedAt);
  });

  it('refuses an observer that is not a function', () => {
    expect(() => observeTasks(42 as never)).toThrow('observeTasks(observer): observer must be a function, got 42 (number)');
  });
});

describe('wrapAttempts()', () => {
  it("runs every attempt inside the wrappers, nested in the order they were added, in every lane, retries included", async () => {
    const { root, bg } = app({ pool: { inline: true } });
    const store = new AsyncLocalStorage<string[]>();
    const outer = wrapAttempts((event, attempt) => store.run([`outer ${event.name}@${event.attempt}`], attempt), { container: root });
    const inner = wrapAttempts((_event, attempt) => store.run([...(store.getStore() ?? []), 'inner'], attempt), { container: root });
    const seen: (string[] | undefined)[] = [];
    const flaky = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(async function flaky() {
      seen.push(store.getStore());
      await Promise.resolve();
      if (seen.length === 1) throw new Error('first attempt fails');
      return store.getStore();
    });
    await expect(flaky.result()).resolves.toEqual(['outer flaky@2', 'inner']);
    expect(seen).toEqual([['outer flaky@1', 'inner'], ['outer flaky@2', 'inner']]);
    const sync = bg.add(function syncTask() {
      return store.getStore();
    });
    await expect(sync.result()).resolves.toEqual(['outer syncTask@1', 'inner']);
    inner();
    outer[Symbol.dispose]();
    await expect(bg.add(async () => store.getStore()).result()).resolves.toBeUndefined();
  });

  it('lets what the task throws through, and survives a wrapper that throws or forgets the attempt: logged, the task still runs', async () => {
    const { root, bg, logger } = app();
    const stop = wrapAttempts(() => {
      throw new Error('wrapper bug');
    }, { container: root });
    await expect(bg.add(async () => 'ran').result()).resolves.toBe('ran');
    stop();
    wrapAttempts(() => 'forgot', { container: root });
    await expect(bg.add(async () => 'ran too').result()).resolves.toBe('ran too');
    expect(logger.at('error').map((entry) => entry.message)).toEqual([
      expect.stringMatching(/^an attempt wrapper threw before running task ".*"; it runs without the wrapper$/),
      expect.stringMatching(/^an attempt wrapper returned without running task ".*"; it runs without the wrapper$/),
    ]);
    const passing = wrapAttempts((_event, attempt) => attempt(), { container: root });
    await expect(
      bg.add(async function fails() {
        throw new Error('task failure');
      }).result(),
    ).rejects.toThrow('task failure');
    passing();
  });

  it.each([
    ['outermost', 'throws'],
    ['outermost', 'returns without calling attempt()'],
    ['between the two good ones', 'throws'],
    ['between the two good ones', 'returns without calling attempt()'],
    ['innermost', 'throws'],
    ['innermost', 'returns without calling attempt()'],
  ] as const)('skips a faulty wrapper alone (%s, one that %s): logged, the attempt runs inside every good one, in their order', async (where, how) => {
    const { root, bg, logger } = app();
    const store = new AsyncLocalStorage<string[]>();
    const saw: string[] = [];
    const good = (name: string): AttemptWrapper => (event, attempt) => {
      saw.push(`${name} saw ${event.name}@${event.attempt}`);
      return store.run([...(store.getStore() ?? []), name], attempt);
    };
    const faulty: AttemptWrapper = () => {
      if (how === 'throws') throw new Error('wrapper bug');
      return undefined;
    };
    const order = { outermost: [faulty, good('first'), good('second')], 'between the two good ones': [good('first'), faulty, good('second')], innermost: [good('first'), good('second'), faulty] }[where];
    for (const wrapper of order) wrapAttempts(wrapper, { container: root });
    const asyncTask = bg.add(async function asyncTask() {
      await Promise.resolve();
      return store.getStore();
    });
    await expect(asyncTask.result()).resolves.toEqual(['first', 'second']);
    const syncTask = bg.add(function syncTask() {
      return store.getStore();
    });
    await expect(syncTask.result()).resolves.toEqual(['first', 'second']);
    expect(saw).toEqual(['first saw asyncTask@1', 'second saw asyncTask@1', 'first saw syncTask@1', 'second saw syncTask@1']);
    const logged = how === 'throws' ? 'an attempt wrapper threw before running task "%s"; it runs without the wrapper' : 'an attempt wrapper returned without running task "%s"; it runs without the wrapper';
    expect(logger.at('error').map((entry) => entry.message)).toEqual(['asyncTask', 'syncTask'].map((name) => logged.replace('%s', name)));
  });

  it('does not call the wrappers inside one that ended the task before calling attempt(): the task does not run', async () => {
    const { root, bg, events } = app();
    const added: { handle?: TaskHandle } = {};
    const seen: string[] = [];
    wrapAttempts((_event, attempt) => {
      added.handle?.cancel('not now');
      try {
        return attempt();
      } catch (error) {
        seen.push(`outer: ${(error as Error).constructor.name}`);
        throw error;
      }
    }, { container: root });
    wrapAttempts((_event, attempt) => {
      seen.push('inner called');
      return attempt();
    }, { container: root });
    let ran = false;
    const handle = (added.handle = bg.add(async function cancelledByAWrapper() {
      ran = true;
    }));
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect({ ran, seen }).toEqual({ ran: false, seen: ['outer: TaskCancelledError'] });
    expect(story(events, handle.id)).toEqual(['added@0', 'started@1', 'cancelled@1']);
  });
});
