/**
 * docs/testing.md, "Worker tasks with fakes: pool.inline", as written there: a worker task run on
 * the main thread, with a fake dependency registered in the test's scope. (Each test's
 * application is closed after it, as in the page's first example.)
 */
import 'reflect-metadata';
import { container, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Background, BackgroundOptions, shutdown } from '../../src/index.js';
import { ImageCodec, renderAvatar } from './worker-tasks.js';

let app: DependencyContainer;
afterEach(() => shutdown({ container: app }));
const fakeCodec: ImageCodec = { encode: () => new Uint8Array([1, 2, 3]) };

// #region docs
beforeEach(() => {
  app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, pool: { inline: true } } });
});

it('renders the avatar with the configured codec', async () => {
  const scope = app.createChildContainer();
  scope.register(ImageCodec, { useValue: fakeCodec });   // what renderAvatar injects
  const handle = scope.resolve(Background).add(renderAvatar, 'user-1');
  await expect(handle.result()).resolves.toEqual({ bytes: 3 });
});
// #endregion docs
