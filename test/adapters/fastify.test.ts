/** `tsyringe-background/fastify` on a real Fastify 5 server: the shared scenarios, then Fastify's own. */
import Fastify from 'fastify';
import { Lifecycle } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { liveView, requestScope } from '../../src/adapters/fastify.js';
import { Background, shutdown } from '../../src/index.js';
import { captureLogger, deferred, freshApp } from '../helpers.js';
import { requestScopeScenarios } from './scenarios.js';

requestScopeScenarios('fastify', async ({ parent, logger, register, route, before }) => {
  const app = Fastify({ forceCloseConnections: true }); // close() waits for no connection an aborted fetch left open
  app.addHook('onRequest', async (_request, reply) => {
    await before(new Promise((closed) => reply.raw.once('close', () => closed(undefined))));
  });
  await app.register(requestScope, {
    parent,
    logger,
    register: (scope, request) =>
      register(
        scope,
        (name) => {
          const value = request.headers[name];
          return Array.isArray(value) ? value[0] : value;
        },
        request,
      ),
  });
  app.get('/work', async (request) => route(request.diScope));
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `${address}/work`, close: () => app.close() };
});

describe('fastify: the requestScope plugin', () => {
  it.each([
    ['a register that is not a function', { register: 42 }, 'options.register must be a function, got 42 (number)'],
    ["liveView()'s container for parent", { container: freshApp() }, 'options.container is not a known option; known options: parent, register, logger'],
    // Wrapped with fastify-plugin: Fastify would ignore a prefix, and make scopes for every route.
    ["Fastify's prefix", { prefix: '/api' }, 'options.prefix is not a known option; known options: parent, register, logger'],
  ])('names a wrong option when the application starts: %s', async (_what, options, message) => {
    const app = Fastify();
    await expect(app.register(requestScope, options as never).ready()).rejects.toThrow(new TypeError(`requestScope(options): ${message}`));
  });

  it("registered again below itself, rejects register() and ready() with Fastify's error (it crashed the process)", async () => {
    const app = Fastify();
    await app.register(requestScope, { parent: freshApp() });
    await expect(app.register(async (child) => child.register(requestScope)).ready()).rejects.toMatchObject({ code: 'FST_ERR_DEC_ALREADY_PRESENT' });
  });

  it("the live view at a route of the application's rejects register() and ready() with Fastify's error (it crashed the process)", async () => {
    const app = Fastify();
    app.get('/background/*', () => 'the application\'s own');
    await expect(app.register(liveView, { prefix: '/background', container: freshApp() }).ready()).rejects.toMatchObject({ code: 'FST_ERR_DUPLICATED_ROUTE' });
  });

  it('a register hook whose thenable settles twice lets the route run once', async () => {
    let runs = 0;
    const app = Fastify();
    await app.register(requestScope, {
      parent: freshApp(),
      // Not a promise: it says both yes and no.
      register: () => ({ then: (resolve: () => void, reject: (error: Error) => void) => (resolve(), reject(new Error('and no'))) }),
    });
    app.get('/', async () => ++runs);
    const response = await app.inject('/');
    expect([response.statusCode, response.body, runs]).toEqual([200, '1', 1]);
    await app.close();
  });

  it('works under app.inject() too: the scope is drained, then disposed, once the injected response has finished', async () => {
    const parent = freshApp({ logger: captureLogger() });
    const events: string[] = [];
    const disposed = deferred();
    class Session {
      dispose(): void {
        events.push('session disposed');
        disposed.resolve();
      }
    }
    const app = Fastify();
    await app.register(requestScope, { parent });
    app.get('/', async (request) => {
      request.diScope.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
      request.diScope.resolve(Session);
      request.diScope.resolve(Background).add(async () => {
        events.push('task ran');
      });
      return 'ok';
    });
    const response = await app.inject('/');
    expect(response.body).toBe('ok');
    await disposed.promise;
    expect(events).toEqual(['task ran', 'session disposed']);
    await app.close();
    await shutdown({ container: parent });
  });
});
