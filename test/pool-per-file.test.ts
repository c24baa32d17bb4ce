/**
 * The "one pool per file" recipe of docs/testing.md, as written: one application (and pool) for
 * the file, a child scope per test, disposed after it. The pool and its threads outlive each test;
 * each test's Background sees only its own tasks.
 */
import type { DependencyContainer } from 'tsyringe';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { appOf } from '../src/di/container.js';
import type { Pool } from '../src/engine/pool.js';
import { Background, disposeScope, shutdown } from '../src/index.js';
import { countOnThread } from './fixtures/worker-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const setupModule = new URL('./fixtures/worker-setup.ts', import.meta.url);
let app: DependencyContainer;
let scope: DependencyContainer;

beforeAll(() => {
  app = freshApp({ logger: captureLogger(), pool: { maxThreads: 1, minThreads: 1, setupModule } });
});
afterAll(() => shutdown({ container: app }));
beforeEach(() => {
  scope = app.createChildContainer();
});
afterEach(() => disposeScope(scope));

let firstPool: Pool | undefined;
let firstThread: number | undefined;

it('runs the first test on the file pool', async () => {
  const bg = scope.resolve(Background);
  const { threadId, count } = await bg.add(countOnThread).result();
  expect(count).toBe(1);
  firstPool = appOf(app).pool;
  firstThread = threadId;
  expect(bg.stats()).toMatchObject({ total: 1 });
});

it("runs the next test on the same pool and thread (the thread's singleton counted on), while its Background sees only its own tasks", async () => {
  const bg = scope.resolve(Background);
  expect(bg.stats()).toMatchObject({ total: 0 });
  const { threadId, count } = await bg.add(countOnThread).result();
  expect(appOf(app).pool).toBe(firstPool);
  expect(threadId).toBe(firstThread);
  expect(count).toBe(2);
  expect(bg.stats({ application: true })).toMatchObject({ total: 2 });
});
