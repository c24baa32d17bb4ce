/**
 * docs/frameworks.md, Express: a request scope per request, a welcome mail added in the handler,
 * the response sent at once, the session closed after the mail.
 * Run: npx tsx test/adapters/examples/express.ts
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type { DependencyContainer } from 'tsyringe';
import { requestScope } from '../../../src/adapters/express.js';
import { Background, type BackgroundLogger } from '../../../src/index.js';
import { RequestId, sendWelcome, signUpOnce } from './services.js';

// #region docs
export function createApp(parent: DependencyContainer, logger: BackgroundLogger): express.Express {
  const app = express();
  app.use(express.json());
  app.use(
    requestScope({
      parent, // the application's root container (default: tsyringe's global container)
      logger, // where a failed disposal is logged (default: consoleLogger)
      register: (scope, req) => scope.register(RequestId, { useValue: req.get('x-request-id') ?? randomUUID() }),
    }),
  );
  app.post('/signup', (req, res) => {
    const { email } = req.body as { email: string };
    req.container.resolve(Background).add(sendWelcome, email); // Mailer and this request's Session, resolved now
    res.status(202).json({ queued: email }); // sent now; the scope drains, then closes the session
  });
  return app;
}
// #endregion docs

export function main(): Promise<string[]> {
  return signUpOnce(async (root, logger) => {
    const server = createApp(root, logger).listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: async () => {
        server.closeAllConnections();
        await new Promise((closed) => server.close(closed));
      },
    };
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
