/**
 * `tsyringe-background/express/dashboard`: bull-board for the durable backend's queues, as an
 * Express app to mount next to the live view. Loads `@bull-board/api` and `@bull-board/express`;
 * `tsyringe-background/express` does not.
 * @packageDocumentation
 */
import { ExpressAdapter } from '@bull-board/express';
import type { Express } from 'express';
import { checkBasePath, mountBoard, readOnlyRefusal, resolveDashboardOptions, type MountedDashboardOptions } from './dashboard.js';

export type { DashboardQueue, DurableDashboardOptions, MountedDashboardOptions } from './dashboard.js';

/** Options of the Express {@link durableDashboard}. */
export type ExpressDashboardOptions = MountedDashboardOptions;

/**
 * bull-board over the application's durable queue, as an Express app to mount with
 * `app.use(basePath, …)`: its page at `basePath`, its JSON API at `basePath/api/…`
 * (`GET /api/queues` lists the queues, their counts and, for `?activeQueue=name`, their jobs).
 * Read-only by default: any method but `GET` and `HEAD` gets a 405.
 *
 * It shows each job's arguments, result, error and stack trace: mount it behind your
 * authentication.
 *
 * ```ts
 * const backend = useBullMQ(container, { connection });
 * // Before the live view, whose routes would answer /background/queues with a 404.
 * app.use('/background/queues', requireAdmin, durableDashboard({ backend, basePath: '/background/queues' }));
 * app.use('/background', requireAdmin, liveView({ dashboardPath: '/background/queues' }));
 * ```
 *
 * @throws TypeError when an option is not a known one or has the wrong type, or both or neither of `backend` and `queues` are given.
 */
export function durableDashboard(options: ExpressDashboardOptions): Express {
  const resolved = resolveDashboardOptions(options, ['basePath']);
  const basePath = checkBasePath('durableDashboard(options): options.basePath', resolved.given.basePath);
  const adapter = resolved.readOnly ? new ReadOnlyExpressAdapter() : new ExpressAdapter();
  adapter.setBasePath(basePath);
  return mountBoard(adapter, resolved).getRouter() as Express;
}

/** bull-board's Express app with a guard in front of every route it will add. */
class ReadOnlyExpressAdapter extends ExpressAdapter {
  constructor() {
    super();
    this.app.use((req, res, next) => {
      if (req.method === 'GET' || req.method === 'HEAD') {
        next();
        return;
      }
      const refusal = readOnlyRefusal(req.method);
      res.status(refusal.status).set(refusal.headers).end(refusal.body);
    });
  }
}
