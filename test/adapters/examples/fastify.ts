/**
 * docs/frameworks.md, Fastify: a request scope per request, a welcome mail added in the handler,
 * the response sent at once, the session closed after the mail.
 * Run: npx tsx test/adapters/examples/fastify.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import type { DependencyContainer } from 'tsyringe';
import { requestScope } from '../../../src/adapters/fastify.js';
import { Background, type BackgroundLogger } from '../../../src/index.js';
import { RequestId, sendWelcome, signUpOnce } from './services.js';

// #region docs
export async function createApp(parent: DependencyContainer, logger: BackgroundLogger): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(requestScope, {
    parent, // the application's root container (default: tsyringe's global container)
    logger, // where a failed disposal is logged (default: consoleLogger)
    register: (scope, request) => scope.register(RequestId, { useValue: request.headers['x-request-id']?.toString() ?? request.id }),
  });
  app.post<{ Body: { email: string } }>('/signup', async (request, reply) => {
    request.diScope.resolve(Background).add(sendWelcome, request.body.email); // Mailer and this request's Session, resolved now
    return reply.code(202).send({ queued: request.body.email }); // sent now; the scope drains, then closes the session
  });
  return app;
}
// #endregion docs

export function main(): Promise<string[]> {
  return signUpOnce(async (root, logger) => {
    const app = await createApp(root, logger);
    const origin = await app.listen({ port: 0, host: '127.0.0.1' });
    return { origin, close: () => app.close() };
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
