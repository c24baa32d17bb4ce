/**
 * docs/frameworks.md, Hono on @hono/node-server: a request scope per request, a welcome mail
 * added in the handler, the response sent at once, the session closed after the mail.
 * Run: npx tsx test/adapters/examples/hono.ts
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { DependencyContainer } from 'tsyringe';
import { requestScope, type RequestScopeEnv } from '../../../src/adapters/hono.js';
import { Background, type BackgroundLogger } from '../../../src/index.js';
import { RequestId, sendWelcome, signUpOnce } from './services.js';

// #region docs
export function createApp(parent: DependencyContainer, logger: BackgroundLogger): Hono<RequestScopeEnv> {
  const app = new Hono<RequestScopeEnv>();
  app.use(
    requestScope({
      parent, // the application's root container (default: tsyringe's global container)
      logger, // where a failed disposal is logged (default: consoleLogger)
      register: (scope, c) => scope.register(RequestId, { useValue: c.req.header('x-request-id') ?? randomUUID() }),
    }),
  );
  app.post('/signup', async (c) => {
    const { email } = await c.req.json<{ email: string }>();
    c.var.container.resolve(Background).add(sendWelcome, email); // Mailer and this request's Session, resolved now
    return c.json({ queued: email }, 202); // sent now; the scope drains, then closes the session
  });
  return app;
}
// serve({ fetch: createApp(container, logger).fetch, port: 3000 }): @hono/node-server tells when the response has gone
// #endregion docs

export function main(): Promise<string[]> {
  return signUpOnce(async (root, logger) => {
    let port!: (port: number) => void;
    const ready = new Promise<number>((resolve) => (port = resolve));
    const server = serve({ fetch: createApp(root, logger).fetch, port: 0, hostname: '127.0.0.1' }, (info) => port(info.port));
    return {
      origin: `http://127.0.0.1:${await ready}`,
      close: async () => {
        if ('closeAllConnections' in server) server.closeAllConnections();
        await new Promise((closed) => server.close(closed));
      },
    };
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
