/**
 * tsyringe's `container.reset()` (a common step between tests) drops every registration of the
 * global container, the library's with them: they are made again, so that `Background` resolves
 * as before, one per container, for the rest of the process.
 */
import { container, inject, injectable } from 'tsyringe';
import { afterEach, expect, it } from 'vitest';
import { ApplicationBackground, Background, BackgroundOptions, defineTask, shutdown, TaskContext } from '../src/index.js';
import { captureLogger } from './helpers.js';

class Greeter {
  greet(name: string): string {
    return `hello ${name}`;
  }
}

@injectable()
class UsesBackground {
  constructor(@inject(Background) readonly bg: Background) {}
}

const greet = defineTask({ name: 'greet', inject: [Greeter, TaskContext] }, (greeter, ctx, name: string) => `${greeter.greet(name)} (attempt ${ctx.attempt})`);

afterEach(async () => {
  await shutdown({ container, timeoutMs: 100 });
});

it('resolves Background after container.reset(), one per container, its tasks taking their dependencies from their scope', async () => {
  container.reset();
  container.register(BackgroundOptions, { useValue: { logger: captureLogger() } });
  container.register(Greeter, { useClass: Greeter });
  const bg = container.resolve(Background);
  expect(container.resolve(Background)).toBe(bg);
  const scope = container.createChildContainer();
  const scoped = scope.resolve(Background);
  expect(scoped).not.toBe(bg);
  expect(scope.resolve(UsesBackground).bg).toBe(scoped);
  expect(scope.resolve(ApplicationBackground)).toBe(bg);
  await expect(scoped.add(greet, 'ada').result()).resolves.toBe('hello ada (attempt 1)');
  // And again after a second reset, as each test's would be.
  await shutdown({ container, timeoutMs: 100 });
  container.reset();
  container.register(Greeter, { useClass: Greeter });
  container.register(BackgroundOptions, { useValue: { root: true, logger: captureLogger() } });
  const fresh = container.createChildContainer().resolve(Background);
  await expect(fresh.add(greet, 'bob').result()).resolves.toBe('hello bob (attempt 1)');
});
