/**
 * Cancellation a CPU loop can see (issue 15, item 6): a running worker task's `ctx.signal.aborted`
 * and `ctx.throwIfAborted()` turn at once, without the task yielding (a flag in shared memory),
 * so a synchronous loop stops cleanly and its thread lives on, long before `terminateAfterMs`.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { Background, shutdown, TaskCancelledError, TaskTimeoutError } from '../src/index.js';
import { countOnThread, loopsUntilAborted } from './fixtures/worker-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
});

function app() {
  // A grace period far beyond the test's timeout: only a task that stops by itself passes.
  const root = freshApp({ logger: captureLogger(), pool: { maxThreads: 1, minThreads: 1, terminateAfterMs: 600_000, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) } });
  roots.push(root);
  return root.createChildContainer().resolve(Background);
}

const started = (cell: Int32Array) => vi.waitFor(() => expect(Atomics.load(cell, 0)).toBe(1), { timeout: 15_000, interval: 5 });
const left = (cell: Int32Array) =>
  vi.waitFor(
    () => {
      expect(Atomics.load(cell, 1)).not.toBe(0);
      return Atomics.load(cell, 1);
    },
    { timeout: 10_000, interval: 5 },
  );

it.each([
  ['ctx.signal.aborted', 'check', 1],
  ['ctx.throwIfAborted()', 'throw', 2],
] as const)('lets a synchronous loop that reads %s stop when its task is cancelled, and keeps the thread', async (_what, how, exit) => {
  const bg = app();
  const before = await bg.add(countOnThread).result();
  const cell = new Int32Array(new SharedArrayBuffer(8));
  const handle = bg.add(loopsUntilAborted, cell, how);
  await started(cell);
  expect(handle.cancel('stop spinning')).toBe(true);
  await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
  expect(await left(cell)).toBe(exit);
  // The same thread, alive: its singleton counts on.
  await expect(bg.add(countOnThread).result()).resolves.toEqual({ threadId: before.threadId, count: before.count + 1 });
});

it('lets the loop see a timeout the same way', async () => {
  const bg = app();
  const cell = new Int32Array(new SharedArrayBuffer(8));
  const handle = bg.with({ timeoutMs: 50 }).add(loopsUntilAborted, cell, 'throw');
  await expect(handle.result()).rejects.toBeInstanceOf(TaskTimeoutError);
  expect(await left(cell)).toBe(2);
});
