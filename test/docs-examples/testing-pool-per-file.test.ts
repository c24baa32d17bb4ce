/**
 * docs/testing.md, "Worker tasks on real threads: one pool per file", as written there: one
 * application (and pool) for the file, a child scope per test, disposed after it.
 */
import 'reflect-metadata';
import { container, type DependencyContainer } from 'tsyringe';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { Background, BackgroundOptions, disposeScope, shutdown } from '../../src/index.js';
import { renderAvatar, sumBytes } from './worker-tasks.js';

// #region docs
const setupModule = new URL('./worker-setup.ts', import.meta.url);
let app: DependencyContainer;
let scope: DependencyContainer;

beforeAll(() => {
  app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, pool: { maxThreads: 2, setupModule } } });
});
afterAll(() => shutdown({ container: app }));   // drains, then closes the file's pool

beforeEach(() => {
  scope = app.createChildContainer();
});
afterEach(() => disposeScope(scope));   // drains this test's tasks, then disposes the scope

it('sums on a worker thread', async () => {
  await expect(scope.resolve(Background).add(sumBytes, new Uint8Array([1, 2])).result()).resolves.toEqual({ sum: 3, length: 2 });
});
// #endregion docs

it("takes the workers' dependencies from the setup module, on the same pool; each test's Background sees only its own tasks", async () => {
  const bg = scope.resolve(Background);
  await expect(bg.add(renderAvatar, 'user-1').result()).resolves.toEqual({ bytes: 'avatar of user-1'.length });
  expect(bg.stats()).toMatchObject({ total: 1 });
  expect(bg.stats({ application: true })).toMatchObject({ total: 2 });
});
