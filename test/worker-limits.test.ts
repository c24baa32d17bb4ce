/**
 * pool.resourceLimits too small for a worker thread to start are refused when the options are
 * read: a thread that dies as it starts leaves tasks queued for ever (Piscina does not replace
 * it), and too small a stack ends the whole process. At the minimums, threads start and run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Background, shutdown, type PoolOptions } from '../src/index.js';
import { countOnThread, greet } from './fixtures/worker-tasks.js';
import { freshApp, watchProcessErrors } from './helpers.js';

const setupModule = new URL('./fixtures/worker-setup.ts', import.meta.url);
const roots: ReturnType<typeof freshApp>[] = [];

watchProcessErrors();
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
});

describe('pool.resourceLimits', () => {
  it.each([
    [{ maxOldGenerationSizeMb: 4 }, 'maxOldGenerationSizeMb must be at least 16 (megabytes): with less, a worker thread may die as it starts; got 4 (number)'],
    [{ maxOldGenerationSizeMb: 15.5 }, 'maxOldGenerationSizeMb must be at least 16 (megabytes): with less, a worker thread may die as it starts; got 15.5 (number)'],
    [{ stackSizeMb: 0.1 }, 'stackSizeMb must be at least 1 (megabytes): with less, a worker thread may die as it starts; got 0.1 (number)'],
    [{ stackSizeMb: 0.5 }, 'stackSizeMb must be at least 1 (megabytes): with less, a worker thread may die as it starts; got 0.5 (number)'],
    // Past these, the whole process died as the first thread started (a stack overflow or a segmentation fault; V8's fatal out-of-memory).
    [{ stackSizeMb: 1e21 }, 'stackSizeMb must be at most 1024 (megabytes): with more, a worker thread may end the whole process as it starts; got 1e+21 (number)'],
    [{ codeRangeSizeMb: 1e8 }, 'codeRangeSizeMb must be at most 1024 (megabytes): with more, a worker thread may end the whole process as it starts; got 100000000 (number)'],
  ] as const)('%o is refused with a RangeError naming the limit and its bound', (resourceLimits, message) => {
    const root = freshApp({ pool: { resourceLimits } });
    expect(() => root.resolve(Background)).toThrow(new RangeError(`BackgroundOptions: options.pool.resourceLimits.${message}`));
  });

  it.each(['maxThreads', 'minThreads', 'idleTimeout', 'terminateAfterMs', 'niceIncrement', 'inline', 'prewarm'] as const)('pool.%s: null is refused as the other options\' null is, not read as the default', (key) => {
    expect(() => freshApp({ pool: { [key]: null } }).resolve(Background)).toThrow(new RegExp(`^BackgroundOptions: options\\.pool\\.${key} must be .*, got null$`));
  });

  it('pool.maxThreads past 4096 is refused (1e8 was a fatal allocation error of the whole process when the pool was made)', () => {
    for (const maxThreads of [4097, 1e8, 2 ** 31]) {
      expect(() => freshApp({ pool: { maxThreads } }).resolve(Background)).toThrow(
        new RangeError(`BackgroundOptions: options.pool.maxThreads must be an integer from 1 to 4096, got ${maxThreads} (number)`),
      );
    }
    expect(() => freshApp({ pool: { maxThreads: 4096, minThreads: 0 } }).resolve(Background)).not.toThrow();
  });

  it('at the minimums, threads start, run the setup module and run tasks, again and again', { timeout: 30_000 }, async () => {
    const pool: PoolOptions = {
      setupModule,
      maxThreads: 2,
      minThreads: 2,
      // The young generation and the code range have no minimum: V8 raises them to its own floor.
      resourceLimits: { maxOldGenerationSizeMb: 16, stackSizeMb: 1, maxYoungGenerationSizeMb: 0.001, codeRangeSizeMb: 0.001 },
    };
    const root = freshApp({ pool });
    roots.push(root);
    const bg = root.createChildContainer().resolve(Background);
    await expect(bg.add(greet, 'Ada').result()).resolves.toEqual({ text: 'Hello, Ada', taskName: 'greet' });
    const counts = await Promise.all(Array.from({ length: 6 }, () => bg.add(countOnThread).result()));
    expect(counts).toHaveLength(6);
  });
});
