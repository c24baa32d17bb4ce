/**
 * ApplicationBackground (issue 12): work that outlives its request. From any scope it resolves
 * the Background of the application's root: tasks take their dependencies from the root
 * container and drain at shutdown(), not when the request scope is disposed.
 */
import { inject, injectable } from 'tsyringe';
import { afterEach, describe, expect, it } from 'vitest';
import { ApplicationBackground, Background, defineTask, disposeScope, shutdown } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

const Greeting = Symbol('Greeting');
const greet = defineTask({ name: 'greet', inject: [Greeting] }, async (greeting: string, who: string) => `${greeting}, ${who}`);
const roots: ReturnType<typeof freshApp>[] = [];

function setup() {
  const logger = captureLogger();
  const root = freshApp({ logger });
  roots.push(root);
  root.register(Greeting, { useValue: 'Hello from the application' });
  const request = root.createChildContainer();
  request.register(Greeting, { useValue: 'Hello from the request' });
  return { root, request, logger };
}

watchProcessErrors();
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 1_000 })));
});

describe('ApplicationBackground', () => {
  it("resolves, from a request scope, the application root's Background, not the scope's", () => {
    const { root, request } = setup();
    const app = request.resolve(ApplicationBackground);
    expect(app).toBeInstanceOf(Background);
    expect(app).toBe(root.resolve(Background));
    expect(app).not.toBe(request.resolve(Background));
    expect(request.createChildContainer().resolve(ApplicationBackground)).toBe(app);
  });

  it("takes a task's dependencies from the application's root container, never the request's", async () => {
    const { request } = setup();
    await expect(request.resolve(ApplicationBackground).add(greet, 'Ada').result()).resolves.toBe('Hello from the application, Ada');
    await expect(request.resolve(Background).add(greet, 'Ada').result()).resolves.toBe('Hello from the request, Ada');
  });

  it('is injected into a service of the request scope, and its work survives the request: drained at shutdown()', async () => {
    const { root, request } = setup();
    const gate = deferred();
    @injectable()
    class Exports {
      constructor(@inject(ApplicationBackground) private readonly app: Background) {}
      start(): string {
        return this.app.add(async function buildExport() {
          await gate.promise;
          return 'exported';
        }).id;
      }
    }
    const id = request.resolve(Exports).start();
    await disposeScope(request);
    await nextTurn();
    const handle = root.resolve(Background).get(id)!;
    expect(handle.status).toBe('running');
    const closing = shutdown({ container: root, timeoutMs: 5_000 });
    gate.resolve();
    await expect(closing).resolves.toMatchObject({ abandoned: 0 });
    await expect(handle.result()).resolves.toBe('exported');
  });

  it('belongs to the nearest application root: a root: true container below the global one has its own', () => {
    const { root, request } = setup();
    const inner = freshApp();
    roots.push(inner);
    expect(request.resolve(ApplicationBackground)).toBe(root.resolve(Background));
    expect(inner.createChildContainer().resolve(ApplicationBackground)).toBe(inner.resolve(Background));
    expect(inner.resolve(Background)).not.toBe(root.resolve(Background));
  });
});
