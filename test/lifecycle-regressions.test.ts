/**
 * Regressions of issue 11, one named test each: the races and edges that the model-based suite
 * (test/lifecycle-model.test.ts) or a user found. Each failed before its fix, except those marked
 * "(guard)": a neighbouring case that already held and must keep holding.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { container } from 'tsyringe';
import { appOf } from '../src/di/container.js';
import {
  Background,
  BackgroundDisposedError,
  defineTask,
  ResultTimeoutError,
  shutdown,
  TaskCancelledError,
  TaskContext,
  TaskNonErrorError,
  transfer,
  type BackgroundOptions,
  type TaskHandle,
} from '../src/index.js';
import { sumBytes, sumBytesFlaky, throwsBare } from './fixtures/worker-tasks.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

const roots: ReturnType<typeof freshApp>[] = [];

function setup(options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const root = freshApp({ logger, ...options });
  roots.push(root);
  const scope = root.createChildContainer();
  return { root, scope, bg: scope.resolve(Background), logger, app: appOf(root) };
}

watchProcessErrors();
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 1_000 })));
});

/** Every handle's outcomes, as its result() settles: one each, or the test fails. */
function outcomes(handles: TaskHandle[]): Promise<string[]> {
  return Promise.all(handles.map((handle) => handle.result().then(() => `${handle.status}`, (error: Error) => `${handle.status}:${error.name}`)));
}

describe('a task ends once, whatever runs while it ends', () => {
  it('a task that cancels the previous one as it starts (concurrency 1) gets false: the previous one had ended', async () => {
    const { bg, app } = setup({ concurrency: 1 });
    const cancels: boolean[] = [];
    let previous: TaskHandle | undefined;
    const refresh = () => {
      const before = previous;
      const handle = bg.add(async () => {
        if (before !== undefined) cancels.push(before.cancel('superseded'));
        return 'fresh';
      });
      previous = handle;
      return handle;
    };
    const handles = [refresh(), refresh(), refresh()];
    expect(await outcomes(handles)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(cancels).toEqual([false, false]);
    expect({ pending: bg.pending, running: app.lane.running, queued: app.lane.queued }).toEqual({ pending: 0, running: 0, queued: 0 });
  });

  it('retryIf that cancels its own task and says "retry" ends it cancelled, once', async () => {
    const { bg, app } = setup();
    const handle: TaskHandle = bg
      .with({
        retries: 2,
        backoff: { baseMs: 1 },
        retryIf: () => {
          expect(handle.cancel('from retryIf')).toBe(true);
          return true;
        },
      })
      .add(async () => {
        throw new Error('fails');
      });
    expect(await outcomes([handle])).toEqual(['cancelled:TaskCancelledError']);
    expect(handle.attempt).toBe(1);
    await bg.drain();
    expect({ pending: bg.pending, running: app.lane.running }).toEqual({ pending: 0, running: 0 });
  });

  it('an abort listener that cancels the whole batch (itself included) ends each task once', async () => {
    const { bg, app } = setup({ concurrency: 2 });
    const batch: TaskHandle[] = [];
    const waits = defineTask({ name: 'waits', inject: [TaskContext] }, async (ctx) => {
      await new Promise<void>((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => {
          for (const handle of batch) handle.cancel('batch cancelled');
          reject(ctx.signal.reason as Error);
        });
      });
    });
    for (let i = 0; i < 4; i++) batch.push(bg.add(waits));
    await nextTurn();
    expect(batch.map((h) => h.status)).toEqual(['running', 'running', 'queued', 'queued']);
    let drained = false;
    void bg.drain().then(() => (drained = true));
    expect(batch[0]!.cancel('first')).toBe(true);
    expect(await outcomes(batch)).toEqual(Array.from({ length: 4 }, () => 'cancelled:TaskCancelledError'));
    await nextTurn();
    expect(drained).toBe(true);
    expect({ pending: bg.pending, running: app.lane.running, queued: app.lane.queued }).toEqual({ pending: 0, running: 0, queued: 0 });
  });

  it('(guard) a task that cancels itself in its finally block ends cancelled, once, and keeps the limit', async () => {
    const { bg, app } = setup({ concurrency: 1 });
    const seen: boolean[] = [];
    const self: TaskHandle = bg.add(async () => {
      try {
        return 'done';
      } finally {
        seen.push(self.cancel('late'));
      }
    });
    const next = bg.add(async () => 'next');
    expect(await outcomes([self, next])).toEqual(['cancelled:TaskCancelledError', 'succeeded']);
    // The finally block runs before the body's promise settles: the task had not ended.
    expect(seen).toEqual([true]);
    expect({ pending: bg.pending, running: app.lane.running }).toEqual({ pending: 0, running: 0 });
  });
});

describe('abandonment never starts what it abandons', () => {
  it("at a shutdown deadline, one scope's abandoned running task does not start another scope's queued one", async () => {
    const { root, bg } = setup({ concurrency: 1 });
    const other = root.createChildContainer().resolve(Background);
    const started: string[] = [];
    const waits = defineTask({ name: 'waits', inject: [TaskContext] }, async (ctx, label: string) => {
      started.push(label);
      await new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error)));
    });
    const running = bg.add(waits, 'running');
    await nextTurn();
    const queued = Array.from({ length: 5 }, (_, n) => other.add(waits, `queued ${n}`));
    const report = await shutdown({ container: root, timeoutMs: 20 });
    await nextTurn();
    expect(started).toEqual(['running']);
    expect(report.abandoned).toBe(6);
    expect([running, ...queued].every((h) => h.status === 'abandoned')).toBe(true);
  });

  it("at a scope's drain deadline, a queued task older than the running one is abandoned without starting", async () => {
    const { bg } = setup({ concurrency: 1, drainTimeoutMs: 20 });
    const started: string[] = [];
    const gate = deferred();
    bg.add(async () => gate.promise);
    await nextTurn();
    const older = bg.with({ priority: 'low' }).add(async () => {
      started.push('older, low');
      await new Promise(() => undefined);
    });
    bg.with({ priority: 'high' }).add(async () => {
      started.push('newer, high');
      await new Promise(() => undefined);
    });
    gate.resolve();
    await nextTurn();
    expect(started).toEqual(['newer, high']);
    await bg.dispose();
    await nextTurn();
    expect(started).toEqual(['newer, high']);
    expect(older.status).toBe('abandoned');
  });
});

describe('waiters and timeouts that end', () => {
  it('with maxQueued 1, every waitForRoom() caller resolves once the queue empties', async () => {
    const { bg } = setup({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    bg.add(async () => gate.promise);
    await nextTurn();
    bg.add(async () => 'queued');
    const woken: string[] = [];
    void bg.waitForRoom().then(() => woken.push('first'));
    void bg.waitForRoom().then(() => woken.push('second'));
    await nextTurn();
    expect(woken).toEqual([]);
    gate.resolve();
    await bg.drain();
    await nextTurn();
    expect(woken).toEqual(['first', 'second']);
  });

  it('result({ timeoutMs }) on a periodic handle rejects with ResultTimeoutError; the schedule goes on', async () => {
    const { bg } = setup();
    const schedule = bg.with({ every: 60_000 }).add(async () => undefined);
    await expect(schedule.result({ timeoutMs: 5 })).rejects.toBeInstanceOf(ResultTimeoutError);
    expect(schedule.status).toBe('delayed');
    schedule.cancel();
    await expect(schedule.result({ timeoutMs: 5 })).rejects.toBeInstanceOf(TaskCancelledError);
  });

  it('a timeout past what a timer can wait is a RangeError, not a rejection after 1 ms', () => {
    const { bg } = setup();
    const handle = bg.add(async () => new Promise(() => undefined));
    expect(() => handle.result({ timeoutMs: 2 ** 31 })).toThrow(RangeError);
    expect(() => handle.result({ timeoutMs: 2 ** 31 })).toThrow('handle.result(options): options.timeoutMs must be an integer from 0 to 2147483647, got 2147483648 (number)');
    expect(() => handle.result({ timeoutMs: '5' as never })).toThrow(TypeError);
    handle.cancel();
  });
});

describe('far dates', () => {
  it('a monthly cron runs on the 1st only, though its runs are more than 24.8 days apart', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2026-01-27T00:00:00Z') });
    const { bg } = setup();
    const runs: string[] = [];
    bg.with({ cron: '0 0 0 1 * *', tz: 'UTC' }).add(async () => {
      runs.push(new Date().toISOString().slice(0, 10));
    });
    await vi.advanceTimersByTimeAsync(130 * 24 * 3_600_000);
    expect(runs).toEqual(['2026-02-01', '2026-03-01', '2026-04-01', '2026-05-01', '2026-06-01']);
  });

  it('a yearly cron does not run in the months before its date', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2026-02-01T00:00:00Z') });
    const { bg } = setup();
    let runs = 0;
    const schedule = bg.with({ cron: '0 0 0 1 1 *', tz: 'UTC' }).add(async () => {
      runs++;
    });
    await vi.advanceTimersByTimeAsync(120 * 24 * 3_600_000);
    expect(runs).toBe(0);
    expect(schedule.status).toBe('delayed');
  });
});

describe('a root that closes', () => {
  it('disposing a root whose own Background was never resolved closes its application', async () => {
    const { root, bg } = setup();
    const other = root.createChildContainer().resolve(Background);
    await root.dispose();
    expect(() => bg.add(async () => undefined)).toThrow(BackgroundDisposedError);
    expect(() => other.add(async () => undefined)).toThrow(BackgroundDisposedError);
    await expect(shutdown({ container: root })).resolves.toMatchObject({ abandoned: 0 });
  });

  it('shutdown() of a disposed container that never had an application resolves with nothing abandoned, and closes no other application', async () => {
    // The global container's application, made: the nearest one above the root that never made its own.
    const above = container.resolve(Background);
    const lonely = freshApp();
    const below = lonely.createChildContainer();
    await lonely.dispose();
    await expect(shutdown({ container: lonely })).resolves.toMatchObject({ abandoned: 0, durationMs: 0, totals: { total: 0, abandoned: 0 } });
    await expect(shutdown({ container: below })).resolves.toMatchObject({ abandoned: 0, durationMs: 0, totals: { total: 0, abandoned: 0 } });
    expect(above.add(async () => 'the global application still takes tasks').status).toBe('queued');
  });
});

describe('records let go of what they drop', () => {
  it('2 000 forgotten results of 256 KB are collectable once their records age out, with nothing reading them (child process, --expose-gc, dist/)', async () => {
    const script = fileURLToPath(new URL('./fixtures/forgotten-results.mjs', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', script], { timeout: 20_000 });
    const seen = JSON.parse(stdout) as { listedAtOnce: number; alive: number };
    expect(seen.listedAtOnce).toBeGreaterThan(0);
    expect(seen.alive).toBe(0);
  });
});

describe('smaller edges', () => {
  it.each([['toString'], ['__proto__'], ['constructor']])('priority %j is not a priority name', (name) => {
    const { bg } = setup();
    expect(() => bg.with({ priority: name as never })).toThrow(TypeError);
  });

  it('delayMs of the wrong type is a TypeError; out of range, a RangeError', () => {
    const { bg } = setup();
    expect(() => bg.with({ delayMs: '5' as never })).toThrow(TypeError);
    expect(() => bg.with({ delayMs: -1 })).toThrow(RangeError);
    expect(() => bg.with({ every: '5' as never })).toThrow(TypeError);
  });

  it('shutdown(null) is a TypeError that names the options', () => {
    expect(() => shutdown(null as never)).toThrow(new TypeError('shutdown(options): options must be an object, got null'));
  });

  it('with overlap: true, cancel() ends every run still going, not only the newest', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { bg } = setup();
    const gate = deferred();
    const runs: TaskHandle[] = [];
    const schedule = bg.with({ every: 10, overlap: true }).add(async () => gate.promise);
    for (let i = 0; i < 3; i++) {
      await vi.advanceTimersByTimeAsync(10);
      runs.push(bg.list({ status: 'running' })[0]!);
    }
    expect(new Set(runs).size).toBe(3);
    expect(schedule.cancel()).toBe(true);
    expect(runs.map((run) => run.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    gate.resolve();
  });
});

describe('worker tasks with moved buffers, tried more than once', () => {
  const setupModule = new URL('./fixtures/worker-setup.ts', import.meta.url);
  const workers = () => setup({ pool: { maxThreads: 1, setupModule } });

  it('a retry gets the bytes that were moved at add()', async () => {
    const { bg } = workers();
    const bytes = new Uint8Array([1, 2, 3]);
    const handle = bg.with({ retries: 1, backoff: { baseMs: 1 } }).add(sumBytesFlaky, transfer(bytes));
    expect(bytes.byteLength).toBe(0);
    await expect(handle.result()).resolves.toBe(6);
    expect(handle.attempt).toBe(2);
  });

  it('every run of a periodic worker task gets the bytes that were moved when it was scheduled', async () => {
    const { bg, logger } = workers();
    const bytes = new Uint8Array([4, 5, 6]);
    const schedule = bg.with({ every: 5 }).add(sumBytes, transfer(bytes));
    expect(bytes.byteLength).toBe(0);
    const results: unknown[] = [];
    while (results.length < 3) {
      await vi.waitFor(() => expect(bg.list({ status: ['succeeded', 'failed'] }).length).toBeGreaterThan(results.length), { timeout: 10_000, interval: 5 });
      results.splice(0, results.length, ...(await Promise.all(bg.list({ status: ['succeeded', 'failed'] }).map((run) => run.result().catch((e: Error) => e.message)))));
    }
    schedule.cancel();
    expect(results.slice(0, 3)).toEqual(Array.from({ length: 3 }, () => ({ sum: 15, length: 3 })));
    expect(logger.at('error')).toEqual([]);
  });

  it('a non-Error thrown in a worker that cannot be cloned (no prototype, a method) is a TaskNonErrorError', async () => {
    const { bg } = workers();
    const error = await bg.add(throwsBare).result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskNonErrorError);
    expect((error as Error).message).toMatch(/^Task "throwsBare" \(#\d+\) failed with a non-Error value: \[Object: null prototype\] \{ reason: 'bare'/);
  });
});
