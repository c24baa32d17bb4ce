/**
 * docs/frameworks.md, Live view, Hono on @hono/node-server: the view routed at /background behind
 * the application's authentication (here a stand-in that wants a bearer token), looked at while a
 * task runs.
 * Run: npx tsx test/adapters/examples/live-view-hono.ts
 */
import 'reflect-metadata';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { Hono, type MiddlewareHandler } from 'hono';
import { liveView } from '../../../src/adapters/hono.js';
import { adminToken, lookAtLiveView } from './live-view-look.js';

const requireAdmin: MiddlewareHandler = async (c, next) => {
  if (c.req.header('authorization') !== adminToken) return c.body(null, 401);
  await next();
};

// #region docs
const app = new Hono();
app.use('/background/*', requireAdmin); // matches /background itself too
app.route('/background', liveView());
// #endregion docs

export async function main() {
  let port!: (port: number) => void;
  const ready = new Promise<number>((resolve) => (port = resolve));
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => port(info.port)) as Server;
  try {
    return await lookAtLiveView(`http://127.0.0.1:${await ready}/background`);
  } finally {
    server.closeAllConnections();
    await new Promise((closed) => server.close(closed));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
