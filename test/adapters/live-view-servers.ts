/**
 * The live view mounted at `/background` on a real server of each framework, on 127.0.0.1
 * (port 0), behind a stand-in for the application's authentication (a bearer token), as the
 * docs tell users to mount it. Shared by the JSON API tests and the browser tests.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import type { DependencyContainer } from 'tsyringe';
import { liveView as expressLiveView } from '../../src/adapters/express.js';
import { liveView as fastifyLiveView } from '../../src/adapters/fastify.js';
import { liveView as honoLiveView } from '../../src/adapters/hono.js';
import { deferred } from '../helpers.js';

/** The header every request to the live view must carry; any other gets a 401. */
export const authorization = 'Bearer live-view-test';

export interface LiveViewServer {
  /** The mount point, without a trailing slash: `http://127.0.0.1:1234/background`. */
  readonly base: string;
  close(): Promise<void>;
}

/** Starts a server with the live view of `container`'s application at `/background` (`undefined`: the default, the global container). */
export type StartLiveView = (container: DependencyContainer | undefined) => Promise<LiveViewServer>;

const options = (container: DependencyContainer | undefined) => (container === undefined ? undefined : { container });

export const liveViewServers: Record<'express' | 'fastify' | 'hono', StartLiveView> = {
  async express(container) {
    const app = express();
    app.use('/background', (req, res, next) => {
      if (req.get('authorization') === authorization) next();
      else res.status(401).end();
    });
    app.use('/background', expressLiveView(options(container)));
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/background`, close: () => closeNodeServer(server) };
  },

  async fastify(container) {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(async (admin) => {
      admin.addHook('onRequest', async (request, reply) => {
        if (request.headers.authorization !== authorization) await reply.code(401).send();
      });
      await admin.register(fastifyLiveView, { prefix: '/background', ...options(container) });
    });
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    return { base: `${address}/background`, close: () => app.close() };
  },

  async hono(container) {
    const app = new Hono();
    app.use('/background/*', async (c, next) => {
      if (c.req.header('authorization') !== authorization) return c.body(null, 401);
      await next();
    });
    app.route('/background', honoLiveView(options(container)));
    const listening = deferred<number>();
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => listening.resolve(info.port));
    const port = await listening.promise;
    return { base: `http://127.0.0.1:${port}/background`, close: () => closeNodeServer(server as Server) };
  },
};

async function closeNodeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((closed) => server.close(closed));
}
