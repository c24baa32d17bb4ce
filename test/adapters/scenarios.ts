/**
 * What every framework adapter must do, written once: each test file starts a real server of its
 * framework on 127.0.0.1 (port 0) with one route, and these scenarios send it real HTTP requests
 * with fetch. Gates order every step; nothing sleeps.
 */
import 'reflect-metadata';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { inject, injectable, Lifecycle, scoped, type DependencyContainer } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Background, defineTask, shutdown, type BackgroundLogger } from '../../src/index.js';
import { captureLogger, collectGarbage, deferred, freshApp, nextTurn, watchProcessErrors, type Deferred } from '../helpers.js';

/** What a test server is made of: the adapter's options, and the one route, `GET /work`. */
export interface ServerOptions {
  parent: DependencyContainer;
  logger: BackgroundLogger;
  /**
   * The adapter's `register` hook, given the request's headers rather than the framework's
   * request, and that request itself (only to see when it is collected).
   */
  register: (scope: DependencyContainer, header: (name: string) => string | undefined, request: object) => void | Promise<void>;
  /** `GET /work`, given the request's scope as the framework exposes it; answers with its result as JSON. */
  route: (scope: DependencyContainer) => Promise<unknown>;
  /**
   * Awaited by a middleware (a hook) of the application's own that runs before the adapter's, as
   * an authentication lookup would; given a promise of the response's `'close'`.
   */
  before: (responseClosed: Promise<void>) => Promise<void>;
}

export interface RunningServer {
  /** The address of `GET /work`. */
  readonly url: string;
  close(): Promise<void>;
}

export type StartServer = (options: ServerOptions) => Promise<RunningServer>;

/** The request's own value: the hook registers it in the request's scope from `x-request-id`. */
export class RequestInfo {
  constructor(readonly id: string) {}
}

/** One instance per container, made in each request's scope: a task must get its request's. */
@scoped(Lifecycle.ContainerScoped)
export class RequestState {}

/** What a test saw, in order; the scope's disposables write to it. */
export class Journal {
  readonly events: string[] = [];
  disposals = 0;
  readonly disposed: Deferred = deferred();
}

/** Registered only in the test's application: a scope that resolves it is a child of that application. */
class AppMarker {}

/** A disposable the request's scope constructs (a database session, say). */
@injectable()
class Resource {
  isDisposed = false;
  constructor(@inject(Journal) private readonly journal: Journal) {}
  dispose(): void {
    this.isDisposed = true;
    this.journal.disposals++;
    this.journal.events.push('resource disposed');
    this.journal.disposed.resolve();
  }
}

/** A disposable whose disposal fails. */
@injectable()
class FaultyResource {
  constructor(@inject(Journal) private readonly journal: Journal) {}
  dispose(): void {
    this.journal.disposals++;
    this.journal.disposed.resolve();
    throw new Error('the session could not be closed');
  }
}

/** GET `url` on a connection of its own, closed after the answer; resolves with the answer's body. */
function getOnce(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { agent: false, headers: { connection: 'close' } }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body)).on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

export function requestScopeScenarios(framework: string, start: StartServer): void {
  describe(`${framework}: a request scope per request`, { timeout: 5_000 }, () => {
    watchProcessErrors();
    let app: DependencyContainer;
    let server: RunningServer | undefined;
    let journal: Journal;
    let logger: ReturnType<typeof captureLogger>;

    /** A fresh application, its journal, and a server whose hook registers the request's id and the disposables. */
    async function serve(route: ServerOptions['route'], register?: ServerOptions['register'], before: ServerOptions['before'] = async () => undefined): Promise<string> {
      logger = captureLogger();
      app = freshApp({ logger });
      journal = new Journal();
      app.register(Journal, { useValue: journal });
      app.register(AppMarker, { useValue: new AppMarker() });
      server = await start({
        parent: app,
        logger,
        register:
          register ??
          ((scope, header) => {
            scope.register(RequestInfo, { useValue: new RequestInfo(header('x-request-id') ?? 'none') });
            scope.register(Resource, { useClass: Resource }, { lifecycle: Lifecycle.ContainerScoped });
            scope.register(FaultyResource, { useClass: FaultyResource }, { lifecycle: Lifecycle.ContainerScoped });
          }),
        route,
        before,
      });
      return server.url;
    }

    afterEach(async () => {
      await server?.close();
      server = undefined;
      await shutdown({ container: app });
    });

    it('gives each request its own child container, with the values its hook registered, seen by the handler and by its tasks', async () => {
      const report = defineTask({ name: 'report', inject: [RequestInfo, RequestState] }, async (info: RequestInfo, state: RequestState) => ({ id: info.id, state }));
      const arrived = { a: deferred(), b: deferred() };
      const go = deferred();
      const scopes = new Map<string, DependencyContainer>();
      const url = await serve(async (scope) => {
        const { id } = scope.resolve(RequestInfo);
        scopes.set(id, scope);
        arrived[id as 'a' | 'b'].resolve();
        await go.promise; // both requests are in their handlers at once
        const state = scope.resolve(RequestState);
        const seen = await scope.resolve(Background).add(report).result();
        return { id, taskSawId: seen.id, taskGotTheRequestsState: seen.state === state, childOfTheApp: scope.resolve(AppMarker) === app.resolve(AppMarker) };
      });

      const responses = ['a', 'b'].map((id) => fetch(url, { headers: { 'x-request-id': id } }));
      await Promise.all([arrived.a.promise, arrived.b.promise]);
      go.resolve();
      const bodies = await Promise.all(responses.map(async (response) => (await response).json()));

      expect(bodies).toEqual([
        { id: 'a', taskSawId: 'a', taskGotTheRequestsState: true, childOfTheApp: true },
        { id: 'b', taskSawId: 'b', taskGotTheRequestsState: true, childOfTheApp: true },
      ]);
      expect(scopes.get('a')).not.toBe(scopes.get('b'));
      expect([scopes.get('a'), scopes.get('b')]).not.toContain(app);
      expect(app.isRegistered(RequestInfo, true)).toBe(false); // the hook registered in the request's scope only
    });

    it('answers before a slow background task has ended; then drains the task, then disposes the scope, once', async () => {
      const taskEnded = deferred();
      const gate = deferred();
      const slow = defineTask({ name: 'slow', inject: [Resource, RequestInfo] }, async (resource: Resource, info: RequestInfo) => {
        await gate.promise;
        journal.events.push(`task for ${info.id} ended, resource ${resource.isDisposed ? 'disposed' : 'open'}`);
        taskEnded.resolve();
      });
      const url = await serve(async (scope) => {
        const handle = scope.resolve(Background).add(slow);
        return { status: handle.status };
      });

      const response = await fetch(url, { headers: { 'x-request-id': 'r1' } });
      journal.events.push(`response ${response.status} ${await response.text()}`);
      await nextTurn(); // a turn for the server to close the response and begin the disposal
      journal.events.push('gate opened');
      gate.resolve();
      await journal.disposed.promise;
      await nextTurn();

      expect(journal.events).toEqual(['response 200 {"status":"queued"}', 'gate opened', 'task for r1 ended, resource open', 'resource disposed']);
      expect(journal.disposals).toBe(1);
      expect(logger.at('error')).toEqual([]);
    });

    it('disposes the scope once when the client goes away while the handler is still working', async () => {
      const arrived = deferred();
      const handlerGate = deferred();
      const handlerEnded = deferred();
      const url = await serve(async (scope) => {
        scope.resolve(Resource);
        scope.resolve(Background).add(async () => {
          journal.events.push('task ran');
        });
        arrived.resolve();
        await handlerGate.promise;
        handlerEnded.resolve();
        return { late: true };
      });

      const controller = new AbortController();
      const response = fetch(url, { signal: controller.signal });
      await arrived.promise;
      controller.abort();
      await expect(response).rejects.toThrow(/abort/i);
      await journal.disposed.promise; // the handler has not answered
      expect(journal.events).toEqual(['task ran', 'resource disposed']);

      handlerGate.resolve(); // its late answer goes nowhere, and disposes nothing again
      await handlerEnded.promise;
      await nextTurn();
      await nextTurn();
      expect(journal.disposals).toBe(1);
      expect(logger.at('error')).toEqual([]);
    });

    it('disposes the scopes of requests pipelined behind a slow one on one connection when the client closes it, their responses still waiting for their turn', async () => {
      const gate = deferred();
      const arrived = new Set<string>();
      const allArrived = deferred();
      const url = new URL(
        await serve(async (scope) => {
          scope.resolve(Resource);
          const { id } = scope.resolve(RequestInfo);
          arrived.add(id);
          if (arrived.size === 3) allArrived.resolve();
          if (id === 'first') await gate.promise;
          return { id };
        }),
      );
      const client = connect(Number(url.port), '127.0.0.1');
      client.on('error', () => undefined);
      const get = (id: string): string => `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nx-request-id: ${id}\r\n\r\n`;
      client.write(get('first') + get('second') + get('third'));
      // Each handler has run; the two later responses wait for the first, which waits for the gate.
      await allArrived.promise;
      client.destroy();
      await vi.waitFor(() => expect(journal.disposals).toBe(3), { timeout: 2_000, interval: 10 });
      gate.resolve();
      await nextTurn();
      await nextTurn();
      expect(journal.disposals).toBe(3);
      expect(logger.at('error')).toEqual([]);
    });

    it('disposes the scope of a request whose client went away before the adapter ran (a middleware before it was still working)', async () => {
      const arrived = deferred();
      let scope: DependencyContainer | undefined;
      const url = await serve(
        async () => ({ late: true }),
        (opened) => {
          scope = opened;
        },
        async (responseClosed) => {
          arrived.resolve();
          await responseClosed;
        },
      );

      const controller = new AbortController();
      const response = fetch(url, { signal: controller.signal });
      await arrived.promise;
      controller.abort();
      await expect(response).rejects.toThrow(/abort/i);
      // Neither 'finish' nor 'close' comes again: the scope is disposed as it opens.
      await vi.waitFor(() => expect(() => scope!.resolve(AppMarker)).toThrow(/disposed/), { timeout: 2_000, interval: 10 });
      expect(logger.at('error')).toEqual([]);
    });

    it("lets the request's own objects be collected once it is answered, while its scope still drains a task", async () => {
      const gate = deferred();
      const ended = deferred();
      const slow = defineTask({ name: 'slow' }, async () => {
        await gate.promise;
        ended.resolve();
      });
      let request: WeakRef<object> | undefined;
      const url = await serve(
        async (scope) => {
          scope.resolve(Background).add(slow);
          return { ok: true };
        },
        (scope, _header, req) => {
          request = new WeakRef(req);
          scope.register(Resource, { useClass: Resource }, { lifecycle: Lifecycle.ContainerScoped });
          scope.resolve(Resource);
        },
      );

      expect(JSON.parse(await getOnce(url))).toEqual({ ok: true });
      // Answered and its connection closed: nothing of the server's holds the request any more;
      // the scope, draining its task, must not either (it would live as long as the task).
      await vi.waitFor(
        async () => {
          await nextTurn();
          collectGarbage();
          expect(request?.deref()).toBeUndefined();
        },
        { timeout: 3_000, interval: 20 },
      );
      expect(journal.disposals).toBe(0);
      gate.resolve();
      await ended.promise;
      await journal.disposed.promise;
    });

    it('logs a failed disposal through the logger; the client has its normal answer, and no rejection goes unhandled', async () => {
      const url = await serve(async (scope) => {
        scope.resolve(FaultyResource);
        return { ok: true };
      });

      const response = await fetch(`${url}?user=7`);
      expect([response.status, await response.json()]).toEqual([200, { ok: true }]);
      await journal.disposed.promise;
      await nextTurn();

      expect(logger.at('error')).toEqual([
        {
          level: 'error',
          message: 'disposing a request scope failed',
          fields: { err: expect.objectContaining({ message: 'the session could not be closed' }) as unknown, method: 'GET', url: '/work?user=7' },
        },
      ]);
      expect(journal.disposals).toBe(1);
    });

    it.each([
      ['throws', (): void => {
        throw new Error('no session');
      }],
      ['rejects', (): Promise<void> => Promise.reject(new Error('no session'))],
    ])('answers with an error when the register hook %s, never runs the route, and still disposes the scope', async (_how, fail) => {
      let routeRan = false;
      const url = await serve(
        async () => {
          routeRan = true;
          return {};
        },
        (scope) => {
          scope.register(Resource, { useClass: Resource }, { lifecycle: Lifecycle.ContainerScoped });
          scope.resolve(Resource);
          return fail();
        },
      );

      const response = await fetch(url);
      expect(response.status).toBe(500);
      await response.arrayBuffer();
      await journal.disposed.promise;
      expect(routeRan).toBe(false);
      expect(journal.disposals).toBe(1);
    });
  });
}
