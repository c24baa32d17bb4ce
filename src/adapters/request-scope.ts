/**
 * What the Express, Fastify and Hono adapters share: a child container per request, a hook that
 * registers the request's values in it, and its disposal, once, after the response, with a
 * failure logged and never thrown. The adapters only say where the request and its response are.
 */
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { consoleLogger, disposeScope, type BackgroundLogger } from '../index.js';
// The lowest layer's two leaf modules, shared with the adapters (eslint.config.js: they import nothing of the library).
import { checkCallback, checkKnownKeys, describe, isOptionsObject } from '../model/checks.js';
import { isLogger, logSafely } from '../model/logger.js';

/**
 * Options of every adapter's `requestScope`; `Request` is what the framework calls a request
 * (Express's `Request`, Fastify's `FastifyRequest`, Hono's `Context`).
 */
export interface RequestScopeOptions<Request> {
  /**
   * The container each request's scope is a child of: the application's root, or any container
   * below it.
   * @default tsyringe's global `container`
   */
  parent?: DependencyContainer | undefined;
  /**
   * Registers the request's own values in its scope (the user, a request id, a database
   * session), before the route's handler runs. When it returns a promise, the promise is
   * awaited (any other value is ignored); a failure goes to the framework's error handling,
   * and the scope is still disposed.
   *
   * ```ts
   * register: (scope, req) => scope.register(RequestId, { useValue: req.get('x-request-id') ?? randomUUID() })
   * ```
   * @default none
   */
  register?: ((scope: DependencyContainer, request: Request) => unknown) | undefined;
  /**
   * Where a failed disposal of a request scope is logged (one of the scope's disposables threw).
   * Give it the logger you register in `BackgroundOptions`, so that everything the library logs
   * goes to one place.
   * @default consoleLogger
   */
  logger?: BackgroundLogger | undefined;
}

/** Options with the defaults filled in and checked, as an adapter uses them. */
export interface ResolvedRequestScopeOptions<Request> {
  readonly parent: DependencyContainer;
  readonly register: ((scope: DependencyContainer, request: Request) => unknown) | undefined;
  readonly logger: BackgroundLogger;
}

/** The end of a response as Node reports it, HTTP/1 (`ServerResponse`) and HTTP/2 alike. */
export interface NodeResponse {
  once(event: 'finish' | 'close', listener: () => void): unknown;
  /** Whether the response has finished (`'finish'` has been emitted). */
  readonly writableFinished?: boolean;
  /** Whether its connection has closed under it, or it was destroyed (`'close'` has been or is about to be emitted). */
  readonly destroyed?: boolean;
  /** An HTTP/1 response's connection: `null` while the response waits behind earlier ones on it (pipelining). */
  readonly socket?: unknown;
  /** An HTTP/1 response's request, whose `socket` is the connection the request came on. */
  readonly req?: { readonly socket?: Connection | null | undefined } | undefined;
}

/** What a response's connection says of its end. */
interface Connection {
  once(event: 'close', listener: () => void): unknown;
  readonly destroyed?: boolean;
}

/**
 * The closes of responses that wait behind earlier ones on their connection (HTTP/1 pipelining):
 * Node gives such a response its connection only once the earlier ones are done, so one whose
 * client left before then never emits `'finish'` nor `'close'`. One listener a connection.
 */
const waitingOn = new WeakMap<Connection, Set<() => void>>();

/** One request's scope, and the door that disposes it (the first call only). */
export interface OpenScope {
  readonly scope: DependencyContainer;
  readonly close: () => void;
}

/** The keys of {@link RequestScopeOptions}: any other is refused. */
const requestScopeKeys = ['parent', 'register', 'logger'] as const satisfies readonly (keyof RequestScopeOptions<unknown>)[];

/**
 * The options Fastify itself reads from a plugin's options (`app.register(plugin, { prefix })`),
 * which a plugin that Fastify encapsulates (not wrapped with `fastify-plugin`) lets through.
 */
export const fastifyRegisterKeys = ['prefix', 'logLevel', 'logSerializers'] as const;

/**
 * Fills in the defaults and checks the options, naming what is wrong. A key that is not an
 * option is refused (`options.container`, which is `liveView()`'s, not this one's `parent`).
 * @throws TypeError when an option is not a known one or has the wrong type.
 */
export function resolveRequestScopeOptions<Request>(options: RequestScopeOptions<Request> | undefined): ResolvedRequestScopeOptions<Request> {
  if (options === undefined) return { parent: globalContainer, register: undefined, logger: consoleLogger };
  if (!isOptionsObject(options)) throw new TypeError(`requestScope(options): options must be an object, got ${describe(options)}`);
  const { parent = globalContainer, register, logger = consoleLogger } = checkKnownKeys(options, requestScopeKeys, 'requestScope(options)');
  if (typeof (parent as Partial<DependencyContainer> | null)?.createChildContainer !== 'function') {
    throw new TypeError(`requestScope(options): options.parent must be a tsyringe container, got ${describe(parent)}`);
  }
  // A class cannot be called, and a generator function would run nothing: each request a 500.
  if (register !== undefined) checkCallback(register, 'requestScope(options): options.register');
  if (!isLogger(logger)) {
    throw new TypeError(`requestScope(options): options.logger must be an object with error, warn, info and debug methods, got ${describe(logger)}`);
  }
  return Object.freeze({ parent, register, logger });
}

/**
 * Makes a request's scope, a child of `options.parent`. `close()` starts its disposal with
 * `disposeScope()` (the scope's Background drains first, then its other disposables) the first
 * time it is called and does nothing after; it returns at once, so the response never waits
 * for background work. A failed disposal is logged with the request's `method` and `url` (a
 * full URL is logged as its path and query). Only these two strings are kept, not the request:
 * a scope drains its tasks after the response, and the request's objects (its headers, its
 * framework's context) would live as long, surviving collections for nothing.
 */
export function openScope(options: Pick<ResolvedRequestScopeOptions<unknown>, 'parent' | 'logger'>, method: string, url: string): OpenScope {
  const scope = options.parent.createChildContainer();
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    disposeScope(scope).catch((err: unknown) => {
      logSafely(options.logger, 'error', { err, method, url: pathOf(url) }, 'disposing a request scope failed');
    });
  };
  return { scope, close };
}

/** A URL's path and query: itself when it is already one, else read from the full URL. */
function pathOf(url: string): string {
  if (url.startsWith('/')) return url;
  try {
    const { pathname, search } = new URL(url);
    return pathname + search;
  } catch {
    return url;
  }
}

/**
 * Closes the scope when the response has finished or its connection has closed, whichever comes
 * first; at once when that happened already (a client gone while a middleware or hook before the
 * scope's own was still running: neither event would come again, and the scope would never close).
 * A response waiting behind earlier ones on its connection (pipelining) closes it when that
 * connection closes too: its own events come only once it has the connection.
 */
export function closeOnResponse(response: NodeResponse, close: () => void): void {
  if (response.writableFinished === true || response.destroyed === true) {
    close();
    return;
  }
  const connection = response.socket === null ? response.req?.socket : undefined;
  if (connection === undefined || connection === null) {
    response.once('finish', close);
    response.once('close', close);
    return;
  }
  // Waiting behind earlier responses: its connection's end closes it too.
  if (connection.destroyed === true) {
    close();
    return;
  }
  let closes = waitingOn.get(connection);
  if (closes === undefined) {
    const all = (closes = new Set());
    waitingOn.set(connection, all);
    connection.once('close', () => {
      waitingOn.delete(connection);
      for (const each of all) each();
    });
  }
  const waiting = closes;
  const closeOnce = (): void => {
    waiting.delete(closeOnce);
    close();
  };
  waiting.add(closeOnce);
  response.once('finish', closeOnce);
  response.once('close', closeOnce);
}

/**
 * Runs the `register` hook, then calls `next()`, or `next(error)` when the hook throws or its
 * promise rejects. Without a hook, calls `next()` at once (no promise is made).
 */
export function registerThen<Request>(
  options: ResolvedRequestScopeOptions<Request>,
  scope: DependencyContainer,
  request: Request,
  next: (error?: unknown) => void,
): void {
  if (options.register === undefined) {
    next();
    return;
  }
  let registered: unknown;
  try {
    registered = options.register(scope, request);
  } catch (error) {
    next(error);
    return;
  }
  // Awaited as a promise is: a thenable that settles twice goes on once (Fastify ran the route twice).
  if (typeof (registered as Partial<PromiseLike<unknown>> | null | undefined)?.then === 'function') Promise.resolve(registered).then(() => next(), next);
  else next();
}

/**
 * `logger`, safe to call: a method that throws, or whose promise rejects (an `async` one), is
 * survived (reported on the console), so that logging a failure never becomes one of its own: a
 * job retried, an unhandled rejection ({@link logSafely} for each entry).
 */
export function safeLogger(logger: BackgroundLogger): BackgroundLogger {
  const safe =
    (level: keyof BackgroundLogger) =>
    (fields: Record<string, unknown>, message: string): void =>
      logSafely(logger, level, fields, message);
  return { error: safe('error'), warn: safe('warn'), info: safe('info'), debug: safe('debug') };
}
