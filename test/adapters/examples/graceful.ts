/**
 * docs/frameworks.md, Graceful shutdown: the Fastify example's app with gracefulShutdown() wired
 * to `app.server` before it listens, and signals handled by the caller, so that Fastify's
 * onClose hooks run after the drain. A request whose body is still arriving when the shutdown
 * begins is answered (told `Connection: close`), its mail is sent, its session closed, then the
 * report comes back and Fastify closes.
 * Run: npx tsx test/adapters/examples/graceful.ts
 */
import 'reflect-metadata';
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyListenOptions } from 'fastify';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { BackgroundOptions, gracefulShutdown, type BackgroundLogger, type GracefulShutdownReport } from '../../../src/index.js';
import { createApp } from './fastify.js';
import { Log, Mailer } from './services.js';

// #region docs
export async function listen(app: FastifyInstance, container: DependencyContainer, options: FastifyListenOptions) {
  // app.server is there before app.listen(): wired first, no request is missed
  const graceful = gracefulShutdown({ server: app.server, container, timeoutMs: 20_000, signals: [] }); // signals: [] — the caller handles them
  await app.listen(options);
  let stopping: Promise<GracefulShutdownReport> | undefined;
  return function stop() {
    return (stopping ??= (async () => {
      const report = await graceful.close(); // stop accepting, finish the requests in flight, drain every scope, log the summary
      await app.close(); // then Fastify's onClose hooks
      return report;
    })());
  };
}
// const app = await createApp(container, logger); // the Fastify example below
// const stop = await listen(app, container, { port: 3000 });
// process.on, not once: the same signal again (a launcher such as node --watch forwards what its
// process group got) would meet Node's default action, which kills the process at once.
// process.on('SIGTERM', () => void stop().then((report) => process.exit(report.exitCode)));
// #endregion docs

export async function main() {
  const log = new Log();
  const logger: BackgroundLogger = {
    error: (_fields, message) => log.push(`error: ${message}`),
    warn: (_fields, message) => log.push(`warn: ${message}`),
    info: (_fields, message) => log.push(`info: ${message.replace(/ in \d+ ms/, '')}`),
    debug: () => undefined,
  };
  const mailer = new Mailer(log);
  const root = globalContainer.createChildContainer();
  root.register(BackgroundOptions, { useValue: { root: true, logger } });
  root.register(Log, { useValue: log });
  root.register(Mailer, { useValue: mailer });
  const app = await createApp(root, logger);
  app.addHook('onClose', async () => log.push('fastify onClose'));
  const stop = await listen(app, root, { port: 0, host: '127.0.0.1' });

  // A sign-up in flight when the shutdown begins: its headers have come, its body has not yet.
  const request = httpRequest({
    host: '127.0.0.1',
    port: (app.server.address() as AddressInfo).port,
    method: 'POST',
    path: '/signup',
    headers: { 'content-type': 'application/json', 'x-request-id': 'r-1' },
  });
  const responded = once(request, 'response') as Promise<[IncomingMessage]>;
  const arrived = once(app.server, 'request');
  request.write('{"email":');
  await arrived;
  const stopping = stop();
  log.push('shutdown began');
  request.end('"ada@example.com"}');
  const [response] = await responded;
  let body = '';
  for await (const chunk of response) body += String(chunk);
  log.push(`response ${response.statusCode} ${body} (connection: ${response.headers.connection})`);
  mailer.openRelay(); // the drain has waited for the mail
  const { requests, abandoned, totals, exitCode } = await stopping;
  return { log: log.entries, report: { requests, abandoned, totals, exitCode } };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
