/**
 * The check the prewarm-toplevel*.test.ts files share: a prewarmed pool whose task module's top
 * level leaves a callback that ends each idle thread (each file defines one such module: every
 * prewarmed pool of a test file loads the task modules that file defines).
 */
import { afterEach, expect, vi } from 'vitest';
import { appOf } from '../src/di/container.js';
import { Background, shutdown } from '../src/index.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root })));
});

/**
 * Prewarming stops once the module's callback has ended 3 idle threads, said once, each death
 * logged as `death` says; the thread that replaces the third, started without loading the module,
 * is not ended.
 */
export async function expectPrewarmToStop(death: (message: string) => boolean): Promise<void> {
  const logger = captureLogger();
  // One thread: each is replaced only once the one before has ended.
  const root = freshApp({ logger, pool: { prewarm: true, minThreads: 1, maxThreads: 1 } });
  roots.push(root);
  // The application, and its pool, start with its first Background.
  root.resolve(Background);
  const errors = (): string[] => logger.at('error').map((entry) => entry.message);
  const stopped = (): string[] => errors().filter((message) => message.includes('no longer set up and load the task modules'));
  await vi.waitFor(() => expect(stopped()).toHaveLength(1), { timeout: 15_000, interval: 20 });
  expect(stopped()[0]).toBe('3 idle worker threads have ended so: new threads no longer set up and load the task modules as they start (prewarm), only with their first task');
  const deaths = (): number => errors().filter(death).length;
  expect(deaths()).toBe(3);
  // Its replacement started without loading the module: it is not ended (15 times the timer).
  await vi.waitFor(() => expect(appOf(root).pool.threads).toBe(1), { timeout: 10_000, interval: 20 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(deaths()).toBe(3);
}
