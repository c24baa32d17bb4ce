import { performance } from 'node:perf_hooks';
import type { ResolvedOptions } from './options.js';
import { Pool } from './pool.js';
import { TaskCancelledError } from './errors.js';
import type { TaskRun } from './run.js';
import type { Schedule } from './schedule.js';
import { Scheduler } from './scheduler.js';
import { newCounts, withDeadline, type Tracker } from './tracker.js';

/** The lifecycle of an application: open, closing (draining every scope), closed. */
export type AppState = 'open' | 'closing' | 'closed';

/** What an application-wide close reports. */
export interface ShutdownReport {
  /** Tasks still queued or running when the deadline passed, aborted and abandoned. */
  readonly abandoned: number;
  /** How long the close took, in milliseconds. */
  readonly durationMs: number;
}

/**
 * What every scope of one application shares: the concurrency limit, the set of scopes that
 * have work, and the application-wide close.
 */
export class App {
  readonly scheduler: Scheduler;
  /** Scopes with queued or running tasks. Idle scopes are not held, so they can be collected. */
  readonly busy = new Set<Tracker>();
  /** Periodic tasks not stopped yet. */
  readonly schedules = new Set<Schedule>();
  /** Producers waiting for room in the queue (`waitForRoom()`). */
  #roomWaiters: (() => void)[] = [];
  /** Tasks added, and tasks ended in each final state, in the whole application. */
  readonly counts = newCounts();
  /** Finished tasks still shown by `get()` and `list()`, oldest first (bounded by `records`). */
  readonly #finished: TaskRun[] = [];
  #finishedStart = 0;
  #state: AppState = 'open';
  #closing: Promise<ShutdownReport> | undefined;
  #options: ResolvedOptions;
  #pool: Pool | undefined;

  /** @param options the options of the application's root container */
  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.scheduler = new Scheduler(options.concurrency);
  }

  /** The worker-thread pool, created with the first worker task. */
  get pool(): Pool {
    this.#pool ??= new Pool(this.#options.pool, this.#options.logger);
    return this.#pool;
  }

  /** Whether the worker-thread pool has been created. */
  get hasPool(): boolean {
    return this.#pool !== undefined;
  }

  /** Tasks waiting for a slot, on the event loop and for the worker pool. */
  get queued(): number {
    return this.scheduler.queued + (this.#pool?.admission.queued ?? 0);
  }

  /** Tasks holding a slot, on the event loop and on the worker pool. */
  get running(): number {
    return this.scheduler.running + (this.#pool?.admission.running ?? 0);
  }

  /** Resolves once the queue has room for one more task. */
  waitForRoom(): Promise<void> {
    if (this.queued < this.#options.maxQueued || this.#state !== 'open') return Promise.resolve();
    return new Promise((resolve) => {
      this.#roomWaiters.push(resolve);
      this.scheduler.watcher = this.#checkRoom;
      if (this.#pool !== undefined) this.#pool.admission.watcher = this.#checkRoom;
    });
  }

  readonly #checkRoom = (): void => {
    const room = this.#options.maxQueued - this.queued;
    if (room <= 0 && this.#state === 'open') return;
    const ready = this.#state === 'open' ? this.#roomWaiters.splice(0, room) : this.#roomWaiters.splice(0);
    for (const resolve of ready) resolve();
    if (this.#roomWaiters.length === 0) {
      this.scheduler.watcher = undefined;
      if (this.#pool !== undefined) this.#pool.admission.watcher = undefined;
    }
  };

  /** Keeps a finished task for `get()` and `list()`, within the `records` bounds. */
  ended(run: TaskRun): void {
    this.counts[run.status as keyof typeof this.counts]++;
    const { maxCount } = this.#options.records;
    if (maxCount === 0) return;
    run.endedAt = Date.now();
    this.#finished.push(run);
    if (this.#finished.length - this.#finishedStart > maxCount) this.#finishedStart++;
    if (this.#finishedStart > 1024 && this.#finishedStart * 2 > this.#finished.length) {
      this.#finished.splice(0, this.#finishedStart);
      this.#finishedStart = 0;
    }
  }

  /** The finished tasks still on record, oldest first. */
  finished(): TaskRun[] {
    const { maxAgeMs } = this.#options.records;
    const since = Date.now() - maxAgeMs;
    let start = this.#finishedStart;
    while (start < this.#finished.length && this.#finished[start]!.endedAt < since) start++;
    this.#finishedStart = start;
    return this.#finished.slice(start);
  }

  /** The options of the application's root container. */
  get options(): ResolvedOptions {
    return this.#options;
  }

  /**
   * Follows the options of the root, so that a registration made after the first
   * `resolve(Background)` still sets the application-wide limit.
   */
  configure(options: ResolvedOptions): void {
    if (options === this.#options) return;
    this.#options = options;
    this.scheduler.limit = options.concurrency;
  }

  get state(): AppState {
    return this.#state;
  }

  /**
   * Stops intake in every scope, waits up to `timeoutMs` for all of them to drain, abandons
   * what is left, then closes shared resources (the worker pool, within what is left of the
   * deadline). Idempotent; never rejects.
   */
  close(timeoutMs: number): Promise<ShutdownReport> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<ShutdownReport> {
    const startedAt = performance.now();
    this.#state = 'closing';
    for (const schedule of [...this.schedules]) schedule.stop(new TaskCancelledError(schedule.name, schedule.id, 'the application was closed'));
    this.#checkRoom();
    let abandoned = 0;
    for (const scope of [...this.busy]) {
      scope.close();
      abandoned += scope.abandonDelayedPast(Date.now() + timeoutMs, timeoutMs, 'application');
    }
    await withDeadline(this.#drainAll(), timeoutMs);
    for (const scope of [...this.busy]) abandoned += scope.abandon(timeoutMs, 'application');
    this.#state = 'closed';
    await this.#pool?.close(Math.max(0, timeoutMs - (performance.now() - startedAt)));
    return Object.freeze({ abandoned, durationMs: Math.round(performance.now() - startedAt) });
  }

  async #drainAll(): Promise<void> {
    while (this.busy.size > 0) await Promise.all(Array.from(this.busy, (scope) => scope.drain()));
  }
}
