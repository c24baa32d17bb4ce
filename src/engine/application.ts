/**
 * What every scope of one application shares: the event loop's lane, the worker pool, the scopes
 * that have work, the periodic tasks, the records of finished tasks, and the application-wide
 * close. It owns its scopes; they report to it through {@link ScopeHost}.
 */
import { AsyncResource } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { BackgroundDisposedError, TaskCancelledError } from '../model/errors.js';
import type { AttemptWrapper, TaskEvent, TaskHooks, TaskObserver } from '../model/events.js';
import { newCounts, type Counts, type FinalStatus } from '../model/handle.js';
import { logSafely } from '../model/logger.js';
import type { ResolvedOptions } from '../model/options.js';
import type { CloseOutcome, CloseParticipant, JobContext, Runner } from '../model/runner.js';
import { soon } from '../model/soon.js';
import { monotonicNow } from '../model/timing.js';
import { withDeadline } from './deadlines.js';
import { Lane } from './lane.js';
import type { Periodic } from './periodic.js';
import { Pool } from './pool.js';
import { Records } from './records.js';
import type { Scope, ScopeHost, ScopeState } from './scope.js';
import type { TaskRun } from './task-run.js';

/** The lifecycle of an application: open, closing (draining every scope), closed. */
export type ApplicationState = 'open' | 'closing' | 'closed';

/** What an application-wide close reports. */
export interface ShutdownReport {
  /**
   * Tasks this close abandoned: still unfinished at its deadline (or delayed past it); and, with a
   * durable backend, the durable jobs added before it that were not yet in Redis a second past
   * its deadline, and the cancellations not yet sent (logged at `error`).
   */
  readonly abandoned: number;
  /**
   * Of `abandoned` (and of `totals.abandoned`): runs of durable jobs whose jobs this close put back
   * in their queue, where another worker runs them (their attempt not counted): not lost.
   */
  readonly requeued: number;
  /** How long the close took, in milliseconds. */
  readonly durationMs: number;
  /**
   * The whole application's tasks since it started, by final status (and `total` added), as
   * the close ended: what request scopes abandoned at their own deadlines is in
   * `totals.abandoned`. `totals.abandoned === requeued && abandoned === requeued` means no task of
   * the application was lost (both `=== 0` without durable workers): `totals` does not count the
   * durable jobs and cancellations this close could not send, which `abandoned` does.
   */
  readonly totals: Readonly<Counts>;
}

export class Application implements ScopeHost {
  /** The event loop's lane: the application-wide `concurrency` limit. */
  readonly lane: Lane;
  /** Tasks added, and tasks ended in each final state, in the whole application. */
  readonly counts: Counts = newCounts();
  /** Finished tasks still shown by `get()` and `list()`. */
  readonly records: Records<TaskRun>;
  /** Periodic tasks stopped (cancelled), kept as finished tasks are, for `get()`. */
  readonly stoppedPeriodics: Records<Periodic>;
  /** Periodic tasks not stopped yet. */
  readonly periodics = new Set<Periodic>();
  /**
   * Scopes with live tasks, oldest first, linked through their `prevBusy`/`nextBusy` (a Set cost a
   * rehash on most deletes: a scope per request is busy, then idle, once each). Idle scopes are
   * not held, so they can be collected.
   */
  #busyHead: Scope | undefined;
  #busyTail: Scope | undefined;
  /** Producers waiting for room in the queue (`waitForRoom()`). */
  #roomWaiters: (() => void)[] = [];
  /** Set while a second look at the room is queued ({@link #checkRoom}). */
  #roomLookedAgain = false;
  #state: ApplicationState = 'open';
  /** When the close began (epoch ms). */
  #closedAt = 0;
  /** When the close's deadline is, on the monotonic clock (a change of the system clock moves it not). */
  #deadlineAt = 0;
  #closing: Promise<ShutdownReport> | undefined;
  #options: ResolvedOptions;
  #pool: Pool | undefined;
  #observers: readonly TaskObserver[] = [];
  #wrappers: readonly AttemptWrapper[] = [];
  /**
   * What every task reports its events to (all the observers) and runs its attempts inside (the
   * wrappers, the first outermost, each guarded on its own by the run so that a faulty one is
   * skipped alone); `undefined` while there are neither, so that nothing is built for nobody.
   */
  hooks: TaskHooks | undefined;
  /** What carries the context of a durable task's `add()` to its worker, when an adapter set one. */
  jobContext: JobContext | undefined;
  /** What adapters close with the application (durable workers), and, once its close began, their closes. */
  #participants = new Set<CloseParticipant>();
  /** Disposals of scopes' other instances still going on (an async `dispose()`, a request's session): the close waits for them. */
  readonly #disposals = new Set<Promise<void>>();
  /** Whether the close has said that scope disposals were still going on at its deadline. */
  #disposalsWarned = false;
  #participantsClosing: Promise<CloseOutcome | void>[] = [];
  /** The runners whose {@link Runner.settle} the close waits for. */
  #settled = new WeakSet<Runner>();

  /** @param options the options of the application's root container */
  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.lane = new Lane(options.concurrency);
    this.records = new Records(options.records);
    this.stoppedPeriodics = new Records(options.records);
    if (options.pool.prewarm && !options.pool.inline) this.pool.prewarm();
  }

  /** The options of the application's root container. */
  get options(): ResolvedOptions {
    return this.#options;
  }

  get state(): ApplicationState {
    return this.#state;
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
    return this.lane.queued + (this.#pool?.admission.queued ?? 0);
  }

  /**
   * Tasks waiting with no slot free for them, on the event loop and for the worker pool: what
   * `maxQueued` bounds (tasks added this turn that will take free slots wait for nothing).
   */
  get waiting(): number {
    return this.lane.waiting + (this.#pool?.admission.waiting ?? 0);
  }

  /** Tasks holding a slot, on the event loop and on the worker pool. */
  get running(): number {
    return this.lane.running + (this.#pool?.admission.running ?? 0);
  }

  /**
   * Follows the options of the root, so that a registration made after the first
   * `resolve(Background)` still sets the application-wide limit.
   */
  configure(options: ResolvedOptions): void {
    if (options === this.#options) return;
    this.#options = options;
    this.lane.limit = options.concurrency;
    this.records.limits = options.records;
    this.stoppedPeriodics.limits = options.records;
  }

  /** Whether `scope` takes new tasks: its own state, or the application's when that is closing. */
  #intakeOf(scope: Scope): ScopeState {
    const app = this.#state;
    if (app === 'closed') return 'closed';
    const own = scope.state;
    if (own !== 'open') return own;
    return app === 'closing' ? 'draining' : 'open';
  }

  /**
   * Throws {@link BackgroundDisposedError} naming `taskName` when `scope` takes no new task, and
   * saying which scope it was and when its disposal (or the application's close) began.
   */
  checkIntake(scope: Scope, taskName: string): void {
    const intake = this.#intakeOf(scope);
    if (intake === 'open') return;
    // A scope the close itself closed (one with work) reads its close's time: the application's wording.
    const byScope = scope.closedAt !== undefined && (this.#state === 'open' || scope.closedAt < this.#closedAt);
    throw new BackgroundDisposedError(taskName, intake === 'draining' ? 'being disposed' : 'disposed', {
      scope: scope.label,
      at: byScope ? scope.closedAt! : this.#closedAt,
      byApplication: !byScope,
    });
  }

  /** The live tasks of every scope. */
  *liveRuns(): Generator<TaskRun> {
    for (let scope = this.#busyHead; scope !== undefined; scope = scope.nextBusy) yield* scope.live();
  }

  // ScopeHost: what the scopes report.
  busy(scope: Scope): void {
    const tail = this.#busyTail;
    scope.prevBusy = tail;
    if (tail === undefined) this.#busyHead = scope;
    else tail.nextBusy = scope;
    this.#busyTail = scope;
  }

  idle(scope: Scope): void {
    const { prevBusy, nextBusy } = scope;
    if (prevBusy === undefined) this.#busyHead = nextBusy;
    else prevBusy.nextBusy = nextBusy;
    if (nextBusy === undefined) this.#busyTail = prevBusy;
    else nextBusy.prevBusy = prevBusy;
    scope.prevBusy = scope.nextBusy = undefined;
  }

  /** The scopes with live tasks now, oldest first. */
  #busyScopes(): Scope[] {
    const scopes: Scope[] = [];
    for (let scope = this.#busyHead; scope !== undefined; scope = scope.nextBusy) scopes.push(scope);
    return scopes;
  }

  added(): void {
    this.counts.total++;
  }

  ended(run: TaskRun): void {
    this.counts[run.status as FinalStatus]++;
    // A job's attempt is on record where the job is.
    if (run.job === undefined) this.records.keep(run);
  }

  scheduled(periodic: Periodic): void {
    this.periodics.add(periodic);
  }

  unscheduled(periodic: Periodic): void {
    this.periodics.delete(periodic);
    this.stoppedPeriodics.keep(periodic);
  }

  /**
   * Adds an observer of every task's lifecycle events; returns what removes it. An observer that
   * throws (or whose promise rejects) is logged and changes nothing for the task or the others.
   */
  observe(observer: TaskObserver): () => void {
    this.#observers = [...this.#observers, observer];
    this.#rehook();
    return () => {
      this.#observers = without(this.#observers, observer);
      this.#rehook();
    };
  }

  /** Runs every attempt inside `wrapper` too (inside those added before it); returns what removes it. */
  wrapAttempts(wrapper: AttemptWrapper): () => void {
    this.#wrappers = [...this.#wrappers, wrapper];
    this.#rehook();
    return () => {
      this.#wrappers = without(this.#wrappers, wrapper);
      this.#rehook();
    };
  }

  /** Hooks are read at every event: the lists are replaced, never changed, so a dispatch under way keeps its own. */
  #rehook(): void {
    const observer = this.#observers.length === 0 ? undefined : this.#dispatch;
    const wrappers = this.#wrappers.length === 0 ? undefined : this.#wrappers;
    this.hooks = observer === undefined && wrappers === undefined ? undefined : Object.freeze({ observer, wrappers });
  }

  /**
   * Events that happened while the observers were being told of another (an observer cancelled a
   * task, added one): each is told to them all once that one has reached every observer, so that
   * every observer sees a task's events in their order; each in the async context it happened in.
   */
  #toldLater: (() => void)[] | undefined;

  readonly #dispatch = (event: TaskEvent): void => {
    if (this.#toldLater !== undefined) {
      this.#toldLater.push(AsyncResource.bind(() => this.#tell(event)));
      return;
    }
    const later: (() => void)[] = (this.#toldLater = []);
    // A slot an observer frees (it cancels a task) starts the next task only after the dispatch:
    // started now, its `started` event would wait in `later` while its code ran, and an observer
    // that cancels it there could not keep it from running.
    const lanes = this.#pool === undefined ? [this.lane] : [this.lane, this.#pool.admission];
    for (const lane of lanes) lane.hold();
    try {
      this.#tell(event);
      for (let i = 0; i < later.length; i++) later[i]!();
    } finally {
      this.#toldLater = undefined;
      for (const lane of lanes) lane.resume();
    }
  };

  #tell(event: TaskEvent): void {
    for (const observer of this.#observers) {
      try {
        const returned = observer(event) as unknown;
        if (returned instanceof Promise) returned.catch((error: unknown) => this.#observerFailed(event, error));
      } catch (error) {
        this.#observerFailed(event, error);
      }
    }
  }

  #observerFailed(event: TaskEvent, error: unknown): void {
    logSafely(
      this.#options.logger,
      'error',
      { task: event.name, taskId: event.id, event: event.type, err: error },
      `an observer of task events threw on "${event.type}" of task "${event.name}"; the task goes on`,
    );
  }

  /** Resolves once the queue has room for one more task. */
  waitForRoom(): Promise<void> {
    if (this.waiting < this.#options.maxQueued || this.#state !== 'open') return Promise.resolve();
    return new Promise((resolve) => {
      this.#roomWaiters.push(resolve);
      this.lane.watcher = this.#checkRoom;
      if (this.#pool !== undefined) this.#pool.admission.watcher = this.#checkRoom;
    });
  }

  /**
   * Wakes the first waiters, as many as there is room for (all of them once the application is
   * closing): waking every one at each freed place made each of P producers throw
   * `QueueFullError` P − 1 times, P² in all (1 000 producers: 480 000 errors, 5 s for 1 000 tasks
   * of a millisecond). Those woken may add nothing: once their turns' microtasks have run, the
   * room is looked at again, and the next ones are woken while there is some.
   */
  readonly #checkRoom = (): void => {
    const room = this.#state === 'open' ? this.#options.maxQueued - this.waiting : Infinity;
    if (room <= 0) return;
    const waiters = this.#roomWaiters;
    const woken = room >= waiters.length ? waiters.splice(0) : waiters.splice(0, room);
    for (const resolve of woken) resolve();
    if (waiters.length === 0) {
      this.lane.watcher = undefined;
      if (this.#pool !== undefined) this.#pool.admission.watcher = undefined;
    } else if (!this.#roomLookedAgain) {
      this.#roomLookedAgain = true;
      soon(this.#lookAtRoomAgain);
    }
  };

  readonly #lookAtRoomAgain = (): void => {
    this.#roomLookedAgain = false;
    if (this.#roomWaiters.length > 0) this.#checkRoom();
  };

  /**
   * Has `participant` closed with the application: called as its close begins (at once when it
   * has begun), its promise waited for with the worker pool's. Returns what takes it off.
   */
  closeWith(participant: CloseParticipant): () => void {
    if (this.#state !== 'open') {
      this.#participantsClosing.push(this.#join(participant, Math.max(0, this.#deadlineAt - monotonicNow())));
      return noop;
    }
    this.#participants.add(participant);
    return () => void this.#participants.delete(participant);
  }

  /**
   * Has the application's close wait, within its deadline, for `disposal`: a scope's other
   * disposable instances being disposed once its Background has drained (`disposeScope()`).
   */
  disposing(disposal: Promise<void>): void {
    this.#disposals.add(disposal);
    const done = (): void => void this.#disposals.delete(disposal);
    disposal.then(done, done);
  }

  /** Has the application's close wait for what `runner` took (its {@link Runner.settle}), once whatever the scopes that use it. */
  settleWith(runner: Runner): void {
    if (runner.settle === undefined || this.#settled.has(runner)) return;
    this.#settled.add(runner);
    this.closeWith((timeoutMs) => runner.settle!(timeoutMs));
  }

  /** Closes a participant, whose failure (it should have none) is logged, not thrown: the close never rejects. */
  #join(participant: CloseParticipant, timeoutMs: number): Promise<CloseOutcome | void> {
    const failed = (error: unknown): void => logSafely(this.#options.logger, 'error', { err: error }, 'closing what closes with the application failed');
    try {
      return participant(timeoutMs).catch(failed);
    } catch (error) {
      failed(error);
      return Promise.resolve();
    }
  }

  /**
   * Stops intake in every scope, waits up to `timeoutMs` for all of them to drain, abandons
   * what is left, then closes shared resources (the worker pool, within what is left of the
   * deadline). Idempotent; never rejects.
   */
  close(timeoutMs: number): Promise<ShutdownReport> {
    if (this.#closing === undefined) {
      // Set before the close calls out (periodic tasks' and abandoned tasks' observers, abort
      // listeners): one that shuts down again gets this promise, not a second close.
      let begin!: (report: Promise<ShutdownReport>) => void;
      this.#closing = new Promise<ShutdownReport>((resolve) => (begin = resolve));
      begin(this.#close(timeoutMs));
    }
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<ShutdownReport> {
    const startedAt = performance.now();
    this.#state = 'closing';
    this.#closedAt = Date.now();
    this.#deadlineAt = monotonicNow() + timeoutMs;
    for (const participant of this.#participants) this.#participantsClosing.push(this.#join(participant, timeoutMs));
    this.#participants.clear();
    for (const periodic of [...this.periodics]) periodic.stop(new TaskCancelledError(periodic.name, periodic.id, 'the application was closed'));
    this.#checkRoom();
    let abandoned = 0;
    for (const scope of this.#busyScopes()) {
      scope.close();
      abandoned += scope.abandonDelayedPast(Date.now() + timeoutMs, timeoutMs, 'application');
    }
    await withDeadline(this.#drainAll(), timeoutMs);
    // Nothing starts any more: what still waits is abandoned now, not started then aborted.
    this.lane.stop();
    this.#pool?.admission.stop();
    for (const scope of this.#busyScopes()) abandoned += scope.abandon(timeoutMs, 'application');
    // The scopes drained (or abandoned) being disposed dispose their other instances now.
    await this.#awaitDisposals();
    this.#state = 'closed';
    const [, ...outcomes] = await Promise.all([this.#pool?.close(Math.max(0, timeoutMs - (performance.now() - startedAt))), ...this.#participantsClosing]);
    // Scopes disposed meanwhile (a handler that ended while the pool closed).
    await this.#awaitDisposals();
    let requeued = 0;
    for (const outcome of outcomes) {
      // What closes with it could not finish (durable jobs not in Redis): abandoned too.
      abandoned += outcome?.unfinished ?? 0;
      requeued += outcome?.requeued ?? 0;
    }
    return Object.freeze({ abandoned, requeued, durationMs: Math.round(performance.now() - startedAt), totals: Object.freeze({ ...this.counts }) });
  }

  /**
   * Waits, within the deadline, for the disposals of scopes' other instances going on: those
   * whose Background has just drained, or been abandoned, begin in the microtasks after it (hence
   * a turn first, on Node's own setImmediate, which a test's fake timers do not take), and those
   * that begin while it waits. Those still going on at the deadline are
   * logged, once; they are no task, and nothing else waits for them.
   */
  async #awaitDisposals(): Promise<void> {
    await nextTurn();
    // Until none is left: a scope disposed while the close waits for others is waited for too.
    while (this.#disposals.size > 0) {
      const left = Math.max(0, this.#deadlineAt - monotonicNow());
      if (!(await withDeadline(Promise.allSettled(this.#disposals), left))) break;
    }
    if (this.#disposals.size === 0 || this.#disposalsWarned) return;
    this.#disposalsWarned = true;
    logSafely(
      this.#options.logger,
      'warn',
      { disposals: this.#disposals.size },
      `application closing with ${this.#disposals.size} scope disposal(s) still going on at its deadline (a dispose() of a scope's instance that had not finished): a process that exits now cuts them short`,
    );
  }

  async #drainAll(): Promise<void> {
    while (this.#busyHead !== undefined) await Promise.all(this.#busyScopes().map((scope) => scope.drain()));
  }
}

const noop = (): void => undefined;

/** `list` without the first `item` in it. */
function without<T>(list: readonly T[], item: T): readonly T[] {
  const at = list.indexOf(item);
  return at < 0 ? list : [...list.slice(0, at), ...list.slice(at + 1)];
}
