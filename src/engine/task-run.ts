/**
 * One task's life, from `add()` to its outcome: its handle, its record in its lane and in its
 * owner's list of live tasks, in one object. What it runs is an {@link Invocation}; whom it
 * reports to is a {@link RunOwner}; where it waits for a slot is a {@link Lane}. It knows
 * nothing of containers, scopes or the application.
 */
import { soon } from '../model/soon.js';
import { inOwnContext, ownContext } from '../model/own-context.js';
import { AsyncResource } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import type { JobLink } from '../model/call-options.js';
import { describe, maxTimerMs, printed, resultTimeoutOf, within } from '../model/checks.js';
import type { TaskContext } from '../model/context.js';
import type { AttemptWrapper, TaskEvent, TaskEventBase, TaskHooks, TaskStartedEvent } from '../model/events.js';
import {
  ResultTimeoutError,
  stackAsText,
  TaskAbandonedError,
  TaskCancelledError,
  TaskNonErrorError,
  TaskSkippedError,
  TaskTimeoutError,
} from '../model/errors.js';
import { finalStatuses, type FinalStatus, type ResultOptions, type TaskHandle, type TaskProgress, type TaskStatus } from '../model/handle.js';
import { nextTaskNumber, taskIdOf } from '../model/ids.js';
import { logSafely, type BackgroundLogger } from '../model/logger.js';
import { isAsyncFunction } from '../model/task.js';
import { backoffDelay, type ResolvedTaskOptions } from '../model/task-options.js';
import type { Job, Lane } from './lane.js';
import { stillToWait } from './deadlines.js';

/** What a run needs of the one that owns it (its scope), which implements it. */
export interface RunOwner {
  /** Where the run logs its failures, retries and blocking warnings. */
  readonly logger: BackgroundLogger;
  /** A sync run that blocks the event loop longer than this is warned about; 0: never. */
  readonly warnBlockingMs: number;
  /** Called once, when the run has reached its final status. */
  settled(run: TaskRun): void;
  /**
   * Who watches the run, if anyone: read at each event (one read, `undefined` in the common
   * case), so that no event is built for nobody.
   */
  readonly hooks?: TaskHooks | undefined;
  /** How events name the owner (`scope #3`). */
  readonly label?: string | undefined;
}

/** What a run is given by the facade (a `TaskRequest` is one). */
export interface RunSpec {
  readonly name: string;
  readonly options: ResolvedTaskOptions;
  /** When it may start (epoch ms); 0 or none for now. */
  readonly dueAt?: number | undefined;
}

/** What each attempt of a run calls. */
export interface Invocation {
  /**
   * Whether it runs synchronously on the main thread: it then starts from `setImmediate`, and
   * a long block of the event loop is warned about.
   */
  readonly sync: boolean;
  /** Runs one attempt of `run`; returns its value or a promise of it, or throws. */
  invoke(run: TaskRun): unknown;
  /**
   * For an invocation that hands its attempts on (the worker pool): when the current attempt
   * really started (epoch ms), or 0 while it still waits (for a thread). Until then the run
   * reads as `queued`, and its `timeoutMs` has not begun.
   */
  startedAt?(attempt: number): number;
  /**
   * With {@link startedAt}: when the current attempt ended where it ran (epoch ms), or 0 while it
   * has not. The attempt is judged by it, not by when its answer is taken in (a busy event loop
   * delays that, and with it the settling, not the work).
   */
  finishedAt?(attempt: number): number;
}

/**
 * A call of the task's own function: its dependencies resolved, then the arguments given to
 * `add()`; at `contextAt` (when it injects `TaskContext`), each attempt's context.
 */
export class Call implements Invocation {
  readonly sync: boolean;
  readonly fn: (...params: unknown[]) => unknown;
  readonly params: unknown[];
  readonly self: unknown;
  readonly contextAt: number;

  constructor(fn: (...params: never[]) => unknown, params: unknown[], self?: unknown, contextAt = -1) {
    this.fn = fn as (...params: unknown[]) => unknown;
    this.params = params;
    this.self = self;
    this.contextAt = contextAt;
    this.sync = !isAsyncFunction(fn);
  }

  invoke(run: TaskRun): unknown {
    return call(this.fn, this.params, this.self, this.contextAt, run);
  }
}

/** Calls a task's function for one attempt of `run`, its context at `contextAt` (if ≥ 0). */
function call(fn: (...params: unknown[]) => unknown, params: unknown[], self: unknown, contextAt: number, run: TaskRun): unknown {
  if (contextAt >= 0) params[contextAt] = run.context();
  return fn.apply(self, params);
}

/** A task's outcome; failures are always `Error`s (non-Errors are wrapped). */
type Settled = { ok: true; value: unknown } | { ok: false; error: Error };

/** One task, from `add()` to its outcome. */
export class TaskRun implements TaskHandle, Job {
  readonly name: string;
  readonly sync: boolean;
  /** Where it waits for a slot: the event loop's lane, or the worker pool's. */
  readonly lane: Lane;
  readonly priority: number;
  /** The scope it belongs to. */
  readonly owner: RunOwner;
  #status: TaskStatus = 'queued';
  /**
   * Attempts begun, as the engine counts them (an attempt handed to the worker pool counts from
   * its admission, as its `started` event does); `attempt` is what its handle says. Its runner may
   * set it before it joins its scope (an attempt of a job whose earlier attempts ran elsewhere).
   */
  attempts = 0;
  progress: TaskProgress | undefined = undefined;
  /**
   * The job this run is an attempt of, when its record is kept elsewhere (a durable worker's):
   * its progress goes there, and the application does not keep the run on record. Its runner
   * may set it before it joins its scope.
   */
  job: JobLink | undefined = undefined;
  next: Job | undefined = undefined;
  holding = false;
  /** Links in the owner's list of live tasks; the owner keeps them. */
  prevLive: TaskRun | undefined = undefined;
  nextLive: TaskRun | undefined = undefined;
  /** When it may start (epoch ms), or 0 for now; its runner may set it before it joins its scope. */
  dueAt: number;
  readonly #number = nextTaskNumber();
  #id: string | undefined;
  readonly #options: ResolvedTaskOptions;
  /**
   * What an attempt calls, dropped once the task has ended: a {@link Call}'s parts, kept on the
   * run itself (one object per task rather than two: a queue of 1e5 tasks is 6% smaller and
   * drains 20% faster), or any other invocation.
   */
  #fn: ((...params: unknown[]) => unknown) | undefined;
  #params: unknown[] | undefined;
  #self: unknown;
  #contextAt = -1;
  #invocation: Invocation | undefined;
  /** The current attempt's controller, created when something asks for its signal. */
  #controller: AbortController | undefined;
  /** Told when the current attempt aborts, without a signal made for it (the worker pool's). */
  #abortListener: ((reason: Error) => void) | undefined;
  /** The timeout of the running attempt, or the wait of a delayed or retrying task. */
  #timer: NodeJS.Timeout | undefined;
  #startedAt = 0;
  /** When the running attempt started by the wall clock (epoch ms), which fake timers move: see {@link #pastTimeout}. */
  #startedWallAt = 0;
  /** When it last joined its lane's queue (performance.now()), kept only while it is observed. */
  #queuedAt = -1;
  /** How long its last attempt ran, once one has failed (for the events of its outcome). */
  #lastDurationMs: number | undefined;
  /**
   * The async context of the `add()` that made the task: its AsyncLocalStorage stores (a request
   * id, an OpenTelemetry span). Every attempt runs in it, whichever lane, timer or other task
   * starts it, and so do its retries, timeouts and logs. Once it has ended, the library's own: its
   * record, kept a while, does not keep those stores (a request's, with what they hold).
   */
  #asyncContext = new AsyncResource('tsyringe-background.task', { requireManualDestroy: true });
  /** Ended while its last attempt waited for a worker thread: the handle does not count that attempt. */
  #lastNeverRan = false;
  /** While the observers hear of its attempt's start: one that ends it then, ends it before it ran. */
  #announcing = false;
  /** Whether the current attempt holds a slot in its lane (from start() until it ends). */
  #holdsSlot = false;
  #outcome: Settled | undefined;
  #result: Promise<unknown> | undefined;
  #settle: ((outcome: Settled) => void) | undefined;
  /**
   * The tasks that run `after` this one and wait for it; each leaves when it ends otherwise
   * (cancelled, abandoned), so that a long-running task does not keep those it no longer gates.
   */
  #dependents: Set<TaskRun> | undefined;
  /** The tasks this one runs `after`, while it waits for them; and how many have not succeeded yet. */
  #prerequisites: TaskRun[] | undefined;
  #waitingFor = 0;

  constructor(spec: RunSpec, invocation: Invocation, owner: RunOwner, lane: Lane) {
    this.name = spec.name;
    this.#options = spec.options;
    this.dueAt = spec.dueAt ?? 0;
    this.priority = spec.options.priority;
    if (invocation instanceof Call) {
      this.#fn = invocation.fn;
      this.#params = invocation.params;
      this.#self = invocation.self;
      this.#contextAt = invocation.contextAt;
    } else {
      this.#invocation = invocation;
    }
    this.sync = invocation.sync;
    this.owner = owner;
    this.lane = lane;
  }

  /**
   * Where the task is. An attempt handed to a worker pool that has not reached its thread yet
   * is `queued`: it holds its place in the pool's admission window, but nothing runs.
   */
  get status(): TaskStatus {
    const status = this.#status;
    return status === 'running' && this.#invocation?.startedAt?.(this.attempts) === 0 ? 'queued' : status;
  }

  /** The attempts started, as the handle says: an attempt that reads `queued` (above) has not started. */
  get attempt(): number {
    const attempts = this.attempts;
    if (this.#lastNeverRan) return attempts - 1;
    return this.#status === 'running' && this.#invocation?.startedAt?.(attempts) === 0 ? attempts - 1 : attempts;
  }

  /** Its place in the order tasks were made in this process: later is larger. */
  get number(): number {
    return this.#number;
  }

  get id(): string {
    return (this.#id ??= this.job?.id ?? taskIdOf(this.#number));
  }

  /** The current attempt's signal: aborted on cancellation, timeout or abandonment. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  /**
   * Calls `listener` when the current attempt aborts (cancelled, timed out or abandoned while
   * running), as its signal's `abort` event would, without making the signal: the worker pool's
   * way to stop a thread (an AbortController per attempt was the largest cost of a worker
   * round trip). One listener, cleared by `undefined` and when the next attempt starts.
   */
  onAbort(listener: ((reason: Error) => void) | undefined): void {
    this.#abortListener = listener;
  }

  /** Aborts the current attempt: its signal, if one was made, and its listener. */
  #abortAttempt(reason: Error): void {
    this.#controller?.abort(reason);
    const listener = this.#abortListener;
    this.#abortListener = undefined;
    listener?.(reason);
  }

  /** Joins its lane now, or at `dueAt` when that is in the future (`now`: the clock's time, read now by default). */
  enqueue(now?: number): void {
    const wait = this.dueAt === 0 ? 0 : this.dueAt - (now ?? Date.now());
    if (wait > 0) this.#wait(wait);
    else this.#join();
  }

  #wait(wait: number): void {
    this.#status = 'delayed';
    const ms = Math.min(wait, maxTimerMs);
    this.#timer = setTimeout(TaskRun.#due, ms, this, ms);
  }

  #join(): void {
    this.#status = 'queued';
    if (this.owner.hooks?.observer !== undefined) this.#queuedAt = performance.now();
    this.lane.submit(this);
  }

  /** Tells the observer, if any, that the task was taken in; its owner calls it once. */
  added(): void {
    const observer = this.owner.hooks?.observer;
    if (observer !== undefined) observer(this.#event({ type: 'added' }));
  }

  /**
   * Waits for every task in `handles` to succeed, then joins its lane (at `dueAt`, if later);
   * is skipped as soon as one of them ends otherwise.
   */
  after(handles: readonly TaskRun[]): void {
    this.#status = 'delayed';
    const prerequisites = [...new Set(handles)];
    this.#prerequisites = prerequisites;
    this.#waitingFor = prerequisites.length;
    for (const handle of prerequisites) {
      const outcome = handle.#outcome;
      if (outcome === undefined) (handle.#dependents ??= new Set()).add(this);
      // Told from a microtask, as one that ends later tells its dependents.
      else soon(() => this.#prerequisiteEnded(handle, outcome));
    }
  }

  /** One of the tasks this one runs `after` has ended (in the context of this task's `add()`). */
  #prerequisiteEnded(handle: TaskRun, outcome: Settled): void {
    if (this.#status !== 'delayed') return;
    if (!outcome.ok) {
      // After a skipped task, the error that began the chain of skips: causes do not nest down a
      // chain (a logger writing each skip's causes would write the whole chain every time).
      const cause = handle.#status === 'skipped' && outcome.error instanceof TaskSkippedError ? outcome.error.cause : outcome.error;
      this.#asyncContext.runInAsyncScope(() => this.skip(new TaskSkippedError(this.name, this.id, handle, cause)));
    }
    else if (--this.#waitingFor === 0) this.#asyncContext.runInAsyncScope(() => this.enqueue());
  }

  /** Tells the tasks waiting for this one (`after`) that it has ended, from a microtask. */
  #tellDependents(outcome: Settled): void {
    const dependents = this.#dependents;
    if (dependents === undefined) return;
    this.#dependents = undefined;
    soon(() => {
      for (const dependent of dependents) dependent.#prerequisiteEnded(this, outcome);
    });
  }

  // The timers' callbacks are static, the run passed as an argument: three closures per run
  // made in advance, most never used, were a fifth of a task's memory.
  static #due(run: TaskRun, waited: number): void {
    run.#timer = undefined;
    if (run.#status !== 'delayed') return;
    const left = stillToWait(run.dueAt - Date.now(), waited, waited === maxTimerMs);
    if (left > 0) run.#wait(left);
    else run.#join();
  }

  start(): void {
    this.#asyncContext.runInAsyncScope(this.#start, this);
  }

  #start(): void {
    this.#status = 'running';
    const attempt = ++this.attempts;
    this.#holdsSlot = true;
    this.#controller = undefined;
    this.#abortListener = undefined;
    const fn = this.#fn;
    const { timeoutMs } = this.#options;
    if (timeoutMs !== undefined) this.#timer = setTimeout(TaskRun.#timedOut, timeoutMs, this, attempt);
    const startedAt = (this.#startedAt = performance.now());
    if (timeoutMs !== undefined) this.#startedWallAt = Date.now();
    const hooks = this.owner.hooks;
    const wrappers = hooks?.wrappers;
    let started: TaskStartedEvent | undefined;
    if (hooks !== undefined) {
      started = this.#event({ type: 'started', waitedMs: this.#queuedAt < 0 ? 0 : round(startedAt - this.#queuedAt) }) as TaskStartedEvent;
      this.#announcing = true;
      try {
        hooks.observer?.(started);
      } finally {
        this.#announcing = false;
      }
      // Cancelled (or abandoned) by an observer of its start: it does not run.
      if (this.#status !== 'running' || attempt !== this.attempts) return;
    }
    let awaited: Promise<unknown> | undefined;
    let returned: unknown;
    try {
      // In an async resource of the attempt's own: a wrapper's AsyncLocalStorage.run() sets its store
      // on the current resource (Node 20 and 22), which would otherwise be the task's, whose events
      // (a progress told in the attempt's first turn) are told in the add()'s context.
      if (wrappers !== undefined) returned = new AsyncResource('tsyringe-background.attempt').runInAsyncScope(this.#wrapped, this, wrappers, 0, started!, fn);
      else returned = fn !== undefined ? call(fn, this.#params!, this.#self, this.#contextAt, this) : this.#invocation!.invoke(this);
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
        if (this.#pastTimeout(attempt)) TaskRun.#timedOut(this, attempt);
        else this.#attemptSucceeded(attempt, value);
      },
      (error: unknown) => {
        if (this.#pastTimeout(attempt)) TaskRun.#timedOut(this, attempt);
        else this.#attemptFailed(attempt, error);
      },
    );
  }

  /**
   * The attempt, run inside `wrappers[at]` and, within it, inside the wrappers after it (the
   * first outermost): each is guarded on its own, so that a faulty one is skipped alone. A
   * wrapper that throws before calling `attempt()`, or returns without calling it, is logged and
   * the attempt runs without it (inside the others). One that throws after calling it, or returns
   * something other than a promise when `attempt()` returned one, is logged too, and the task's
   * own outcome stands (its promise is followed, never left unhandled). A task ended before a
   * wrapper calls `attempt()` does not run: `attempt()` throws why, and the wrappers inside that
   * one are not called (none of them sees an attempt that never runs).
   */
  #wrapped(wrappers: readonly AttemptWrapper[], at: number, event: TaskStartedEvent, fn: ((...params: unknown[]) => unknown) | undefined): unknown {
    const wrapper = wrappers[at]!;
    let called = false;
    const attemptNumber = this.attempts;
    /** What `attempt()` returned, or threw (`failed`). */
    let attempted: unknown;
    let failed = false;
    const attempt = (): unknown => {
      if (called) throw new Error('an attempt wrapper called attempt() twice');
      called = true;
      try {
        // Ended (cancelled, abandoned, timed out) before the wrapper ran it: the task does not
        // run, and the wrapper sees why, as a task's own failure.
        if (this.#status !== 'running' || attemptNumber !== this.attempts) throw this.#outcome?.ok === false ? this.#outcome.error : new Error(`task "${this.name}" ended before its attempt ran`);
        if (at + 1 < wrappers.length) attempted = this.#wrapped(wrappers, at + 1, event, fn);
        else attempted = fn !== undefined ? call(fn, this.#params!, this.#self, this.#contextAt, this) : this.#invocation!.invoke(this);
      } catch (error) {
        failed = true;
        attempted = error;
        throw error;
      }
      return attempted;
    };
    let returned: unknown;
    try {
      returned = wrapper(event, attempt);
    } catch (error) {
      if (!called) {
        this.#log('error', { err: error }, `an attempt wrapper threw before running task "${this.name}"; it runs without the wrapper`);
        return attempt();
      }
      if (failed && error === attempted) throw error;
      this.#log('error', { err: error }, `an attempt wrapper threw after running task "${this.name}"; the task's own outcome stands`);
      if (failed) throw attempted;
      return attempted;
    }
    if (!called) {
      this.#log('error', {}, `an attempt wrapper returned without running task "${this.name}"; it runs without the wrapper`);
      return attempt();
    }
    if (!failed && isThenable(attempted) && !isThenable(returned)) {
      this.#log('error', {}, `an attempt wrapper returned something other than the promise of attempt() for task "${this.name}"; the task's own outcome stands`);
      return attempted;
    }
    return returned;
  }

  /**
   * Ends the task `cancelled`. Its end (the observers' event, its attempt's abort listeners, the
   * log entry) happens in the async context of its `add()`, as everything about it does,
   * whichever context cancels it.
   */
  cancel(reason?: unknown): boolean {
    if (finalStatuses.has(this.#status)) return false;
    this.#asyncContext.runInAsyncScope(TaskRun.#cancel, undefined, this, reason);
    return true;
  }

  static #cancel(run: TaskRun, reason: unknown): void {
    const from = run.#status;
    const error = new TaskCancelledError(run.name, run.id, reason);
    run.#finish('cancelled', { ok: false, error });
    if (from === 'running') run.#abortAttempt(error);
    run.#log('debug', { attempt: run.attempt }, `task "${run.name}" was cancelled`);
  }

  /** Gives up on a task that has not ended (in the async context of its `add()`, as {@link cancel}); returns whether it had not. */
  abandon(drainTimeoutMs: number, why: string, dueAfter = false): boolean {
    if (finalStatuses.has(this.#status)) return false;
    this.#asyncContext.runInAsyncScope(TaskRun.#abandon, undefined, this, drainTimeoutMs, why, dueAfter);
    return true;
  }

  static #abandon(run: TaskRun, drainTimeoutMs: number, why: string, dueAfter: boolean): void {
    const from = run.#status;
    // Without a stack: it would be the close's, the same for every task of a sweep that may end
    // a hundred thousand at once (capturing one each was most of the sweep's time).
    const { stackTraceLimit } = Error;
    Error.stackTraceLimit = 0;
    let error: TaskAbandonedError;
    try {
      error = new TaskAbandonedError(run.name, run.id, drainTimeoutMs, why, dueAfter);
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    run.#finish('abandoned', { ok: false, error });
    if (from === 'running') run.#abortAttempt(error);
  }

  /** Ends a task that never ran because one it was to run after did not succeed. */
  skip(error: Error): void {
    if (finalStatuses.has(this.#status)) return;
    this.#finish('skipped', { ok: false, error });
    this.#log('debug', { err: error }, `task "${this.name}" was skipped`);
  }

  /** Records progress; called by the task's context (or, for a worker task, by the pool). */
  reportProgress(fraction: number, message?: string): void {
    checkFraction(this, fraction);
    checkMessage(this, message);
    if (this.#status !== 'running') return;
    this.progress = Object.freeze({ fraction, message });
    this.job?.progress(fraction, message);
    const observer = this.owner.hooks?.observer;
    // In the add()'s async context, as every other event, not the attempt's (a wrapper's span).
    if (observer !== undefined) this.#asyncContext.runInAsyncScope(observer, undefined, this.#event({ type: 'progress', fraction, message }));
  }

  result(options?: ResultOptions): Promise<unknown> {
    const timeoutMs = resultTimeoutOf(options);
    // Kept with the handle, on record a while: made in no caller's context, whose stores a promise
    // keeps (a request's, when result() is asked for in one); what awaits it runs in its own.
    this.#result ??= inOwnContext(() => this.#resultPromise());
    if (timeoutMs === undefined || this.#outcome !== undefined) return this.#result;
    return within(this.#result, timeoutMs, () => new ResultTimeoutError(this.name, this.id, timeoutMs, this.status));
  }

  #resultPromise(): Promise<unknown> {
    const outcome = this.#outcome;
    if (outcome !== undefined) return outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
    return new Promise((resolve, reject) => {
      this.#settle = (o) => {
        if (o.ok) resolve(o.value);
        else reject(o.error);
      };
    });
  }

  #attemptSucceeded(attempt: number, value: unknown): void {
    if (this.#status !== 'running' || attempt !== this.attempts) return;
    this.#finish('succeeded', { ok: true, value });
  }

  #attemptFailed(attempt: number, thrown: unknown): void {
    if (this.#status !== 'running' || attempt !== this.attempts) return;
    const error = isError(thrown) ? thrown : new TaskNonErrorError(this.name, thrown, printed(thrown), this.id);
    this.#afterFailure(error, 'failed', false);
  }

  /**
   * Whether the running async attempt `attempt` settles after its `timeoutMs` though its timeout
   * has not fired: with the event loop held past both (a burst of work), Node runs every due timer
   * of one duration before those of another, so the task's own timer (a 60 ms sleep) could end it
   * first, and it read `succeeded` after 80 ms of a 20 ms bound (an outside probe, on a durable
   * worker taking a burst of jobs). Its timer is then cleared: the attempt times out. Past it
   * by both clocks: the monotonic one (the wall clock may be set forward meanwhile) and the wall
   * clock, which a test's fake timers move with the timer (a task that took 100 ms of real time
   * while a test's clock stood still has not timed out).
   */
  #pastTimeout(attempt: number): boolean {
    const timeoutMs = this.#options.timeoutMs;
    if (timeoutMs === undefined || this.#timer === undefined || this.#status !== 'running' || attempt !== this.attempts) return false;
    // The clock of a handed-on attempt starts when it reaches its thread.
    const handedOn = this.#invocation?.startedAt?.(this.attempts);
    const late =
      handedOn === undefined
        ? performance.now() - this.#startedAt >= timeoutMs && Date.now() - this.#startedWallAt >= timeoutMs
        : handedOn !== 0 && this.#handedOnUntil() - handedOn >= timeoutMs;
    if (late) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    return late;
  }

  static #timedOut(run: TaskRun, attempt: number): void {
    if (run.#status !== 'running' || attempt !== run.attempts) return;
    const timeoutMs = run.#options.timeoutMs!;
    // The clock of a handed-on attempt starts when it reaches its thread.
    const startedAt = run.#invocation?.startedAt?.(run.attempts);
    if (startedAt !== undefined) {
      const finishedAt = run.#invocation?.finishedAt?.(run.attempts) ?? 0;
      // Ended on its thread within its time: its answer is on its way (the event loop was held
      // when the timer came due). It settles the attempt, as an answer in time does.
      if (startedAt !== 0 && finishedAt !== 0 && finishedAt - startedAt < timeoutMs) return;
      const left = startedAt === 0 ? timeoutMs : startedAt + timeoutMs - Date.now();
      if (left > 0) {
        run.#timer = setTimeout(TaskRun.#timedOut, left, run, attempt);
        return;
      }
    }
    run.#afterFailure(new TaskTimeoutError(run.name, run.id, timeoutMs, attempt), 'timedOut', true);
  }

  /**
   * Retries a failed attempt when the options allow it; ends the task otherwise. The attempt is
   * over before any code of the user's runs (`retryIf`, abort listeners, the logger, the tasks
   * the freed slot starts): it is `retrying` while `retryIf` decides, so a cancel from there ends
   * the task once.
   */
  #afterFailure(error: Error, finalStatus: 'failed' | 'timedOut', abort: boolean): void {
    const attempt = this.attempts;
    const durationMs = this.#elapsed();
    const { retries, retryIf, backoff } = this.#options;
    this.#status = 'retrying';
    // The attempt's duration, for the final event of a task that retryIf (or what it runs) ends.
    this.#lastDurationMs = durationMs;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const job = this.job;
    // An attempt of a job: the job's queue runs the next attempt, if any, not this run.
    const jobAttempts = job?.attempts ?? 1;
    const retry = job === undefined ? attempt <= retries && this.#worthRetrying(error, attempt, retryIf) : attempt < jobAttempts && this.#worthRetrying(error, attempt, retryIf);
    if (this.#status !== 'retrying') {
      // retryIf cancelled the task: that is its outcome.
      if (abort) this.#abortAttempt(error);
      return;
    }
    if (job !== undefined) {
      if (!retry && attempt < jobAttempts) job.stopRetrying?.();
      this.#lastDurationMs = durationMs;
      this.#finish(finalStatus, { ok: false, error });
      if (abort) this.#abortAttempt(error);
      const what = finalStatus === 'timedOut' ? 'timed out' : 'failed';
      if (retry) this.#log('warn', { attempt, attempts: jobAttempts, durationMs, err: error }, `task "${this.name}" ${what} (attempt ${attempt} of ${jobAttempts}); its queue runs it again`);
      else this.#log('error', { attempt, durationMs, err: error }, `task "${this.name}" ${what}`);
      return;
    }
    if (!retry) {
      this.#lastDurationMs = durationMs;
      this.#finish(finalStatus, { ok: false, error });
      if (abort) this.#abortAttempt(error);
      this.#log('error', { attempt, durationMs, err: error }, `task "${this.name}" ${finalStatus === 'timedOut' ? 'timed out' : 'failed'}`);
      return;
    }
    const delayMs = backoffDelay(backoff, attempt);
    // The event's time is the failure's, not after whatever the freed slot starts below.
    const at = Date.now();
    this.progress = undefined;
    this.#lastDurationMs = durationMs;
    this.#timer = setTimeout(TaskRun.#retry, delayMs, this);
    this.#freeSlot();
    if (abort) this.#abortAttempt(error);
    // Ended meanwhile (an abort listener, or a task the freed slot started, cancelled it): its
    // final event has come, and it is not retried.
    if (this.#status !== 'retrying') return;
    const observer = this.owner.hooks?.observer;
    if (observer !== undefined) observer(this.#event({ type: 'attemptFailed', durationMs, error, retryInMs: delayMs, at }));
    if (this.#status !== 'retrying') return;
    this.#log(
      'warn',
      { attempt, retries, durationMs, retryInMs: delayMs, err: error },
      `task "${this.name}" ${finalStatus === 'timedOut' ? 'timed out' : 'failed'} (attempt ${attempt} of ${retries + 1}); retrying in ${delayMs} ms`,
    );
  }

  #worthRetrying(error: Error, attempt: number, retryIf: ResolvedTaskOptions['retryIf']): boolean {
    if (retryIf === undefined) return true;
    try {
      const answer = retryIf(error, attempt);
      if (isThenable(answer)) {
        // Awaited by nobody: a rejection of it must not be an unhandled one.
        void Promise.resolve(answer).catch(() => undefined);
        this.#log('error', { attempt }, `retryIf of task "${this.name}" returned a promise, which reads as no: the task is not retried (retryIf must answer at once, true or false)`);
      }
      return answer === true;
    } catch (predicateError) {
      this.#log('error', { attempt, err: predicateError }, `retryIf of task "${this.name}" threw; the task is not retried`);
      return false;
    }
  }

  static #retry(run: TaskRun): void {
    run.#timer = undefined;
    if (run.#status !== 'retrying') return;
    run.#status = 'queued';
    const observer = run.owner.hooks?.observer;
    if (observer !== undefined) {
      observer(run.#event({ type: 'retrying' }));
      run.#queuedAt = performance.now();
    }
    run.lane.submit(run);
  }

  /**
   * Reaches a final status. The outcome is recorded and the owner told before anything else can
   * run; only then is the task's place in its lane given back (which may start another task, whose
   * code may look at this one), and `result()` settled.
   */
  #finish(status: FinalStatus, outcome: Settled): void {
    const from = this.#status;
    this.#status = status;
    this.#outcome = outcome;
    // Kept on record a while: not with what its error's stack names (a scope, a request's service).
    if (!outcome.ok) stackAsText(outcome.error);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#fn = undefined;
    this.#params = undefined;
    this.#self = undefined;
    // Ended while its attempt waited for a worker thread: that attempt never ran.
    const neverRan = from === 'running' && this.#invocation?.startedAt?.(this.attempts) === 0;
    if (neverRan) this.#lastNeverRan = true;
    // Ended by an observer of its attempt's start: that attempt's code never ran (no span, no duration).
    const announced = from === 'running' && this.#announcing;
    // Measured while the invocation still says when a thread began the attempt (not its start-up).
    const ranMs = from === 'running' && !neverRan && !announced ? this.#elapsed() : undefined;
    this.#invocation = undefined;
    this.#asyncContext.emitDestroy();
    this.#asyncContext = ownContext;
    if (this.#prerequisites !== undefined) {
      for (const handle of this.#prerequisites) handle.#dependents?.delete(this);
      this.#prerequisites = undefined;
    }
    this.owner.settled(this);
    // Out of its lane's queue before an observer can look at it (or add to it); a slot it holds
    // is given back after (which may start another task).
    if (from === 'queued') this.lane.withdraw(this);
    const observer = this.owner.hooks?.observer;
    if (observer !== undefined) {
      const durationMs = from === 'running' ? ranMs : this.#lastDurationMs;
      observer(this.#event(outcome.ok ? { type: 'succeeded', durationMs: durationMs! } : { type: status as Exclude<FinalStatus, 'succeeded'>, durationMs, error: outcome.error }));
    }
    this.#freeSlot();
    this.#settle?.(outcome);
    this.#settle = undefined;
    this.#tellDependents(outcome);
  }

  /** Gives back the slot the current attempt holds in its lane, once. */
  #freeSlot(): void {
    if (!this.#holdsSlot) return;
    this.#holdsSlot = false;
    this.lane.release();
  }

  #checkBlocking(blockedMs: number): void {
    const limit = this.owner.warnBlockingMs;
    if (limit > 0 && blockedMs > limit) {
      this.#log(
        'warn',
        { blockedMs: Math.round(blockedMs), warnBlockingMs: limit },
        `sync task "${this.name}" blocked the event loop for ${Math.round(blockedMs)} ms; ` +
          'move CPU-bound work to a worker thread with workerTask()',
      );
    }
  }

  /**
   * The current attempt's time so far: for one handed on to a thread, since the thread began it
   * (not its start-up), and until the thread ended it (not until its answer was taken in).
   */
  #elapsed(): number {
    const handedOn = this.#invocation?.startedAt?.(this.attempts);
    if (handedOn === undefined) return round(performance.now() - this.#startedAt);
    return handedOn === 0 ? 0 : round(Math.max(0, this.#handedOnUntil() - handedOn));
  }

  /** When a handed-on attempt ended where it ran, or now (epoch ms) while it has not. */
  #handedOnUntil(): number {
    return this.#invocation?.finishedAt?.(this.attempts) || Date.now();
  }

  /** An event about this task, its common fields filled in. */
  #event(what: DistributiveOmit<TaskEvent, keyof TaskEventBase> & { at?: number }): TaskEvent {
    return { id: this.id, name: this.name, scope: this.owner.label ?? '', attempt: this.attempts, at: Date.now(), ...what };
  }

  /** Logs through the owner's logger with the task's fields; a throwing logger is survived. */
  #log(level: keyof BackgroundLogger, fields: Record<string, unknown>, message: string): void {
    logSafely(this.owner.logger, level, { task: this.name, taskId: this.id, ...fields }, message);
  }

  /** Writes an entry that attempt `attempt` logged in its worker thread, as its context's logger would. */
  logFromWorker(attempt: number, level: keyof BackgroundLogger, fields: Record<string, unknown>, message: string): void {
    logSafely(this.owner.logger, level, { task: this.name, taskId: this.id, attempt, ...fields }, message);
  }

  /** The context of the current attempt, for a task that injects `TaskContext`. */
  context(): TaskContext {
    const attempt = this.attempts;
    const base = this.owner.logger;
    const fields = { task: this.name, taskId: this.id, attempt };
    const withTask =
      (level: keyof BackgroundLogger) =>
      (extra: Record<string, unknown>, message: string): void => {
        base[level]({ ...fields, ...extra }, message);
      };
    const signal = this.signal;
    return Object.freeze({
      id: this.id,
      name: this.name,
      attempt,
      signal,
      throwIfAborted: () => signal.throwIfAborted(),
      logger: {
        error: withTask('error'),
        warn: withTask('warn'),
        info: withTask('info'),
        debug: withTask('debug'),
      },
      progress: (fraction: number, message?: string) => {
        checkFraction(this, fraction);
        checkMessage(this, message);
        if (attempt === this.attempts) this.reportProgress(fraction, message);
      },
    });
  }
}

/** Milliseconds to a tenth. */
function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

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

/** A progress fraction, checked: a number from 0 to 1, even from an attempt that is over. */
function checkFraction(task: { readonly name: string; readonly id: string }, fraction: unknown): void {
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
    const Wrong = typeof fraction === 'number' ? RangeError : TypeError;
    throw new Wrong(`progress(fraction) in task "${task.name}" (#${task.id}): fraction must be a number from 0 to 1, got ${describe(fraction)}`);
  }
}

/**
 * A progress message, checked: a string or `undefined`, even from an attempt that is over. It is
 * kept as it is and shown as text (the live view, the logs), so no object, number or bigint.
 */
function checkMessage(task: { readonly name: string; readonly id: string }, message: unknown): void {
  if (message !== undefined && typeof message !== 'string') {
    throw new TypeError(`progress(fraction, message) in task "${task.name}" (#${task.id}): message must be a string or undefined, got ${describe(message)}`);
  }
}

