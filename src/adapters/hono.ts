/**
 * `tsyringe-background/hono`: a request scope for Hono 4 on Node (`@hono/node-server`). Each
 * request gets a child container as `c.var.container`, disposed with `disposeScope()` once the
 * response has been sent or the client has gone away. And `liveView()`, a Hono app that serves a
 * read-only page and JSON API of the application's tasks, to mount with `app.route()`.
 * @packageDocumentation
 */
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { DependencyContainer } from 'tsyringe';
import { createLiveView, pathBelow, resolveLiveViewOptions, type LiveViewOptions } from './live-view.js';
import { closeOnResponse, openScope, resolveRequestScopeOptions, type NodeResponse, type RequestScopeOptions as Options } from './request-scope.js';

/** The variables {@link requestScope} sets: `c.var.container`, this request's scope. */
export interface RequestScopeVariables {
  /**
   * This request's scope: a child container, disposed after the response. Resolve the
   * request's services (and its `Background`) from it.
   */
  container: DependencyContainer;
}

/** The environment of an app (or route) that uses {@link requestScope}: `new Hono<RequestScopeEnv>()`. */
export interface RequestScopeEnv {
  /** What `c.var` holds: the request's `container`. */
  Variables: RequestScopeVariables;
}

/** Options of {@link requestScope}: `register` receives Hono's `Context`. */
export type RequestScopeOptions = Options<Context>;

/**
 * Hono middleware that gives each request its own child container, `c.var.container`, and
 * disposes it with `disposeScope()` (the scope's `Background` drains first, then its other
 * disposables are disposed). The response never waits for that; a failure is logged through
 * `options.logger`, never sent to the client.
 *
 * When is the response over? Served by `@hono/node-server`, once Node's response has finished
 * or the client has gone away (`c.env.outgoing`), whichever comes first. Elsewhere (`app.request()`
 * in tests, another runtime), once the handlers have returned the response: a streamed body may
 * still be running then.
 *
 * ```ts
 * const app = new Hono<RequestScopeEnv>();
 * app.use(requestScope({ register: (scope, c) => scope.register(RequestId, { useValue: c.req.header('x-request-id') }) }));
 * app.post('/signup', async (c) => {
 *   c.var.container.resolve(Background).add(sendWelcome, (await c.req.json<{ email: string }>()).email);
 *   return c.body(null, 202);
 * });
 * serve({ fetch: app.fetch, port: 3000 });
 * ```
 *
 * @throws TypeError when an option is not a known one or has the wrong type.
 */
export function requestScope(options?: RequestScopeOptions): MiddlewareHandler<RequestScopeEnv> {
  const resolved = resolveRequestScopeOptions(options);
  return async (c, next) => {
    const { scope, close } = openScope(resolved, c.req.method, c.req.url);
    const outgoing = nodeResponseOf(c.env);
    if (outgoing !== undefined) closeOnResponse(outgoing, close);
    c.set('container', scope);
    try {
      await resolved.register?.(scope, c);
      await next();
    } finally {
      if (outgoing === undefined) close();
    }
  };
}

/** The Node response `@hono/node-server` passes in the env as `outgoing`, when it is there. */
function nodeResponseOf(env: unknown): NodeResponse | undefined {
  const outgoing = (env as { outgoing?: Partial<NodeResponse> } | undefined)?.outgoing;
  return typeof outgoing?.once === 'function' ? (outgoing as NodeResponse) : undefined;
}

export type { LiveViewError, LiveViewOptions, LiveViewTask, LiveViewTaskList } from './live-view.js';

/**
 * The live view of the application's tasks, as a Hono app to mount under a path of your
 * choosing: `GET /` below it is a page that shows counts by status, the live tasks with their
 * progress and the recently finished ones, refreshed every second; `GET /api/stats`,
 * `GET /api/tasks?status=running,queued&limit=50` and `GET /api/tasks/:id` are its read-only
 * JSON API. Other methods get a 405.
 *
 * Nothing is served unless you mount it. It shows task names, ids, progress messages and error
 * messages: mount it behind your authentication.
 *
 * ```ts
 * app.use('/background/*', requireAdmin);
 * app.route('/background', liveView()); // the page at /background/
 * ```
 *
 * @throws TypeError when an option is not a known one or has the wrong type.
 */
export function liveView(options?: LiveViewOptions): Hono {
  const handle = createLiveView(resolveLiveViewOptions(options));
  const app = new Hono();
  const route = async (c: Context): Promise<Response> => {
    const url = new URL(c.req.url);
    // The route that matched, as mounted (`/background/*`, `/t/:tenant/background`), tells how deep the mount point is.
    const mount = c.req.routePath.replace(/\/\*$/, '');
    const answer = await handle({ method: c.req.method, path: pathBelow(url.pathname, mount), query: url.searchParams });
    return new Response(answer.body, { status: answer.status, headers: answer.headers });
  };
  app.all('/', route);
  app.all('/*', route);
  return app;
}
