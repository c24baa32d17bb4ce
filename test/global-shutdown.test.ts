import { container } from 'tsyringe';
import { expect, it } from 'vitest';
import { Background, BackgroundDisposedError, shutdown } from '../src/index.js';
import { deferred, nextTurn } from './helpers.js';

// Vitest gives every test file its own module graph, so this closes only this file's global
// container.
it('closes the application of the global container by default', async () => {
  const scope = container.createChildContainer().resolve(Background);
  const gate = deferred();
  let finished = false;
  scope.add(async () => {
    await gate.promise;
    finished = true;
  });
  const closing = shutdown();
  expect(() => container.resolve(Background).add(async () => 0)).toThrow(BackgroundDisposedError);
  await nextTurn();
  gate.resolve();
  await expect(closing).resolves.toMatchObject({ abandoned: 0 });
  expect(finished).toBe(true);
});
