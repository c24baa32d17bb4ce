import { performance } from 'node:perf_hooks';
import { inspect } from 'node:util';
import type { TaskContext } from './context.js';
import {
  ResultTimeoutError,
  TaskAbandonedError,
  TaskCancelledError,
  TaskNonErrorError,
  TaskSkippedError,
  TaskTimeoutError,
} from './errors.js';
import type { BackgroundLogger } from './logger.js';
import type { Job, Scheduler } from './scheduler.js';
import { backoffDelay, type ResolvedTaskOptions } from './task-options.js';
import type { Tracker } from './tracker.js';

/**
 * Where a task is in its life: `delayed` (waiting for its time) → `queued` (waiting for a slot)
 * → `running` → `retrying` (waiting to try again) → … → one of the final states: `succeeded`,
 * `failed`, `timedOut`, `cancelled` (through its handle), `skipped` (a task it was to run after
 * did not succeed) or `abandoned` (its scope's disposal gave up on it).
 */
export type TaskStatus =
  | 'queued'
  | 'delayed'
  | 'running'
  | 'retrying'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'timedOut'
  | 'skipped'
  | 'abandoned';

/** The statuses a task ends in. */
export const finalStatuses: ReadonlySet<TaskStatus> = new Set(['succeeded', 'failed', 'cancelled', 'timedOut', 'skipped', 'abandoned']);

/** What a task last reported through `TaskContext.progress()`. */
export interface TaskProgress {
  /** From 0 to 1. */
  readonly fraction: number;
  readonly message: string | undefined;
}

/** Options of {@link TaskHandle.result}. */
export interface ResultOptions {
  /**
   * Wait at most this long; then the promise rejects with `ResultTimeoutError` (the task goes
   * on).
   */
  timeoutMs?: number | undefined;
}

/**
 * What `add()` returns: a view of one task. Ignoring it is fine: a failing task is logged, and
 * no promise exists until {@link TaskHandle.result} is called.
 */
export interface TaskHandle<R = unknown> {
  /** Unique in the process, increasing. */
  readonly id: number;
  /** The definition's name, the class name, or the function's name (`anonymous` if none). */
  readonly name: string;
  /** Where the task is now. */
  readonly status: TaskStatus;
  /** The current attempt, from 1 (0 before the first starts). */
  readonly attempt: number;
  /** What the task last reported through `TaskContext.progress()`, if anything. */
  readonly progress: TaskProgress | undefined;
  /**
   * Cancels the task: a queued, delayed or retrying task never starts again; a running one
   * sees its `TaskContext.signal` abort (a worker task's thread is terminated after a grace
   * period). The task ends `cancelled` at once and frees its slot. Returns whether the task had
   * not ended yet.
   */
  cancel(reason?: unknown): boolean;
  /**
   * The task's outcome: its value, or a rejection with its error (`TaskCancelledError`,
   * `TaskTimeoutError`, `TaskSkippedError`, `TaskAbandonedError`, or what the task threw).
   * Without options, created on the first call and shared by later calls.
   */
  result(options?: ResultOptions): Promise<R>;
}

/** A task's outcome; failures are always `Error`s (non-Errors are wrapped). */
type Settled = { ok: true; value: unknown } | { ok: false; error: Error };

/**
 * One task, from `add()` to its outcome: its handle, its scheduling record and its place in
 * its scope's list of live tasks, in one object.
 */
export class TaskRun implements TaskHandle, Job {
  readonly id: number;
  readonly name: string;
  readonly sync: boolean;
  /** The scheduler it waits in for a slot: the event loop's, or the worker pool's. */
  readonly lane: Scheduler;
  readonly priority: number;
  status: TaskStatus = 'queued';
  attempt = 0;
  progress: TaskProgress | undefined = undefined;
  next: Job | undefined = undefined;
  holding = false;
  /** Links in the scope's list of live tasks. */
  prevLive: TaskRun | undefined = undefined;
  nextLive: TaskRun | undefined = undefined;
  /** When a delayed task is due (epoch ms), or 0. */
  dueAt = 0;
  /** When the task reached its final state (epoch ms), set when it is kept on record; or 0. */
  endedAt = 0;
  readonly tracker: Tracker;
  readonly #options: ResolvedTaskOptions;
  #fn: ((...args: unknown[]) => unknown) | undefined;
  #self: unknown;
  #args: unknown[] | undefined;
  #contextAt: number;
  /** The current attempt's controller, created when something asks for its signal. */
  #controller: AbortController | undefined;
  /** The timeout of the running attempt, or the wait of a delayed or retrying task. */
  #timer: NodeJS.Timeout | undefined;
  #startedAt = 0;
  #outcome: Settled | undefined;
  #result: Promise<unknown> | undefined;
  #settle: ((outcome: Settled) => void) | undefined;

  constructor(
    id: number,
    name: string,
    fn: (...args: never[]) => unknown,
    self: unknown,
    args: unknown[],
    sync: boolean,
    contextAt: number,
    tracker: Tracker,
    lane: Scheduler,
    options: ResolvedTaskOptions,
  ) {
    this.id = id;
    this.name = name;
    this.#fn = fn as (...args: unknown[]) => unknown;
    this.#self = self;
    this.#args = args;
    this.sync = sync;
    this.#contextAt = contextAt;
    this.tracker = tracker;
    this.lane = lane;
    this.#options = options;
    this.priority = options.priority;
  }

  /** The current attempt's signal: aborted on cancellation, timeout or abandonment. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  /** Joins its lane now, or at `dueAt` when that is in the future. */
  enqueue(): void {
    const wait = this.dueAt === 0 ? 0 : this.dueAt - Date.now();
    if (wait > 0) {
      this.status = 'delayed';
      this.#timer = setTimeout(this.#due, Math.min(wait, 2 ** 31 - 1));
    } else {
      this.status = 'queued';
      this.lane.submit(this);
    }
  }

  /**
   * Waits for every task in `handles` to succeed, then joins its lane (at `dueAt`, if later);
   * is skipped as soon as one of them ends otherwise.
   */
  after(handles: readonly TaskRun[]): void {
    this.status = 'delayed';
    let left = handles.length;
    for (const handle of handles) {
      handle.result().then(
        () => {
          if (--left === 0 && this.status === 'delayed') this.enqueue();
        },
        (error: unknown) => {
          if (this.status === 'delayed') this.skip(new TaskSkippedError(this.name, this.id, handle, error));
        },
      );
    }
  }

  readonly #due = (): void => {
    this.#timer = undefined;
    if (this.status === 'delayed') this.enqueue();
  };

  start(): void {
    this.status = 'running';
    const attempt = ++this.attempt;
    this.#controller = undefined;
    const fn = this.#fn!;
    const args = this.#args!;
    if (this.#contextAt >= 0) args[this.#contextAt] = this.#context(attempt);
    const { timeoutMs } = this.#options;
    if (timeoutMs !== undefined) this.#timer = setTimeout(this.#timedOut, timeoutMs, attempt);
    const startedAt = (this.#startedAt = performance.now());
    let awaited: Promise<unknown> | undefined;
    let returned: unknown;
    try {
      returned = fn.apply(this.#self, args);
      // Inside the try: a returned Proxy can throw from `instanceof` or from reading `then`.
      if (returned instanceof Promise) awaited = returned;
      else if (isThenable(returned)) awaited = Promise.resolve(returned);
    } catch (error) {
      this.#attemptFailed(attempt, error);
      return;
    } finally {
      if (this.sync) this.#checkBlocking(performance.now() - startedAt);
    }
    if (awaited === undefined) {
      this.#attemptSucceeded(attempt, returned);
      return;
    }
    awaited.then(
      (value) => {
        this.#attemptSucceeded(attempt, value);
      },
      (error: unknown) => {
        this.#attemptFailed(attempt, error);
      },
    );
  }

  cancel(reason?: unknown): boolean {
    if (finalStatuses.has(this.status)) return false;
    const error = new TaskCancelledError(this.name, this.id, reason);
    if (!this.#stop(error)) return false;
    this.#log('debug', { attempt: this.attempt }, `task "${this.name}" was cancelled`);
    this.#end('cancelled', { ok: false, error });
    return true;
  }

  /** Gives up on a task that has not ended; returns whether it had not. */
  abandon(drainTimeoutMs: number, why: string): boolean {
    const error = new TaskAbandonedError(this.name, this.id, drainTimeoutMs, why);
    if (!this.#stop(error)) return false;
    this.#end('abandoned', { ok: false, error });
    return true;
  }

  /** Ends a task that never ran because one it was to run after did not succeed. */
  skip(error: Error): void {
    if (!this.#stop(error)) return;
    this.#log('debug', { err: error }, `task "${this.name}" was skipped`);
    this.#end('skipped', { ok: false, error });
  }

  /** Records progress; called by the task's context (or, for a worker task, by the pool). */
  reportProgress(fraction: number, message?: string): void {
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      throw new RangeError(`progress(fraction): fraction must be a number from 0 to 1, got ${String(fraction)}`);
    }
    if (this.status === 'running') this.progress = Object.freeze({ fraction, message });
  }

  result(options?: ResultOptions): Promise<unknown> {
    const timeoutMs = options?.timeoutMs;
    if (timeoutMs !== undefined && !(Number.isSafeInteger(timeoutMs) && timeoutMs >= 0)) {
      throw new RangeError(`handle.result(options): options.timeoutMs must be a non-negative integer, got ${String(timeoutMs)}`);
    }
    if (this.#result === undefined) {
      const outcome = this.#outcome;
      if (outcome === undefined) {
        this.#result = new Promise((resolve, reject) => {
          this.#settle = (o) => {
            if (o.ok) resolve(o.value);
            else reject(o.error);
          };
        });
      } else {
        this.#result = outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
      }
    }
    if (timeoutMs === undefined || this.#outcome !== undefined) return this.#result;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(new ResultTimeoutError(this.name, this.id, timeoutMs, this.status));
      }, timeoutMs);
    });
    return Promise.race([this.#result, expired]).finally(() => {
      clearTimeout(timer);
    });
  }

  /** Stops whatever the task is doing; returns false when it had already ended. */
  #stop(reason: Error): boolean {
    switch (this.status) {
      case 'queued':
        this.lane.withdraw(this);
        return true;
      case 'delayed':
      case 'retrying':
        clearTimeout(this.#timer);
        return true;
      case 'running':
        clearTimeout(this.#timer);
        this.#controller?.abort(reason);
        this.lane.release();
        return true;
      default:
        return false;
    }
  }

  #attemptSucceeded(attempt: number, value: unknown): void {
    if (this.status !== 'running' || attempt !== this.attempt) return;
    clearTimeout(this.#timer);
    this.lane.release();
    this.#end('succeeded', { ok: true, value });
  }

  #attemptFailed(attempt: number, thrown: unknown): void {
    if (this.status !== 'running' || attempt !== this.attempt) return;
    clearTimeout(this.#timer);
    this.lane.release();
    const error = isError(thrown) ? thrown : new TaskNonErrorError(this.name, thrown, printed(thrown));
    this.#afterFailure(error, 'failed');
  }

  readonly #timedOut = (attempt: number): void => {
    if (this.status !== 'running' || attempt !== this.attempt) return;
    const timeoutMs = this.#options.timeoutMs!;
    const error = new TaskTimeoutError(this.name, this.id, timeoutMs, attempt);
    this.#controller?.abort(error);
    this.lane.release();
    this.#afterFailure(error, 'timedOut');
  };

  /** Retries a failed attempt when the options allow it; ends the task otherwise. */
  #afterFailure(error: Error, finalStatus: 'failed' | 'timedOut'): void {
    const attempt = this.attempt;
    const durationMs = this.#elapsed();
    const { retries, retryIf, backoff } = this.#options;
    if (attempt <= retries && this.#worthRetrying(error, attempt, retryIf)) {
      const delayMs = backoffDelay(backoff, attempt);
      this.#log(
        'warn',
        { attempt, retries, durationMs, retryInMs: delayMs, err: error },
        `task "${this.name}" ${finalStatus === 'timedOut' ? 'timed out' : 'failed'} (attempt ${attempt} of ${retries + 1}); retrying in ${delayMs} ms`,
      );
      this.status = 'retrying';
      this.progress = undefined;
      this.#timer = setTimeout(this.#retry, delayMs);
      return;
    }
    this.#log('error', { attempt, durationMs, err: error }, `task "${this.name}" ${finalStatus === 'timedOut' ? 'timed out' : 'failed'}`);
    this.#end(finalStatus, { ok: false, error });
  }

  #worthRetrying(error: Error, attempt: number, retryIf: ResolvedTaskOptions['retryIf']): boolean {
    if (retryIf === undefined) return true;
    try {
      return retryIf(error, attempt) === true;
    } catch (predicateError) {
      this.#log('error', { attempt, err: predicateError }, `retryIf of task "${this.name}" threw; the task is not retried`);
      return false;
    }
  }

  readonly #retry = (): void => {
    this.#timer = undefined;
    if (this.status !== 'retrying') return;
    this.status = 'queued';
    this.lane.submit(this);
  };

  #end(status: TaskStatus, outcome: Settled): void {
    this.status = status;
    this.#outcome = outcome;
    this.#fn = undefined;
    this.#self = undefined;
    this.#args = undefined;
    this.#timer = undefined;
    this.tracker.settled(this);
    this.#settle?.(outcome);
    this.#settle = undefined;
  }

  #checkBlocking(blockedMs: number): void {
    const limit = this.tracker.options.warnBlockingMs;
    if (limit > 0 && blockedMs > limit) {
      this.#log(
        'warn',
        { blockedMs: Math.round(blockedMs), warnBlockingMs: limit },
        `sync task "${this.name}" blocked the event loop for ${Math.round(blockedMs)} ms; ` +
          'move CPU-bound work to a worker thread with workerTask()',
      );
    }
  }

  #elapsed(): number {
    return Math.round((performance.now() - this.#startedAt) * 10) / 10;
  }

  /** Logs through the scope's logger with the task's fields; a throwing logger is survived. */
  #log(level: keyof BackgroundLogger, fields: Record<string, unknown>, message: string): void {
    try {
      this.tracker.options.logger[level]({ task: this.name, taskId: this.id, ...fields }, message);
    } catch (loggerError) {
      console.error('[tsyringe-background] the logger threw while logging:', message, loggerError);
    }
  }

  #context(attempt: number): TaskContext {
    const base = this.tracker.options.logger;
    const fields = { task: this.name, taskId: this.id, attempt };
    const withTask =
      (level: keyof BackgroundLogger) =>
      (extra: Record<string, unknown>, message: string): void => {
        base[level]({ ...fields, ...extra }, message);
      };
    return Object.freeze({
      id: this.id,
      name: this.name,
      attempt,
      signal: this.signal,
      logger: {
        error: withTask('error'),
        warn: withTask('warn'),
        info: withTask('info'),
        debug: withTask('debug'),
      },
      progress: (fraction: number, message?: string) => {
        if (attempt === this.attempt) this.reportProgress(fraction, message);
      },
    });
  }
}

/** Whether a thrown value is an Error; a revoked Proxy (whose `instanceof` throws) is not. */
function isError(value: unknown): value is Error {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** A non-Error thrown value, printed safely (circular objects, symbols, `undefined`). */
function printed(value: unknown): string {
  try {
    return inspect(value, { depth: 2, breakLength: Infinity, maxStringLength: 200 });
  } catch {
    return Object.prototype.toString.call(value);
  }
}
