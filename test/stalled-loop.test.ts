/**
 * Outcomes decided while the main thread's event loop was held (a long synchronous stretch, as in
 * a busy service): work that ended in time, on a worker thread or through I/O, whose answer
 * waited behind the held loop, is judged by when it ended, not by when the main thread took the
 * answer in. Real worker threads and real timers; the loop is held by a busy loop, and the work
 * is released by a gate the test opens just before, so that it ends at once, well within its time.
 */
import { once } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import type { DependencyContainer } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Background, shutdown, type BackgroundOptions, type TaskEvent, type TaskHandle } from '../src/index.js';
import { appOf } from '../src/di/container.js';
import { gated } from './fixtures/worker-tasks.js';
import { holdCell, observedApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();

const roots: DependencyContainer[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
});

/** An application whose pool has one thread, started before the test's clock matters. */
async function app(options: BackgroundOptions = {}) {
  const { root, logger, events, bg } = observedApp(roots, { pool: { minThreads: 1, maxThreads: 1, prewarm: true }, ...options });
  await vi.waitFor(() => expect(appOf(root).pool.threads).toBe(1), { timeout: 10_000, interval: 10 });
  return { root, logger, events, bg };
}

/** Resolves with `handle` once its task is running (a worker task: begun on its thread). */
async function running<T extends TaskHandle>(handle: T): Promise<T> {
  await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 10_000, interval: 5 });
  return handle;
}

/** Holds this thread's event loop for `ms` (no timer, no I/O, no worker's answer is taken in meanwhile). */
function holdLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

/** Releases the work, then holds the loop past every deadline, from a `setImmediate` callback (after the timers of its turn). */
function releaseThenHold(release: () => void, ms: number): void {
  setImmediate(() => {
    release();
    holdLoop(ms);
  });
}

describe('a worker task that ended on its thread within its timeoutMs while the main thread was held', () => {
  it('succeeds once, not timed out and run again, and its duration is the thread\'s', async () => {
    const { bg, events } = await app();
    const open = holdCell();
    const handle = await running(bg.with({ timeoutMs: 300, retries: 1 }).add(gated, open.cell, 'in time'));
    // The thread ends the task at once; its answer waits 800 ms for the main thread.
    open.open();
    holdLoop(800);
    await expect(handle.result()).resolves.toBe('in time');
    expect(handle.status).toBe('succeeded');
    expect(handle.attempt).toBe(1);
    const ends = events.filter((event) => event.id === handle.id && event.type !== 'added' && event.type !== 'started');
    expect(ends.map((event) => event.type)).toEqual(['succeeded']);
    expect((ends[0] as TaskEvent & { durationMs: number }).durationMs).toBeLessThan(300);
  });
});

describe('a drain deadline that fires late, the event loop held past it', () => {
  it('takes in a worker task that ended before it: the scope drains, nothing abandoned or logged', async () => {
    const { root, logger } = await app({ drainTimeoutMs: 300 });
    const scope = root.createChildContainer();
    const open = holdCell();
    const handle = await running(scope.resolve(Background).add(gated, open.cell, 'drained'));
    const disposed = scope.resolve(Background).dispose();
    releaseThenHold(() => open.open(), 800);
    await disposed;
    expect(handle.status).toBe('succeeded');
    expect(logger.at('error')).toEqual([]);
  });

  it('takes in an async task whose answer came through I/O before it', async () => {
    const { root, logger } = await app({ drainTimeoutMs: 300 });
    const scope = root.createChildContainer();
    const { port1, port2 } = new MessageChannel();
    const handle = await running(scope.resolve(Background).add(async function awaitsAnAnswer() {
      const [answer] = (await once(port1, 'message')) as [string];
      return answer;
    }));
    const disposed = scope.resolve(Background).dispose();
    releaseThenHold(() => port2.postMessage('answered'), 800);
    await disposed;
    port1.close();
    expect(handle.status).toBe('succeeded');
    await expect(handle.result()).resolves.toBe('answered');
    expect(logger.at('error')).toEqual([]);
  });

  it("takes in, at the application's close, a worker task that ended before it: nothing abandoned", async () => {
    const { root, bg } = await app();
    const open = holdCell();
    const handle = await running(bg.add(gated, open.cell, 'closed'));
    const report = shutdown({ container: root, timeoutMs: 300 });
    releaseThenHold(() => open.open(), 800);
    expect((await report).abandoned).toBe(0);
    expect(handle.status).toBe('succeeded');
  });

  it('still abandons a task that had not ended by then', async () => {
    const { root, logger } = await app({ drainTimeoutMs: 300 });
    const scope = root.createChildContainer();
    const open = holdCell();
    const handle = await running(scope.resolve(Background).add(gated, open.cell, 'late'));
    const disposed = scope.resolve(Background).dispose();
    setImmediate(() => holdLoop(800));
    await disposed;
    open.open();
    expect(handle.status).toBe('abandoned');
    expect(logger.at('error').map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^scope disposed with 1 task\(s\) unfinished after the drain deadline of 300 ms/));
  });
});

describe('an every schedule whose tick came late, the event loop held past it', () => {
  it('logs the ticks it skipped at warn, and its next tick comes a period after the late one', async () => {
    const { bg, logger } = observedApp(roots);
    const starts: number[] = [];
    const schedule = bg.with({ every: 200 }).add(async function cleanup() {
      starts.push(Date.now());
    });
    await vi.waitFor(() => expect(starts).toHaveLength(1), { timeout: 5_000, interval: 5 });
    // The second tick is due 200 ms after the first run; the loop is held until 1 000 ms after it.
    const first = starts[0]!;
    const logged = logger.entries.length;
    holdLoop(1_000);
    await vi.waitFor(() => expect(starts).toHaveLength(3), { timeout: 5_000, interval: 5 });
    schedule.cancel();
    // The entry of the late tick (a loaded machine may delay another tick past its period, and add one).
    const warnings = logger.entries.slice(logged).filter((entry) => entry.level === 'warn');
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    const { missed, firstMissedAt, lateMs, ...who } = warnings[0]!.fields as { missed: number; firstMissedAt: string; lateMs: number };
    expect(who).toEqual({ task: 'cleanup', taskId: schedule.id });
    // Late by the hold less the period, at least (the run began at or after its tick's time).
    expect(lateMs).toBeGreaterThanOrEqual(799);
    expect(missed).toBe(Math.floor(lateMs / 200));
    // When the late tick was run and the next one set: `lateMs` after its time, a period before the first missed.
    const ranAt = Date.parse(firstMissedAt) - 200 + lateMs;
    expect(starts[1]! - ranAt).toBeGreaterThanOrEqual(0);
    expect(starts[1]! - ranAt).toBeLessThan(100);
    expect(warnings[0]!.message).toBe(
      `periodic task "cleanup" (#${schedule.id}) skipped ${missed} tick(s) it missed, the first due at ${firstMissedAt}: ` +
        `the tick before them ran ${lateMs} ms late (the event loop was held, the machine slept, or the clock was set forward)`,
    );
    // Nothing else changes: the late tick ran once the loop was free, the next a period after it.
    expect(starts[1]! - first).toBeGreaterThanOrEqual(999);
    expect(starts[2]! - ranAt).toBeGreaterThanOrEqual(199);
  });
});
