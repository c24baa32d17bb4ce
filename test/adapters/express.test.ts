/** `tsyringe-background/express` on a real Express 5 server: the shared scenarios, then Express's own. */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { container } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { requestScope } from '../../src/adapters/express.js';
import { requestScopeScenarios } from './scenarios.js';

requestScopeScenarios('express', async ({ parent, logger, register, route, before }) => {
  const app = express();
  app.use(async (_req, res, next) => {
    await before(new Promise((closed) => res.once('close', () => closed(undefined))));
    next();
  });
  app.use(requestScope({ parent, logger, register: (scope, req) => register(scope, (name) => req.get(name), req) }));
  app.get('/work', async (req, res) => {
    res.json(await route(req.container));
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/work`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((closed) => server.close(closed));
    },
  };
});

describe('express: requestScope(options)', () => {
  it.each([
    ['a parent that is not a container', { parent: {} }, 'options.parent must be a tsyringe container, got an object'],
    ["liveView()'s container for parent", { container: container.createChildContainer() }, 'options.container is not a known option; known options: parent, register, logger'],
    ['a misspelt option inherited', Object.create({ parnet: container.createChildContainer() }) as object, 'options.parnet is not a known option; known options: parent, register, logger'],
  ])('names a wrong option: %s', (_what, options, message) => {
    expect(() => requestScope(options as never)).toThrow(new TypeError(`requestScope(options): ${message}`));
  });
});
