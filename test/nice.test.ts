/**
 * pool.niceIncrement (issue 15, target 4): the worker threads run at a lower CPU priority than
 * the main thread, so that the event loop preempts a CPU-bound worker sharing its core. Read
 * from real worker threads (on Linux, getpriority() of the calling thread).
 */
import { getPriority } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { Background, shutdown, type BackgroundOptions } from '../src/index.js';
import { defaultOptions, resolveOptions } from '../src/model/options.js';
import { threadPriority } from './fixtures/worker-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root })));
});

/** The nice value a worker thread of an application with these pool options runs at. */
async function workerPriority(pool: BackgroundOptions['pool']): Promise<number> {
  const root = freshApp({ logger: captureLogger(), pool: { maxThreads: 1, minThreads: 1, ...pool } });
  roots.push(root);
  return root.createChildContainer().resolve(Background).add(threadPriority).result({ timeoutMs: 30_000 });
}

describe.runIf(process.platform === 'linux')('on Linux', () => {
  const base = getPriority();

  it('lowers the worker threads priority by 10 by default, and leaves the main thread as it was', async () => {
    expect(defaultOptions.pool.niceIncrement).toBe(10);
    expect(await workerPriority({})).toBe(Math.min(19, base + 10));
    expect(getPriority()).toBe(base);
  });

  it('by niceIncrement when given; 0 keeps the main thread priority', async () => {
    expect(await workerPriority({ niceIncrement: 3 })).toBe(Math.min(19, base + 3));
    expect(await workerPriority({ niceIncrement: 0 })).toBe(base);
  });
});

it.each([-1, 20, 2.5, '5'])('refuses niceIncrement %j, naming the option', (value) => {
  expect(() => resolveOptions({ pool: { niceIncrement: value } })).toThrow(/options\.pool\.niceIncrement must be an integer from 0 to 19, got/);
});
