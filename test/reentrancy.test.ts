/**
 * Exactly one outcome per task when the code that reacts to a task's life reaches back into it:
 * observers of its events and attempt wrappers that cancel it, add tasks or dispose its scope, and
 * abort listeners that cancel others during a sweep. Each case was found from outside (an
 * observer's `added` cancelling its task made it run anyway, with a negative `pending`) and
 * fails on the code before its fix.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  observeTasks,
  shutdown,
  TaskCancelledError,
  TaskContext,
  defineTask,
  wrapAttempts,
  type ShutdownReport,
  type TaskEvent,
  type TaskHandle,
} from '../src/index.js';
import { deadlines } from '../src/engine/deadlines.js';
import { captureLogger, deferred, freshApp, nextTurn, observedApp, watchProcessErrors } from './helpers.js';

const errors = watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 1_000 })));
});

function app(options: Parameters<typeof freshApp>[0] = {}) {
  const opened = observedApp(roots, options);
  const typesOf = (id: string): string[] => opened.events.filter((event) => event.id === id).map((event) => event.type);
  return { ...opened, typesOf };
}

/** Cancels, from its `type` event, each task whose name is in `names` (found by its id: from `added`, before add() has returned its handle). */
function cancelOn(root: ReturnType<typeof freshApp>, type: TaskEvent['type'], names: readonly string[]): void {
  const lookup = root.resolve(Background);
  observeTasks(
    (event) => {
      if (event.type === type && names.includes(event.name)) lookup.get(event.id, { application: true })?.cancel('from the observer');
    },
    { container: root },
  );
}

describe('an observer of a task\'s "added" event that cancels it', () => {
  it('ends it cancelled, once, whether it was queued, delayed or waiting for another: it never starts and nothing is left counted', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { root, bg, typesOf } = app({ maxQueued: 2 });
    const handles: TaskHandle[] = [];
    cancelOn(root, 'added', ['queued', 'delayed', 'after']);
    let ran = 0;
    const first = bg.add(async function first() {});
    handles.push(bg.add(async function queued() { ran++; }));
    handles.push(bg.with({ delayMs: 10 }).add(async function delayed() { ran++; }));
    handles.push(bg.with({ after: [first] }).add(async function after() { ran++; }));
    expect(handles.map((handle) => handle.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    await bg.drain();
    await vi.advanceTimersByTimeAsync(30); // past the delayed task's 10 ms
    expect({ ran, pending: bg.pending, statuses: handles.map((handle) => handle.status) }).toEqual({ ran: 0, pending: 0, statuses: ['cancelled', 'cancelled', 'cancelled'] });
    for (const handle of handles) expect(typesOf(handle.id)).toEqual(['added', 'cancelled']);
    const stats = bg.stats();
    expect({ total: stats.total, cancelled: stats.byStatus.cancelled, failed: stats.byStatus.failed, succeeded: stats.byStatus.succeeded }).toEqual({ total: 4, cancelled: 3, failed: 0, succeeded: 1 });
    // The queue counts nothing for them: maxQueued (2) takes two more.
    const gate = deferred();
    bg.add(async () => gate.promise);
    bg.add(async () => gate.promise);
    gate.resolve();
    await bg.drain();
  });

  it('a disposal started from it abandons at once a delayed task due after the drain deadline', async () => {
    const { root, scope, bg, logger } = app({ drainTimeoutMs: 50 });
    let disposal: Promise<void> | undefined;
    observeTasks((event) => {
      if (event.type === 'added' && event.name === 'late') disposal = bg.dispose();
    }, { container: root });
    const late = bg.with({ delayMs: 10_000 }).add(async function late() {});
    expect(late.status).toBe('abandoned');
    await expect(late.result()).rejects.toThrow(`Task "late" (#${late.id}) was abandoned: its scope was disposed and the task was due after the drain deadline of 50 ms`);
    await disposal;
    expect(logger.at('error').map(({ message }) => message)).toEqual([expect.stringContaining('scope disposed with 1 task(s) due after the drain deadline of 50 ms')]);
    expect(scope).toBeDefined();
  });
});

describe('a task ended before its attempt runs', () => {
  it('cancelled by an observer of its "started" event, it does not run (it ran with its arguments dropped)', async () => {
    const { root, bg, typesOf } = app();
    const handles: TaskHandle[] = [];
    cancelOn(root, 'started', ['victim']);
    const calls: unknown[][] = [];
    const victim = defineTask({ name: 'victim' }, async (a: number, b: string) => void calls.push([a, b]));
    handles.push(bg.add(victim, 1, 'one'));
    const other = bg.add(async (a: number) => a * 2, 21);
    await expect(handles[0]!.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect(await other.result()).toBe(42);
    expect(calls).toEqual([]);
    expect(typesOf(handles[0]!.id)).toEqual(['added', 'started', 'cancelled']);
    expect(bg.pending).toBe(0);
  });

  it("cancelled inside an attempt wrapper before it calls attempt(), it does not run, and attempt() throws the task's cancellation", async () => {
    const { root, bg } = app();
    const seen: unknown[] = [];
    const added: { handle?: TaskHandle } = {};
    wrapAttempts((_event, attempt) => {
      added.handle?.cancel('from the wrapper');
      try {
        return attempt();
      } catch (error) {
        seen.push(error);
        throw error;
      }
    }, { container: root });
    let ran = false;
    const handle = (added.handle = bg.add(async function wrapped() { ran = true; }));
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    await nextTurn();
    expect({ ran, seen: seen.map((error) => (error as Error).constructor.name) }).toEqual({ ran: false, seen: ['TaskCancelledError'] });
  });
});

describe('a task that its retryIf cancels', () => {
  it("ends once, its cancelled event carrying the duration of the attempt that failed", async () => {
    const { bg, events } = app();
    const added: { handle?: TaskHandle } = {};
    const handle = (added.handle = bg.with({
      retries: 2,
      retryIf: () => {
        added.handle?.cancel('from retryIf');
        return true;
      },
    }).add(async function fails() {
      await new Promise((resolve) => setTimeout(resolve, 5));
      throw new Error('attempt failed');
    }));
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    const ended = events.filter((event) => event.id === handle.id && event.type !== 'added' && event.type !== 'started');
    expect(ended.map((event) => event.type)).toEqual(['cancelled']);
    expect((ended[0] as { durationMs?: number }).durationMs).toBeGreaterThanOrEqual(4);
  });
});

describe('a periodic task cancelled from the "added" event of one of its runs', () => {
  it('stays cancelled, and so does that run', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { root, bg } = app();
    const added: { schedule?: TaskHandle } = {};
    let run: string | undefined;
    observeTasks((event) => {
      if (event.type === 'added' && event.name === 'tick') {
        run = event.id;
        added.schedule?.cancel('from the observer');
      }
    }, { container: root });
    let ran = 0;
    const schedule = (added.schedule = bg.with({ every: 5 }).add(async function tick() { ran++; }));
    const outcome = expect(schedule.result()).rejects.toBeInstanceOf(TaskCancelledError);
    await vi.advanceTimersByTimeAsync(30); // six periods of 5 ms
    await outcome;
    expect({ status: schedule.status, ran, run: run === undefined ? undefined : bg.get(run)?.status }).toEqual({ status: 'cancelled', ran: 0, run: 'cancelled' });
  });
});

describe('a sweep that abandons tasks, one of whose abort listeners cancels the others', () => {
  it('reports as abandoned only those it abandoned, in the shutdown report and its log entry', async () => {
    const logger = captureLogger();
    const root = freshApp({ logger, concurrency: 1 });
    const bg = root.createChildContainer().resolve(Background);
    const batch: TaskHandle[] = [];
    const started = deferred();
    const leader = defineTask({ name: 'leader', inject: [TaskContext] }, async (ctx: TaskContext) => {
      ctx.signal.addEventListener('abort', () => {
        for (const handle of batch) handle.cancel('the leader was aborted');
      });
      started.resolve();
      await new Promise(() => undefined);
    });
    for (let i = 0; i < 3; i++) batch.push(bg.with({ priority: 'low' }).add(async function follower() {}));
    batch.push(bg.with({ priority: 'high' }).add(leader));
    await started.promise;
    const report = await shutdown({ container: root, timeoutMs: 20 });
    const abandoned = batch.filter((handle) => handle.status === 'abandoned').length;
    expect({ abandoned, cancelled: batch.filter((handle) => handle.status === 'cancelled').length }).toEqual({ abandoned: 1, cancelled: 3 });
    expect({ report: report.abandoned, totals: report.totals.abandoned }).toEqual({ report: 1, totals: 1 });
    const entry = logger.at('error').find(({ message }) => message.startsWith('application closed'));
    expect(entry?.fields).toMatchObject({ abandoned: 1, running: 1, queued: 0 });
    expect(entry?.message).toContain('with 1 task(s) unfinished');
  });
});

describe('an observer of a task\'s end', () => {
  it('that adds a task: drain() waits for that one too', async () => {
    const { root, bg } = app();
    const gate = deferred();
    let follow: TaskHandle | undefined;
    observeTasks((event) => {
      if (event.type === 'succeeded' && event.name === 'first') follow = bg.add(async function follow() { await gate.promise; });
    }, { container: root });
    bg.add(async function first() {});
    let drained = false;
    const draining = bg.drain().then(() => (drained = true));
    await nextTurn();
    expect({ drained, follow: follow?.status }).toEqual({ drained: false, follow: 'running' });
    gate.resolve();
    await draining;
    expect(bg.pending).toBe(0);
  });

  it('of a cancelled queued task, sees it out of the queue: maxQueued takes a new task at once', async () => {
    const { root, bg } = app({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    const added: unknown[] = [];
    observeTasks((event) => {
      if (event.type === 'cancelled' && event.name === 'waiting') {
        try {
          added.push(bg.add(async function replacement() {}).status);
        } catch (error) {
          added.push(error);
        }
      }
    }, { container: root });
    bg.add(async () => gate.promise);
    await nextTurn();
    const waiting = bg.add(async function waiting() {});
    waiting.cancel();
    expect(added).toEqual(['queued']);
    gate.resolve();
    await bg.drain();
  });
});

describe('an attempt wrapper that breaks its contract', () => {
  it("throwing after attempt(): logged, the task's own outcome stands, and its failure is never unhandled", async () => {
    const { root, bg, logger } = app();
    wrapAttempts((_event, attempt) => {
      attempt();
      throw new Error('the wrapper broke');
    }, { container: root });
    const failing = bg.add(async function failing() {
      await nextTurn();
      throw new Error('the task failed');
    });
    await expect(failing.result()).rejects.toThrow('the task failed');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(errors.unhandled).toEqual([]);
    expect(logger.at('error').map(({ message }) => message)).toEqual([`an attempt wrapper threw after running task "failing"; the task's own outcome stands`, 'task "failing" failed']);
  });

  it("returning something other than attempt()'s promise: logged, and the task ends when its own promise does", async () => {
    const { root, bg, logger } = app();
    wrapAttempts((_event, attempt) => {
      attempt();
      return 'something else';
    }, { container: root });
    const gate = deferred();
    const slow = bg.add(async function slow() {
      await gate.promise;
      return 7;
    });
    await nextTurn();
    await nextTurn();
    expect(slow.status).toBe('running');
    gate.resolve();
    expect(await slow.result()).toBe(7);
    expect(logger.at('error').map(({ message }) => message)).toEqual([`an attempt wrapper returned something other than the promise of attempt() for task "slow"; the task's own outcome stands`]);
  });
});

describe('bg.list({ application: true })', () => {
  it('lists live tasks newest first across scopes', async () => {
    const { root } = app();
    const gate = deferred();
    const a = root.createChildContainer().resolve(Background);
    const b = root.createChildContainer().resolve(Background);
    const first = a.add(async () => gate.promise);
    const second = b.add(async () => gate.promise);
    const third = a.add(async () => gate.promise);
    expect(a.list({ application: true }).map(({ id }) => id).filter((id) => [first.id, second.id, third.id].includes(id))).toEqual([third.id, second.id, first.id]);
    gate.resolve();
    await Promise.all([a.drain(), b.drain()]);
  });
});

describe('a disposal or shutdown started again by an observer of a task it abandons', () => {
  it("a scope's: the same promise, and no second drain deadline left holding the process", async () => {
    const { root, bg } = app({ drainTimeoutMs: 60_000 });
    let again: Promise<void> | undefined;
    observeTasks((event) => {
      if (event.type === 'abandoned') again ??= bg.dispose();
    }, { container: root });
    bg.with({ delayMs: 120_000 }).add(async function late() {});
    const gate = deferred();
    const running = bg.add(async function running() {
      await gate.promise;
    });
    const disposal = bg.dispose();
    expect(again).toBe(disposal);
    expect(deadlines.live).toBe(1);
    gate.resolve();
    await disposal;
    expect({ running: running.status, deadlines: deadlines.live }).toEqual({ running: 'succeeded', deadlines: 0 });
  });

  it("the application's: the same promise, under the first call's deadline", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { root, bg } = app();
    let again: Promise<ShutdownReport> | undefined;
    observeTasks((event) => {
      if (event.type === 'abandoned') again ??= shutdown({ container: root, timeoutMs: 0 });
    }, { container: root });
    bg.with({ delayMs: 120_000 }).add(async function late() {});
    const gate = deferred();
    const running = bg.add(async function running() {
      await gate.promise;
    });
    const first = shutdown({ container: root, timeoutMs: 60_000 });
    expect(again).toBe(first);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(running.status).toBe('running');
    gate.resolve();
    const report = await first;
    expect({ abandoned: report.abandoned, totalAbandoned: report.totals.abandoned, running: running.status }).toEqual({ abandoned: 1, totalAbandoned: 1, running: 'succeeded' });
  });
});

describe('an observer that cancels a task from one of its events', () => {
  it.each(['added', 'started', 'attemptFailed', 'retrying'] as const)(
    'in "%s": every other observer still sees that event before the task\'s final one',
    async (type) => {
      const root = freshApp({ logger: captureLogger() });
      roots.push(root);
      const lookup = root.resolve(Background);
      // The canceller is told first; the recorder after it, of the same events.
      observeTasks(
        (event) => {
          if (event.type === type) lookup.get(event.id, { application: true })?.cancel('from the first observer');
        },
        { container: root },
      );
      const seen: string[] = [];
      observeTasks((event) => void seen.push(`${event.type}/${event.attempt}`), { container: root });
      const bg = root.createChildContainer().resolve(Background);
      const handle = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(async function flaky() {
        throw new Error('fails');
      });
      await handle.result().catch(() => undefined);
      expect(handle.status).toBe('cancelled');
      expect(seen.at(-1)).toBe(`cancelled/${handle.attempt}`);
      expect(seen.slice(0, -1)).toEqual(
        { added: ['added/0'], started: ['added/0', 'started/1'], attemptFailed: ['added/0', 'started/1', 'attemptFailed/1'], retrying: ['added/0', 'started/1', 'attemptFailed/1', 'retrying/1'] }[type],
      );
    },
  );

  it('tells the others of the cancelled task in the async context of its own add()', async () => {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const request = new AsyncLocalStorage<string>();
    const root = freshApp({ logger: captureLogger() });
    roots.push(root);
    const bg = root.createChildContainer().resolve(Background);
    const gate = deferred();
    const other = request.run('request B', () => bg.add(async function b() {
      await gate.promise;
    }));
    // An observer of task a's start cancels task b (another request's).
    observeTasks(
      (event) => {
        if (event.type === 'started' && event.name === 'a') other.cancel('from a');
      },
      { container: root },
    );
    const contexts: string[] = [];
    observeTasks((event) => void contexts.push(`${event.name} ${event.type} in ${request.getStore() ?? 'none'}`), { container: root });
    await request.run('request A', () => bg.add(async function a() {}).result());
    gate.resolve();
    expect(contexts).toEqual(['a added in request A', 'b started in request B', 'a started in request A', 'b cancelled in request B', 'a succeeded in request A']);
  });
});
