/**
 * pool: { prewarm: true } with a task module whose top level leaves a timer that calls process.exit() (in a
 * file of its own: every prewarmed pool of a test file loads the task modules that file defines).
 */
import { afterEach, expect, it, vi } from 'vitest';
import { appOf } from '../src/di/container.js';
import { Background, shutdown } from '../src/index.js';
import { triplesAfterAll } from './fixtures/toplevel-exits.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root })));
});

it("stops prewarming once a callback a task module's top level set up has ended 3 idle threads with process.exit(), saying so (threads were replaced and ended for ever, silently)", async () => {
  expect(triplesAfterAll.name).toBe('triplesAfterAll');
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
  const deaths = (): number => errors().filter((message) => message === "a worker thread ended, running no task: process.exit(7) in a callback no task could be named for (one a task module's top level set up); it is replaced").length;
  expect(deaths()).toBe(3);
  // Its replacement started without loading the module: it is not ended (15 times the timer).
  await vi.waitFor(() => expect(appOf(root).pool.threads).toBe(1), { timeout: 10_000, interval: 20 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(deaths()).toBe(3);
});
