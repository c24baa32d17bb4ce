/** `tsyringe-background/hono` on a real `@hono/node-server` server: the shared scenarios, then Hono's own. */
import type { ServerResponse } from 'node:http';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { Lifecycle, type DependencyContainer } from 'tsyringe';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { requestScope, type RequestScopeEnv } from '../../src/adapters/hono.js';
import { Background, shutdown } from '../../src/index.js';
import { captureLogger, deferred, freshApp } from '../helpers.js';
import { requestScopeScenarios } from './scenarios.js';

requestScopeScenarios('hono', async ({ parent, logger, register, route, before }) => {
  const app = new Hono<RequestScopeEnv & { Bindings: { outgoing: ServerResponse } }>();
  app.use(async (c, next) => {
    await before(new Promise((closed) => c.env.outgoing.once('close', () => closed(undefined))));
    await next();
  });
  app.use(requestScope({ parent, logger, register: (scope, c) => register(scope, (name) => c.req.header(name), c) }));
  app.get('/work', async (c) => c.json(await route(c.var.container)));
  app.onError((_error, c) => c.text('failed', 500)); // Hono's default handler also prints the error
  const listening = deferred<number>();
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => listening.resolve(info.port));
  const port = await listening.promise;
  return {
    url: `http://127.0.0.1:${port}/work`,
    close: async () => {
      if ('closeAllConnections' in server) server.closeAllConnections();
      await new Promise((closed) => server.close(closed));
    },
  };
});

describe('hono: requestScope(options)', () => {
  it.each([
    ['a logger without all its methods', { logger: { error: () => undefined } }, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    ["liveView()'s container for parent", { container: freshApp() }, 'options.container is not a known option; known options: parent, register, logger'],
  ])('names a wrong option: %s', (_what, options, message) => {
    expect(() => requestScope(options as never)).toThrow(new TypeError(`requestScope(options): ${message}`));
  });

  it('types c.var.container for the routes after app.use(), without declaring the env', () => {
    const app = new Hono().use(requestScope());
    app.get('/', (c) => {
      expectTypeOf(c.var.container).toEqualTypeOf<DependencyContainer>();
      return c.text('ok');
    });
  });

  it('without @hono/node-server (app.request()), disposes the scope once the handlers have returned the response', async () => {
    const parent = freshApp({ logger: captureLogger() });
    const events: string[] = [];
    const disposed = deferred();
    class Session {
      dispose(): void {
        events.push('session disposed');
        disposed.resolve();
      }
    }
    const app = new Hono().use(requestScope({ parent }));
    app.get('/', (c) => {
      c.var.container.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
      c.var.container.resolve(Session);
      c.var.container.resolve(Background).add(async () => {
        events.push('task ran');
      });
      return c.text('ok');
    });
    const response = await app.request('/');
    expect(await response.text()).toBe('ok');
    await disposed.promise;
    expect(events).toEqual(['task ran', 'session disposed']);
    await shutdown({ container: parent });
  });
});
