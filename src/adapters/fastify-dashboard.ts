/**
 * `tsyringe-background/fastify/dashboard`: bull-board for the durable backend's queues, as a
 * Fastify plugin to register next to the live view. Loads `@bull-board/api` and
 * `@bull-board/fastify`; `tsyringe-background/fastify` does not.
 * @packageDocumentation
 */
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import { checkBasePath, mountBoard, readOnlyRefusal, resolveDashboardOptions, type DurableDashboardOptions } from './dashboard.js';
import { fastifyRegisterKeys } from './request-scope.js';

export type { DashboardQueue, DurableDashboardOptions } from './dashboard.js';

/** Options of the Fastify {@link durableDashboard} plugin (with Fastify's own, `prefix` among them). */
export interface FastifyDashboardOptions extends DurableDashboardOptions {
  /**
   * The path the dashboard is served under, as the browser sees it: its page loads its assets
   * and calls its API from there. Give it when a proxy in front changes the path.
   * @default the prefix the plugin is registered under
   */
  basePath?: string | undefined;
}

/**
 * bull-board over the application's durable queue, as a Fastify plugin to register under a
 * prefix: its page at the prefix, its JSON API at `prefix/api/…` (`GET /api/queues` lists the
 * queues, their counts and, for `?activeQueue=name`, their jobs). Read-only by default: any
 * method but `GET` and `HEAD` gets a 405.
 *
 * It shows each job's arguments, result, error and stack trace: register it in a context whose
 * hooks authenticate.
 *
 * ```ts
 * const backend = useBullMQ(container, { connection });
 * await app.register(async (admin) => {
 *   admin.addHook('onRequest', requireAdmin);
 *   await admin.register(liveView, { prefix: '/background', dashboardPath: '/background/queues' });
 *   await admin.register(durableDashboard, { prefix: '/background/queues', backend });
 * });
 * ```
 *
 * Not wrapped with `fastify-plugin`: its routes, hooks and the view and static plugins bull-board
 * registers stay in their own context. Registering it fails with a `TypeError`
 * (`app.register()` and `app.ready()` reject) when an option is not a known one (the dashboard's,
 * or Fastify's own `prefix`, `logLevel`, `logSerializers`) or has the wrong type.
 */
export const durableDashboard: FastifyPluginCallback<FastifyDashboardOptions> = (fastify, options, done) => {
  // What Fastify refuses (a route of the application's at the same paths) goes to done(): thrown
  // from a callback plugin, it would crash the process, not reject register().
  try {
    mountDashboard(fastify, options);
  } catch (error) {
    done(error as Error);
    return;
  }
  done();
};

/** Checks the options and mounts the dashboard in `fastify`'s context; throws what the options or Fastify refuse. */
function mountDashboard(fastify: FastifyInstance, options: FastifyDashboardOptions): void {
  const resolved = resolveDashboardOptions(options, ['basePath', ...fastifyRegisterKeys]);
  const basePath = checkBasePath('durableDashboard(options): options.basePath', resolved.given.basePath ?? (fastify.prefix || '/'));
  if (resolved.readOnly) {
    // Before bodies are parsed: whatever comes with a refused method is never read.
    fastify.addHook('onRequest', (request, reply, next) => {
      if (request.method === 'GET' || request.method === 'HEAD') {
        next();
        return;
      }
      const refusal = readOnlyRefusal(request.method);
      void reply.code(refusal.status).headers(refusal.headers).send(refusal.body);
    });
    // A method no bull-board route takes would go to whatever else matches (a live view
    // registered above this prefix): these routes keep it here, where the hook refuses it.
    const refused = ['DELETE', 'OPTIONS', 'PATCH', 'POST', 'PUT'];
    const never = (): never => {
      throw new Error('unreachable: the onRequest hook answers first');
    };
    fastify.route({ method: refused, url: '/', handler: never });
    fastify.route({ method: refused, url: '/*', handler: never });
  }
  const adapter = new FastifyAdapter();
  adapter.setBasePath(basePath);
  void fastify.register(mountBoard(adapter, resolved).registerPlugin());
}
