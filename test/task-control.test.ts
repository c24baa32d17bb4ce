import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  BackgroundOptions,
  defineTask,
  QueueFullError,
  ResultTimeoutError,
  TaskAbandonedError,
  TaskCancelledError,
  TaskContext,
  TaskSkippedError,
  TaskTimeoutError,
  observeTasks,
  shutdown,
  type TaskHandle,
} from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

/** Fake clocks for timers and dates; microtasks and setImmediate stay real. */
function fakeTime(now = new Date('2026-12-01T10:00:00Z')) {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now });
}

function setup(options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const app = freshApp({ logger, ...options });
  const scope = app.createChildContainer();
  return { app, scope, logger, bg: scope.resolve(Background) };
}

/** An async task that waits for its signal, then rejects with its reason. */
const waitsForAbort = defineTask({ name: 'waitsForAbort', inject: [TaskContext] }, async (ctx) => {
  await new Promise<void>((_resolve, reject) => {
    ctx.signal.addEventListener('abort', () => {
      reject(ctx.signal.reason as Error);
    });
  });
});

watchProcessErrors();
afterEach(() => {
  vi.useRealTimers();
});

describe('TaskContext', () => {
  it('gives id, name, attempt, signal, a logger carrying the task fields, and progress()', async () => {
    const { bg, logger } = setup();
    const gate = deferred();
    const probe = defineTask({ name: 'probe', inject: [TaskContext] }, async (ctx, label: string) => {
      ctx.logger.info({ label }, 'working');
      ctx.progress(0.25, 'a quarter');
      await gate.promise;
      return { id: ctx.id, name: ctx.name, attempt: ctx.attempt, aborted: ctx.signal.aborted };
    });
    const handle = bg.add(probe, 'x');
    expect(handle.progress).toBeUndefined();
    await nextTurn();
    expect(handle.progress).toEqual({ fraction: 0.25, message: 'a quarter' });
    gate.resolve();
    await expect(handle.result()).resolves.toEqual({ id: handle.id, name: 'probe', attempt: 1, aborted: false });
    expect(logger.at('info')[0]).toEqual({ level: 'info', fields: { task: 'probe', taskId: handle.id, attempt: 1, label: 'x' }, message: 'working' });
  });

  it.each([
    [1.5, RangeError, '1.5 (number)'],
    ['0.5', TypeError, '"0.5" (string)'],
    [1n, TypeError, '1 (bigint)'],
  ] as const)('rejects a progress of %o (a %o), naming the task, failing the task that made the mistake', async (fraction, type, got) => {
    const { bg } = setup();
    const bad = defineTask({ name: 'bad', inject: [TaskContext] }, async (ctx) => {
      ctx.progress(fraction as never);
    });
    const handle = bg.add(bad);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(type);
    expect(error).toHaveProperty('message', `progress(fraction) in task "bad" (#${handle.id}): fraction must be a number from 0 to 1, got ${got}`);
  });
});

describe('retryIf that returns a promise', () => {
  it('reads as no, and is said: the task is not retried, and the promise is no unhandled rejection', async () => {
    const { bg, logger } = setup();
    let runs = 0;
    const flaky = bg.with({ retries: 3, backoff: { baseMs: 1, jitter: 0 }, retryIf: (() => Promise.reject(new Error('no answer'))) as never }).add(async function flaky() {
      runs++;
      throw new Error('transient');
    });
    await expect(flaky.result()).rejects.toThrow('transient');
    expect(runs).toBe(1);
    expect(logger.at('error').map((entry) => entry.message)).toContain(
      'retryIf of task "flaky" returned a promise, which reads as no: the task is not retried (retryIf must answer at once, true or false)',
    );
  });
});

describe('priorities', () => {
  it('start higher priorities first, and equal priorities in the order they were added', async () => {
    const { bg } = setup({ concurrency: 1 });
    const gate = deferred();
    const started: string[] = [];
    bg.add(async () => {
      await gate.promise;
    });
    const record = (label: string) => async () => {
      started.push(label);
    };
    bg.with({ priority: 'low' }).add(record('low'));
    bg.add(record('normal 1'));
    bg.with({ priority: 'critical' }).add(record('critical'));
    bg.with({ priority: 60 }).add(record('60'));
    bg.with({ priority: 'high' }).add(record('high'));
    bg.add(record('normal 2'));
    gate.resolve();
    await bg.drain();
    expect(started).toEqual(['critical', 'high', '60', 'normal 1', 'normal 2', 'low']);
  });

  it('take the definition priority under a call priority, over the scope defaults', () => {
    const { app } = setup();
    const child = app.createChildContainer();
    child.register(BackgroundOptions, { useValue: { defaults: { priority: 'low' } } });
    const bg = child.resolve(Background);
    const defined = defineTask({ name: 'defined', priority: 'high' }, async () => undefined);
    const plain = async () => undefined;
    const priorityOf = (handle: unknown) => (handle as { priority: number }).priority;
    expect(priorityOf(bg.add(plain))).toBe(10);
    expect(priorityOf(bg.add(defined))).toBe(75);
    expect(priorityOf(bg.with({ priority: 'critical' }).add(defined))).toBe(100);
  });

  it("merge a view's options over each task's own, however the view's adds alternate between tasks and views", () => {
    const { bg } = setup();
    const priorityOf = (handle: unknown) => (handle as { priority: number }).priority;
    const high = defineTask({ name: 'high', priority: 'high' }, async () => undefined);
    const low = defineTask({ name: 'low', priority: 'low' }, async () => undefined);
    const plain = async () => undefined;
    const retrying = bg.with({ retries: 1 }); // no priority of its own: the task's shows through
    const critical = bg.with({ priority: 'critical' });
    for (let i = 0; i < 2; i++) {
      expect(priorityOf(retrying.add(high))).toBe(75);
      expect(priorityOf(retrying.add(low))).toBe(10);
      expect(priorityOf(retrying.add(plain))).toBe(50);
      expect(priorityOf(critical.add(low))).toBe(100);
      expect(priorityOf(retrying.add(low))).toBe(10);
    }
  });
});

describe('retries', () => {
  it('retry with exponential backoff, logging each failed attempt at warn and the outcome once', async () => {
    fakeTime();
    const { bg, logger } = setup();
    const attempts: number[] = [];
    const flaky = defineTask(
      { name: 'flaky', inject: [TaskContext], retries: 3, backoff: { baseMs: 100, factor: 2, jitter: 0 } },
      async (ctx) => {
        attempts.push(Date.now());
        if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
        return ctx.attempt;
      },
    );
    const handle = bg.add(flaky);
    const start = Date.now();
    await vi.advanceTimersByTimeAsync(0);
    expect(handle.status).toBe('retrying');
    await vi.advanceTimersByTimeAsync(100);
    expect(handle.attempt).toBe(2);
    await vi.advanceTimersByTimeAsync(200);
    await expect(handle.result()).resolves.toBe(3);
    expect(attempts.map((t) => t - start)).toEqual([0, 100, 300]);
    expect(logger.at('warn').map((e) => e.message)).toEqual([
      'task "flaky" failed (attempt 1 of 4); retrying in 100 ms',
      'task "flaky" failed (attempt 2 of 4); retrying in 200 ms',
    ]);
    expect(logger.at('warn')[1]!.fields).toMatchObject({ attempt: 2, retries: 3, retryInMs: 200 });
    expect(logger.at('error')).toHaveLength(0);
  });

  it('log the final failure once at error, with its attempt, after the retries are used up', async () => {
    fakeTime();
    const { bg, logger } = setup();
    const handle = bg.with({ retries: 2, backoff: { baseMs: 10, jitter: 0 } }).add(async function alwaysFails() {
      throw new Error('nope');
    });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(handle.status).toBe('failed');
    expect(handle.attempt).toBe(3);
    expect(logger.at('warn')).toHaveLength(2);
    expect(logger.at('error')).toHaveLength(1);
    expect(logger.at('error')[0]!.fields).toMatchObject({ task: 'alwaysFails', attempt: 3 });
    await expect(handle.result()).rejects.toThrow('nope');
  });

  it('ask retryIf(error, attempt) whether a failure is worth another attempt', async () => {
    fakeTime();
    const { bg, logger } = setup();
    const seen: [string, number][] = [];
    const handle = bg
      .with({
        retries: 5,
        backoff: { baseMs: 10, jitter: 0 },
        retryIf: (error, attempt) => {
          seen.push([(error as Error).message, attempt]);
          return (error as Error).message !== 'fatal';
        },
      })
      .add(async function sometimesFatal() {
        throw new Error(seen.length === 0 ? 'transient' : 'fatal');
      });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(seen).toEqual([['transient', 1], ['fatal', 2]]);
    expect(handle.status).toBe('failed');
    expect(logger.at('error')).toHaveLength(1);
  });

  it('keep jittered delays between (1 - jitter) × delay and the delay, capped at maxMs', async () => {
    const { backoffDelay, defaultTaskOptions } = await import('../src/model/task-options.js');
    const backoff = { ...defaultTaskOptions.backoff, baseMs: 1_000, factor: 3, maxMs: 5_000, jitter: 0.5 };
    expect([1, 2, 3].map((attempt) => backoffDelay(backoff, attempt, () => 0))).toEqual([1_000, 3_000, 5_000]);
    expect([1, 2, 3].map((attempt) => backoffDelay(backoff, attempt, () => 1))).toEqual([500, 1_500, 2_500]);
  });
});

describe('timeouts', () => {
  it('abort the signal, end the task as timedOut and free its slot at once', async () => {
    fakeTime();
    const { bg, logger } = setup({ concurrency: 1 });
    const stuck = bg.with({ timeoutMs: 50 }).add(async function ignoresItsSignal() {
      await new Promise(() => undefined);
    });
    const watcher = bg.with({ timeoutMs: 50 }).add(waitsForAbort);
    const next = bg.add(async () => 'next');
    await vi.advanceTimersByTimeAsync(50);
    expect(stuck.status).toBe('timedOut');
    await expect(stuck.result()).rejects.toThrow(TaskTimeoutError);
    await expect(stuck.result()).rejects.toThrow(/"ignoresItsSignal" \(#\d+\) timed out after 50 ms \(attempt 1\)/);
    await vi.advanceTimersByTimeAsync(50);
    const reason = await watcher.result().catch((e: unknown) => e);
    expect(reason).toBeInstanceOf(TaskTimeoutError);
    await expect(next.result()).resolves.toBe('next');
    expect(logger.at('error').map((e) => e.message)).toEqual(['task "ignoresItsSignal" timed out', 'task "waitsForAbort" timed out']);
  });

  it('take a default from the registered options, and count as a failed attempt for retries', async () => {
    fakeTime();
    const { bg } = setup({ defaults: { timeoutMs: 20, retries: 1, backoff: { baseMs: 5, jitter: 0 } } });
    let calls = 0;
    const handle = bg.add(async () => {
      calls++;
      await new Promise(() => undefined);
    });
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(2);
    expect(handle.status).toBe('timedOut');
    expect(handle.attempt).toBe(2);
  });

  it('time out an async attempt that settles after its bound even when the event loop, held, ran its own timer first', async () => {
    // Real timers: Node runs every due timer of one duration before another's. A 60 ms timer set
    // first makes the 60 ms list due before the 20 ms one; the loop is then held past everything.
    const { bg } = setup();
    const start = performance.now();
    const hold = (ms: number): void => {
      while (performance.now() - start < ms);
    };
    const first = setTimeout(() => undefined, 60);
    hold(45);
    let started = false;
    const handle = bg.with({ timeoutMs: 20 }).add(async function sleepsPastItsBound() {
      started = true;
      await new Promise((resolve) => setTimeout(resolve, 60));
      return 'done';
    });
    while (!started) await Promise.resolve();
    // Due now: the first timer (at 60), this timeout (at ≥ 65), the task's own sleep (at ≥ 105).
    hold(200);
    await expect(handle.result()).rejects.toThrow(TaskTimeoutError);
    expect(handle.status).toBe('timedOut');
    clearTimeout(first);
  });
});

describe('cancellation', () => {
  it('keeps a delayed task or one waiting to retry from ever starting again', async () => {
    fakeTime();
    const { bg } = setup();
    let calls = 0;
    const delayed = bg.with({ delayMs: 1_000 }).add(async () => {
      calls++;
    });
    const retrying = bg.with({ retries: 1, backoff: { baseMs: 1_000, jitter: 0 } }).add(async () => {
      calls++;
      throw new Error('first attempt');
    });
    await vi.advanceTimersByTimeAsync(10);
    expect([delayed.status, retrying.status]).toEqual(['delayed', 'retrying']);
    expect(delayed.cancel('no longer needed')).toBe(true);
    expect(retrying.cancel()).toBe(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(calls).toBe(1);
    expect([delayed.status, retrying.status]).toEqual(['cancelled', 'cancelled']);
    await expect(delayed.result()).rejects.toThrow(TaskCancelledError);
    await expect(bg.drain()).resolves.toBeUndefined();
  });
});

describe('status, results and records', () => {
  it('result({ timeoutMs }) stops waiting with ResultTimeoutError while the task goes on', async () => {
    fakeTime();
    const { bg } = setup();
    const gate = deferred<string>();
    const handle = bg.add(async () => gate.promise);
    const waiting = handle.result({ timeoutMs: 100 });
    const expectations = Promise.all([
      expect(waiting).rejects.toThrow(ResultTimeoutError),
      expect(waiting).rejects.toThrow(/had not finished after waiting 100 ms for its result \(it is running\)/),
    ]);
    await vi.advanceTimersByTimeAsync(100);
    await expectations;
    gate.resolve('later');
    await expect(handle.result({ timeoutMs: 100 })).resolves.toBe('later');
  });

  it('get(), list() and stats() show a scope, or the whole application, by status', async () => {
    const { app, bg } = setup({ concurrency: 1 });
    const other = app.createChildContainer().resolve(Background);
    const gate = deferred();
    const running = bg.add(async () => gate.promise);
    const queued = bg.add(async () => 'queued');
    const failed = other.add(async () => {
      throw new Error('x');
    });
    await nextTurn();
    expect(bg.get(queued.id)).toBe(queued);
    expect(bg.get(failed.id)).toBeUndefined();
    expect(bg.get(failed.id, { application: true })).toBe(failed);
    expect(bg.list({ status: 'running' })).toEqual([running]);
    expect(bg.stats()).toMatchObject({ total: 2, queued: 1, running: 1 });
    gate.resolve();
    await Promise.all([bg.drain(), other.drain()]);
    expect(bg.list().map((h) => h.id)).toEqual([queued.id, running.id]);
    expect(bg.list({ status: ['failed', 'succeeded'], application: true }).map((h) => h.id).sort()).toEqual([running.id, queued.id, failed.id].sort());
    expect(bg.list({ status: 'failed', application: true })).toEqual([failed]);
    expect(bg.stats({ application: true })).toMatchObject({ total: 3, queued: 0, running: 0, byStatus: { succeeded: 2, failed: 1 } });
  });

  it('forget finished tasks beyond records.maxCount and records.maxAgeMs', async () => {
    fakeTime();
    const { bg } = setup({ records: { maxCount: 2, maxAgeMs: 60_000 } });
    const handles = [1, 2, 3].map((n) => bg.add(async () => n));
    await bg.drain();
    expect(bg.list().map((h) => h.id)).toEqual([handles[2]!.id, handles[1]!.id]);
    expect(bg.get(handles[0]!.id)).toBeUndefined();
    vi.setSystemTime(Date.now() + 60_001);
    expect(bg.list()).toEqual([]);
    expect(bg.stats().byStatus.succeeded).toBe(3);
  });

  it('keep the last 100 finished tasks by default', async () => {
    const { bg } = setup();
    const handles = Array.from({ length: 150 }, (_, n) => bg.add(async () => n));
    await bg.drain();
    expect(bg.list().map((h) => h.id)).toEqual(handles.slice(50).reverse().map((h) => h.id));
    expect(bg.get(handles[49]!.id)).toBeUndefined();
    expect(bg.stats().byStatus.succeeded).toBe(150);
  });
});

describe('delayed tasks', () => {
  it('start no sooner than delayMs or runAt', async () => {
    fakeTime();
    const { bg } = setup();
    const started: string[] = [];
    bg.with({ delayMs: 500 }).add(async () => {
      started.push(`delayMs at ${Date.now()}`);
    });
    bg.with({ runAt: new Date(Date.now() + 200) }).add(async () => {
      started.push(`runAt at ${Date.now()}`);
    });
    const base = Date.now();
    await vi.advanceTimersByTimeAsync(199);
    expect(started).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(started).toEqual([`runAt at ${base + 200}`]);
    await vi.advanceTimersByTimeAsync(300);
    expect(started).toEqual([`runAt at ${base + 200}`, `delayMs at ${base + 500}`]);
  });

  it('on shutdown, abandon at once those due after its deadline', async () => {
    fakeTime();
    const { app, bg } = setup();
    const late = bg.with({ delayMs: 60_000 }).add(async () => undefined);
    const closing = shutdown({ container: app, timeoutMs: 1_000 });
    expect(late.status).toBe('abandoned');
    await expect(closing).resolves.toMatchObject({ abandoned: 1 });
  });

  it('on disposal, run those due within the drain deadline and abandon, at once, those due after it', async () => {
    fakeTime();
    const { bg, logger } = setup({ drainTimeoutMs: 1_000 });
    let ran = false;
    const soon = bg.with({ delayMs: 500 }).add(async () => {
      ran = true;
    });
    const late = bg.with({ delayMs: 5_000 }).add(async () => undefined);
    const disposal = bg.dispose();
    expect(late.status).toBe('abandoned');
    await expect(late.result()).rejects.toThrow(TaskAbandonedError);
    expect(logger.at('error')[0]!.message).toMatch(/^scope disposed with 1 task\(s\) due after the drain deadline of 1000 ms \(0 running, 0 queued, 1 delayed or retrying\)/);
    await vi.advanceTimersByTimeAsync(500);
    await disposal;
    expect(ran).toBe(true);
    expect(soon.status).toBe('succeeded');
  });
});

/** Takes the one slot of a `concurrency: 1` application until the gate it returns is opened. */
function holdTheSlot(bg: Background) {
  const gate = deferred();
  bg.add(async function holdsTheSlot() {
    await gate.promise;
  });
  return gate;
}

describe('periodic tasks', () => {
  it('run every N ms until cancelled; a failing run is logged and the next still comes', async () => {
    fakeTime();
    const { bg, logger } = setup();
    const runs: number[] = [];
    const base = Date.now();
    const schedule = bg.with({ every: 100 }).add(async function tick() {
      runs.push(Date.now() - base);
      if (runs.length === 2) throw new Error('second run fails');
    });
    expect(schedule.status).toBe('delayed');
    await vi.advanceTimersByTimeAsync(350);
    expect(runs).toEqual([100, 200, 300]);
    expect(logger.at('error')).toHaveLength(1);
    expect(schedule.attempt).toBe(3);
    expect(schedule.cancel()).toBe(true);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs).toEqual([100, 200, 300]);
    await expect(schedule.result()).rejects.toThrow(TaskCancelledError);
  });

  it('count as attempts the runs started: a run added but waiting for its slot has not started', async () => {
    fakeTime();
    const { bg } = setup({ concurrency: 1 });
    const gate = holdTheSlot(bg);
    const schedule = bg.with({ every: 100 }).add(async function tick() {});
    await vi.advanceTimersByTimeAsync(150);
    // Its first run was added at 100 ms and waits for the one slot.
    expect({ status: schedule.status, attempt: schedule.attempt }).toEqual({ status: 'running', attempt: 0 });
    expect(bg.list({ status: 'queued' }).map((task) => task.name)).toEqual(['tick']);
    gate.resolve();
    await vi.advanceTimersByTimeAsync(1);
    expect(schedule.attempt).toBe(1);
    schedule.cancel();
  });

  it("read 'running' from a run's added event on, its run queued or not", async () => {
    fakeTime();
    const { app, bg } = setup({ concurrency: 1 });
    const gate = holdTheSlot(bg);
    const seen: string[] = [];
    const added: { schedule?: TaskHandle } = {};
    const observation = observeTasks(
      (event) => {
        if (event.type === 'added' && event.name === 'tick') seen.push(`${added.schedule!.status}/${added.schedule!.attempt}`);
      },
      { container: app },
    );
    const schedule = (added.schedule = bg.with({ every: 100 }).add(async function tick() {}));
    await vi.advanceTimersByTimeAsync(150);
    observation();
    expect(seen).toEqual(['running/0']);
    schedule.cancel();
    gate.resolve();
  });

  it('count no run that ended before it started: runs cancelled while they waited for their slot', async () => {
    fakeTime();
    const { bg } = setup({ concurrency: 1 });
    const gate = holdTheSlot(bg);
    const schedule = bg.with({ every: 100, overlap: true }).add(async function tick() {});
    await vi.advanceTimersByTimeAsync(350);
    expect(bg.list({ status: 'queued' })).toHaveLength(3);
    expect(schedule.attempt).toBe(0);
    // Cancelling the schedule cancels its runs, none of which started.
    schedule.cancel();
    await vi.advanceTimersByTimeAsync(1);
    expect({ status: schedule.status, attempt: schedule.attempt }).toEqual({ status: 'cancelled', attempt: 0 });
    gate.resolve();
  });

  it("read 'delayed' the moment a run ends, from the run's own final event on", async () => {
    fakeTime();
    const { app, bg } = setup();
    const seen: string[] = [];
    const added: { schedule?: TaskHandle } = {};
    const observation = observeTasks(
      (event) => {
        if (event.type === 'succeeded' && event.name === 'tick') seen.push(added.schedule!.status);
      },
      { container: app },
    );
    const schedule = (added.schedule = bg.with({ every: 100 }).add(async function tick() {}));
    await vi.advanceTimersByTimeAsync(150);
    observation();
    expect(seen).toEqual(['delayed']);
    expect(schedule.status).toBe('delayed');
    schedule.cancel();
    expect(schedule.status).toBe('cancelled');
  });

  it('skip a tick while the previous run is still going, unless overlap is allowed', async () => {
    fakeTime();
    const { bg } = setup();
    const gate = deferred();
    let calls = 0;
    const slow = async () => {
      calls++;
      await gate.promise;
    };
    bg.with({ every: 100 }).add(slow);
    await vi.advanceTimersByTimeAsync(350);
    expect(calls).toBe(1);
    let overlapping = 0;
    bg.with({ every: 100, overlap: true }).add(async () => {
      overlapping++;
      await gate.promise;
    });
    await vi.advanceTimersByTimeAsync(300);
    expect(overlapping).toBe(3);
    gate.resolve();
  });

  it('run on a cron expression in a time zone', async () => {
    fakeTime(new Date('2026-12-01T07:58:00Z'));
    const { bg } = setup();
    const runs: string[] = [];
    bg.with({ cron: '0 0 9 * * *', tz: 'Europe/Paris' }).add(async () => {
      runs.push(new Date().toISOString());
    });
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    expect(runs).toEqual(['2026-12-01T08:00:00.000Z']);
    await vi.advanceTimersByTimeAsync(24 * 3_600_000);
    expect(runs).toEqual(['2026-12-01T08:00:00.000Z', '2026-12-02T08:00:00.000Z']);
  });

  it('log a tick whose run cannot be added (a full queue) and keep going; a full queue does not refuse the schedule', async () => {
    fakeTime();
    const { bg, logger } = setup({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    bg.add(async () => gate.promise);
    await nextTurn();
    bg.add(async () => 'fills the queue');
    let runs = 0;
    const schedule = bg.with({ every: 100 }).add(async function report() {
      runs++;
    });
    await vi.advanceTimersByTimeAsync(100);
    expect(logger.at('error').map((e) => e.message)).toEqual(['periodic task "report" could not add this tick\'s run; the next tick still comes']);
    expect(logger.at('error')[0]!.fields.err).toBeInstanceOf(QueueFullError);
    gate.resolve();
    await vi.advanceTimersByTimeAsync(100);
    expect(runs).toBe(1);
    expect(schedule.status).not.toBe('cancelled');
    schedule.cancel();
  });

  it('stop when their scope is disposed, and do not hold its drain', async () => {
    fakeTime();
    const { bg } = setup();
    let calls = 0;
    const schedule = bg.with({ every: 100 }).add(async () => {
      calls++;
    });
    await vi.advanceTimersByTimeAsync(100);
    await expect(bg.drain()).resolves.toBeUndefined();
    await bg.dispose();
    expect(schedule.status).toBe('cancelled');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(calls).toBe(1);
  });
});

describe('a bounded queue', () => {
  it('makes add() throw QueueFullError past maxQueued, saying how many run and wait; nothing is dropped', async () => {
    const { bg } = setup({ concurrency: 1, maxQueued: 2 });
    const gate = deferred();
    const done: number[] = [];
    const task = (n: number) => async () => {
      await gate.promise;
      done.push(n);
    };
    bg.add(task(1));
    await nextTurn();
    bg.add(task(2));
    bg.add(task(3));
    let thrown: unknown;
    try {
      bg.add(task(4));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(QueueFullError);
    expect((thrown as Error).message).toBe(
      'Cannot add task "anonymous": the queue is full (maxQueued 2: 2 queued, 1 running); retry later or await bg.waitForRoom()',
    );
    let room = false;
    const waiting = bg.waitForRoom().then(() => (room = true));
    await nextTurn();
    expect(room).toBe(false);
    gate.resolve();
    await waiting;
    // Cancelling a queued task makes room too.
    const blocker = deferred();
    bg.add(async () => blocker.promise);
    await nextTurn();
    const queuedA = bg.add(task(5));
    bg.add(task(6));
    expect(() => bg.add(task(7))).toThrow(QueueFullError);
    const again = bg.waitForRoom();
    queuedA.cancel();
    await again;
    blocker.resolve();
    bg.add(task(4));
    await bg.drain();
    expect(done).toEqual([1, 2, 3, 6, 4]);
  });

  it('wakes as many waitForRoom() callers as there is room for, in the order they came: 300 producers on a queue of 2 are refused once at most', async () => {
    const { bg } = setup({ concurrency: 2, maxQueued: 2 });
    let refusedAgain = 0;
    let ran = 0;
    const refused: number[] = [];
    const produce = async (n: number): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        await bg.waitForRoom();
        try {
          bg.add(async () => {
            await nextTurn();
            ran++;
          });
          return;
        } catch (error) {
          if (!(error instanceof QueueFullError)) throw error;
          if (attempt === 1) refused.push(n);
          else refusedAgain++;
        }
      }
    };
    await Promise.all(Array.from({ length: 300 }, (_, n) => produce(n)));
    await bg.drain();
    // The first waitForRoom() of each resolved at once (the queue had room then): 4 got in, 296 were refused once and waited.
    expect(refused).toHaveLength(296);
    // Woken all at each freed place, each was refused again about once per task before its own: 300² / 2 in all.
    expect(refusedAgain).toBe(0);
    expect(ran).toBe(300);
  });

  it('a waiter woken that adds nothing passes its place on: the next waiter is woken', async () => {
    const { bg } = setup({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    bg.add(async () => gate.promise);
    await nextTurn();
    bg.add(async () => undefined);
    const woken: string[] = [];
    void bg.waitForRoom().then(() => woken.push('first, adds nothing'));
    const second = bg.waitForRoom().then(() => {
      woken.push('second');
      bg.add(async () => undefined);
    });
    void bg.waitForRoom().then(() => woken.push('third'));
    gate.resolve();
    await second;
    expect(woken).toEqual(['first, adds nothing', 'second']);
    await bg.drain();
    expect(woken).toEqual(['first, adds nothing', 'second', 'third']);
  });

  it('does not refuse a task that waits (delayMs, runAt, after) when the queue is full: it joins the queue when due, never refused then', async () => {
    const { bg } = setup({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    const order: string[] = [];
    const first = bg.add(async () => {
      await gate.promise;
      order.push('first');
    });
    await nextTurn();
    bg.add(async () => void order.push('queued'));
    expect(() => bg.add(async () => 0)).toThrow(QueueFullError);
    const later = bg.with({ delayMs: 20 }).add(async () => void order.push('delayed'));
    const after = bg.with({ after: [first] }).add(async () => void order.push('after'));
    expect([later.status, after.status]).toEqual(['delayed', 'delayed']);
    gate.resolve();
    await Promise.all([later.result(), after.result()]);
    // `after` joined the queue as `first` ended (behind the one queued); the delayed one when due.
    expect(order).toEqual(['first', 'queued', 'after', 'delayed']);
  });

  it('refuses a task after tasks that have all ended when the queue is full: it joins the queue at once', async () => {
    const { bg } = setup({ concurrency: 1, maxQueued: 1 });
    const done = bg.add(async () => 'done');
    await done.result();
    const failed = bg.add(async () => {
      throw new Error('failed');
    });
    await failed.result().catch(() => undefined);
    const gate = deferred();
    bg.add(async () => gate.promise);
    await nextTurn();
    bg.add(async () => 'queued');
    expect(() => bg.with({ after: [done] }).add(async () => 'after')).toThrow(QueueFullError);
    // After one that failed: skipped at once, never queued, so not refused.
    const skipped = bg.with({ after: [failed] }).add(async () => 'never');
    await expect(skipped.result()).rejects.toThrow(/which failed$/);
    gate.resolve();
    await bg.drain();
  });
});

describe('groups and dependencies', () => {
  it('all() resolves every result in order, and rejects on the first failure; allSettled() waits for all', async () => {
    const { bg } = setup();
    const group = bg.group();
    group.add(async () => 1);
    group.with({ priority: 'high' }).add(async (n: number) => n * 2, 21);
    await expect(group.all()).resolves.toEqual([1, 42]);
    const failing = bg.group();
    failing.add(async () => {
      throw new Error('first failure');
    });
    failing.add(async () => 'fine');
    await expect(failing.all()).rejects.toThrow('first failure');
    const settled = await failing.allSettled();
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'fulfilled']);
    expect(failing.handles).toHaveLength(2);
  });

  it("a group's with() view is a group of the same handles: it adds to the group, and awaits the whole group", async () => {
    const { bg } = setup();
    const group = bg.group<number>();
    group.add(async () => 1);
    const view = group.with({ priority: 'high' });
    const viewed = view.add(async (n: number) => n * 2, 21);
    expect(group.handles).toEqual([expect.anything(), viewed]);
    expect(view.handles).toEqual(group.handles);
    await expect(view.all()).resolves.toEqual([1, 42]);
    await expect(view.with({ retries: 1 }).allSettled()).resolves.toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'fulfilled', value: 42 },
    ]);
  });

  it('starts a task after the tasks it names, and skips it when one of them does not succeed', async () => {
    const { bg } = setup();
    const order: string[] = [];
    const gate = deferred();
    const first = bg.add(async () => {
      await gate.promise;
      order.push('first');
    });
    const second = bg.with({ after: [first] }).add(async () => {
      order.push('second');
    });
    await nextTurn();
    expect(second.status).toBe('delayed');
    gate.resolve();
    await second.result();
    expect(order).toEqual(['first', 'second']);

    const failing = bg.add(async () => {
      throw new Error('upstream failed');
    });
    const dependent = bg.with({ after: [first, failing] }).add(async () => {
      order.push('never');
    });
    const error = await dependent.result().catch((e: unknown) => e);
    expect(dependent.status).toBe('skipped');
    expect(error).toBeInstanceOf(TaskSkippedError);
    expect((error as Error).message).toMatch(/was skipped: it was to run after task "anonymous" \(#\d+\), which failed$/);
    expect(((error as Error).cause as Error).message).toBe('upstream failed');
    // Down a chain of skips, each cause is the error that began it: causes do not nest.
    let last = dependent;
    for (let i = 0; i < 3; i++) last = bg.with({ after: [last] }).add(async () => undefined);
    const deep = await last.result().catch((e: unknown) => e);
    expect((deep as Error).message).toMatch(/which was skipped$/);
    expect((deep as Error).cause).toBe((error as Error).cause);
    // A task that failed with a skip's error (rethrown) failed: its own error is the cause.
    const rethrows = bg.add(async () => {
      await last.result();
    });
    const afterRethrow = await bg
      .with({ after: [rethrows] })
      .add(async () => undefined)
      .result()
      .catch((e: unknown) => e);
    expect((afterRethrow as Error).message).toMatch(/which failed$/);
    expect((afterRethrow as Error).cause).toBe(deep);
    const cancelled = bg.with({ delayMs: 10_000 }).add(async () => undefined);
    const afterCancelled = bg.with({ after: [cancelled] }).add(async () => undefined);
    cancelled.cancel();
    await expect(afterCancelled.result()).rejects.toThrow(/which was cancelled$/);
    expect(order).toEqual(['first', 'second']);
  });

  it('waits for the handles the view was given, whatever becomes of the array given to with()', async () => {
    const { bg } = setup();
    const gate = deferred();
    const first = bg.add(async () => gate.promise);
    const handles = [first];
    const view = bg.with({ after: handles });
    handles.push({} as never);
    handles.shift();
    const dependent = view.add(async () => 'ran');
    await nextTurn();
    expect(dependent.status).toBe('delayed');
    gate.resolve();
    await expect(dependent.result()).resolves.toBe('ran');
  });
});

describe('a backoff.maxMs given without baseMs', () => {
  /** The waits before each retry of a task that always fails, from the warn entries. */
  async function retryWaits(logger: ReturnType<typeof captureLogger>, handle: { result(): Promise<unknown> }): Promise<unknown[]> {
    await vi.advanceTimersByTimeAsync(10_000);
    await handle.result().catch(() => undefined);
    return logger.at('warn').map((entry) => entry.fields.retryInMs);
  }
  const alwaysFails = async function alwaysFails() {
    throw new Error('nope');
  };

  it("caps the backoff it is merged over: bg.with({ backoff: { maxMs } }) under the registered defaults' baseMs", async () => {
    fakeTime();
    const { bg, logger } = setup({ defaults: { retries: 3, backoff: { baseMs: 5, factor: 10, jitter: 0 } } });
    const handle = bg.with({ backoff: { maxMs: 100 } }).add(alwaysFails);
    await expect(retryWaits(logger, handle)).resolves.toEqual([5, 50, 100]);
  });

  it("in a definition too, merged over the registered defaults' baseMs at add(); and a view's over the definition's", async () => {
    fakeTime();
    const { bg, logger } = setup({ defaults: { retries: 2, backoff: { baseMs: 40, jitter: 0 } } });
    const capped = defineTask({ name: 'capped', backoff: { maxMs: 50 } }, alwaysFails);
    await expect(retryWaits(logger, bg.add(capped))).resolves.toEqual([40, 50]);
    logger.entries.length = 0;
    const cheap = defineTask({ name: 'cheap', retries: 2, backoff: { baseMs: 10 } }, alwaysFails);
    await expect(retryWaits(logger, bg.with({ backoff: { maxMs: 15 } }).add(cheap))).resolves.toEqual([10, 15]);
  });

  it.each<[string, () => unknown, string]>([
    [
      "below the registered defaults' baseMs",
      () => setup({ defaults: { backoff: { baseMs: 5_000 } } }).bg.with({ backoff: { maxMs: 2_000 } }).add(alwaysFails),
      'bg.add("alwaysFails"): bg.with(options): options.backoff.maxMs must be an integer from 5000 to 2147483647, got 2000 (number) (at least backoff.baseMs, 5000 here, inherited from the registered defaults (options.defaults); give baseMs too)',
    ],
    [
      "below the definition's baseMs",
      () => setup({ defaults: { backoff: { baseMs: 5 } } }).bg.with({ backoff: { maxMs: 20 } }).add(defineTask({ name: 'slow', backoff: { baseMs: 50 } }, alwaysFails)),
      'bg.add("slow"): bg.with(options): options.backoff.maxMs must be an integer from 50 to 2147483647, got 20 (number) (at least backoff.baseMs, 50 here, inherited from the definition\'s options; give baseMs too)',
    ],
    [
      "a view's, below the library's default baseMs",
      () => setup().bg.with({ backoff: { maxMs: 500 } }).add(alwaysFails),
      'bg.add("alwaysFails"): bg.with(options): options.backoff.maxMs must be an integer from 1000 to 2147483647, got 500 (number) (at least backoff.baseMs, 1000 here, the library\'s default; give baseMs too)',
    ],
    [
      "a definition's, below the library's default baseMs",
      () => setup().bg.add(defineTask({ name: 'capped', backoff: { maxMs: 500 } }, alwaysFails)),
      'bg.add("capped"): defineTask("capped"): options.backoff.maxMs must be an integer from 1000 to 2147483647, got 500 (number) (at least backoff.baseMs, 1000 here, the library\'s default; give baseMs too)',
    ],
    [
      "registered defaults', below the library's default baseMs",
      () => setup({ defaults: { backoff: { maxMs: 500 } } }).bg,
      'BackgroundOptions: options.defaults.backoff.maxMs must be an integer from 1000 to 2147483647, got 500 (number) (at least backoff.baseMs, 1000 here, the library\'s default; give baseMs too)',
    ],
  ])('%s is a RangeError when the merged options are known, naming where the baseMs comes from', (_what, call, message) => {
    expect(call).toThrow(new RangeError(message));
  });

  it('is refused at add() with nothing queued, and the same view adds a task whose baseMs it does not go below', () => {
    const { bg } = setup({ defaults: { backoff: { baseMs: 5_000 } } });
    const view = bg.with({ backoff: { maxMs: 2_000 } });
    expect(() => view.add(alwaysFails)).toThrow(RangeError);
    expect(bg.stats().total).toBe(0);
    const quick = defineTask({ name: 'quick', backoff: { baseMs: 100 } }, async () => 'ran');
    expect(view.add(quick).status).toBe('queued');
  });

  it("over a parent container's registered baseMs, a child's registered maxMs is merged too", () => {
    const { app } = setup({ defaults: { backoff: { baseMs: 5 } } });
    const child = app.createChildContainer();
    child.register(BackgroundOptions, { useValue: { defaults: { backoff: { maxMs: 500 } } } });
    expect(() => child.resolve(Background)).not.toThrow();
  });

  it("is still checked on its own where it is given: a number out of range, or below the level's own baseMs", () => {
    const { bg } = setup();
    expect(() => bg.with({ backoff: { maxMs: -1 } })).toThrow(new RangeError('bg.with(options): options.backoff.maxMs must be an integer from 0 to 2147483647, got -1 (number)'));
    expect(() => bg.with({ backoff: { baseMs: 100, maxMs: 50 } })).toThrow(
      new RangeError('bg.with(options): options.backoff.maxMs must be an integer from 100 to 2147483647, got 50 (number)'),
    );
    expect(() => defineTask({ name: 'd', backoff: { maxMs: '5' as never } }, alwaysFails)).toThrow(
      new TypeError('defineTask("d"): options.backoff.maxMs must be an integer from 0 to 2147483647, got "5" (string)'),
    );
  });
});

describe('option validation', () => {
  it.each([
    [{ priority: 'urgent' }, TypeError, `bg.with(options): options.priority must be 'critical', 'high', 'normal', 'low' or a finite number, got "urgent" (string)`],
    [{ retries: -1 }, RangeError, 'bg.with(options): options.retries must be an integer from 0 to 1000, got -1 (number)'],
    [{ timeoutMs: 0 }, RangeError, 'bg.with(options): options.timeoutMs must be an integer from 1 to 2147483647, got 0 (number)'],
    [{ backoff: { base: 1 } }, TypeError, 'bg.with(options): options.backoff.base is not a known option; known options: baseMs, maxMs, factor, jitter'],
    [{ backoff: { jitter: 2 } }, RangeError, 'bg.with(options): options.backoff.jitter must be a number from 0 to 1, got 2 (number)'],
    [{ retryIf: true }, TypeError, 'bg.with(options): options.retryIf must be a function, got true (boolean)'],
    [{ delayMs: 5, runAt: 10 }, TypeError, 'bg.with(options): options.delayMs and options.runAt cannot be given together; give one'],
    [{ runAt: new Date('nonsense') }, TypeError, 'bg.with(options): options.runAt must be a valid Date or epoch milliseconds'],
    [{ runAt: Number.NaN }, RangeError, 'bg.with(options): options.runAt must be a valid Date or epoch milliseconds, got NaN (number)'],
    [{ runAt: Number.POSITIVE_INFINITY }, RangeError, 'bg.with(options): options.runAt must be a valid Date or epoch milliseconds, got Infinity (number)'],
    [{ every: 10, cron: '* * * * *' }, TypeError, 'bg.with(options): options.every and options.cron cannot be given together; give one'],
    [{ every: 0 }, RangeError, 'bg.with(options): options.every must be an integer from 1 to 2147483647, got 0 (number)'],
    [{ tz: 'Europe/Paris' }, TypeError, 'bg.with(options): options.tz applies to options.cron only'],
    [{ cron: 'every tuesday' }, TypeError, `bg.with(options): options.cron "every tuesday" is not valid`],
    [{ overlap: true }, TypeError, 'bg.with(options): options.overlap applies to periodic tasks only; give options.every or options.cron too'],
    [{ every: 10, delayMs: 5 }, TypeError, 'bg.with(options): options.delayMs cannot be given with options.every; a periodic task starts at its first tick'],
    [{ after: 42 }, TypeError, 'bg.with(options): options.after must be an array of handles of one-off tasks returned by add() (a periodic task never finishes), got 42 (number)'],
    [{ after: [42] }, TypeError, 'bg.with(options): options.after[0] must be a handle of a one-off task returned by add() (a periodic task never finishes), got 42 (number)'],
    [{ sooner: true }, TypeError, 'bg.with(options): options.sooner is not a known option'],
  ])('bg.with(%o) throws a %o naming the option', (options, type, message) => {
    const { bg } = setup();
    expect(() => bg.with(options as never)).toThrow(type);
    expect(() => bg.with(options as never)).toThrow(message);
  });

  it('rejects bad task options at definition time and in the registered defaults', () => {
    expect(() => defineTask({ name: 'bad', retries: 1.5 }, () => 0)).toThrow('defineTask("bad"): options.retries must be an integer from 0 to 1000, got 1.5 (number)');
    expect(() => setup({ defaults: { priority: Infinity } }).bg).toThrow(RangeError);
    expect(() => setup({ maxQueued: 0 })).toThrow('options.maxQueued must be a positive integer or Infinity, got 0 (number)');
    expect(() => setup({ defaults: 5 as never }).bg).toThrow(TypeError);
    expect(() => setup({ defaults: 5 as never }).bg).toThrow('options.defaults must be an object, got 5 (number)');
  });
});
