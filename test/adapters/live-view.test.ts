/**
 * The live view's JSON API (and its page, as served) through each framework, over real HTTP on
 * 127.0.0.1: status codes, shapes, the 400/404/405 answers, a task's progress while it runs, and
 * paths every framework reads alike (empty segments, absolute-form targets). Tasks are held on
 * gates; nothing sleeps. Then the framework-free core on its own, tasks it must show whatever
 * they hold, and the links it accepts.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import Fastify from 'fastify';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { liveView as expressLiveView } from '../../src/adapters/express.js';
import { liveView as fastifyLiveView } from '../../src/adapters/fastify.js';
import { liveView as honoLiveView } from '../../src/adapters/hono.js';
import { createLiveView, pathBelow, resolveLiveViewOptions, splitTarget, type LiveViewResponse } from '../../src/adapters/live-view.js';
import { ApplicationBackground, Background, defineTask, shutdown, TaskContext, type TaskHandle } from '../../src/index.js';
import { oddProgress } from '../fixtures/worker-tasks.js';
import { captureLogger, deferred, failureOf, freshApp, watchProcessErrors, type Deferred } from '../helpers.js';
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

/**
 * One GET sent on a raw socket, with `target` in the request line as it is (an absolute-form
 * `http://host/path`, which fetch() never sends): the status and the body, de-chunked.
 */
async function rawGet(target: string): Promise<{ status: number; body: string }> {
  const { hostname, port, host } = new URL(target);
  const socket = connect(Number(port), hostname);
  socket.end(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: ${authorization}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString('utf8');
  const [head = '', ...rest] = text.split('\r\n\r\n');
  let body = rest.join('\r\n\r\n');
  if (/^transfer-encoding: *chunked/im.test(head)) {
    let decoded = '';
    for (let at = 0; ; ) {
      const end = body.indexOf('\r\n', at);
      const size = parseInt(body.slice(at, end), 16);
      if (!(size > 0)) break;
      decoded += body.slice(end + 2, end + 2 + size);
      at = end + 2 + size + 2;
    }
    body = decoded;
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), body };
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
    // Leading zeros are read past, however many.
    for (const given of ['0002', '00002', '0000000002']) expect((await get(`/api/tasks?limit=${given}`)).body).toMatchObject({ count: 4, limit: 2 });
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
    ['limit=0000000501', 'limit', 'limit must be an integer from 1 to 500, got "0000000501"'],
    ['limit=1e2', 'limit', 'limit must be an integer from 1 to 500, got "1e2"'],
    ['limit=-5', 'limit', 'limit must be an integer from 1 to 500, got "-5"'],
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

  it('empty path segments do not count, as on every framework: //api//stats is /api/stats', async () => {
    const { running } = await addTasks();
    const stats = bg.stats({ application: true });
    for (const path of ['//api//stats', '/api//stats', '/api/stats/']) {
      expect({ path, ...(await get(path)) }).toMatchObject({ path, status: 200, body: stats });
    }
    expect(await get(`/api/tasks//${running.id}`)).toMatchObject({ status: 200, body: { id: running.id, name: 'importRows', status: 'running' } });
    expect(await get('//api//tasks?status=running')).toMatchObject({ status: 200, body: { count: 1, tasks: [{ id: running.id }] } });
  });

  it('an absolute-form request target (GET http://host/background/api/stats HTTP/1.1, as a proxy may send it) is served by its path', async () => {
    const { running } = await addTasks();
    const stats = await rawGet(`${server.base}/api/stats`);
    expect(stats.status).toBe(200);
    expect(JSON.parse(stats.body)).toEqual(bg.stats({ application: true }));
    const task = await rawGet(`${server.base}/api/tasks/${running.id}?ignored=1`);
    expect({ status: task.status, body: JSON.parse(task.body) as unknown }).toMatchObject({ status: 200, body: { id: running.id, status: 'running' } });
    const list = await rawGet(`${server.base}/api/tasks?status=running&limit=1`);
    expect({ status: list.status, body: JSON.parse(list.body) as unknown }).toMatchObject({ status: 200, body: { count: 1, limit: 1, tasks: [{ id: running.id }] } });
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
    expect(() => make(new Map() as never)).toThrow(new TypeError('liveView(options): options must be an object, got an instance of Map'));
    // requestScope()'s name for it
    expect(() => make({ parent: freshApp() } as never)).toThrow(new TypeError('liveView(options): options.parent is not a known option; known options: container, dashboardPath'));
    // Fastify's own, which mean nothing here
    expect(() => make({ prefix: '/background' } as never)).toThrow(new TypeError('liveView(options): options.prefix is not a known option; known options: container, dashboardPath'));
  });

  it.each([
    ['a container that is not one', { container: {} }, 'options.container must be a tsyringe container, got an object'],
    ["requestScope()'s parent for container", { parent: freshApp() }, 'options.parent is not a known option; known options: container, dashboardPath, prefix, logLevel, logSerializers'],
  ])('fastify: names a wrong option when the application starts: %s', async (_what, options, message) => {
    const app = Fastify();
    await expect(app.register(fastifyLiveView, { prefix: '/background', ...options } as never).ready()).rejects.toThrow(new TypeError(`liveView(options): ${message}`));
  });

  it("fastify: takes Fastify's own register options", async () => {
    const root = freshApp();
    const app = Fastify();
    await app.register(fastifyLiveView, { prefix: '/background', logLevel: 'warn', logSerializers: {}, container: root });
    expect((await app.inject('/background/api/stats')).statusCode).toBe(200);
    await app.close();
    await shutdown({ container: root });
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

  it.each([
    ['/api/tasks?status=running', '/api/tasks', 'status=running'],
    ['/api/stats', '/api/stats', ''],
    ['//api//stats', '//api//stats', ''], // a path, not a host: only a scheme starts an absolute-form target
    ['http://127.0.0.1:3000/background/api/tasks?limit=1', '/background/api/tasks', 'limit=1'],
    ['HTTPS://example.com/a%2Fb', '/a%2Fb', ''],
    ['http://example.com', '/', ''],
    ['http://example.com?limit=1', '/', 'limit=1'],
  ])('splitTarget(%j) is the path %j and the query %j', (target, path, query) => {
    const split = splitTarget(target);
    expect({ path: split.path, query: split.query.toString() }).toEqual({ path, query });
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

describe('tasks the view must show whatever they hold: one task never takes a list down', () => {
  const query = new URLSearchParams();
  const view = (container: DependencyContainer) => createLiveView(resolveLiveViewOptions({ container }));
  const roots: DependencyContainer[] = [];

  afterEach(async () => {
    await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
  });

  function app(): { root: DependencyContainer; bg: Background } {
    const root = freshApp({ logger: captureLogger() });
    roots.push(root);
    return { root, bg: root.resolve(Background) };
  }

  const circular: Record<string, unknown> = {};
  circular.self = circular;

  it.each([
    ['an object that refers to itself', circular, 'an object'],
    ['a bigint', 5n, '5 (bigint)'],
    ['a number', 42, '42 (number)'],
    ['an object', { rows: 3 }, 'an object'],
    ['null', null, 'null'],
  ])('ctx.progress(0.5, %s) is a TypeError naming the task and the value; the view answers', async (_what, message, got) => {
    const { root, bg } = app();
    const reports = defineTask({ name: 'reportsOddly', inject: [TaskContext] }, async (ctx: TaskContext) => {
      ctx.progress(0.5, message as never);
      return 'reported';
    });
    const healthy = bg.add(defineTask({ name: 'healthy' }, async () => 'fine'));
    const odd = bg.add(reports);
    const error = await failureOf(odd.result());
    const text = `progress(fraction, message) in task "reportsOddly" (#${odd.id}): message must be a string or undefined, got ${got}`;
    expect(error).toEqual(new TypeError(text));
    expect(odd.progress).toBeUndefined();
    await healthy.result();
    const answer = await view(root)({ method: 'GET', path: '/api/tasks', query });
    expect({ status: answer.status, body: JSON.parse(answer.body) as unknown }).toMatchObject({
      status: 200,
      body: {
        count: 2,
        tasks: expect.arrayContaining([
          expect.objectContaining({ id: odd.id, status: 'failed', progress: null, error: { name: 'TypeError', message: text } }),
          expect.objectContaining({ id: healthy.id, status: 'succeeded' }),
        ]) as unknown,
      },
    });
  });

  it('in a worker thread too: the message is refused there, before anything crosses', async () => {
    const { root, bg } = app();
    const odd = bg.add(oddProgress);
    const error = await failureOf(odd.result());
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(`progress(fraction, message) in task "oddProgress" (#${odd.id}): message must be a string or undefined, got an object`);
    expect(odd.progress).toBeUndefined();
    const answer = await view(root)({ method: 'GET', path: `/api/tasks/${odd.id}`, query });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ status: 'failed', error: { name: 'TypeError' } });
  });

  it('an error whose message, name or code getter throws: each such field says it could not be read; the other tasks are listed', async () => {
    const { root, bg } = app();
    const throwing = (what: string) => ({
      get() {
        throw new Error(`no ${what} today`);
      },
    });
    const unreadable = bg.add(
      defineTask({ name: 'unreadable' }, async () => {
        throw Object.defineProperties(new Error('hidden'), { message: throwing('message'), name: throwing('name'), code: throwing('code') });
      }),
    );
    const healthy = bg.add(defineTask({ name: 'healthy' }, async () => 'fine'));
    await failureOf(unreadable.result());
    await healthy.result();
    const unreadableShown = {
      id: unreadable.id,
      name: 'unreadable',
      status: 'failed',
      attempt: 1,
      progress: null,
      error: { name: '(its name could not be read: no name today)', message: '(its message could not be read: no message today)' },
    };
    const list = await view(root)({ method: 'GET', path: '/api/tasks', query });
    expect({ status: list.status, body: JSON.parse(list.body) as unknown }).toEqual({
      status: 200,
      body: { count: 2, limit: 50, tasks: expect.arrayContaining([{ id: healthy.id, name: 'healthy', status: 'succeeded', attempt: 1, progress: null, error: null }, unreadableShown]) as unknown },
    });
    const one = await view(root)({ method: 'GET', path: `/api/tasks/${unreadable.id}`, query });
    expect({ status: one.status, body: JSON.parse(one.body) as unknown }).toEqual({ status: 200, body: unreadableShown });
  });

  it('handles that hold what JSON cannot carry, or cannot be read at all: shown as text, or with an error that says so, next to the others', async () => {
    const handle = (id: string, fields: object): TaskHandle => ({ id, name: `task${id}`, status: 'running', attempt: 1, progress: undefined, result: () => new Promise(() => undefined), ...fields }) as never;
    const handles = [
      handle('1', { progress: { fraction: 0.5, message: circular } }),
      handle('2', { progress: { fraction: 0.25, message: 7n } }),
      Object.defineProperty(handle('3', {}), 'progress', throwing()),
      handle('4', { progress: { fraction: 0.75, message: 'rows 75 of 100' } }),
    ];
    const fake = { list: () => handles, get: (id: string) => handles.find((h) => h.id === id), stats: () => ({}) };
    const container = { resolve: (token: unknown) => (token === ApplicationBackground ? fake : undefined) } as never;
    const answer = await view(container)({ method: 'GET', path: '/api/tasks', query });
    const shown = (id: string, fields: object) => ({ id, name: `task${id}`, status: 'running', attempt: 1, progress: null, error: null, ...fields });
    expect({ status: answer.status, body: JSON.parse(answer.body) as unknown }).toEqual({
      status: 200,
      body: {
        count: 4,
        limit: 50,
        tasks: [
          shown('1', { progress: { fraction: 0.5, message: '[object Object]' } }),
          shown('2', { progress: { fraction: 0.25, message: '7' } }),
          shown('3', { error: { name: 'Error', message: 'the live view could not read this task: progress is write-only here' } }),
          shown('4', { progress: { fraction: 0.75, message: 'rows 75 of 100' } }),
        ],
      },
    });

    function throwing(): PropertyDescriptor {
      return {
        get() {
          throw new Error('progress is write-only here');
        },
      };
    }
  });
});

describe('dashboardPath: a link on this site or an http(s) URL', () => {
  const at = 'liveView(options): options.dashboardPath';
  const refused = (value: string) => `${at} must be an absolute path (such as "/background/queues") or an http(s) URL, got ${JSON.stringify(value)} (string)`;

  it.each([
    ['/\\evil.example/x', 'which browsers take for a link to another host'],
    ['/\\\\evil.example', 'which browsers take for a link to another host'],
    ['//evil.example/x', 'which browsers take for a link to another host'],
    ['/a b', 'which has whitespace or a control character (U+0020) in it'],
    ['/a\tb', 'which has whitespace or a control character (U+0009) in it'],
    ['/a\u00a0b', 'which has whitespace or a control character (U+00A0) in it'],
    ['/a\u2028b', 'which has whitespace or a control character (U+2028) in it'],
    ['/a\u3000b', 'which has whitespace or a control character (U+3000) in it'],
    ['/a\ufeffb', 'which has whitespace or a control character (U+FEFF) in it'],
    ['/a\u0085b', 'which has whitespace or a control character (U+0085) in it'],
    ['/a\u009bb', 'which has whitespace or a control character (U+009B) in it'],
    ['/a\u007fb', 'which has whitespace or a control character (U+007F) in it'],
    ['https://ops.example.com/\u2029', 'which has whitespace or a control character (U+2029) in it'],
  ])('%j is refused, saying why', (value, why) => {
    expect(() => resolveLiveViewOptions({ dashboardPath: value })).toThrow(new TypeError(`${refused(value)}, ${why}`));
  });

  it.each(['/', '/background/queues', '/a\\b', '/q?a=1&b="2"', 'https://ops.example.com/background', 'HTTP://ops.example.com'])('%j is accepted', (value) => {
    expect(resolveLiveViewOptions({ dashboardPath: value }).dashboardPath).toBe(value);
  });
});
