/**
 * docs/frameworks.md, Live view, the durable dashboard (Express): bull-board for the durable
 * queue at /background/queues, next to the live view at /background, both behind the
 * application's authentication (a stand-in that wants a bearer token); looked at with one
 * durable job queued (no worker runs it here).
 * Run: npx tsx test/adapters/examples/dashboard-express.ts (it starts its own redis-server on 127.0.0.1)
 */
import 'reflect-metadata';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type RequestHandler } from 'express';
import { container, type DependencyContainer } from 'tsyringe';
import { useBullMQ, type BullMQConnection } from '../../../src/adapters/bullmq.js';
import { durableDashboard } from '../../../src/adapters/express-dashboard.js';
import { liveView } from '../../../src/adapters/express.js';
import { Background, BackgroundOptions, defineTask, shutdown } from '../../../src/index.js';
import { startRedis } from '../../durable/redis.js';
import { adminToken } from './live-view-look.js';

const requireAdmin: RequestHandler = (req, res, next) => {
  if (req.get('authorization') === adminToken) next();
  else res.status(401).end();
};

const sendInvoice = defineTask({ name: 'sendInvoice', durable: true }, async (invoiceId: string) => `sent ${invoiceId}`);

// #region docs
export function createApp(root: DependencyContainer, connection: BullMQConnection['connection']) {
  const backend = useBullMQ(root, { connection, queueName: 'app' });
  const app = express();
  // The dashboard first: the live view, mounted above it, would answer its paths with 404s.
  app.use('/background/queues', requireAdmin, durableDashboard({ backend, basePath: '/background/queues', liveViewPath: '/background' }));
  app.use('/background', requireAdmin, liveView({ container: root, dashboardPath: '/background/queues' }));
  return { app, backend };
}
// #endregion docs

/** Queues one durable job, then reads the dashboard (its API and page) and the live view's link to it. */
export async function main() {
  const redis = await startRedis();
  const root = container.createChildContainer();
  root.register(BackgroundOptions, { useValue: { root: true } });
  const { app, backend } = createApp(root, redis.connection);
  const server = app.listen(0, '127.0.0.1');
  try {
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/background`;
    const get = (path: string, authorization?: string) => fetch(base + path, { headers: authorization === undefined ? {} : { authorization } });
    const handle = root.resolve(Background).add(sendInvoice, 'inv-1');
    while ((await backend.job(handle.id)) === undefined) await new Promise((resolve) => setTimeout(resolve, 10)); // until Redis has it
    const { queues } = (await (await get('/queues/api/queues?activeQueue=app', adminToken)).json()) as {
      queues: { name: string; readOnlyMode: boolean; counts: Record<string, number>; jobs: { id: string; name: string; data: { args: unknown[] } }[] }[];
    };
    const page = await get('/queues', adminToken);
    return {
      withoutLogin: [(await get('/queues')).status, (await get('/queues/api/queues')).status],
      queues: queues.map(({ name, readOnlyMode, counts, jobs }) => ({
        name,
        readOnlyMode,
        queued: counts.prioritized,
        jobs: jobs.map((job) => ({ ok: job.id === handle.id, name: job.name, args: job.data.args })),
      })),
      page: `${page.status} ${page.headers.get('content-type')}`,
      pause: (await fetch(`${base}/queues/api/queues/app/pause`, { method: 'PUT', headers: { authorization: adminToken } })).status,
      liveViewLinks: (await (await get('/', adminToken)).text()).includes('<a id="dashboard" href="/background/queues">'),
    };
  } finally {
    server.closeAllConnections();
    await new Promise((closed) => server.close(closed));
    await shutdown({ container: root });
    await backend.close();
    await redis.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
