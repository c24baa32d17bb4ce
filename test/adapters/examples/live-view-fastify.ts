/**
 * docs/frameworks.md, Live view, Fastify: the view registered with a prefix in a context whose
 * onRequest hook authenticates (here a stand-in that wants a bearer token), looked at while a
 * task runs.
 * Run: npx tsx test/adapters/examples/live-view-fastify.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { liveView } from '../../../src/adapters/fastify.js';
import { adminToken, lookAtLiveView } from './live-view-look.js';

async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (request.headers.authorization !== adminToken) await reply.code(401).send();
}

// #region docs
const app = Fastify();
await app.register(async (admin) => {
  admin.addHook('onRequest', requireAdmin); // this context only: the live view's routes
  await admin.register(liveView, { prefix: '/background' });
});
// #endregion docs

export async function main() {
  const origin = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    return await lookAtLiveView(`${origin}/background`);
  } finally {
    await app.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
