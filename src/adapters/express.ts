/**
 * `tsyringe-background/express`: a request scope for Express 5. Each request gets a child
 * container as `req.container`, disposed with `disposeScope()` once the response has been sent
 * or the client has gone away. And `liveView()`, a read-only page and JSON API of the
 * application's tasks, to mount where you choose.
 * @packageDocumentation
 */
import type { Request, RequestHandler } from 'express';
import type { DependencyContainer } from 'tsyringe';
import { createLiveView, pathBelow, resolveLiveViewOptions, splitTarget, type LiveViewOptions } from './live-view.js';
import { closeOnResponse, openScope, registerThen, resolveRequestScopeOptions, type RequestScopeOptions as Options } from './request-scope.js';

declare global {
  // Express's own extension point for request properties (what @types/express documents).
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /**
       * This request's scope: a child container made by `requestScope()` from
       * `tsyringe-background/express`, disposed after the response. Resolve the request's
       * services (and its `Background`) from it.
       */
      container: DependencyContainer;
    }
  }
}

/** Options of {@link requestScope}: `register` receives Express's `Request`. */
export type RequestScopeOptions = Options<Request>;

/**
 * Express middleware that gives each request its own child container, `req.container`, and
 * disposes it with `disposeScope()` once the response has finished or the client has gone away
 * (whichever comes first, once): the scope's `Background` drains first, then its other
 * disposables are disposed. The response never waits for that; a failure is logged through
 * `options.logger`, never sent to the client.
 *
 * ```ts
 * const app = express();
 * app.use(requestScope({ register: (scope, req) => scope.register(RequestId, { useValue: req.get('x-request-id') }) }));
 * app.post('/signup', (req, res) => {
 *   req.container.resolve(Background).add(sendWelcome, req.body.email);
 *   res.status(202).end();
 * });
 * ```
 *
 * @throws TypeError when an option is not a known one or has the wrong type.
 */
export function requestScope(options?: RequestScopeOptions): RequestHandler {
  const resolved = resolveRequestScopeOptions(options);
  return (req, res, next) => {
    const { scope, close } = openScope(resolved, req.method, req.originalUrl);
    closeOnResponse(res, close);
    req.container = scope;
    registerThen(resolved, scope, req, next);
  };
}

export type { LiveViewError, LiveViewOptions, LiveViewTask, LiveViewTaskList } from './live-view.js';

/**
 * The live view of the application's tasks, as an Express middleware to mount under a path of
 * your choosing: `GET /` below it is a page that shows counts by status, the live tasks with
 * their progress and the recently finished ones, refreshed every second; `GET /api/stats`,
 * `GET /api/tasks?status=running,queued&limit=50` and `GET /api/tasks/:id` are its read-only
 * JSON API. Other methods get a 405.
 *
 * Nothing is served unless you mount it. It shows task names, ids, progress messages and error
 * messages: mount it behind your authentication.
 *
 * ```ts
 * app.use('/background', requireAdmin, liveView()); // the page at /background/
 * ```
 *
 * @throws TypeError when an option is not a known one or has the wrong type.
 */
export function liveView(options?: LiveViewOptions): RequestHandler {
  const handle = createLiveView(resolveLiveViewOptions(options));
  return (req, res, next) => {
    // Below a mount point, Express gives req.url relative to it (an absolute-form target keeps
    // its scheme and host: splitTarget drops them). Empty segments are dropped, as Fastify's
    // and Hono's routes below the mount point see them.
    const { path, query } = splitTarget(req.url);
    handle({ method: req.method, path: pathBelow(path, ''), query }).then((answer) => {
      res.status(answer.status).set(answer.headers).end(answer.body);
    }, next);
  };
}
