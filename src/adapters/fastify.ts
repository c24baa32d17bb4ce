/**
 * `tsyringe-background/fastify`: a request scope for Fastify 5. A plugin (wrapped with
 * `fastify-plugin`, so it applies beyond its own context: register it on the root) gives each request a child
 * container as `request.diScope`, disposed with `disposeScope()` once the response has been
 * sent or the client has gone away. And `liveView`, a plugin that serves a read-only page and
 * JSON API of the application's tasks under the prefix you register it with.
 * @packageDocumentation
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import type { DependencyContainer } from 'tsyringe';
import { createLiveView, pathBelow, resolveLiveViewOptions, splitTarget, type LiveViewOptions } from './live-view.js';
import { closeOnResponse, openScope, registerThen, fastifyRegisterKeys, resolveRequestScopeOptions, type RequestScopeOptions as Options } from './request-scope.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * This request's scope: a child container made by the `requestScope` plugin from
     * `tsyringe-background/fastify`, disposed after the response. Resolve the request's services
     * (and its `Background`) from it.
     */
    diScope: DependencyContainer;
  }
}

/** Options of {@link requestScope}: `register` receives the `FastifyRequest`. */
export type RequestScopeOptions = Options<FastifyRequest>;

const plugin: FastifyPluginCallback<RequestScopeOptions> = (fastify, options, done) => {
  // What Fastify refuses (the decorator added twice: the plugin registered again below itself)
  // goes to done(): thrown from a callback plugin, it would crash the process, not reject register().
  try {
    const resolved = resolveRequestScopeOptions(options);
    // Fastify 5 refuses a reference type as a decorator's initial value: null, set per request.
    fastify.decorateRequest('diScope', null, []);
    fastify.addHook('onRequest', (request, reply, next) => {
      const { scope, close } = openScope(resolved, request.method, request.url);
      closeOnResponse(reply.raw, close);
      request.diScope = scope;
      // A hook's failure goes to Fastify's error handling as it was thrown.
      registerThen(resolved, scope, request, next as (error?: unknown) => void);
    });
  } catch (error) {
    done(error as Error);
    return;
  }
  done();
};

/**
 * A Fastify plugin that gives each request its own child container, `request.diScope`, and
 * disposes it with `disposeScope()` once the response has finished or the client has gone away
 * (whichever comes first, once): the scope's `Background` drains first, then its other
 * disposables are disposed. The response never waits for that; a failure is logged through
 * `options.logger`, never sent to the client. Made with `fastify-plugin`, so its hook and the
 * `diScope` decorator apply to the context that registers it and every context below it:
 * register it on the root instance for every route of the application.
 *
 * ```ts
 * const app = Fastify();
 * await app.register(requestScope, { register: (scope, request) => scope.register(RequestId, { useValue: request.id }) });
 * app.post('/signup', async (request, reply) => {
 *   request.diScope.resolve(Background).add(sendWelcome, (request.body as { email: string }).email);
 *   return reply.code(202).send();
 * });
 * ```
 *
 * Registering it fails with a `TypeError` (`app.register()` and `app.ready()` reject) when an
 * option is not a known one or has the wrong type. Fastify's own `prefix`, `logLevel` and
 * `logSerializers` are refused too: Fastify ignores them for a plugin wrapped with `fastify-plugin`
 * (the scopes would be made for every route of the context, whatever the prefix).
 */
export const requestScope = fastifyPlugin(plugin, { fastify: '5.x', name: 'tsyringe-background' });

export type { LiveViewError, LiveViewOptions, LiveViewTask, LiveViewTaskList } from './live-view.js';

/**
 * The live view of the application's tasks, as a Fastify plugin to register under a prefix of
 * your choosing: `GET /` below it is a page that shows counts by status, the live tasks with
 * their progress and the recently finished ones, refreshed every second; `GET /api/stats`,
 * `GET /api/tasks?status=running,queued&limit=50` and `GET /api/tasks/:id` are its read-only
 * JSON API. Other methods get a 405; request bodies are not read.
 *
 * Nothing is served unless you register it. It shows task names, ids, progress messages and
 * error messages: register it in a context whose hooks authenticate.
 *
 * ```ts
 * await app.register(async (admin) => {
 *   admin.addHook('onRequest', requireAdmin);
 *   await admin.register(liveView, { prefix: '/background' }); // the page at /background/
 * });
 * ```
 *
 * Not wrapped with `fastify-plugin`: its routes stay in their own context, under the prefix.
 * Registering it fails with a `TypeError` (`app.register()` and `app.ready()` reject) when an
 * option is not a known one (the view's, or Fastify's own `prefix`, `logLevel`, `logSerializers`)
 * or has the wrong type.
 */
export const liveView: FastifyPluginCallback<LiveViewOptions> = (fastify, options, done) => {
  // What Fastify refuses (a route of the application's at the same paths) goes to done(), as in requestScope.
  try {
    const handle = createLiveView(resolveLiveViewOptions(options, fastifyRegisterKeys));
    const mount = fastify.prefix;
    // Read-only: whatever body comes with a refused method is left unread rather than parsed.
    fastify.removeAllContentTypeParsers();
    fastify.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    const route = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      // The target as sent (an absolute-form one reduced to its path by splitTarget), then as
      // many segments dropped as the prefix has.
      const { path, query } = splitTarget(request.raw.url ?? '/');
      const answer = await handle({ method: request.method, path: pathBelow(path, mount), query });
      return reply.code(answer.status).headers(answer.headers).send(answer.body);
    };
    fastify.all('/', route);
    fastify.all('/*', route);
  } catch (error) {
    done(error as Error);
    return;
  }
  done();
};
