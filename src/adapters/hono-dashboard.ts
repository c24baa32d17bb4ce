/**
 * `tsyringe-background/hono/dashboard`: bull-board for the durable backend's queues, as a Hono
 * app to mount next to the live view, on `@hono/node-server`. Loads `@bull-board/api` and
 * `@bull-board/hono`; `tsyringe-background/hono` does not.
 * @packageDocumentation
 */
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { checkBasePath, mountBoard, readOnlyRefusal, resolveDashboardOptions, type MountedDashboardOptions } from './dashboard.js';

export type { DashboardQueue, DurableDashboardOptions, MountedDashboardOptions } from './dashboard.js';

/** Options of the Hono {@link durableDashboard}. */
export type HonoDashboardOptions = MountedDashboardOptions;

/**
 * bull-board over the application's durable queue, as a Hono app to mount with
 * `app.route(basePath, …)`: its page at `basePath`, its JSON API at `basePath/api/…`
 * (`GET /api/queues` lists the queues, their counts and, for `?activeQueue=name`, their jobs).
 * Read-only by default: any method but `GET` and `HEAD` gets a 405. Its assets are served from
 * `@bull-board/ui` by `@hono/node-server`'s `serveStatic`: it runs on Node.
 *
 * It shows each job's arguments, result, error and stack trace: mount it behind your
 * authentication.
 *
 * ```ts
 * const backend = useBullMQ(container, { connection });
 * app.use('/background/*', requireAdmin);
 * // Before the live view, whose routes would answer /background/queues with a 404.
 * app.route('/background/queues', durableDashboard({ backend, basePath: '/background/queues' }));
 * app.route('/background', liveView({ dashboardPath: '/background/queues' }));
 * ```
 *
 * @throws TypeError when an option is not a known one or has the wrong type, or both or neither of `backend` and `queues` are given.
 */
export function durableDashboard(options: HonoDashboardOptions): Hono {
  const resolved = resolveDashboardOptions(options, ['basePath']);
  const basePath = checkBasePath('durableDashboard(options): options.basePath', resolved.given.basePath);
  const slashMounted = basePath === '/' || (resolved.given.basePath as string).endsWith('/');
  const adapter = new HonoAdapter(serveStatic);
  adapter.setBasePath(basePath);
  const board = mountBoard(adapter, resolved).registerPlugin();
  const app = new Hono();
  app.use('*', async (c, next) => {
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      if (!resolved.readOnly) return next();
      const refusal = readOnlyRefusal(c.req.method);
      return new Response(refusal.body, { status: refusal.status, headers: refusal.headers });
    }
    // Hono routes strictly: the page is at basePath, not at basePath/, where the page's own
    // <base href> sends a reload of its home. (Mounted at a path with its trailing slash, as its
    // basePath says, the page is at basePath/ already, and basePath never reaches it.)
    if (!slashMounted && c.req.path === `${basePath}/`) return c.redirect(basePath + new URL(c.req.url).search, 308);
    return next();
  });
  app.route('/', board);
  return app;
}
