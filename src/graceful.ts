/**
 * Graceful shutdown of a server and its application in one call: stop accepting, let the
 * requests in flight finish, drain every scope, log, exit. What `shutdown()` does for the
 * application, this does for an HTTP server in front of it, with the signals wired.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { constants } from 'node:os';
// The real clock, which a test's fake timers do not replace: the time between two signals is real-world time.
import { performance as realClock } from 'node:perf_hooks';
// Node's own, which a test's fake timers do not replace (imported, not the global).
import { setImmediate } from 'node:timers';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { ApplicationBackground } from './background.js';
import { appMadeFor, appOf, appOfDisposed } from './di/container.js';
import type { Application, ShutdownReport } from './engine/application.js';
import { withDeadline } from './engine/deadlines.js';
import { checkCallback, checkContainer, checkKnownKeys, describe, invalid, isOptionsObject, isTimerMs, maxTimerMs, messageOf } from './model/checks.js';
import { newCounts, type TaskStatus } from './model/handle.js';
import { isLogger, logSafely, type BackgroundLogger } from './model/logger.js';
import { defaultOptions } from './model/options.js';
import { soon } from './model/soon.js';

/**
 * What {@link gracefulShutdown} needs of a server: a Node `http.Server` or `https.Server` (what
 * Express's `app.listen()` returns, Fastify's `fastify.server`, Hono's `serve()`) has it all.
 *
 * ```ts
 * const servers: GracefulServer[] = [app.listen(80), https.createServer(tls, app).listen(443)];
 * gracefulShutdown({ server: servers });
 * ```
 */
export interface GracefulServer {
  /**
   * Stops accepting connections; `callback` is called once the server has closed. Called once
   * the requests in flight have finished or `requestsTimeoutMs` is up; on a server that is not a
   * Node `net.Server`, also as the sequence starts (a `net.Server` then only stops listening,
   * through `net.Server`'s own `close()`: an HTTP server's would cut short a response still
   * being written to a slow client).
   */
  close(callback?: (error?: Error) => void): unknown;
  /** Listens to each request before the framework's own listener, to know which are in flight. */
  prependListener(event: 'request', listener: (request: IncomingMessage, response: ServerResponse) => void): unknown;
  /** Listens to each new connection, to close those left idle once the sequence begins. */
  prependListener(event: 'connection', listener: (socket: Socket) => void): unknown;
  /** Removes the request listener once the sequence is over, or on `detach()`. */
  removeListener(event: 'request', listener: (request: IncomingMessage, response: ServerResponse) => void): unknown;
  /** Removes the connection listener once the sequence is over, or on `detach()`. */
  removeListener(event: 'connection', listener: (socket: Socket) => void): unknown;
  /**
   * Closes the connections that have no request in flight (Node 18.2 and later). Not called: the
   * sequence closes idle connections itself, and leaves alone a response still being written.
   */
  closeIdleConnections?(): void;
  /**
   * Closes every connection (Node 18.2 and later): called once the requests in flight have
   * finished or `requestsTimeoutMs` is up, cutting off those still in flight. Without it, they
   * are counted as cut off and their connections are left to the process's exit.
   */
  closeAllConnections?(): void;
}

/**
 * Options of {@link gracefulShutdown}.
 *
 * ```ts
 * gracefulShutdown({ server, timeoutMs: 20_000, requestsTimeoutMs: 5_000, logger: pino() });
 * ```
 */
export interface GracefulShutdownOptions {
  /**
   * The server (or servers) to stop: each stops accepting connections, and its requests in flight
   * are let finish before the application drains. Call `gracefulShutdown()` before the server
   * takes requests: a request that began earlier is not waited for.
   * @default none: only the application is closed
   */
  server?: GracefulServer | readonly GracefulServer[] | undefined;
  /**
   * A container of the application to close (any of its scopes will do).
   * @default the global container
   */
  container?: DependencyContainer | undefined;
  /**
   * The one deadline for the whole sequence: the requests in flight, then every scope's drain
   * and the worker pool's close. An integer from 0 to 2147483647.
   * @default the application root's `drainTimeoutMs` (as registered when the sequence starts)
   */
  timeoutMs?: number | undefined;
  /**
   * The longest the requests in flight are waited for, within `timeoutMs`; then their
   * connections are closed. The drain gets whatever is left of `timeoutMs`: all of what the
   * requests did not need.
   * @default half of `timeoutMs`
   */
  requestsTimeoutMs?: number | undefined;
  /**
   * The signals that start the sequence; `[]` listens to none (call `close()` yourself).
   * @default ['SIGTERM', 'SIGINT']
   */
  signals?: readonly NodeJS.Signals[] | undefined;
  /**
   * Where the sequence's start, its summary, and a second signal's list of what it abandons are
   * logged.
   * @default the logger registered in the application root's `BackgroundOptions` when the
   * sequence starts (`consoleLogger` unless you registered one; its `info` is silent)
   */
  logger?: BackgroundLogger | undefined;
  /**
   * Ends the process once a signal's sequence is over, with the report's `exitCode`, or at once
   * with 128 + the signal's number on a second signal. Replace it in tests.
   * @default `process.exit`, once what was written to `process.stdout` and `process.stderr` has
   * gone (a second at most: a slow reader of a pipe would lose the summary otherwise)
   */
  exit?: ((code: number) => void) | undefined;
}

/**
 * What {@link GracefulShutdown.close} resolves with: the application's report and the requests'.
 *
 * ```ts
 * const { requests, totals, exitCode } = await graceful.close();
 * console.log(`${requests.finished} request(s) finished, ${totals.abandoned} task(s) lost`);
 * ```
 */
export interface GracefulShutdownReport extends ShutdownReport {
  /** How long the whole sequence took, in milliseconds: the requests in flight, then the drain. */
  readonly durationMs: number;
  /**
   * Requests answered during the sequence (in flight when it began, or arriving on connections
   * still open), and requests whose connection was closed at `requestsTimeoutMs` before their
   * response had finished, or that came on a connection behind a response that had told its
   * client `Connection: close` already (Node drops them). A request whose client closed its
   * connection before the response is neither.
   */
  readonly requests: {
    /** Requests answered during the sequence. */
    readonly finished: number;
    /** Requests cut off at `requestsTimeoutMs`, or dropped behind a `Connection: close` response. */
    readonly cutOff: number;
  };
  /**
   * 0 when nothing was lost, 1 otherwise: no task abandoned but durable jobs put back in their
   * queue (`totals.abandoned === requeued`, `abandoned === requeued`: durable jobs not in Redis
   * count), and no request cut off.
   */
  readonly exitCode: 0 | 1;
}

/**
 * The sequence, ready to run on a signal or by `close()`; see {@link gracefulShutdown}.
 *
 * ```ts
 * const graceful = gracefulShutdown({ server, signals: [] });
 * process.once('SIGTERM', async () => {
 *   const report = await graceful.close();   // stop accepting, finish the requests, drain, log
 *   await db.end();                          // your own cleanup, after the drain
 *   process.exit(report.exitCode);
 * });
 * ```
 */
export interface GracefulShutdown {
  /**
   * Runs the sequence (stop accepting, finish the requests in flight, drain, log) and resolves
   * with its report; does not exit. Every call returns the same promise. It does not reject
   * (unless a server's own `close()` throws, which a Node server's does not).
   */
  close(): Promise<GracefulShutdownReport>;
  /** Removes the signal listeners (a close going on goes on). Idempotent. */
  detach(): void;
  /** The same as `detach()`, for `using`. */
  [Symbol.dispose](): void;
}

/** The statuses of a task that has not ended. */
const liveStatuses: readonly TaskStatus[] = ['queued', 'delayed', 'running', 'retrying'];
/** How long the responses cut off at `requestsTimeoutMs` may take to end with their connections. */
const cutOffEndMs = 1_000;
/**
 * A signal that comes again within this long of the first is the same one delivered twice, not a
 * second: under a launcher that forwards signals (node --watch, tsx watch, npm), one Ctrl-C reaches
 * the process from its process group and from the launcher, a few milliseconds apart.
 */
const sameSignalMs = 250;
/** How many live tasks a second signal names before it counts the rest. */
const listedAtMost = 20;

/**
 * Wires graceful shutdown of a server and its application: on SIGTERM or SIGINT, within one
 * deadline,
 *
 * 1. the server stops accepting connections and closes its idle ones; the requests in flight
 *    finish (their responses carry `Connection: close` when their headers are not sent yet, and
 *    each connection is closed once its last response has gone), for up to `requestsTimeoutMs`,
 *    after which the connections still open are closed;
 * 2. {@link shutdown} drains every scope of the application (request scopes included) and closes
 *    the worker pool, within what is left of `timeoutMs`;
 * 3. one summary is logged: at `info`, or at `error` when work was lost;
 * 4. the process exits: 0 when nothing was lost (no task abandoned since the start but runs of
 *    durable jobs put back in their queue, no request cut off), 1 otherwise.
 *
 * A second signal during the sequence logs the tasks it abandons (names and ids) at `error` and
 * exits at once with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM). The listeners
 * are removed once the sequence is over, or by `detach()`.
 *
 * Works with any Node HTTP/1 server, so with any framework:
 *
 * ```ts
 * const server = app.listen(3000);              // Express; or fastify.server, or Hono's serve()
 * gracefulShutdown({ server, timeoutMs: 20_000 });
 * ```
 *
 * `close()` runs the same sequence without a signal and without exiting, for tests and for
 * your own signal handling:
 *
 * ```ts
 * const graceful = gracefulShutdown({ server, signals: [] });
 * const report = await graceful.close();        // { requests, abandoned, totals, durationMs, exitCode }
 * ```
 *
 * @throws TypeError (RangeError for a number out of range) naming the option that is wrong.
 */
export function gracefulShutdown(options: GracefulShutdownOptions = {}): GracefulShutdown {
  const resolved = resolveGracefulOptions(options);
  const { servers, container, signals, exit } = resolved;
  const requests = servers.map((server) => trackRequests(server));
  /** The deadlines and the logger, read when the sequence starts (set once). */
  let settings: Settings | undefined;
  const settled = (): Settings => (settings ??= settingsOf(resolved));
  let closing: Promise<GracefulShutdownReport> | undefined;
  /** The first signal, and when it came. */
  let first: { readonly signal: NodeJS.Signals; readonly at: number } | undefined;
  let exited = false;

  const exitOnce = (code: number): void => {
    if (exited) return;
    exited = true;
    detach();
    exit(code);
  };

  /** The process exiting while the sequence runs, by other code than this (`process.exit()` in a library, say): what it abandons is said. */
  const onExitDuring = (code: number): void => {
    if (exited) return;
    // Work is lost: not an exit 0 (node:cluster's workers exit 0 when their primary is gone), which a supervisor reads as all done.
    const lost = code === 0 && live().length + inFlight() > 0;
    const becomes = lost ? '; it exits 1 instead, work being lost' : '';
    logAbandoned({ exitCode: lost ? 1 : code }, `the process is exiting (code ${code}) during graceful shutdown, before the sequence has ended (process.exit() called by other code?)${becomes}`);
    if (lost) process.exitCode = 1;
  };

  const close = (): Promise<GracefulShutdownReport> => {
    if (closing === undefined) {
      watchExit(onExitDuring);
      closing = run(settled(), requests).finally(() => {
        unwatchExit(onExitDuring);
        for (const tracked of requests) tracked.stop();
        detach();
      });
    }
    return closing;
  };

  // Each signal's own listener: `process.emit(signal)` passes no name, a real signal does.
  const listeners = signals.map((signal) => [signal, () => onSignal(signal)] as const);
  const onSignal = (signal: NodeJS.Signals): void => {
    if (first !== undefined) {
      const afterMs = realClock.now() - first.at;
      // One Ctrl-C (or one `kill` of the process group) under a launcher that forwards what its
      // group got (node --watch, tsx watch, npm): the same signal twice, a moment apart.
      if (signal === first.signal && afterMs < sameSignalMs) {
        logSafely(
          settled().logger,
          'info',
          { signal, afterMs: Math.round(afterMs) },
          `${signal} received again ${Math.round(afterMs)} ms after the first: taken as the same one (a launcher such as node --watch forwards the signal its process group got too); a second signal later than ${sameSignalMs} ms exits at once`,
        );
        return;
      }
      forceExit(signal);
      return;
    }
    first = { signal, at: realClock.now() };
    const { timeoutMs, requestsTimeoutMs, logger } = settled();
    if (closing === undefined) {
      logSafely(logger, 'info', { signal, timeoutMs, requestsTimeoutMs }, `${signal} received: shutting down gracefully within ${timeoutMs} ms (a second signal exits at once)`);
    } else {
      // close() began the sequence already, and set its deadline.
      logSafely(logger, 'info', { signal }, `${signal} received: joining the graceful shutdown already under way (close()); a second signal exits at once`);
    }
    close().then(
      (report) => exitOnce(report.exitCode),
      (error: unknown) => {
        logSafely(logger, 'error', { err: error, signal }, 'graceful shutdown failed');
        exitOnce(1);
      },
    );
  };

  /** Logs at `error` what an exit now abandons: the requests in flight and the live tasks, the first of them by name. */
  /** The application's tasks not ended yet. */
  const live = (): { id: string; name: string; status: TaskStatus }[] => {
    try {
      return container.resolve(ApplicationBackground).list({ status: liveStatuses, application: true }).map(({ id, name, status }) => ({ id, name, status }));
    } catch {
      // A container tsyringe has disposed can resolve nothing: its application has closed.
      return [];
    }
  };
  /** The server's requests not answered yet. */
  const inFlight = (): number => requests.reduce((sum, tracked) => sum + tracked.inFlight, 0);

  const logAbandoned = (fields: Record<string, unknown>, head: string): void => {
    const tasks = live();
    const inFlightNow = inFlight();
    const listed = tasks.slice(0, listedAtMost);
    const more = tasks.length - listed.length;
    const names = listed.map((task) => `${task.name} (#${task.id}, ${task.status})`).join(', ') + (more > 0 ? `, and ${more} more` : '');
    logSafely(
      settled().logger,
      'error',
      { ...fields, abandoned: tasks.length, tasks: listed, more, requestsInFlight: inFlightNow },
      `${head}; abandoning ${inFlightNow} request(s) in flight and ${tasks.length} unfinished task(s)` + (tasks.length > 0 ? `: ${names}` : ''),
    );
  };

  const forceExit = (signal: NodeJS.Signals): void => {
    const code = 128 + ((constants.signals as Partial<Record<string, number>>)[signal] ?? 0);
    logAbandoned({ signal, exitCode: code }, `second ${signal} during graceful shutdown: exiting at once with code ${code}`);
    // A turn later: a logger whose promise rejects at once has the entry printed on the console first.
    setImmediate(exitOnce, code);
  };

  let attached = true;
  const detach = (): void => {
    if (!attached) return;
    attached = false;
    for (const [signal, listener] of listeners) unlisten(signal, listener);
  };
  for (const [signal, listener] of listeners) listen(signal, listener);

  return { close, detach, [Symbol.dispose]: detach };
}

/**
 * The wirings that listen to each signal, told in the order they were made, by one process
 * listener per signal however many applications are wired (Node warns past 10 of one event).
 */
const wirings = new Map<NodeJS.Signals, { readonly listeners: Set<() => void>; readonly dispatch: () => void }>();

function listen(signal: NodeJS.Signals, listener: () => void): void {
  let wired = wirings.get(signal);
  if (wired === undefined) {
    const listeners = new Set<() => void>();
    // (`process.emit(signal)` passes no name: each signal has its own.)
    wired = { listeners, dispatch: () => [...listeners].forEach((told) => told()) };
    wirings.set(signal, wired);
    process.on(signal, wired.dispatch);
  } else if (!process.listeners(signal).includes(wired.dispatch)) {
    // Taken off by someone else (`process.removeAllListeners(signal)`): put back.
    process.on(signal, wired.dispatch);
  }
  wired.listeners.add(listener);
}

function unlisten(signal: NodeJS.Signals, listener: () => void): void {
  const wired = wirings.get(signal);
  if (wired?.listeners.delete(listener) !== true || wired.listeners.size > 0) return;
  wirings.delete(signal);
  process.off(signal, wired.dispatch);
}

/** The sequences going on that the process's exit is told to, by one process listener. */
const exitWatchers = new Set<(code: number) => void>();
const onExit = (code: number): void => exitWatchers.forEach((told) => told(code));

function watchExit(watcher: (code: number) => void): void {
  if (exitWatchers.size === 0) process.on('exit', onExit);
  exitWatchers.add(watcher);
}

function unwatchExit(watcher: (code: number) => void): void {
  if (exitWatchers.delete(watcher) && exitWatchers.size === 0) process.off('exit', onExit);
}

interface ResolvedGracefulOptions {
  readonly servers: readonly GracefulServer[];
  readonly container: DependencyContainer;
  /** As given: undefined reads the application's when the sequence starts ({@link settingsOf}). */
  readonly timeoutMs: number | undefined;
  readonly requestsTimeoutMs: number | undefined;
  readonly signals: readonly NodeJS.Signals[];
  readonly logger: BackgroundLogger | undefined;
  readonly exit: (code: number) => void;
}

/** The sequence's application, deadlines and logger, read when it starts. */
interface Settings {
  /** Undefined when none was ever made (a root tsyringe disposed before any Background). */
  readonly app: Application | undefined;
  readonly timeoutMs: number;
  readonly requestsTimeoutMs: number;
  readonly logger: BackgroundLogger;
}

/**
 * The application and the options left to it, read now: what its root registers by the time the
 * sequence starts, though `gracefulShutdown()` may have been called before the registration.
 * Never throws: registrations that cannot be read any more (tsyringe disposed the root, or an
 * invalid one was registered since) leave the application made already, with the options in
 * force, and the problem is logged; a signal's sequence must run whatever was registered.
 */
function settingsOf({ container, timeoutMs, requestsTimeoutMs, logger }: ResolvedGracefulOptions): Settings {
  let app: Application | undefined;
  let unreadable: unknown;
  try {
    const disposed = appOfDisposed(container);
    app = disposed === null ? undefined : (disposed ?? appOf(container));
  } catch (error) {
    unreadable = error;
    app = appMadeFor(container);
  }
  const options = app?.options ?? defaultOptions;
  const deadline = timeoutMs ?? options.drainTimeoutMs;
  const settings: Settings = { app, timeoutMs: deadline, requestsTimeoutMs: Math.min(requestsTimeoutMs ?? Math.floor(deadline / 2), deadline), logger: logger ?? options.logger };
  if (unreadable !== undefined) {
    logSafely(
      settings.logger,
      'error',
      { err: unreadable },
      `graceful shutdown: the application's registered BackgroundOptions could not be read (${messageOf(unreadable)}); going on with the options in force (drain within ${deadline} ms)`,
    );
  }
  if (requestsTimeoutMs !== undefined && requestsTimeoutMs > deadline) {
    logSafely(
      settings.logger,
      'warn',
      { requestsTimeoutMs, timeoutMs: deadline },
      `graceful shutdown: options.requestsTimeoutMs (${requestsTimeoutMs}) is more than the deadline (${deadline} ms, registered since): the requests in flight get ${deadline} ms`,
    );
  }
  return settings;
}

const knownOptions = ['server', 'container', 'timeoutMs', 'requestsTimeoutMs', 'signals', 'logger', 'exit'] as const satisfies readonly (keyof GracefulShutdownOptions)[];

/** Fills in the defaults and checks every option, naming what is wrong. */
function resolveGracefulOptions(options: GracefulShutdownOptions): ResolvedGracefulOptions {
  const at = 'gracefulShutdown(options)';
  if (!isOptionsObject(options)) throw new TypeError(`${at}: options must be an object, got ${describe(options)}`);
  const { server, container = globalContainer, timeoutMs, requestsTimeoutMs, signals = ['SIGTERM', 'SIGINT'], logger, exit = exitOnceWritten } = checkKnownKeys(options, knownOptions, at);
  const servers: readonly unknown[] = server === undefined ? [] : Array.isArray(server) ? server : [server];
  for (const [i, each] of servers.entries()) {
    if (!isServer(each)) {
      throw new TypeError(`${at}: options.server${Array.isArray(server) ? `[${i}]` : ''} must be a Node http or https server (or an array of them), got ${describe(each)}`);
    }
  }
  checkContainer(container, at);
  if (timeoutMs !== undefined && !isTimerMs(timeoutMs)) throw invalid(`${at}: options.timeoutMs`, `an integer from 0 to ${maxTimerMs}`, timeoutMs);
  if (!Array.isArray(signals)) throw new TypeError(`${at}: options.signals must be an array of signal names, got ${describe(signals)}`);
  for (const [i, signal] of (signals as unknown[]).entries()) {
    if (typeof signal !== 'string' || !(signal in constants.signals) || signal === 'SIGKILL' || signal === 'SIGSTOP') {
      throw new TypeError(`${at}: options.signals[${i}] must be the name of a signal a process can listen to ("SIGTERM", "SIGINT", …), got ${describe(signal)}`);
    }
  }
  if (logger !== undefined && !isLogger(logger)) throw new TypeError(`${at}: options.logger must be an object with error, warn, info and debug methods, got ${describe(logger)}`);
  if (typeof exit !== 'function') throw new TypeError(`${at}: options.exit must be a function, got ${describe(exit)}`);
  checkCallback(exit, `${at}: options.exit`);
  // Checked against the deadline when it is given here; one left to the application is read when
  // the sequence starts (it may be registered after this call), which then caps the requests' time.
  if (requestsTimeoutMs !== undefined && !(isTimerMs(requestsTimeoutMs) && requestsTimeoutMs <= (timeoutMs ?? maxTimerMs))) {
    throw invalid(`${at}: options.requestsTimeoutMs`, timeoutMs === undefined ? `an integer from 0 to ${maxTimerMs}` : `an integer from 0 to timeoutMs (${timeoutMs})`, requestsTimeoutMs);
  }
  return Object.freeze({
    servers: servers as readonly GracefulServer[],
    container,
    timeoutMs,
    requestsTimeoutMs,
    signals: Object.freeze([...new Set(signals as readonly NodeJS.Signals[])]), // one listener each: a signal is one signal
    logger,
    exit,
  });
}

/** How long the default `exit` waits for the process's own output to be written. */
const flushMs = 1_000;

/** The end of the deadline kept from the drain for what comes after it: a tenth, a second at most. */
function reserveOf(timeoutMs: number): number {
  return Math.min(1_000, Math.floor(timeoutMs / 10));
}

/**
 * `process.exit(code)` once what was written to `process.stdout` and `process.stderr` has gone
 * (within {@link flushMs}): on a pipe whose reader is slow, writes wait in the stream, and an
 * exit would lose them (the summary, the list of what a second signal abandons).
 */
function exitOnceWritten(code: number): void {
  const waiting = [process.stdout, process.stderr].filter((stream) => stream.writableLength > 0);
  if (waiting.length === 0) {
    process.exit(code);
    return;
  }
  const timer = setTimeout(() => process.exit(code), flushMs);
  let left = waiting.length;
  for (const stream of waiting) {
    stream.once('drain', () => {
      if (--left > 0) return;
      clearTimeout(timer);
      process.exit(code);
    });
  }
}

/** The sequence: requests, then the application, then the summary. */
async function run({ app, timeoutMs, requestsTimeoutMs, logger }: Settings, requests: readonly RequestTracker[]): Promise<GracefulShutdownReport> {
  const startedAt = performance.now();
  for (const tracked of requests) tracked.stopAccepting();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(requests.map((tracked) => tracked.idle)),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, requestsTimeoutMs))),
  ]);
  clearTimeout(timer);
  let finished = 0;
  let cutOff = 0;
  for (const tracked of requests) {
    cutOff += tracked.closeAll();
    finished += tracked.finished;
  }
  // The responses cut off end with their connections, a moment later (a second at most: a server
  // that cannot close its connections leaves them to the process's exit): their request scopes'
  // disposal begins then, and the drain below includes it.
  if (cutOff > 0) await withDeadline(Promise.all(requests.map((tracked) => tracked.idle)), Math.min(cutOffEndMs, Math.max(0, timeoutMs - (performance.now() - startedAt))));
  // The drain ends a reserve before the deadline, so that the pool's close, the summary and the
  // exit come within it too: an orchestrator kills the process at its grace period (`docker stop`:
  // 10 s, the default deadline), and the summary of what was lost would die with it.
  const left = Math.max(0, Math.round(timeoutMs - reserveOf(timeoutMs) - (performance.now() - startedAt)));
  // What shutdown({ container, timeoutMs: left }) does, on the application found as the sequence began.
  const drained = app === undefined ? Object.freeze({ abandoned: 0, requeued: 0, durationMs: 0, totals: Object.freeze(newCounts()) }) : await app.close(left);
  const durationMs = Math.round(performance.now() - startedAt);
  // Nothing abandoned since the start, none by this close (durable jobs not in Redis included), no
  // request cut off; a durable job whose run it abandoned is back in its queue, not lost.
  const { requeued } = drained;
  const exitCode = drained.totals.abandoned === requeued && drained.abandoned === requeued && cutOff === 0 ? 0 : 1;
  const report: GracefulShutdownReport = Object.freeze({ ...drained, durationMs, requests: Object.freeze({ finished, cutOff }), exitCode });
  const { totals } = drained;
  const fields = { durationMs, requests: report.requests, abandoned: drained.abandoned, requeued, totals, exitCode };
  const tasks = `${totals.total} task(s) since the start: ${totals.succeeded} succeeded, ${totals.failed} failed, ${totals.timedOut} timed out, ${totals.cancelled} cancelled, ${totals.skipped} skipped, ${totals.abandoned} abandoned${requeued === 0 ? '' : ` (${requeued} of them durable jobs put back in their queue, to run on another worker)`}`;
  // Durable jobs not in Redis and cancellations not sent are in no total: this close's count, when it says more than the totals.
  const closeAbandoned =
    drained.abandoned === totals.abandoned ? '' : `; this close abandoned ${drained.abandoned} (tasks unfinished at its deadline, durable jobs not in Redis, cancellations not sent)`;
  const summary = `${finished} request(s) finished in flight, ${cutOff} cut off; ${tasks}${closeAbandoned}`;
  if (exitCode === 0) logSafely(logger, 'info', fields, `shut down gracefully in ${durationMs} ms: ${summary}`);
  else logSafely(logger, 'error', fields, `shut down in ${durationMs} ms with work lost: ${summary}`);
  return report;
}

/** One server's requests, as the sequence sees them. */
interface RequestTracker {
  /** Responses that have not finished (nor had their connection close). */
  readonly inFlight: number;
  /** Responses that finished after `stopAccepting()`. */
  readonly finished: number;
  /** Resolves once, after `stopAccepting()`, no response is in flight. */
  readonly idle: Promise<void>;
  /** Closes the server to new connections and its idle ones; from now on, connections close after their last response. */
  stopAccepting(): void;
  /** Closes every connection still open; returns how many responses it cut off, and how many requests Node dropped before. */
  closeAll(): number;
  /** Stops watching the server's requests. */
  stop(): void;
}

/**
 * Watches a server's requests from now on: which are in flight, on which connection. Its
 * listener comes before the application's, so a response can still be told `Connection: close`
 * before the application writes its headers.
 */
function trackRequests(server: GracefulServer): RequestTracker {
  const inFlight = new Set<ServerResponse>();
  /** The responses in flight on each HTTP/1 connection, oldest first (pipelined requests share one). */
  const perSocket = new WeakMap<object, ServerResponse[]>();
  /** Responses this tracker told `Connection: close`. */
  const told = new WeakSet<ServerResponse>();
  /** How each response in flight ends, for its connection's close. */
  const enders = new WeakMap<ServerResponse, (how: 'close') => void>();
  /** Requests taken after the close began that Node could not answer (behind a response that closed their connection). */
  let droppedCount = 0;
  /** The connections made since, and whether each has carried a request. */
  const sockets = new Map<Socket, boolean>();
  const onConnection = (socket: Socket): void => {
    sockets.set(socket, false);
    socket.once('close', () => sockets.delete(socket));
  };
  server.prependListener('connection', onConnection);
  let closing = false;
  let finished = 0;
  let settleIdle!: () => void;
  const idle = new Promise<void>((resolve) => (settleIdle = resolve));

  // Only the newest response on a connection says `Connection: close`: Node closes the
  // connection after such a response, and would drop the pipelined requests behind it.
  const goodbye = (response: ServerResponse): void => {
    if (response.headersSent) return;
    try {
      response.setHeader('Connection', 'close');
      told.add(response);
    } catch {
      // Headers sent meanwhile by a framework's own path: the connection closes at the end anyway.
    }
  };
  const takeBack = (response: ServerResponse): void => {
    if (!told.has(response) || response.headersSent) return;
    response.removeHeader('Connection');
    told.delete(response);
  };

  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    inFlight.add(response);
    // HTTP/2 forbids the header, and its streams share a session: only HTTP/1 connections are handled.
    const socket = request.httpVersionMajor === 1 ? request.socket : undefined;
    let queue: ServerResponse[] | undefined;
    /** Taken behind a response that has told its client `Connection: close` already: Node drops it. */
    let dropped = false;
    if (socket) {
      if (sockets.has(socket)) sockets.set(socket, true);
      queue = perSocket.get(socket);
      if (queue === undefined) {
        const responses: ServerResponse[] = (queue = []);
        perSocket.set(socket, responses);
        // A response waiting behind others on its connection has neither 'finish' nor 'close'
        // when the connection closes before its turn (its client gone, or Node closing it after
        // a response that said `Connection: close`): it ends with the connection.
        socket.once('close', () => {
          for (const waiting of [...responses]) enders.get(waiting)?.('close');
        });
      }
      const newest = queue[queue.length - 1];
      if (closing && newest !== undefined) {
        if (told.has(newest) && newest.headersSent) dropped = true;
        else takeBack(newest);
      }
      queue.push(response);
      if (closing) goodbye(response);
    }
    let ended = false;
    const end = (how: 'finish' | 'close'): void => {
      if (ended) return;
      ended = true;
      enders.delete(response);
      inFlight.delete(response);
      if (queue) queue.splice(queue.indexOf(response), 1);
      if (!closing) return;
      if (how === 'finish') finished++;
      else if (dropped) droppedCount++;
      // The response is handed to the system: close its connection now rather than after a
      // round trip, so that no request the client sends on it meanwhile is taken and then
      // cannot be answered. (Not while the request's body is still coming: closing on unread
      // data resets the connection, which may cost the client the response; that one closes
      // at the end.)
      if (socket && queue!.length === 0 && request.complete) socket.destroy();
      if (inFlight.size === 0) settleIdle();
    };
    enders.set(response, end);
    response.once('finish', () => end('finish'));
    response.once('close', () => end('close'));
  };
  server.prependListener('request', onRequest);

  return {
    get inFlight() {
      return inFlight.size;
    },
    get finished() {
      return finished;
    },
    idle,
    stopAccepting() {
      closing = true;
      // The server stops listening. Not by its own close(): a Node HTTP server's closes its idle
      // connections too, and takes for idle one whose response has ended but is still being
      // written to a slow client, which it would cut short. (The error, when the server was not
      // listening, says nothing the sequence needs.)
      if (server instanceof NetServer) {
        NetServer.prototype.close.call(server, () => undefined);
        // Still starting (Fastify's listen() waits for its plugins): it stops listening once it
        // starts, after the other 'listening' listeners (Fastify's reads the address), before any
        // connection can be taken.
        if (!server.listening) server.once('listening', () => soon(() => NetServer.prototype.close.call(server, () => undefined)));
      } else server.close(() => undefined);
      // Idle connections close now: those that have carried requests and have none in flight.
      // (One that has not carried one yet may be receiving its first: it is left to end with
      // its response, or to closeAll().)
      for (const [socket, used] of sockets) if (used && (perSocket.get(socket)?.length ?? 0) === 0) socket.destroy();
      for (const response of inFlight) {
        const queue = response.req.httpVersionMajor === 1 ? perSocket.get(response.req.socket) : undefined;
        if (queue?.[queue.length - 1] === response) goodbye(response);
      }
      if (inFlight.size === 0) settleIdle();
    },
    closeAll() {
      const cutOff = inFlight.size + droppedCount;
      // The server's own close too now, for what it ends besides (its timeouts' checks).
      server.close(() => undefined);
      server.closeAllConnections?.();
      return cutOff;
    },
    stop() {
      server.removeListener('request', onRequest);
      server.removeListener('connection', onConnection);
    },
  };
}

function isServer(value: unknown): value is GracefulServer {
  const server = value as Partial<GracefulServer> | null | undefined;
  return typeof server?.close === 'function' && typeof server.prependListener === 'function' && typeof server.removeListener === 'function';
}

