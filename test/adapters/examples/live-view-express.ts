/**
 * docs/frameworks.md, Live view, Express: the view mounted at /background behind the
 * application's authentication (here a stand-in that wants a bearer token), looked at while a
 * task runs.
 * Run: npx tsx test/adapters/examples/live-view-express.ts
 */
import 'reflect-metadata';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type RequestHandler } from 'express';
import { liveView } from '../../../src/adapters/express.js';
import { adminToken, lookAtLiveView } from './live-view-look.js';

const requireAdmin: RequestHandler = (req, res, next) => {
  if (req.get('authorization') === adminToken) next();
  else res.status(401).end();
};

// #region docs
const app = express();
app.use('/background', requireAdmin, liveView()); // the page at /background/, its API at /background/api/…
// #endregion docs

export async function main() {
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    return await lookAtLiveView(`http://127.0.0.1:${(server.address() as AddressInfo).port}/background`);
  } finally {
    server.closeAllConnections();
    await new Promise((closed) => server.close(closed));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
