/**
 * The live view's JSON API (and its page, as served) through each framework, over real HTTP on
 * 127.0.0.1: status codes, shapes, the 400/404/405 answers, and a task's progress while it runs.
 * Tasks are held on gates; nothing sleeps. Then the framework-free core on its own.
 */
import Fastify from 'fastify';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { liveView as expressLiveView } from '../../src/adapters/express.js';
import { liveView as fastifyLiveView } from '../../src/adapters/fastify.js';
import { liveView as honoLiveView } from '../../src/adapters/hono.js';
import { createLiveView, pathBelow, resolveLiveViewOptions, type LiveViewResponse } from '../../src/adapters/live-view.js';
import { Background, defineTask, shutdown, TaskContext, type TaskHandle } from '../../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors, type Deferred } from '../helpers.js';
import { authorization, liveViewServers, type LiveViewServer } from './live-view-servers.js';

watchProcessErrors();

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** Held tasks: `importRows` reports 0.25, waits for `step`, reports 0.75, waits for `finish`. */
interface Held {
  step: Deferred;
  finish: Deferred;
  reported: Deferred<number>[];
}

describe.each(Object.entries(liveViewServers))('%s: the live view mounted at /background', (_framework, start) => {
  let app: DependencyContainer;
  let bg: Background;
  let server: LiveViewServer;
  let held: Held;

  const importRows = defineTask({ name: 'importRows', inject: [TaskContext] }, async (ctx: TaskContext) => {
    ctx.progress(0.25, 'rows 25 of 100');
    held.reported[0]!.resolve(ctx.attempt);
    await held.step.promise;
    ctx.progress(0.75, 'rows 75 of 100');
    held.reported[1]!.resolve(ctx.attempt);
    await held.finish.promise;
    return 'imported';
  });
  const sendDigest = defineTask({ name: 'sendDigest' }, async () => 'sent');
  const chargeCard = defineTask({ name: 'chargeCard' }, async () => {
    throw Object.assign(new Error('card declined'), { code: 'E_DECLINED', cardNumber: '4242 4242 4242 4242' });
  });

  async function get(path: string, init: RequestInit = {}): Promise<Answer> {
    const response = await fetch(server.base + path, { ...init, headers: { authorization, ...init.headers } });
    const text = await response.text();
    const isJson = response.headers.get('content-type')?.startsWith('application/json') === true;
    return { status: response.status, headers: response.headers, body: isJson && text !== '' ? JSON.parse(text) : text };
  }

  /** One succeeded, one failed, then importRows running (at 0.25) and sendDigest queued behind it (concurrency 1). */
  async function addTasks(): Promise<{ succeeded: TaskHandle; failed: TaskHandle; running: TaskHandle; queued: TaskHandle }> {
    const succeeded = bg.add(sendDigest);
    await succeeded.result();
    const failed = bg.add(chargeCard);
    await failed.result().catch(() => undefined);
    const running = bg.add(importRows);
    const queued = app.createChildContainer().resolve(Background).add(sendDigest); // another scope's: the view shows the application's
    await held.reported[0]!.promise;
    return { succeeded, failed, running, queued };
  }

  beforeEach(async () => {
    held = { step: deferred(), finish: deferred(), reported: [deferred<number>(), deferred<number>()] };
    app = freshApp({ concurrency: 1, logger: captureLogger() });
    bg = app.resolve(Background);
    server = await start(app);
  });

  afterEach(async () => {
    held.step.resolve();
    held.finish.resolve();
    await server.close();
    await shutdown({ container: app });
  });

  it('GET /api/stats: the whole application counts, as bg.stats({ application: true }) gives them', async () => {
    await addTasks();
    const answer = await get('/api/stats');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(answer.headers.get('cache-control')).toBe('no-store');
    expect(answer.body).toEqual({
      total: 4,
      queued: 1,
      running: 1,
      byStatus: { queued: 1, delayed: 0, running: 1, retrying: 0, succeeded: 1, failed: 1, cancelled: 0, timedOut: 0, skipped: 0, abandoned: 0 },
    });
    expect(answer.body).toEqual(bg.stats({ application: true }));
  });

  it('GET /api/tasks: live tasks first, then finished ones (newest first); filtered by status; bounded by limit', async () => {
    const { succeeded, failed, running, queued } = await addTasks();
    const task = (handle: TaskHandle, fields: object) => ({ id: handle.id, name: handle.name, status: handle.status, attempt: handle.attempt, progress: null, error: null, ...fields });

    const live = await get('/api/tasks?status=running,queued&limit=50');
    expect(live.status).toBe(200);
    // Two scopes' tasks: newest first within each scope, the scopes in no promised order.
    expect(live.body).toEqual({
      count: 2,
      limit: 50,
      tasks: expect.arrayContaining([
        task(queued, { status: 'queued', attempt: 0 }),
        task(running, { status: 'running', attempt: 1, progress: { fraction: 0.25, message: 'rows 25 of 100' } }),
      ]) as unknown,
    });
    expect((live.body as { tasks: unknown[] }).tasks).toHaveLength(2);
    expect((await get('/api/tasks?status=running&status=queued')).body).toEqual(live.body); // the parameter may be repeated

    // An error is reduced to name, message and code: not its stack, nor its other fields.
    expect((await get('/api/tasks?status=failed')).body).toEqual({
      count: 1,
      limit: 50,
      tasks: [task(failed, { status: 'failed', error: { name: 'Error', message: 'card declined', code: 'E_DECLINED' } })],
    });

    const all = (await get('/api/tasks')).body as { count: number; tasks: { id: string }[] };
    expect(all.tasks.map((t) => t.id).slice(2)).toEqual([failed.id, succeeded.id]);
    expect(all.tasks.map((t) => t.id).slice(0, 2).sort()).toEqual([queued.id, running.id].sort());
    expect((await get('/api/tasks?limit=1')).body).toMatchObject({ count: 4, limit: 1, tasks: [{ id: all.tasks[0]!.id }] });
  });

  it("GET /api/tasks/:id: a task's progress while it runs, then how it ended", async () => {
    const { running } = await addTasks();
    expect((await get(`/api/tasks/${running.id}`)).body).toEqual({
      id: running.id,
      name: 'importRows',
      status: 'running',
      attempt: 1,
      progress: { fraction: 0.25, message: 'rows 25 of 100' },
      error: null,
    });

    held.step.resolve();
    await held.reported[1]!.promise;
    expect((await get(`/api/tasks/${running.id}`)).body).toMatchObject({ status: 'running', progress: { fraction: 0.75, message: 'rows 75 of 100' } });

    held.finish.resolve();
    await running.result();
    expect((await get(`/api/tasks/${running.id}`)).body).toMatchObject({ status: 'succeeded', progress: { fraction: 0.75, message: 'rows 75 of 100' }, error: null });
  });

  it("GET /api/tasks/:id: a cancelled task's error carries its stable code", async () => {
    const { queued } = await addTasks();
    queued.cancel('not needed');
    expect((await get(`/api/tasks/${queued.id}`)).body).toEqual({
      id: queued.id,
      name: 'sendDigest',
      status: 'cancelled',
      attempt: 0,
      progress: null,
      error: { name: 'TaskCancelledError', message: `Task "sendDigest" (#${queued.id}) was cancelled`, code: 'ERR_TASK_CANCELLED' },
    });
  });

  it('404 with a JSON error: a task id it does not know (decoded), a route it does not have', async () => {
    expect(await get('/api/tasks/no%2Fsuch')).toMatchObject({
      status: 404,
      body: { error: { status: 404, message: 'no task with id "no/such": it never existed, or it finished and is no longer on record' } },
    });
    expect(await get('/api/nothing')).toMatchObject({
      status: 404,
      body: { error: { status: 404, message: 'the live view has no route /api/nothing; it serves /, /api/stats, /api/tasks and /api/tasks/:id' } },
    });
  });

  it.each([
    ['limit=0', 'limit', 'limit must be an integer from 1 to 500, got "0"'],
    ['limit=501', 'limit', 'limit must be an integer from 1 to 500, got "501"'],
    ['limit=ten', 'limit', 'limit must be an integer from 1 to 500, got "ten"'],
    ['limit=', 'limit', 'limit must be an integer from 1 to 500, got ""'],
    ['status=runing', 'status', 'status must be a comma-separated list of statuses (queued, delayed, running, retrying, succeeded, failed, cancelled, timedOut, skipped, abandoned), got "runing"'],
    ['status=running,', 'status', 'status must be a comma-separated list of statuses (queued, delayed, running, retrying, succeeded, failed, cancelled, timedOut, skipped, abandoned), got "running,"'],
  ])('400 with a JSON error naming the parameter: ?%s', async (query, parameter, message) => {
    const answer = await get(`/api/tasks?${query}`);
    expect(answer).toMatchObject({ status: 400, body: { error: { status: 400, parameter, message } } });
    expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8');
  });

  it.each(['POST', 'PUT', 'PATCH', 'DELETE'])('405 for %s, whatever the body: the view is read-only', async (method) => {
    const { running } = await addTasks();
    const answer = await get(`/api/tasks/${running.id}`, { method, headers: { 'content-type': 'application/json' }, body: '{"status":"cancelled"' });
    expect(answer).toMatchObject({ status: 405, body: { error: { status: 405, message: `the live view is read-only: ${method} is not allowed, only GET and HEAD` } } });
    expect(answer.headers.get('allow')).toBe('GET, HEAD');
    expect(running.status).toBe('running');
  });

  it('GET / is the page, with or without the trailing slash, under a CSP that allows only its own script and style; HEAD answers without a body', async () => {
    for (const path of ['', '/']) {
      const answer = await get(path);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(answer.body).toContain('<title>Background tasks</title>');
      expect(answer.headers.get('content-security-policy')).toMatch(/^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self';/);
    }
    const head = await get('/api/stats', { method: 'HEAD' });
    expect(head).toMatchObject({ status: 200, body: '' });
  });

  it('mounted behind the application’s authentication, it answers nothing without it', async () => {
    for (const path of ['', '/', '/api/stats', '/api/tasks/1']) expect((await fetch(server.base + path)).status, path).toBe(401);
  });

  it("without options, shows the global container's application", async () => {
    const other = await start(undefined);
    try {
      const gate = deferred();
      const handle = globalContainer.resolve(Background).add(async function globalTask() {
        await gate.promise;
      });
      const response = await fetch(`${other.base}/api/tasks/${handle.id}`, { headers: { authorization } });
      expect(await response.json()).toMatchObject({ id: handle.id, name: 'globalTask', status: 'running' });
      expect((await fetch(`${server.base}/api/tasks/${handle.id}`, { headers: { authorization } })).status).toBe(404); // not the test's application
      gate.resolve();
      await handle.result();
    } finally {
      await other.close();
    }
  });
});

describe('liveView(options)', () => {
  it.each([
    ['express', (options: never) => expressLiveView(options)],
    ['hono', (options: never) => honoLiveView(options)],
  ])('%s: names a wrong option', (_name, make) => {
    expect(() => make({ container: 42 } as never)).toThrow(new TypeError('liveView(options): options.container must be a tsyringe container, got 42 (number)'));
    expect(() => make('yes' as never)).toThrow(new TypeError('liveView(options): options must be an object, got "yes" (string)'));
  });

  it('fastify: names a wrong option when the application starts', async () => {
    const app = Fastify();
    await expect(app.register(fastifyLiveView, { prefix: '/background', container: {} as never }).ready()).rejects.toThrow(
      new TypeError('liveView(options): options.container must be a tsyringe container, got an object'),
    );
  });
});

describe('the live view without a framework', () => {
  const handler = (container: DependencyContainer) => createLiveView(resolveLiveViewOptions({ container }));
  const query = new URLSearchParams();
  const body = (answer: LiveViewResponse): unknown => JSON.parse(answer.body);

  it('a malformed percent-encoding in an id is a 400 naming it (Fastify answers this one itself, before the view)', async () => {
    const answer = await handler(freshApp())({ method: 'GET', path: '/api/tasks/%E0%A4%A', query });
    expect(answer.status).toBe(400);
    expect(body(answer)).toEqual({ error: { status: 400, parameter: 'id', message: 'id must be a percent-encoded task id, got "%E0%A4%A"' } });
  });

  it('a failure to read the tasks is a 500 with the error reduced to name, message and code; it never rejects', async () => {
    const broken = globalContainer.createChildContainer();
    await broken.dispose();
    const answer = await handler(broken)({ method: 'GET', path: '/api/stats', query });
    expect(answer.status).toBe(500);
    expect(body(answer)).toEqual({
      error: { status: 500, message: 'the live view could not read the tasks', cause: { name: 'Error', message: expect.stringMatching(/disposed/i) as unknown } },
    });
  });

  it('each response is its own: an adapter may change its headers', async () => {
    const view = handler(freshApp());
    const first = await view({ method: 'GET', path: '/', query });
    (first.headers as Record<string, string>)['x-changed'] = 'yes';
    expect((await view({ method: 'GET', path: '/', query })).headers).not.toHaveProperty('x-changed');
  });

  it.each([
    ['/background', '/background', '/'],
    ['/background/', '/background', '/'],
    ['/background/api/tasks/42', '/background', '/api/tasks/42'],
    ['/t/acme/background/api/stats', '/t/:tenant/background', '/api/stats'],
    ['/api/stats', '', '/api/stats'],
    ['/api/stats', '/', '/api/stats'],
    ['//background//api/stats', '/background', '/api/stats'],
  ])('pathBelow(%j, %j) is %j', (pathname, mount, below) => {
    expect(pathBelow(pathname, mount)).toBe(below);
  });

  it('fastify with ignoreDuplicateSlashes: a path Fastify routes to the view with doubled slashes is served', async () => {
    const app = Fastify({ routerOptions: { ignoreDuplicateSlashes: true } } as never);
    await app.register(fastifyLiveView, { prefix: '/background', container: freshApp() });
    try {
      for (const url of ['/background/api/stats', '//background/api/stats', '/background//api/stats']) {
        expect({ url, status: (await app.inject({ url })).statusCode }).toEqual({ url, status: 200 });
      }
    } finally {
      await app.close();
    }
  });
});
