import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { container, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, expect } from 'vitest';
import { Background, BackgroundOptions, observeTasks, type BackgroundLogger, type TaskEvent } from '../src/index.js';

/** A promise with its resolve and reject exposed: a gate a test opens when it chooses. */
export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export interface LogEntry {
  level: keyof BackgroundLogger;
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that records every entry, for assertions. */
export function captureLogger(): BackgroundLogger & { entries: LogEntry[]; at(level: LogEntry['level']): LogEntry[] } {
  const entries: LogEntry[] = [];
  const record = (level: LogEntry['level']) => (fields: Record<string, unknown>, message: string) => {
    entries.push({ level, fields, message });
  };
  return {
    entries,
    at: (level) => entries.filter((entry) => entry.level === level),
    error: record('error'),
    warn: record('warn'),
    info: record('info'),
    debug: record('debug'),
  };
}

/**
 * A fresh application root for one test: a child of the global container registered as its
 * own application (`root: true`), so its concurrency limit and close are the test's alone.
 */
export function freshApp(options: BackgroundOptions = {}): DependencyContainer {
  const root = container.createChildContainer();
  root.register(BackgroundOptions, { useValue: { root: true, ...options } });
  return root;
}

/**
 * A full garbage collection, from this process: Vitest's workers run without --expose-gc, but
 * the flag can be set at run time, and a fresh context then sees V8's `gc`.
 */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Lets every pending microtask and one macrotask turn run. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** What `promise` rejected with; a promise that resolves fails the test. */
export function failureOf(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, but the promise resolved');
    },
    (error: unknown) => error as Error & Record<string, unknown>,
  );
}

/** Waits 1 ms for `handle`'s result; a weak reference to the ResultTimeoutError that ends the wait (none kept here). */
export async function expiredWait(handle: { result(options: { timeoutMs: number }): Promise<unknown> }): Promise<WeakRef<object>> {
  const error = await failureOf(handle.result({ timeoutMs: 1 }));
  if (error.code !== 'ERR_RESULT_TIMEOUT') throw new Error('the wait should have expired');
  return new WeakRef(error);
}

/**
 * Records unhandled rejections and uncaught exceptions during each test of the calling file, and
 * fails the test that saw any. Tests may also assert on the arrays themselves.
 */
export function watchProcessErrors(): { readonly unhandled: unknown[]; readonly uncaught: unknown[] } {
  const seen = { unhandled: [] as unknown[], uncaught: [] as unknown[] };
  const onUnhandled = (reason: unknown) => seen.unhandled.push(reason);
  const onUncaught = (error: unknown) => seen.uncaught.push(error);
  beforeEach(() => {
    seen.unhandled.length = seen.uncaught.length = 0;
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtExceptionMonitor', onUncaught);
  });
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled);
    process.off('uncaughtExceptionMonitor', onUncaught);
    expect(seen).toEqual({ unhandled: [], uncaught: [] });
  });
  return seen;
}

/**
 * A cell for the `holds` worker fixture: `entered()` resolves once the task has started on its
 * thread, `open()` lets it return.
 */
export function holdCell(): { cell: Int32Array; entered(): Promise<void>; open(): void } {
  const cell = new Int32Array(new SharedArrayBuffer(8));
  // Atomics.waitAsync is in Node 20 but not in TypeScript's ES2022 library.
  const atomics = Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { value: Promise<unknown> | string } };
  return {
    cell,
    async entered() {
      await atomics.waitAsync(cell, 1, 0).value;
    },
    open() {
      Atomics.store(cell, 0, 1);
      Atomics.notify(cell, 0);
    },
  };
}

/**
 * A fresh application for one test, pushed on `roots` (for the file's afterEach to shut down),
 * with a captured logger, every lifecycle event collected in `events`, and a request scope's
 * Background.
 */
export function observedApp(roots: DependencyContainer[], options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const root = freshApp({ logger, ...options });
  roots.push(root);
  const events: TaskEvent[] = [];
  const stop = observeTasks((event) => void events.push(event), { container: root });
  const scope = root.createChildContainer();
  return { root, logger, events, stop, scope, bg: scope.resolve(Background) };
}
