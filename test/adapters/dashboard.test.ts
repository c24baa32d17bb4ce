/**
 * The durable dashboard (issue 14, item 5): bull-board mounted next to the live view on a real
 * server of each framework, on 127.0.0.1 (port 0), behind a stand-in for authentication, over a
 * real redis-server. A durable job is added (no worker runs it, so it stays queued); bull-board's
 * `GET /api/queues` shows the queue and the job; its page and assets are served under the mount
 * point; read-only refuses changes with a 405 before bull-board sees them; the live view's page
 * links to the dashboard. Then the options' checks, and the entry points that must not load
 * bull-board.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import type { DependencyContainer } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { resolveDashboardOptions, type DashboardQueue, type DurableDashboardOptions } from '../../src/adapters/dashboard.js';
import { durableDashboard as expressDashboard } from '../../src/adapters/express-dashboard.js';
import { liveView as expressLiveView } from '../../src/adapters/express.js';
import { durableDashboard as fastifyDashboard } from '../../src/adapters/fastify-dashboard.js';
import { liveView as fastifyLiveView } from '../../src/adapters/fastify.js';
import { durableDashboard as honoDashboard } from '../../src/adapters/hono-dashboard.js';
import { liveView as honoLiveView } from '../../src/adapters/hono.js';
import { createLiveView, resolveLiveViewOptions } from '../../src/adapters/live-view.js';
import { Background, defineTask, shutdown } from '../../src/index.js';
import { hasRedis, redisForSuite } from '../durable/redis.js';
import { captureLogger, deferred, freshApp, watchProcessErrors } from '../helpers.js';

watchProcessErrors();

const authorization = 'Bearer dashboard-test';
const dashboardPath = '/background/queues';

interface Mounted {
  /** `http://127.0.0.1:1234`: the live view is at `/background`, the dashboard at `/background/queues`. */
  readonly origin: string;
  close(): Promise<void>;
}

type Start = (backend: DurableBackend, readOnly: boolean | undefined) => Promise<Mounted>;

/** Both mounted as the docs show: the dashboard first (the live view's routes would answer below /background), both behind the login. */
const servers: Record<'express' | 'fastify' | 'hono', Start> = {
  async express(backend, readOnly) {
    const app = express();
    app.use('/background', (req, res, next) => {
      if (req.get('authorization') === authorization) next();
      else res.status(401).end();
    });
    app.use(dashboardPath, expressDashboard({ backend, basePath: dashboardPath, readOnly, liveViewPath: '/background' }));
    app.use('/background', expressLiveView({ dashboardPath }));
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeNodeServer(server) };
  },

  async fastify(backend, readOnly) {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(async (admin) => {
      admin.addHook('onRequest', async (request, reply) => {
        if (request.headers.authorization !== authorization) await reply.code(401).send();
      });
      // Fastify's own register options (logLevel) are let through, with the plugins' own.
      await admin.register(fastifyLiveView, { prefix: '/background', logLevel: 'warn', dashboardPath });
      await admin.register(fastifyDashboard, { prefix: dashboardPath, logLevel: 'warn', backend, readOnly, liveViewPath: '/background' });
    });
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    return { origin: address, close: () => app.close() };
  },

  async hono(backend, readOnly) {
    const app = new Hono();
    app.use('/background/*', async (c, next) => {
      if (c.req.header('authorization') !== authorization) return c.body(null, 401);
      await next();
    });
    app.route(dashboardPath, honoDashboard({ backend, basePath: dashboardPath, readOnly, liveViewPath: '/background' }));
    app.route('/background', honoLiveView({ dashboardPath }));
    const listening = deferred<number>();
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => listening.resolve(info.port));
    const port = await listening.promise;
    return { origin: `http://127.0.0.1:${port}`, close: () => closeNodeServer(server as Server) };
  },
};

async function closeNodeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((closed) => server.close(closed));
}

interface QueuesAnswer {
  queues: {
    name: string;
    counts: Record<string, number>;
    readOnlyMode: boolean;
    allowRetries: boolean;
    isPaused: boolean;
    jobs: { id: string; name: string; data: { args: unknown[] }; attempts: number }[];
  }[];
}

const sendInvoice = defineTask({ name: 'sendInvoice', durable: true }, async (invoiceId: string) => `sent ${invoiceId}`);

describe.skipIf(!hasRedis).each(Object.entries(servers))('%s: the dashboard at /background/queues, next to the live view', (_framework, start) => {
  const redis = redisForSuite();

  let app: DependencyContainer;
  let backend: DurableBackend;
  let queueName: string;
  let server: Mounted | undefined;

  /** A fresh application and queue, a durable job in it (no worker: it stays queued), and a server. */
  async function setUp(readOnly?: boolean): Promise<{ jobId: string }> {
    queueName = `dashboard-${randomUUID()}`;
    app = freshApp({ logger: captureLogger() });
    backend = useBullMQ(app, { connection: redis.connection, queueName, logger: captureLogger() });
    const handle = app.createChildContainer().resolve(Background).add(sendInvoice, 'inv-1');
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toMatchObject({ status: 'queued' }), { timeout: 5_000, interval: 10 });
    server = await start(backend, readOnly);
    return { jobId: handle.id };
  }

  afterEach(async () => {
    await server?.close();
    server = undefined;
    await shutdown({ container: app });
    await backend.close();
  });

  const get = (path: string, init: RequestInit = {}) => fetch(server!.origin + path, { ...init, headers: { authorization, ...init.headers } });

  it('GET /api/queues: the application\'s queue, its counts, and (for activeQueue) the job, read-only', async () => {
    const { jobId } = await setUp();
    const response = await get(`${dashboardPath}/api/queues?activeQueue=${encodeURIComponent(queueName)}&status=latest&page=1&jobsPerPage=10`);
    expect(response.status).toBe(200);
    const { queues } = (await response.json()) as QueuesAnswer;
    expect(queues).toHaveLength(1);
    const [queue] = queues;
    expect(queue).toMatchObject({ name: queueName, readOnlyMode: true, allowRetries: false, isPaused: false });
    // Every durable job has a priority, so BullMQ keeps a queued one as "prioritized".
    expect(queue!.counts).toMatchObject({ prioritized: 1, active: 0, completed: 0, failed: 0 });
    expect(queue!.jobs).toEqual([expect.objectContaining({ id: jobId, name: 'sendInvoice', attempts: 0, data: expect.objectContaining({ args: ['inv-1'] }) as unknown })]);
  });

  it('the page is served at the mount point, with its base there, and its assets below it', async () => {
    await setUp();
    for (const path of [dashboardPath, `${dashboardPath}/`, `${dashboardPath}/queue/${encodeURIComponent(queueName)}`]) {
      const page = await get(path);
      expect(page.status, path).toBe(200);
      expect(page.headers.get('content-type'), path).toMatch(/^text\/html/);
      const html = await page.text();
      expect(html, path).toContain(`<base href="${dashboardPath}/" />`);
      expect(html, path).toContain('<title>Durable tasks</title>');
      // The link back to the live view, in bull-board's UI settings.
      expect(html, path).toContain('"miscLinks":[{"text":"Live view","url":"/background"}]');
    }
    const html = await (await get(`${dashboardPath}/`)).text();
    const scripts = [...html.matchAll(/<script defer src="(static\/js\/[^"]+\.js)">/g)].map((match) => match[1]!);
    expect(scripts.length).toBeGreaterThan(0);
    for (const script of scripts) {
      const asset = await get(`${dashboardPath}/${script}`);
      expect(asset.status, script).toBe(200);
      expect(asset.headers.get('content-type'), script).toMatch(/javascript/);
      await asset.arrayBuffer();
    }
  });

  it('read-only (the default): any method but GET and HEAD is a 405 before bull-board sees it; the queue is untouched', async () => {
    await setUp();
    for (const [method, path] of [
      ['PUT', `/api/queues/${encodeURIComponent(queueName)}/pause`],
      ['PUT', '/api/queues/pause'],
      ['POST', `/api/queues/${encodeURIComponent(queueName)}/add`],
      ['DELETE', '/'],
    ] as const) {
      const response = await get(dashboardPath + path, { method, headers: { 'content-type': 'application/json' }, body: '{"name":"x","data":{}}' });
      expect(response.status, `${method} ${path}`).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD');
      expect(await response.json()).toEqual({
        error: { status: 405, message: `the dashboard is read-only: ${method} is not allowed, only GET and HEAD (durableDashboard({ readOnly: false }) allows changes)` },
      });
    }
    expect(await backend.queue.isPaused()).toBe(false);
    expect(await backend.queue.count()).toBe(1);
    expect((await get(dashboardPath, { method: 'HEAD' })).status).toBe(200);
  });

  it("readOnly: false: bull-board's controls work (PUT pause pauses the queue)", async () => {
    await setUp(false);
    const { queues } = (await (await get(`${dashboardPath}/api/queues`)).json()) as QueuesAnswer;
    expect(queues[0]).toMatchObject({ readOnlyMode: false, allowRetries: true });
    const response = await get(`${dashboardPath}/api/queues/${encodeURIComponent(queueName)}/pause`, { method: 'PUT' });
    expect(response.status).toBe(200);
    expect(await backend.queue.isPaused()).toBe(true);
  });

  it('behind the login, as the live view: the page and the API are 401 without it', async () => {
    await setUp();
    for (const path of [dashboardPath, `${dashboardPath}/api/queues`, `${dashboardPath}/static/favicon-32x32.png`]) {
      expect((await fetch(server!.origin + path)).status, path).toBe(401);
    }
  });

  it("the live view's page links to the dashboard; the live view's API is still served next to it", async () => {
    await setUp();
    const page = await get('/background/');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(`<a id="dashboard" href="${dashboardPath}">Durable jobs (dashboard)</a>`);
    // In-process tasks only: the durable job is the dashboard's to show.
    const stats = await get('/background/api/stats');
    expect(stats.status).toBe(200);
    expect(await stats.json()).toMatchObject({ total: 0 });
  });
});

describe.skipIf(!hasRedis)('hono: a basePath given with its trailing slash, and mounted at it', () => {
  const redis = redisForSuite();

  it('serves the page at that path (no redirect to the path without the slash, which the mount does not reach), with its API and assets below it', async () => {
    const app = freshApp({ logger: captureLogger() });
    const backend = useBullMQ(app, { connection: redis.connection, queueName: `dashboard-${randomUUID()}`, logger: captureLogger() });
    const hono = new Hono();
    hono.route('/admin/queues/', honoDashboard({ backend, basePath: '/admin/queues/' }));
    hono.route('/admin', honoLiveView({ dashboardPath: '/admin/queues/' }));
    const listening = deferred<number>();
    const server = serve({ fetch: hono.fetch, port: 0, hostname: '127.0.0.1' }, (info) => listening.resolve(info.port));
    const origin = `http://127.0.0.1:${await listening.promise}`;
    try {
      const page = await fetch(`${origin}/admin/queues/`, { redirect: 'manual' });
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<base href="/admin/queues/" />');
      const script = /<script defer src="(static\/js\/[^"]+\.js)">/.exec(html)![1]!;
      expect((await fetch(`${origin}/admin/queues/${script}`)).status).toBe(200);
      expect((await fetch(`${origin}/admin/queues/api/queues`)).status).toBe(200);
    } finally {
      await closeNodeServer(server as Server);
      await shutdown({ container: app });
      await backend.close();
    }
  });
});

describe('options', () => {
  const queue = (name: string) => ({ name, getJobCounts: () => undefined, getJobs: () => undefined }) as unknown as DashboardQueue;
  const backend = { queue: queue('app') } as unknown as DurableBackend;
  const at = 'durableDashboard(options)';

  it.each([
    [undefined, `${at}: options must be an object with backend or queues, got undefined (undefined)`],
    [{}, `${at}: options.backend (what useBullMQ() returned) or options.queues (BullMQ queues) is required`],
    [{ backend, queues: [queue('a')] }, `${at}: give options.backend or options.queues, not both`],
    [{ backend: {} }, `${at}: options.backend must be the durable backend useBullMQ() returned, got an object`],
    [{ backend: 'redis://x' }, `${at}: options.backend must be the durable backend useBullMQ() returned, got "redis://x" (string)`],
    [{ queues: [] }, `${at}: options.queues must be a non-empty array of BullMQ queues, got an empty array`],
    [{ queues: queue('a') }, `${at}: options.queues must be a non-empty array of BullMQ queues, got an object`],
    [{ queues: [queue('a'), 'b'] }, `${at}: options.queues[1] must be a BullMQ Queue, got "b" (string)`],
    [{ queues: [queue('a'), queue('a')] }, `${at}: options.queues[1] is a second queue named "a"; bull-board tells queues apart by name`],
    [{ backend, readOnly: 'yes' }, `${at}: options.readOnly must be a boolean, got "yes" (string)`],
    [{ backend, liveViewPath: 'background' }, `${at}: options.liveViewPath must be an absolute path (such as "/background/queues") or an http(s) URL, got "background" (string)`],
    [{ backend, liveViewPath: '//evil.example' }, `${at}: options.liveViewPath must be an absolute path (such as "/background/queues") or an http(s) URL, got "//evil.example" (string), which browsers take for a link to another host`],
    [{ backend, liveViewPath: '/\\evil.example' }, `${at}: options.liveViewPath must be an absolute path (such as "/background/queues") or an http(s) URL, got "/\\\\evil.example" (string), which browsers take for a link to another host`],
    [{ backend, liveViewPath: 'javascript:alert(1)' }, `${at}: options.liveViewPath must be an absolute path (such as "/background/queues") or an http(s) URL, got "javascript:alert(1)" (string)`],
    [{ backend, uiConfig: [] }, `${at}: options.uiConfig must be an object (bull-board's UIConfig), got an empty array`],
    [{ backend, readonly: false }, `${at}: options.readonly is not a known option; known options: backend, queues, readOnly, liveViewPath, uiConfig`],
  ])('%j: TypeError', (options, message) => {
    expect(() => resolveDashboardOptions(options as DurableDashboardOptions)).toThrow(new TypeError(message));
  });

  it.each([
    ['express', (options: object) => expressDashboard(options as never)],
    ['hono', (options: object) => honoDashboard(options as never)],
  ])('%s: reads each option once, basePath too', (_name, make) => {
    let reads = 0;
    // (This fake backend's queue is no BullMQ queue: bull-board refuses it once the options are read.)
    expect(() =>
      make({
        backend,
        get basePath() {
          reads++;
          return '/queues/';
        },
      }),
    ).toThrow("You've used the BullMQ adapter with a non-BullMQ queue");
    expect(reads).toBe(1);
  });

  it('defaults: read-only, titled "Durable tasks"; uiConfig merged over them; the live view link first in miscLinks', () => {
    expect(resolveDashboardOptions({ backend })).toEqual({ queues: [backend.queue], readOnly: true, uiConfig: { boardTitle: 'Durable tasks' }, given: { backend } });
    const other = { text: 'Docs', url: 'https://example.com' };
    expect(resolveDashboardOptions({ queues: [queue('a'), queue('b')], readOnly: false, liveViewPath: 'https://ops.example.com/background', uiConfig: { boardTitle: 'Jobs', miscLinks: [other] } })).toEqual({
      queues: [queue('a'), queue('b')].map((q) => expect.objectContaining({ name: q.name }) as unknown),
      readOnly: false,
      uiConfig: { boardTitle: 'Jobs', miscLinks: [{ text: 'Live view', url: 'https://ops.example.com/background' }, other] },
      given: expect.objectContaining({ readOnly: false }) as unknown,
    });
  });

  it.each([
    ['express', (basePath: unknown) => expressDashboard({ backend, basePath } as never)],
    ['hono', (basePath: unknown) => honoDashboard({ backend, basePath } as never)],
  ])('%s: basePath is required, an absolute path', (_name, make) => {
    for (const [basePath, got] of [
      [undefined, 'undefined (undefined)'],
      ['queues', '"queues" (string)'],
      ['/a b', '"/a b" (string)'],
      ['//x', '"//x" (string)'],
    ] as const) {
      expect(() => make(basePath)).toThrow(
        new TypeError(`${at}: options.basePath must be the path the dashboard is mounted at, starting with "/" (such as "/background/queues"), got ${got}`),
      );
    }
    expect(() => make({})).toThrow(TypeError);
  });

  it.each([
    ['express', (options: object) => expressDashboard({ backend, basePath: '/queues', ...options })],
    ['hono', (options: object) => honoDashboard({ backend, basePath: '/queues', ...options })],
  ])('%s: an unknown option is refused, naming the known ones', (_name, make) => {
    expect(() => make({ readonly: false })).toThrow(new TypeError(`${at}: options.readonly is not a known option; known options: backend, queues, readOnly, liveViewPath, uiConfig, basePath`));
    expect(() => make({ prefix: '/queues' })).toThrow(new TypeError(`${at}: options.prefix is not a known option; known options: backend, queues, readOnly, liveViewPath, uiConfig, basePath`));
  });

  it.each([
    ['a readOnly that is not a boolean', { readOnly: 1 }, `${at}: options.readOnly must be a boolean, got 1 (number)`],
    ['a misspelt readOnly', { readonly: false }, `${at}: options.readonly is not a known option; known options: backend, queues, readOnly, liveViewPath, uiConfig, basePath, prefix, logLevel, logSerializers`],
  ])('fastify: %s rejects register() and ready() with the TypeError', async (_what, options, message) => {
    const app = Fastify();
    await expect(app.register(fastifyDashboard, { prefix: '/queues', backend, ...options } as never).ready()).rejects.toThrow(new TypeError(message));
  });

  it("fastify: a route of the application's at the dashboard's paths rejects register() and ready() with Fastify's error (it crashed the process)", async () => {
    const app = Fastify();
    app.post('/queues/*', () => 'the application\'s own');
    await expect(app.register(fastifyDashboard, { prefix: '/queues', backend }).ready()).rejects.toMatchObject({ code: 'FST_ERR_DUPLICATED_ROUTE' });
  });

  it('liveView({ dashboardPath }): checked as a link; escaped into the page; no link without it', async () => {
    expect(() => resolveLiveViewOptions({ dashboardPath: 'queues' })).toThrow(
      new TypeError('liveView(options): options.dashboardPath must be an absolute path (such as "/background/queues") or an http(s) URL, got "queues" (string)'),
    );
    expect(() => resolveLiveViewOptions({ dashboardPath: 42 as never })).toThrow(/options\.dashboardPath must be .*, got 42 \(number\)$/);
    const page = async (options: Parameters<typeof resolveLiveViewOptions>[0]) =>
      (await createLiveView(resolveLiveViewOptions({ container: freshApp(), ...options }))({ method: 'GET', path: '/', query: new URLSearchParams() })).body;
    expect(await page({ dashboardPath: '/q?a=1&b="2"' })).toContain('<a id="dashboard" href="/q?a=1&#38;b=&#34;2&#34;">');
    expect(await page({})).not.toContain('id="dashboard"');
  });
});

describe('entry points', () => {
  /** Every module a source file loads, following relative imports (type-only ones too), as bare package names. */
  async function packagesLoadedBy(file: URL): Promise<Set<string>> {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const visit = async (url: URL): Promise<void> => {
      if (seen.has(url.href)) return;
      seen.add(url.href);
      const source = await readFile(url, 'utf8');
      for (const [, from, bare] of source.matchAll(/^\s*(?:import|export)\b[^'";]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)) {
        const spec = from ?? bare;
        if (spec === undefined) continue;
        if (spec.startsWith('.')) await visit(new URL(spec.replace(/\.js$/, '.ts'), url));
        else packages.add(spec);
      }
    };
    await visit(file);
    return packages;
  }

  it.each(['index.ts', 'adapters/express.ts', 'adapters/fastify.ts', 'adapters/hono.ts', 'adapters/bullmq.ts'])('src/%s loads no bull-board package', async (file) => {
    const packages = [...(await packagesLoadedBy(new URL(`../../src/${file}`, import.meta.url)))];
    expect(packages.length).toBeGreaterThan(0);
    expect(packages.filter((name) => name.startsWith('@bull-board/'))).toEqual([]);
  });

  it.each([
    ['express', ['@bull-board/api', '@bull-board/express']],
    ['fastify', ['@bull-board/api', '@bull-board/fastify']],
    ['hono', ['@bull-board/api', '@bull-board/hono']],
  ])('src/adapters/%s-dashboard.ts loads bull-board, for its own framework only', async (framework, expected) => {
    const packages = [...(await packagesLoadedBy(new URL(`../../src/adapters/${framework}-dashboard.ts`, import.meta.url)))];
    const names = new Set(packages.filter((name) => name.startsWith('@bull-board/')).map((name) => name.split('/').slice(0, 2).join('/')));
    expect([...names].sort()).toEqual(expected);
  });

  it('package.json exports ./express/dashboard, ./fastify/dashboard and ./hono/dashboard, each with its types', async () => {
    const { exports } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { exports: Record<string, unknown> };
    for (const framework of ['express', 'fastify', 'hono']) {
      expect(exports[`./${framework}/dashboard`]).toEqual({ types: `./dist/adapters/${framework}-dashboard.d.ts`, default: `./dist/adapters/${framework}-dashboard.js` });
    }
  });
});
