/**
 * gracefulShutdown(): a real http.Server on 127.0.0.1 (port 0), real requests, an injected
 * exit, signals emitted with process.emit() only while the test holds every listener of them.
 * Gates order every step; the only waits on the clock are the deadlines under test.
 */
import { once } from 'node:events';
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { container, Lifecycle, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Background, BackgroundDisposedError, BackgroundOptions, disposeScope, gracefulShutdown } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors, type Deferred } from './helpers.js';

watchProcessErrors();

// Nothing else in this process may react to the signals the tests emit, and the tests' listeners
// must all be gone afterwards: each test runs with the signals' listeners set aside.
const signals = ['SIGTERM', 'SIGINT'] as const;
const setAside = new Map<string, ((...args: unknown[]) => void)[]>();
beforeEach(() => {
  for (const signal of signals) {
    setAside.set(signal, process.listeners(signal) as (() => void)[]);
    for (const listener of process.listeners(signal)) process.off(signal, listener);
  }
});
afterEach(() => {
  const left = signals.map((signal) => process.listenerCount(signal));
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) process.off(signal, listener);
    for (const listener of setAside.get(signal) ?? []) process.on(signal, listener);
  }
  expect(left, 'signal listeners left by the test').toEqual([0, 0]);
});

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

type Route = (req: IncomingMessage, res: ServerResponse, scope: DependencyContainer) => unknown;

/** A fresh application and a server on 127.0.0.1 whose every request gets a scope of it, disposed after the response. */
async function start(route: Route, options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const app = freshApp({ logger, drainTimeoutMs: 5_000, ...options });
  const appBg = app.resolve(Background);
  const server = createServer((req, res) => {
    const scope = app.createChildContainer();
    let disposed = false;
    const dispose = (): void => {
      if (disposed) return;
      disposed = true;
      void disposeScope(scope);
    };
    res.once('finish', dispose).once('close', dispose);
    void Promise.resolve(route(req, res, scope));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { app, appBg, logger, server, port: (server.address() as AddressInfo).port };
}

interface Reply {
  status?: number;
  connection?: string | undefined;
  body?: string;
  error?: string;
}

/** One GET to 127.0.0.1; never rejects: a failure is in `error`. */
function get(port: number, path: string, agent: Agent | false = false): Promise<Reply> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body }));
    });
    req.once('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    req.end();
  });
}

/** Past the 250 ms within which the same signal again is taken as one delivered twice (a launcher forwarding it). */
const pastSameSignalMs = 300;

/** An injected exit: records the codes, and `next` resolves with the first. */
function fakeExit() {
  const first = deferred<number>();
  const exit = vi.fn((code: number) => first.resolve(code));
  return { exit, next: first.promise };
}

const summaryPattern = /^shut down gracefully in \d+ ms: (\d+) request\(s\) finished in flight, (\d+) cut off; (\d+) task\(s\) since the start: (\d+) succeeded, 0 failed, 0 timed out, 0 cancelled, 0 skipped, 0 abandoned$/;

describe('gracefulShutdown(): the sequence', () => {
  it('stops accepting, lets the request in flight finish with Connection: close, then drains the application and the request scopes', async () => {
    const events: string[] = [];
    const hold = deferred();
    const work = deferred();
    const arrived = deferred();
    const h = await start(async (_req, res, scope) => {
      scope.resolve(Background).add(async function requestTask() {
        await work.promise;
        events.push('request task done');
      });
      h.appBg.add(async function appTask() {
        await work.promise;
        events.push('application task done');
      });
      arrived.resolve();
      await hold.promise;
      res.once('finish', () => events.push('response finished'));
      res.end('ok');
    });
    const { exit } = fakeExit();
    const graceful = gracefulShutdown({ server: h.server, container: h.app, signals: [], exit });
    // A schedule is stopped the moment the application's close begins: it marks the drain's start.
    void h.appBg
      .with({ every: 60_000 })
      .add(async function tick() {})
      .result()
      .catch(() => events.push('drain began'));
    const agent = new Agent({ keepAlive: true });
    const reply = get(h.port, '/hold', agent);
    await arrived.promise;

    const serverClosed = once(h.server, 'close');
    const closing = graceful.close();
    events.push('close() called');
    expect(graceful.close()).toBe(closing);
    expect(h.server.listening).toBe(false);
    await expect(get(h.port, '/new')).resolves.toEqual({ error: 'ECONNREFUSED' });
    // The drain waits for the request: the application still takes tasks, its request is still held.
    h.appBg.add(async function addedWhileRequestsFinish() {});
    await nextTurn();
    expect(events).toEqual(['close() called']);

    hold.resolve();
    await expect(reply).resolves.toEqual({ status: 200, connection: 'close', body: 'ok' });
    await serverClosed; // every connection is gone, the keep-alive one included
    expect(events.slice(0, 3)).toEqual(['close() called', 'response finished', 'drain began']);
    expect(() => h.appBg.add(async () => {})).toThrow(BackgroundDisposedError);

    work.resolve();
    const report = await closing;
    expect(events.slice(3).sort()).toEqual(['application task done', 'request task done']);
    expect(report).toMatchObject({
      requests: { finished: 1, cutOff: 0 },
      abandoned: 0,
      exitCode: 0,
      totals: { total: 3, succeeded: 3, abandoned: 0, failed: 0 },
    });
    expect(Object.isFrozen(report)).toBe(true);
    const infos = h.logger.at('info');
    expect(infos).toHaveLength(1);
    expect(infos[0]!.message).toMatch(summaryPattern);
    expect(summaryPattern.exec(infos[0]!.message)!.slice(1).map(Number)).toEqual([1, 0, 3, 3]);
    expect(infos[0]!.fields).toEqual({ durationMs: report.durationMs, requests: { finished: 1, cutOff: 0 }, abandoned: 0, requeued: 0, totals: report.totals, exitCode: 0 });
    expect(h.logger.at('error')).toEqual([]);
    expect(exit).not.toHaveBeenCalled(); // close() never exits: the signal's listener does
    agent.destroy();
  });

  it('a request that arrives on an open connection after the close began is taken and answered, the newest with Connection: close; the connection closes after it', async () => {
    const holds = [deferred(), deferred()];
    const arrivals = [deferred(), deferred()];
    const h = await start(async (req, res) => {
      const i = Number(req.url!.slice(1));
      arrivals[i]!.resolve();
      await holds[i]!.promise;
      res.end(`answer ${i}`);
    });
    const graceful = gracefulShutdown({ server: h.server, container: h.app, signals: [], exit: vi.fn() });
    const socket = connect(h.port, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    const ended = once(socket, 'close');
    socket.write('GET /0 HTTP/1.1\r\nHost: x\r\n\r\n');
    await arrivals[0]!.promise;
    const closing = graceful.close();
    socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\n'); // pipelined on the open connection, after the close began
    await arrivals[1]!.promise;
    holds[0]!.resolve();
    holds[1]!.resolve();
    await ended;
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(2);
    for (const [i, response] of responses.entries()) {
      expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(response.endsWith(`answer ${i}`)).toBe(true);
    }
    // Only the newest response on a connection says so: Node drops what is pipelined behind it.
    expect(responses[0]).not.toMatch(/\r\nConnection: close\r\n/i);
    expect(responses[1]).toMatch(/\r\nConnection: close\r\n/i);
    await expect(closing).resolves.toMatchObject({ requests: { finished: 2, cutOff: 0 }, exitCode: 0 });
  });

  it('requests pipelined behind a slow one whose client then closed its connection hold nothing: the close ends without waiting for requestsTimeoutMs, none counted cut off, exit code 0', async () => {
    const slow = deferred();
    const arrived = deferred();
    let seen = 0;
    const h = await start(async (req, res) => {
      if (++seen === 4) arrived.resolve();
      if (req.url === '/slow') await slow.promise;
      res.end('ok');
    });
    const graceful = gracefulShutdown({ server: h.server, container: h.app, timeoutMs: 10_000, requestsTimeoutMs: 8_000, signals: [], exit: vi.fn() });
    const socket = connect(h.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(['/slow', '/a', '/b', '/c'].map((path) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''));
    await arrived.promise; // the three behind /slow have answered, and wait for its turn
    socket.destroy();
    await once(socket, 'close');
    const startedAt = performance.now();
    const report = await graceful.close();
    slow.resolve();
    expect(performance.now() - startedAt).toBeLessThan(4_000);
    expect(report).toMatchObject({ requests: { finished: 0, cutOff: 0 }, exitCode: 0 });
  });

  it('a request that comes behind a response that told its client Connection: close already, which Node drops, is counted cut off, and holds nothing', async () => {
    const slow = deferred();
    const arrivals = new Map<string, Deferred>([['/slow', deferred()], ['/late1', deferred()], ['/late2', deferred()]]);
    const h = await start(async (req, res) => {
      arrivals.get(req.url!)?.resolve();
      if (req.url === '/slow') await slow.promise;
      res.end(`answer ${req.url}`);
    });
    const graceful = gracefulShutdown({ server: h.server, container: h.app, timeoutMs: 10_000, requestsTimeoutMs: 8_000, signals: [], exit: vi.fn() });
    const socket = connect(h.port, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    socket.on('error', () => undefined);
    const ended = once(socket, 'close');
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await arrivals.get('/slow')!.promise;
    const startedAt = performance.now();
    const closing = graceful.close();
    // Answered at once, behind /slow: it is the newest, told Connection: close, its headers written.
    socket.write('GET /late1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await arrivals.get('/late1')!.promise;
    socket.write('GET /late2 HTTP/1.1\r\nHost: x\r\n\r\n');
    await arrivals.get('/late2')!.promise;
    slow.resolve();
    await ended;
    const report = await closing;
    expect(performance.now() - startedAt).toBeLessThan(4_000);
    expect(received.split(/(?=HTTP\/1\.1 )/).map((response) => response.slice(response.lastIndexOf('\n') + 1))).toEqual(['answer /slow', 'answer /late1']);
    expect(report).toMatchObject({ requests: { finished: 2, cutOff: 1 }, exitCode: 1 });
  });

  it('connections with no request in flight do not hold the close: an idle keep-alive one and one that never sent a request', async () => {
    const h = await start((_req, res) => res.end('ok'));
    const graceful = gracefulShutdown({ server: h.server, container: h.app, signals: [], exit: vi.fn() });
    const agent = new Agent({ keepAlive: true });
    await expect(get(h.port, '/', agent)).resolves.toMatchObject({ status: 200, connection: 'keep-alive' });
    const silent = connect(h.port, '127.0.0.1');
    await once(silent, 'connect');
    const silentClosed = once(silent, 'close');
    const serverClosed = once(h.server, 'close');
    await expect(graceful.close()).resolves.toMatchObject({ requests: { finished: 0, cutOff: 0 }, exitCode: 0 });
    await silentClosed;
    await serverClosed; // long before the 5 s keep-alive timeout
    agent.destroy();
  });

  it('a response ended but still being written to a slow client when the close begins is let finish: every byte arrives, and it counts as finished', async () => {
    const size = 32 * 1024 * 1024;
    const h = await start((_req, res) => {
      res.setHeader('content-length', size);
      res.end(Buffer.alloc(size, 'x'));
    });
    const graceful = gracefulShutdown({ server: h.server, container: h.app, signals: [], exit: vi.fn() });
    const paused = deferred<IncomingMessage>();
    const received = new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: h.port, path: '/big', agent: false }, (res) => {
        res.pause(); // a slow client: the server's end() is called, its bytes wait in the socket
        paused.resolve(res);
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.once('end', () => resolve(bytes));
        res.once('error', reject);
      });
      req.once('error', reject);
      req.end();
    });
    const res = await paused.promise;
    const closing = graceful.close();
    await nextTurn();
    res.resume();
    expect(await received).toBe(size);
    await expect(closing).resolves.toMatchObject({ requests: { finished: 1, cutOff: 0 }, exitCode: 0 });
  });

  it('requests still in flight at requestsTimeoutMs are cut off: their connections closed, their scopes disposed (a session too) before the drain ends, exit code 1', async () => {
    const disposed: string[] = [];
    class Session {
      dispose(): void {
        disposed.push('session');
      }
    }
    const arrived = deferred();
    const h = await start(async (_req, _res, scope) => {
      scope.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
      scope.resolve(Session);
      scope.resolve(Background).add(async function fromTheCutOffRequest() {});
      arrived.resolve();
      await new Promise(() => undefined); // never answers
    });
    const graceful = gracefulShutdown({ server: h.server, container: h.app, timeoutMs: 2_000, requestsTimeoutMs: 30, signals: [], exit: vi.fn() });
    const reply = get(h.port, '/stuck');
    await arrived.promise;
    const report = await graceful.close();
    expect(disposed).toEqual(['session']);
    await expect(reply).resolves.toEqual({ error: 'ECONNRESET' });
    expect(report).toMatchObject({ requests: { finished: 0, cutOff: 1 }, abandoned: 0, exitCode: 1, totals: { total: 1, succeeded: 1, abandoned: 0 } });
    expect(report.durationMs).toBeGreaterThanOrEqual(29);
    expect(h.logger.at('info')).toEqual([]);
    expect(h.logger.at('error').map((e) => e.message)).toEqual([
      expect.stringMatching(/^shut down in \d+ ms with work lost: 0 request\(s\) finished in flight, 1 cut off; 1 task\(s\) since the start: 1 succeeded, .* 0 abandoned$/),
    ]);
  });

  it("waits for a request scope's async disposal (its session's dispose()) begun with the response, with or without tasks in the scope", async () => {
    const gates = [deferred(), deferred()];
    const disposed: number[] = [];
    let n = 0;
    class Session {
      readonly id = n++;
      async dispose(): Promise<void> {
        await gates[this.id]!.promise;
        disposed.push(this.id);
      }
    }
    const h = await start((req, res, scope) => {
      scope.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
      scope.resolve(Session);
      if (req.url === '/with-task') scope.resolve(Background).add(async function quick() {});
      res.end('ok');
    });
    expect((await get(h.port, '/with-task')).status).toBe(200);
    expect((await get(h.port, '/without')).status).toBe(200);
    let closed = false;
    const closing = gracefulShutdown({ server: h.server, container: h.app, timeoutMs: 5_000, signals: [], exit: vi.fn() })
      .close()
      .then((report) => ((closed = true), report));
    await sleep(100);
    expect(closed).toBe(false);
    gates[0]!.resolve();
    await sleep(50);
    expect(closed).toBe(false);
    gates[1]!.resolve();
    await expect(closing).resolves.toMatchObject({ exitCode: 0 });
    expect(disposed.sort()).toEqual([0, 1]);
  });

  it('a server that starts listening after the close began (Fastify listens once its plugins are loaded) stops listening at once', async () => {
    const app = freshApp({ logger: captureLogger() });
    const server = createServer((_req, res) => res.end('served'));
    servers.push(server);
    await gracefulShutdown({ server, container: app, signals: [], exit: vi.fn() }).close();
    let port = 0;
    server.prependOnceListener('listening', () => (port = (server.address() as AddressInfo).port));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    expect(port).toBeGreaterThan(0);
    await nextTurn();
    expect(server.listening).toBe(false);
    await expect(get(port, '/')).resolves.toEqual({ error: 'ECONNREFUSED' });
  });

  it('the summary says what the close abandoned that no total counts (durable jobs not in Redis, cancellations not sent): exit code 1', async () => {
    const logger = captureLogger();
    const app = freshApp({ logger });
    const bg = app.resolve(Background);
    // What the durable backend does through its door: its close could not finish two things.
    const closeWith = Symbol.for('tsyringe-background.closeWith');
    (bg as unknown as Record<symbol, (participant: () => Promise<unknown>) => () => void>)[closeWith]!.call(bg, async () => ({ unfinished: 2 }));
    const report = await gracefulShutdown({ container: app, signals: [], exit: vi.fn() }).close();
    expect(report).toMatchObject({ abandoned: 2, requeued: 0, exitCode: 1, totals: { abandoned: 0 } });
    expect(logger.at('error').map((e) => e.message)).toEqual([
      expect.stringMatching(/ with work lost: .* 0 abandoned; this close abandoned 2 \(tasks unfinished at its deadline, durable jobs not in Redis, cancellations not sent\)$/),
    ]);
  });

  it("with no server, closes the application alone; logs to the application's logger, or to options.logger", async () => {
    const { appBg, app, logger } = await start(() => undefined);
    appBg.add(async () => 'done');
    const report = await gracefulShutdown({ container: app, signals: [] }).close();
    expect(report).toMatchObject({ requests: { finished: 0, cutOff: 0 }, exitCode: 0, totals: { total: 1, succeeded: 1 } });
    expect(logger.at('info')[0]!.message).toMatch(summaryPattern);

    const other = await start(() => undefined);
    const own = captureLogger();
    await gracefulShutdown({ container: other.app, signals: [], logger: own }).close();
    expect(own.at('info').map((e) => e.message)).toEqual([expect.stringMatching(summaryPattern)]);
    expect(other.logger.entries).toEqual([]);
  });
});

describe('gracefulShutdown() called before the application registers its options', () => {
  it('reads them when the sequence starts: the logger and drainTimeoutMs registered after it are the ones used', async () => {
    const root = container.createChildContainer();
    const graceful = gracefulShutdown({ container: root, signals: [], exit: vi.fn() });
    const logger = captureLogger();
    root.register(BackgroundOptions, { useValue: { root: true, logger, drainTimeoutMs: 40 } });
    root.createChildContainer().resolve(Background).add(async function outlivesTheDeadline() {
      await new Promise(() => undefined);
    });
    const report = await graceful.close();
    expect(report).toMatchObject({ abandoned: 1, exitCode: 1 });
    // Its logger, not the console; and its 40 ms deadline (what the requests left of it), not the default 10 s.
    const [closed, summary] = logger.at('error');
    expect([closed?.message, summary?.message]).toEqual([expect.stringContaining('application closed with 1 task(s) unfinished'), expect.stringMatching(/^shut down in \d+ ms with work lost/)]);
    expect(closed?.fields.drainTimeoutMs).toBeLessThanOrEqual(40);
  });
});

describe("gracefulShutdown() when the application's registrations cannot be read as the sequence starts", () => {
  it('a root tsyringe disposed: the signal still runs the sequence, which reports the close that disposal made, and exits 0', async () => {
    const logger = captureLogger();
    const root = freshApp({ logger });
    const ran = root.createChildContainer().resolve(Background).add(async function beforeTheDisposal() {});
    const { exit, next } = fakeExit();
    gracefulShutdown({ container: root, exit });
    await root.dispose();
    process.emit('SIGTERM');
    await expect(next).resolves.toBe(0);
    expect(ran.status).toBe('succeeded');
    expect(logger.at('info').at(-1)?.fields).toMatchObject({ exitCode: 0, totals: { total: 1, succeeded: 1 } });
  });

  it('an invalid registration since: logged at error, and the sequence drains with the options in force', async () => {
    const logger = captureLogger();
    const root = freshApp({ logger, concurrency: 1 });
    const work = deferred();
    const task = root.createChildContainer().resolve(Background).add(async function inFlight() {
      await work.promise;
    });
    const graceful = gracefulShutdown({ container: root, signals: [], exit: vi.fn() });
    root.register(BackgroundOptions, { useValue: { root: true, concurrency: 0 } });
    const closing = graceful.close();
    work.resolve();
    await expect(closing).resolves.toMatchObject({ exitCode: 0, totals: { succeeded: 1, abandoned: 0 } });
    expect(task.status).toBe('succeeded');
    expect(logger.at('error').map(({ message }) => message)).toEqual([
      expect.stringMatching(/^graceful shutdown: the application's registered BackgroundOptions could not be read \(BackgroundOptions: options.concurrency must be a positive integer or Infinity, got 0 \(number\)\); going on with the options in force \(drain within \d+ ms\)$/),
    ]);
  });

  it('requestsTimeoutMs is checked against a deadline registered after the call when the sequence starts: the requests get at most the deadline, with a warning', async () => {
    const root = container.createChildContainer();
    const graceful = gracefulShutdown({ container: root, requestsTimeoutMs: 20_000, signals: [], exit: vi.fn() });
    const logger = captureLogger();
    root.register(BackgroundOptions, { useValue: { root: true, logger, drainTimeoutMs: 50 } });
    await expect(graceful.close()).resolves.toMatchObject({ exitCode: 0 });
    expect(logger.at('warn').map(({ message }) => message)).toEqual([
      'graceful shutdown: options.requestsTimeoutMs (20000) is more than the deadline (50 ms, registered since): the requests in flight get 50 ms',
    ]);
  });
});

describe('gracefulShutdown(): signals', () => {
  it('on SIGTERM: runs the sequence, logs its start and its summary, exits 0, and removes its listeners', async () => {
    const work = deferred();
    const h = await start((_req, res, scope) => {
      scope.resolve(Background).add(async function requestTask() {
        await work.promise;
      });
      h.appBg.add(async function appTask() {
        await work.promise;
      });
      res.end('ok');
    });
    const { exit, next } = fakeExit();
    gracefulShutdown({ server: h.server, container: h.app, exit });
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([1, 1]);
    await expect(get(h.port, '/')).resolves.toMatchObject({ status: 200 });
    expect(h.appBg.stats({ application: true }).running).toBe(2);

    process.emit('SIGTERM');
    expect(h.logger.at('info').map((e) => e.message)).toEqual(['SIGTERM received: shutting down gracefully within 5000 ms (a second signal exits at once)']);
    expect(h.server.listening).toBe(false);
    await nextTurn();
    expect(exit).not.toHaveBeenCalled(); // the tasks are still running
    work.resolve();
    await expect(next).resolves.toBe(0);
    expect(exit).toHaveBeenCalledTimes(1);
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 0]);
    const summary = h.logger.at('info')[1]!;
    expect(summaryPattern.exec(summary.message)!.slice(1).map(Number)).toEqual([0, 0, 2, 2]);
    expect(summary.fields).toMatchObject({ exitCode: 0, totals: { total: 2, succeeded: 2, abandoned: 0 } });
  });

  it('work abandoned at the deadline: the summary is an error, and the exit code 1', async () => {
    const h = await start(() => undefined);
    h.appBg.add(async function neverEnds() {
      await new Promise(() => undefined);
    });
    h.appBg.add(async function ends() {});
    const { exit, next } = fakeExit();
    gracefulShutdown({ server: h.server, container: h.app, timeoutMs: 50, exit });
    process.emit('SIGINT');
    await expect(next).resolves.toBe(1);
    const errors = h.logger.at('error');
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^application closed with 1 task\(s\) unfinished after the drain deadline of \d+ ms/),
      expect.stringMatching(/^shut down in \d+ ms with work lost: 0 request\(s\) finished in flight, 0 cut off; 2 task\(s\) since the start: 1 succeeded, .* 1 abandoned$/),
    ]);
    expect(errors[1]!.fields).toMatchObject({ abandoned: 1, exitCode: 1, totals: { total: 2, succeeded: 1, abandoned: 1 } });
    expect(h.logger.at('info').map((e) => e.message)).toEqual([expect.stringMatching(/^SIGINT received: shutting down gracefully within 50 ms/)]);
  });

  it("a second signal exits under a test's fake timers that take setImmediate (Jest's default), without the clock being advanced", async () => {
    const hold = deferred();
    const h = await start(() => undefined);
    h.appBg.add(async function appTask() {
      await hold.promise;
    });
    const { exit, next } = fakeExit();
    gracefulShutdown({ server: h.server, container: h.app, exit, logger: captureLogger() });
    process.emit('SIGTERM');
    await sleep(pastSameSignalMs);
    // performance too: a fake one (Jest's default) read as the signals' clock took the second for a repeat of the first.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'queueMicrotask', 'Date', 'performance'] });
    try {
      process.emit('SIGTERM');
      const code = await Promise.race([next, sleep(2_000, 'not exited')]);
      expect(code).toBe(143);
    } finally {
      vi.useRealTimers();
      hold.resolve();
    }
  });

  it("a second signal's entry, through a logger whose promise rejects, is printed on the console before the process exits", async () => {
    const hold = deferred();
    const h = await start(() => undefined);
    h.appBg.add(async function appTask() {
      await hold.promise;
    });
    const printed: unknown[][] = [];
    const consoleError = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void printed.push(args));
    // What was printed when the process would have exited (process.exit() ends it there).
    const exited = deferred<unknown[][]>();
    const exit = (): void => exited.resolve([...printed]);
    const rejecting: unknown = async () => Promise.reject(new Error('sink down'));
    gracefulShutdown({ server: h.server, container: h.app, exit, logger: { ...captureLogger(), error: rejecting as () => void } });
    process.emit('SIGTERM');
    await sleep(pastSameSignalMs);
    process.emit('SIGTERM');
    const printedThen = await exited.promise;
    consoleError.mockRestore();
    expect(printedThen).toContainEqual([
      '[tsyringe-background] the logger threw while logging:',
      expect.stringMatching(/^second SIGTERM during graceful shutdown: exiting at once with code 143/),
      expect.objectContaining({ exitCode: 143 }),
      new Error('sink down'),
    ]);
    hold.resolve();
  });

  it.each([
    ['SIGTERM', 'SIGTERM', 143],
    ['SIGTERM', 'SIGINT', 130],
    ['SIGINT', 'SIGINT', 130],
  ] as const)('%s then %s: the second exits at once with code %i, listing the tasks it abandons (20, then a count)', async (first, second, code) => {
    const hold = deferred();
    const arrived = deferred();
    const h = await start(async (_req, res, scope) => {
      scope.resolve(Background).add(async function requestTask() {
        await hold.promise;
      });
      arrived.resolve();
      await hold.promise;
      res.end('late');
    });
    const handles = Array.from({ length: 24 }, () =>
      h.appBg.add(async function appTask() {
        await hold.promise;
      }),
    );
    const { exit, next } = fakeExit();
    const graceful = gracefulShutdown({ server: h.server, container: h.app, exit });
    const reply = get(h.port, '/');
    await arrived.promise;

    process.emit(first);
    await sleep(pastSameSignalMs);
    expect(exit).not.toHaveBeenCalled();
    process.emit(second);
    await expect(next).resolves.toBe(code);
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 0]);
    const [entry, ...others] = h.logger.at('error');
    expect(others).toEqual([]);
    expect(entry!.message).toMatch(
      new RegExp(`^second ${second} during graceful shutdown: exiting at once with code ${code}; abandoning 1 request\\(s\\) in flight and 25 unfinished task\\(s\\): (appTask|requestTask) \\(#\\d+, running\\)(, \\w+ \\(#\\d+, running\\)){19}, and 5 more$`),
    );
    expect(entry!.fields).toMatchObject({ signal: second, exitCode: code, abandoned: 25, more: 5, requestsInFlight: 1 });
    const listed = entry!.fields.tasks as { id: string; name: string; status: string }[];
    expect(listed).toHaveLength(20);
    const ids = new Set([...handles.map((handle) => handle.id)]);
    expect(listed.filter((task) => task.name === 'appTask').every((task) => ids.has(task.id))).toBe(true);

    // With an injected exit the process goes on: the close finishes, and exits no second time.
    hold.resolve();
    await expect(reply).resolves.toMatchObject({ status: 200, body: 'late' });
    await expect(graceful.close()).resolves.toMatchObject({ exitCode: 0 });
    expect(exit).toHaveBeenCalledTimes(1);
  });

  it('the same signal again within 250 ms is one delivered twice (a launcher forwarding its group\'s Ctrl-C), not a second: the drain goes on', async () => {
    const work = deferred();
    const h = await start(() => undefined);
    const task = h.appBg.add(async function appTask() {
      await work.promise;
    });
    const { exit, next } = fakeExit();
    gracefulShutdown({ server: h.server, container: h.app, exit });
    process.emit('SIGINT');
    await nextTurn();
    process.emit('SIGINT'); // node --watch forwards what the terminal sent its process group
    await sleep(50);
    expect(exit).not.toHaveBeenCalled();
    work.resolve();
    await expect(next).resolves.toBe(0);
    expect(task.status).toBe('succeeded');
    expect(h.logger.at('error')).toEqual([]);
    expect(h.logger.at('info').map((entry) => entry.message)).toEqual([
      'SIGINT received: shutting down gracefully within 5000 ms (a second signal exits at once)',
      expect.stringMatching(/^SIGINT received again \d+ ms after the first: taken as the same one \(a launcher such as node --watch forwards the signal its process group got too\); a second signal later than 250 ms exits at once$/),
      expect.stringMatching(summaryPattern),
    ]);
  });

  it('ends within its deadline, the pool\'s close and the summary included: the drain keeps a tenth of it (a second at most) for them', async () => {
    const h = await start(() => undefined);
    h.appBg.add(async function outlivesTheDeadline() {
      await new Promise(() => undefined);
    });
    const report = await gracefulShutdown({ server: h.server, container: h.app, timeoutMs: 1_000, signals: [], exit: vi.fn() }).close();
    expect(report.exitCode).toBe(1);
    expect(report.durationMs).toBeLessThan(1_000);
    expect(report.durationMs).toBeGreaterThanOrEqual(899);
    expect(h.logger.at('error').map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^application closed with 1 task\(s\) unfinished after the drain deadline of (89\d|900) ms/));
  });

  it('a signal during a close() already going on joins it and exits with its code', async () => {
    const work = deferred();
    const h = await start(() => undefined);
    h.appBg.add(async () => work.promise);
    const { exit, next } = fakeExit();
    const graceful = gracefulShutdown({ server: h.server, container: h.app, exit });
    const closing = graceful.close();
    process.emit('SIGTERM');
    work.resolve();
    await expect(closing).resolves.toMatchObject({ exitCode: 0 });
    await expect(next).resolves.toBe(0);
    expect(exit).toHaveBeenCalledTimes(1);
    // Said as a join: the sequence, and its deadline, began with close().
    expect(h.logger.at('info').map((entry) => entry.message)).toEqual([
      'SIGTERM received: joining the graceful shutdown already under way (close()); a second signal exits at once',
      expect.stringMatching(summaryPattern),
    ]);
  });

  it('wires any number of applications with one process listener per signal (no MaxListenersExceededWarning), and a signal reaches each', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const wired = await Promise.all(
        Array.from({ length: 12 }, async () => {
          const h = await start(() => undefined);
          const exit = vi.fn();
          return { exit, graceful: gracefulShutdown({ server: h.server, container: h.app, exit }) };
        }),
      );
      expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([1, 1]);
      process.emit('SIGTERM');
      const reports = await Promise.all(wired.map(({ graceful }) => graceful.close()));
      expect(reports.map(({ exitCode }) => exitCode)).toEqual(wired.map(() => 0));
      await vi.waitFor(() => expect(wired.map(({ exit }) => exit.mock.calls)).toEqual(wired.map(() => [[0]])), { timeout: 2_000, interval: 5 });
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter(({ name }) => name === 'MaxListenersExceededWarning')).toEqual([]);
      expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 0]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('detach() and [Symbol.dispose]() remove the listeners, once; signals: [] installs none', async () => {
    const h = await start(() => undefined);
    const graceful = gracefulShutdown({ server: h.server, container: h.app, exit: vi.fn() });
    expect(process.listenerCount('SIGTERM')).toBe(1);
    graceful.detach();
    graceful.detach();
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 0]);
    {
      using scoped = gracefulShutdown({ server: h.server, container: h.app, signals: ['SIGINT'], exit: vi.fn() });
      expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 1]);
      expect(scoped).toHaveProperty('close');
    }
    expect(process.listenerCount('SIGINT')).toBe(0);
    const twice = gracefulShutdown({ server: h.server, container: h.app, signals: ['SIGTERM', 'SIGTERM'], exit: vi.fn() });
    expect(process.listenerCount('SIGTERM')).toBe(1); // one signal, one listener: it is not taken for a second signal
    twice.detach();
    gracefulShutdown({ server: h.server, container: h.app, signals: [], exit: vi.fn() });
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 0]);
    expect(h.server.listening).toBe(true); // nothing ran
  });
});

describe('gracefulShutdown(options): validation', () => {
  const server = createServer();
  const container = freshApp({ drainTimeoutMs: 1_000 });
  it.each<[string, unknown, ErrorConstructor, string]>([
    ['options', null, TypeError, 'options must be an object, got null'],
    ['server', { server: 42 }, TypeError, 'options.server must be a Node http or https server (or an array of them), got 42 (number)'],
    ['server[1]', { server: [server, {}] }, TypeError, 'options.server[1] must be a Node http or https server (or an array of them), got an object'],
    ['container', { container: 'x' }, TypeError, 'options.container must be a tsyringe container, got "x" (string)'],
    ['timeoutMs', { container, timeoutMs: -1 }, RangeError, 'options.timeoutMs must be an integer from 0 to 2147483647, got -1 (number)'],
    ['timeoutMs (type)', { container, timeoutMs: '1' }, TypeError, 'options.timeoutMs must be an integer from 0 to 2147483647, got "1" (string)'],
    ['unknown option', { container, timeout: 5 }, TypeError, 'options.timeout is not a known option; known options: server, container, timeoutMs, requestsTimeoutMs, signals, logger, exit'],
    ['requestsTimeoutMs', { container, requestsTimeoutMs: -1 }, RangeError, 'options.requestsTimeoutMs must be an integer from 0 to 2147483647, got -1 (number)'],
    ['requestsTimeoutMs vs timeoutMs', { container, timeoutMs: 10, requestsTimeoutMs: 11 }, RangeError, 'options.requestsTimeoutMs must be an integer from 0 to timeoutMs (10), got 11 (number)'],
    ['signals', { container, signals: 'SIGTERM' }, TypeError, 'options.signals must be an array of signal names, got "SIGTERM" (string)'],
    ['signals[0]', { container, signals: ['SIGKILL'] }, TypeError, 'options.signals[0] must be the name of a signal a process can listen to ("SIGTERM", "SIGINT", …), got "SIGKILL" (string)'],
    ['signals[1]', { container, signals: ['SIGTERM', 'TERM'] }, TypeError, 'options.signals[1] must be the name of a signal a process can listen to ("SIGTERM", "SIGINT", …), got "TERM" (string)'],
    ['logger', { container, logger: { info() {} } }, TypeError, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    ['logger (a generator method)', { container, logger: { *error() {}, warn() {}, info() {}, debug() {} } }, TypeError, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    ['exit', { container, exit: 0 }, TypeError, 'options.exit must be a function, got 0 (number)'],
    // Called only at the signal, after the drain: it would crash the process there.
    ['exit (a class)', { container, exit: class Exit {} }, TypeError, 'options.exit must be a function, got function Exit (a class, which cannot be called)'],
  ])('%s', (_name, options, ErrorType, message) => {
    const call = (): unknown => gracefulShutdown(options as never);
    expect(call).toThrow(ErrorType);
    expect(call).toThrow(`gracefulShutdown(options): ${message}`);
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual([0, 0]);
  });
});
