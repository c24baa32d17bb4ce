import { performance } from 'node:perf_hooks';
import { inspect } from 'node:util';
import type { TaskContext } from './context.js';
import { TaskAbandonedError, TaskCancelledError, TaskNonErrorError } from './errors.js';
import type { BackgroundLogger } from './logger.js';
import type { Job, Scheduler } from './scheduler.js';
import type { Tracker } from './tracker.js';

/**
 * Where a task is in its life. `queued` → `running` → one of the final states:
 * `succeeded`, `failed`, `cancelled` (through its handle) or `abandoned` (its scope's disposal
 * gave up on it). The other states belong to task control (delays, retries, timeouts,
 * dependencies between tasks).
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
  /**
   * Cancels the task: a queued task never starts; a running one sees its `TaskContext.signal`
   * abort, and ends as `cancelled` unless it succeeds anyway. Returns whether the task was
   * still queued or running.
   */
  cancel(reason?: unknown): boolean;
  /**
   * The task's outcome: its value, or a rejection with its error (`TaskCancelledError`,
   * `TaskAbandonedError`, or what the task threw). Created on the first call; later calls
   * return the same promise.
   */
  result(): Promise<R>;
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
  status: TaskStatus = 'queued';
  next: Job | undefined = undefined;
  holding = false;
  /** Links in the scope's list of live tasks. */
  prevLive: TaskRun | undefined = undefined;
  nextLive: TaskRun | undefined = undefined;
  #tracker: Tracker;
  #fn: ((...args: unknown[]) => unknown) | undefined;
  #self: unknown;
  #args: unknown[] | undefined;
  #contextAt: number;
  #controller: AbortController | undefined;
  #cancelReason: unknown;
  #cancelRequested = false;
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
    controller?: AbortController,
  ) {
    this.id = id;
    this.name = name;
    this.#fn = fn as (...args: unknown[]) => unknown;
    this.#self = self;
    this.#args = args;
    this.sync = sync;
    this.#contextAt = contextAt;
    this.#tracker = tracker;
    this.lane = lane;
    this.#controller = controller;
  }

  start(): void {
    this.status = 'running';
    const fn = this.#fn!;
    const args = this.#args!;
    if (this.#contextAt >= 0) args[this.#contextAt] = this.#context();
    const startedAt = (this.#startedAt = performance.now());
    let returned: unknown;
    try {
      returned = fn.apply(this.#self, args);
    } catch (error) {
      this.#failed(error);
      return;
    } finally {
      if (this.sync) this.#checkBlocking(performance.now() - startedAt);
    }
    if (returned instanceof Promise) {
      returned.then(this.#succeeded, this.#failed);
    } else if (isThenable(returned)) {
      Promise.resolve(returned).then(this.#succeeded, this.#failed);
    } else {
      this.#succeeded(returned);
    }
  }

  cancel(reason?: unknown): boolean {
    if (this.status === 'queued') {
      this.lane.withdraw(this);
      this.#end('cancelled', { ok: false, error: new TaskCancelledError(this.name, this.id, reason) });
      return true;
    }
    if (this.status === 'running' && !this.#cancelRequested) {
      this.#cancelRequested = true;
      this.#cancelReason = reason;
      this.#controller?.abort(new TaskCancelledError(this.name, this.id, reason));
      return true;
    }
    return false;
  }

  /** Gives up on a queued or running task; returns whether it was either. */
  abandon(drainTimeoutMs: number, why: string): boolean {
    const error = new TaskAbandonedError(this.name, this.id, drainTimeoutMs, why);
    if (this.status === 'queued') {
      this.lane.withdraw(this);
    } else if (this.status === 'running') {
      this.#controller?.abort(error);
      this.lane.release();
    } else {
      return false;
    }
    this.#end('abandoned', { ok: false, error });
    return true;
  }

  result(): Promise<unknown> {
    if (this.#result === undefined) {
      const outcome = this.#outcome;
      if (outcome === undefined) {
        this.#result = new Promise((resolve, reject) => {
          this.#settle = (o) => (o.ok ? resolve(o.value) : reject(o.error));
        });
      } else {
        this.#result = outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
      }
    }
    return this.#result;
  }

  readonly #succeeded = (value: unknown): void => {
    if (this.status !== 'running') return;
    this.lane.release();
    this.#end('succeeded', { ok: true, value });
  };

  readonly #failed = (thrown: unknown): void => {
    if (this.status !== 'running') return;
    this.lane.release();
    if (this.#cancelRequested) {
      const error = new TaskCancelledError(this.name, this.id, this.#cancelReason);
      this.#log('debug', { err: thrown }, `task "${this.name}" was cancelled while running`);
      this.#end('cancelled', { ok: false, error });
      return;
    }
    const error = thrown instanceof Error ? thrown : new TaskNonErrorError(this.name, thrown, printed(thrown));
    this.#log('error', { attempt: 1, durationMs: this.#elapsed(), err: error }, `task "${this.name}" failed`);
    this.#end('failed', { ok: false, error });
  };

  #end(status: TaskStatus, outcome: Settled): void {
    this.status = status;
    this.#outcome = outcome;
    this.#fn = undefined;
    this.#self = undefined;
    this.#args = undefined;
    this.#tracker.settled(this);
    this.#settle?.(outcome);
    this.#settle = undefined;
  }

  #checkBlocking(blockedMs: number): void {
    const limit = this.#tracker.options.warnBlockingMs;
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
      this.#tracker.options.logger[level]({ task: this.name, taskId: this.id, ...fields }, message);
    } catch (loggerError) {
      console.error('[tsyringe-background] the logger threw while logging:', message, loggerError);
    }
  }

  #context(): TaskContext {
    const controller = (this.#controller = new AbortController());
    const base = this.#tracker.options.logger;
    const fields = { task: this.name, taskId: this.id };
    const withTask =
      (level: keyof BackgroundLogger) =>
      (extra: Record<string, unknown>, message: string): void => {
        base[level]({ ...fields, ...extra }, message);
      };
    return Object.freeze({
      id: this.id,
      name: this.name,
      attempt: 1,
      signal: controller.signal,
      logger: {
        error: withTask('error'),
        warn: withTask('warn'),
        info: withTask('info'),
        debug: withTask('debug'),
      },
    });
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
