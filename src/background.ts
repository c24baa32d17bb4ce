import { inject, injectable, Lifecycle, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { closeApplicationsWith, CurrentScope, registerGlobally, rootOf, scopeInfo, setBackgroundOf } from './di/container.js';
import { InProcessRunner } from './di/in-process-runner.js';
import type { Application } from './engine/application.js';
import { Scope } from './engine/scope.js';
import { TaskRun } from './engine/task-run.js';
import { groupOf, type TaskAdder, type TaskGroup } from './group.js';
import { callLevel, jobRun, resolveCall, type CallOptions, type CallSpec, type JobLink } from './model/call-options.js';
import { checkKnownKeys, describe, isOptionsObject, ownOptions, unknownKey } from './model/checks.js';
import type { TaskHandle, TaskStatus } from './model/handle.js';
import type { BackgroundLogger } from './model/logger.js';
import { applicationLogger, closeWith, DurableRunner, jobContext, kindOf, nameOf, type CloseParticipant, type JobContext, type Runner, type TaskRequest } from './model/runner.js';
import { definitionLevel, type AnyTask, type TaskArgs, type TaskDefinition, type TaskResult } from './model/task.js';
import { checkMerged, defaultTaskOptions, rememberedTaskOptions, resolveTaskOptions, type ResolvedTaskOptions } from './model/task-options.js';
import { cronTimes, cronTimesDoor } from './model/cron-times.js';

const isRun = (handle: unknown): boolean => handle instanceof TaskRun;
const newestFirst = (a: TaskRun, b: TaskRun): number => b.number - a.number;

/**
 * Runs fire-and-forget tasks for one tsyringe container (a scope), with their dependencies
 * resolved from that container, and drains them when the scope is disposed.
 *
 * Resolve it from any container, with no registration step: each container gets its own
 * instance, and a class resolved from a child container gets that child's.
 *
 * ```ts
 * const scope = container.createChildContainer();
 * await using bg = scope.resolve(Background);
 * bg.add(sendWelcome, 'a@b.c');      // returns a handle at once
 * // leaving the block waits for the task (up to drainTimeoutMs)
 * ```
 *
 * Import this library before creating child containers: a child copies the registration only
 * from a parent that already had it.
 */
@injectable()
export class Background implements AsyncDisposable, TaskAdder {
  readonly #scope: Scope;
  readonly #app: Application;
  readonly #runner: Runner;
  readonly #container: DependencyContainer;
  #durable: Runner | undefined;
  readonly #isRoot: boolean;
  #disposal: Promise<void> | undefined;
  /** The last call options merged by #optionsFor, over which base, and the result. */
  #lastCall: CallSpec | undefined;
  #lastBase: ResolvedTaskOptions | undefined;
  #lastMerged: ResolvedTaskOptions | undefined;
  /** The options of the last job attempt added through {@link jobRun}, for the next (most have the same timeout). */
  #jobCall: CallSpec | undefined;

  /**
   * Constructed by tsyringe; resolve it instead (`scope.resolve(Background)`).
   * @throws TypeError | RangeError when the registered {@link BackgroundOptions} are invalid.
   */
  constructor(@inject(CurrentScope) container: DependencyContainer) {
    const { options, app, isRoot } = scopeInfo(container);
    this.#app = app;
    this.#isRoot = isRoot;
    this.#scope = isRoot ? new Scope(options, app, 'the application root') : new Scope(options, app);
    this.#runner = new InProcessRunner(container, this.#scope, app);
    this.#container = container;
    setBackgroundOf(container, this);
  }

  /** Tasks of this scope not ended yet: queued, delayed (`delayMs`, `runAt`, `after`), running, or waiting to retry. */
  get pending(): number {
    return this.#scope.pending;
  }

  /**
   * Adds a task and returns its handle at once. The task's dependencies are resolved now, from
   * this Background's container; the task runs later:
   * - an `async` function, definition or class `run` on the event loop, under the
   *   application-wide `concurrency` limit;
   * - a sync one on the main thread after the current turn (it warns when it blocks the event
   *   loop for longer than `warnBlockingMs`).
   *
   * A task that fails is logged with its name, id, duration and error; it affects no other task.
   * When `add()` throws, nothing is queued.
   *
   * @throws TypeError when `task` is not a task; for a worker task, when an argument cannot be
   * sent to a worker thread; for a durable task, when an argument does not survive JSON, when its
   * options cannot map onto the durable backend (a periodic one without `overlap: true`, say), or
   * when the application has no durable backend.
   * @throws RangeError when a `backoff.maxMs` given without `baseMs` (by the view or the
   * definition) is below the `baseMs` it inherits.
   * @throws TaskDependencyError when a dependency cannot be resolved.
   * @throws QueueFullError when the application already holds `maxQueued` tasks waiting for a slot.
   * @throws BackgroundDisposedError once disposal has begun.
   */
  add<T extends AnyTask>(task: T, ...args: TaskArgs<T>): TaskHandle<TaskResult<T>> {
    return this.#add(undefined, task, args) as TaskHandle<TaskResult<T>>;
  }

  /**
   * A durable view: `options` with `durable: true` written in them, whose `add()` takes
   * definitions only (`defineTask()`, `workerTask()`), as a durable task is found by its name,
   * which only a definition has; otherwise as the view below.
   *
   * ```ts
   * bg.with({ durable: true }).add(sendInvoice, invoiceId);   // not a plain function, not a class
   * ```
   *
   * @throws TypeError | RangeError when an option is invalid, naming it.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a definition of any arguments and result
  with(options: CallOptions & { durable: true }): TaskAdder<TaskDefinition<any, any>>;
  /**
   * A view of this Background whose `add()` applies `options` to the tasks it adds: task
   * options (priority, retries, timeout…), which win over the definition's and the scope's,
   * and when to start (`delayMs`, `runAt`, `after`) or how often (`every`, or `cron` with `tz`,
   * and `overlap`). Views can be chained. Make a new view for other options rather than
   * changing the object given: a view may keep what it read of it.
   *
   * ```ts
   * bg.with({ priority: 'high', delayMs: 5_000 }).add(sendReminder, user.id);
   * ```
   *
   * @throws TypeError | RangeError when an option is invalid, naming it. A `backoff.maxMs` given
   * without `baseMs` is checked against the `baseMs` it inherits by `add()`, where the
   * definition's and the scope's options are known.
   */
  with(options: CallOptions): TaskAdder;
  with(options: CallOptions): TaskAdder {
    const call = resolveCall(options, isRun);
    // Each field on its own; a backoff.maxMs given without baseMs is checked at add(), merged (#optionsFor).
    // Not remembered: a view's options are often made per call (a WeakMap entry each would load the GC).
    resolveTaskOptions(options, defaultTaskOptions, callLevel, false);
    const view: TaskAdder = {
      add: ((task: unknown, ...args: unknown[]) => this.#add(call, task, args)) as TaskAdder['add'],
      with: (more) => {
        if (!isOptionsObject(more)) throw new TypeError(`bg.with(options).with(more): more must be an object, got ${describe(more)}`);
        return this.with(over(options, more));
      },
    };
    return view;
  }

  /**
   * A group: adds tasks like this Background (or a view of it) and keeps their handles, to await
   * them together. `R` names the result of each task: the group's `add()` then takes only tasks
   * that resolve to an `R`, and `all()` resolves to an `R[]` (`unknown[]` by default, for a group
   * of any tasks). Its `with()` makes a view that adds to this same group.
   *
   * ```ts
   * const batch = bg.group<number>();
   * for (const id of ids) batch.add(reindex, id);   // reindex resolves to a number
   * const counts = await batch.all();   // number[]; rejects on the first failure, allSettled() waits for all
   * ```
   */
  group<R = unknown>(): TaskGroup<R> {
    return groupOf<R>(this);
  }

  /**
   * The task with this id, among this scope's live tasks and its finished tasks still on
   * record (see `records`); with `{ application: true }`, among the whole application's. A
   * periodic task is found from any scope of its application, scheduled or, once stopped
   * (`cancelled`), kept on record as a finished task is.
   */
  get(id: string, options?: { application?: boolean | undefined }): TaskHandle | undefined {
    if (typeof id !== 'string') throw new TypeError(`bg.get(id, options): id must be a string (a handle's id), got ${describe(id)}`);
    checkScopeOption(options, 'bg.get(id, options)');
    for (const run of this.#liveRuns(options?.application === true)) if (run.id === id) return run;
    for (const run of this.#app.records.list()) {
      if (run.id === id && (options?.application === true || run.owner === this.#scope)) return run;
    }
    for (const periodic of this.#app.periodics) if (periodic.id === id) return periodic;
    for (const periodic of this.#app.stoppedPeriodics.list()) if (periodic.id === id) return periodic;
    return undefined;
  }

  /**
   * This scope's tasks, live ones first (newest first), then finished ones still on record
   * (newest first); only those in `status` when given. With `application: true`, the whole
   * application's.
   */
  list(filter: { status?: TaskStatus | readonly TaskStatus[] | undefined; application?: boolean | undefined } = {}): TaskHandle[] {
    checkListFilter(filter);
    const wanted = filter.status === undefined ? undefined : new Set<TaskStatus>(typeof filter.status === 'string' ? [filter.status] : filter.status);
    const all = filter.application === true;
    const out: TaskHandle[] = [];
    for (const run of this.#liveRuns(all)) if (wanted === undefined || wanted.has(run.status)) out.push(run);
    // Each scope's live tasks come newest first, the scopes oldest first: across scopes, by age.
    if (all) (out as TaskRun[]).sort(newestFirst);
    const finished = this.#app.records.list();
    for (let i = finished.length - 1; i >= 0; i--) {
      const run = finished[i]!;
      if ((all || run.owner === this.#scope) && (wanted === undefined || wanted.has(run.status))) out.push(run);
    }
    return out;
  }

  /**
   * Counts for this scope (or, with `application: true`, the whole application): `total` tasks
   * added, `queued` and `running` now, and `byStatus`: the live statuses as they are now, the
   * final ones counted since the start.
   */
  stats(options?: { application?: boolean | undefined }): BackgroundStats {
    checkScopeOption(options, 'bg.stats(options)');
    const all = options?.application === true;
    const counts = all ? this.#app.counts : this.#scope.counts;
    const { total, ...ended } = counts;
    const byStatus: Record<TaskStatus, number> = { queued: 0, delayed: 0, running: 0, retrying: 0, ...ended };
    for (const run of this.#liveRuns(all)) byStatus[run.status]++;
    return { total, queued: byStatus.queued, running: byStatus.running, byStatus };
  }

  /**
   * Resolves once `add()` would not throw `QueueFullError` (at once when there is room): for
   * producers that would rather wait than fail. Waiters are woken in the order they came, as
   * many as there is room for; it reserves nothing, so another caller may take the room first.
   */
  waitForRoom(): Promise<void> {
    return this.#app.waitForRoom();
  }

  #liveRuns(application: boolean): Generator<TaskRun> {
    return application ? this.#app.liveRuns() : this.#scope.live();
  }

  /**
   * Resolves once this scope has no task left that has not ended (queued, delayed, running or
   * waiting to retry), including tasks added while waiting (by other tasks, say). Resolves at
   * once when the scope is idle. Does not stop intake.
   */
  drain(): Promise<void> {
    return this.#scope.drain();
  }

  /**
   * Stops intake (`add()` then throws {@link BackgroundDisposedError}), waits up to
   * `drainTimeoutMs` for the scope's tasks, aborts what is left through each task's
   * `AbortSignal`, logs it as abandoned, and resolves. Never rejects; every call returns the
   * same promise. tsyringe's `container.dispose()` calls it.
   *
   * On the application root's Background this closes the whole application: see
   * {@link shutdown}.
   */
  dispose(): Promise<void> {
    if (this.#disposal === undefined) {
      const disposal = this.#isRoot ? this.#app.close(this.#scope.options.drainTimeoutMs).then(() => undefined) : this.#scope.dispose();
      // An observer of the disposal may have disposed again meanwhile: the first promise stays.
      this.#disposal ??= disposal;
    }
    return this.#disposal;
  }

  /** The same as {@link Background.dispose}, for `await using bg = scope.resolve(Background)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  static {
    // The doors of the durable backend (see jobRun, cronTimesDoor, jobContext, closeWith): out of the class's type, so not public API.
    Object.defineProperty(Background, cronTimesDoor, { value: cronTimes });
    Object.defineProperty(Background.prototype, jobContext, {
      get(this: Background): JobContext | undefined {
        return this.#app.jobContext;
      },
      set(this: Background, value: JobContext | undefined) {
        this.#app.jobContext = value;
      },
    });
    Object.defineProperty(Background.prototype, applicationLogger, {
      get(this: Background): BackgroundLogger {
        return this.#app.options.logger;
      },
    });
    Object.defineProperty(Background.prototype, closeWith, {
      value(this: Background, participant: CloseParticipant): () => void {
        return this.#app.closeWith(participant);
      },
    });
    Object.defineProperty(Background.prototype, jobRun, {
      value(this: Background, task: TaskDefinition, args: unknown[], job: JobLink, timeoutMs: number | undefined): TaskHandle {
        return this.#addJobRun(task, args, job, timeoutMs);
      },
    });
  }

  /**
   * A job's attempt: `with({ durable: false, retries: 0, timeoutMs }).add(task, ...args)` linked to
   * its job, the options checked and merged once for the jobs that follow with the same timeout
   * (a view and its merge per job were ≈ 1.6 µs of a durable worker's ≈ 50 µs of Node CPU a job).
   */
  #addJobRun(task: TaskDefinition, args: unknown[], job: JobLink, timeoutMs: number | undefined): TaskHandle {
    let call = this.#jobCall;
    if (call === undefined || call.options.timeoutMs !== timeoutMs) call = this.#jobCall = resolveCall({ durable: false, retries: 0, timeoutMs }, isRun);
    // A literal: a spread of the frozen call showed in profiles as most of this door's time.
    const timing: CallSpec = { options: call.options, delayMs: undefined, runAt: undefined, after: call.after, cadence: undefined, overlap: false, job };
    return this.#add(call, task, args, timing);
  }

  /**
   * Sorts the task, checks intake, merges its options (from `call`) and hands it to the runner
   * (with `timing`: `call`'s, or a job attempt's).
   */
  #add(call: CallSpec | undefined, task: unknown, args: unknown[], timing: CallSpec | undefined = call): TaskHandle {
    const kind = kindOf(task);
    const given = task as TaskRequest['task'];
    const name = nameOf(kind, given);
    this.#app.checkIntake(this.#scope, name);
    const definition = kind === 'definition' || kind === 'worker' ? (given as TaskDefinition) : undefined;
    const options = this.#optionsFor(name, definition?.options, call);
    if (!options.durable) return this.#runner.add({ name, kind, task: given, args, options, timing });
    const runner = this.#durableRunner(name);
    // What the job carries of this call's context (its trace) to the worker, when an adapter asks.
    return runner.add({ name, kind, task: given, args, options, timing, carried: this.#app.jobContext?.capture() });
  }

  /** The application's durable backend, registered under {@link DurableRunner}. */
  #durableRunner(name: string): Runner {
    if (this.#durable !== undefined) return this.#durable;
    if (!this.#container.isRegistered(DurableRunner, true)) {
      throw new TypeError(
        `bg.add("${name}"): durable: true needs a durable backend, and this application has none; ` +
          'register one on its root container (useBullMQ() from tsyringe-background/bullmq)',
      );
    }
    const runner = (this.#durable = this.#container.resolve(DurableRunner));
    // The application's close waits for what it was given (a durable job on its way to Redis).
    this.#app.settleWith(runner);
    return runner;
  }

  /**
   * The task options of one task: the scope's defaults, then the definition's, then the call's,
   * checked once merged (a level's `backoff.maxMs` against the `baseMs` it inherits).
   */
  #optionsFor(name: string, definitionOptions: object | undefined, call: CallSpec | undefined): ResolvedTaskOptions {
    let options = this.#scope.options.defaults;
    if (definitionOptions !== undefined) options = rememberedTaskOptions(definitionOptions, options) ?? resolveTaskOptions(definitionOptions, options, definitionLevel(name));
    if (call === undefined) return checkMerged(options, name);
    // A view adds the same kind of task again and again: its options, merged once, serve the next add too.
    if (call !== this.#lastCall || options !== this.#lastBase) {
      this.#lastCall = call;
      this.#lastBase = options;
      this.#lastMerged = resolveTaskOptions(call.options, options, callLevel, false);
    }
    return checkMerged(this.#lastMerged!, name);
  }
}

closeApplicationsWith(Background);

const taskStatuses: readonly string[] = ['queued', 'delayed', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', 'timedOut', 'skipped', 'abandoned'];

/** The filter of `bg.list()`, checked: a misspelt status or key would list nothing, silently. */
/** Checks the options of `get()` and `stats()`: `{ application }`, or nothing. */
function checkScopeOption(options: unknown, at: string): void {
  if (options === undefined) return;
  if (!isOptionsObject(options)) throw new TypeError(`${at}: options must be an object, got ${describe(options)}`);
  const { application } = checkKnownKeys(options, ['application'], at) as { application?: unknown };
  if (application !== undefined && typeof application !== 'boolean') throw new TypeError(`${at}: options.application must be a boolean, got ${describe(application)}`);
}

/** `more` over `options`, with their inherited keys, which options are read with everywhere else. */
function over(options: CallOptions, more: CallOptions): CallOptions {
  return { ...ownOptions(options, 'bg.with(options): options'), ...ownOptions(more, 'bg.with(options): options') };
}

function checkListFilter(filter: unknown): void {
  if (!isOptionsObject(filter)) throw new TypeError(`bg.list(filter): filter must be an object, got ${describe(filter)}`);
  const unknown = unknownKey(filter, ['status', 'application'], 'bg.list(filter): filter');
  if (unknown !== undefined) throw new TypeError(`bg.list(filter): filter.${unknown} is not a known option; known options: status, application`);
  const { status, application } = ownOptions(filter, 'bg.list(filter): filter') as { status?: unknown; application?: unknown };
  if (application !== undefined && typeof application !== 'boolean') throw new TypeError(`bg.list(filter): filter.application must be a boolean, got ${describe(application)}`);
  if (status === undefined) return;
  const statuses = typeof status === 'string' ? [status] : Array.isArray(status) ? (status as unknown[]) : undefined;
  const wrong = statuses === undefined ? status : statuses.find((each) => typeof each !== 'string' || !taskStatuses.includes(each));
  if (statuses === undefined || wrong !== undefined) {
    throw new TypeError(`bg.list(filter): filter.status must be a task status or an array of them (${taskStatuses.join(', ')}), got ${describe(wrong)}`);
  }
}

/**
 * Resolves, from any container, the `Background` of its application's root: for work that must
 * outlive the request that starts it. Its tasks take their dependencies from the application's
 * root container (never the request's), and they drain at `shutdown()` (or the root's
 * disposal), not when the request scope is disposed.
 *
 * ```ts
 * @injectable()
 * class Exports {
 *   constructor(@inject(ApplicationBackground) private readonly app: Background) {}
 *   start(userId: string) { return this.app.add(buildExport, userId).id; }   // survives the request
 * }
 * ```
 *
 * Use the scope's own `Background` (inject `Background`) for work that belongs to the request
 * and may use its instances; use this one for work that must not be lost when the request ends.
 */
export const ApplicationBackground: InjectionToken<Background> = Symbol.for('tsyringe-background.ApplicationBackground');

// One Background per container; and the application's, from any container.
registerGlobally((global) => {
  global.register(Background, Background, { lifecycle: Lifecycle.ContainerScoped });
  global.register(ApplicationBackground, { useFactory: (scope) => rootOf(scope).resolve(Background) });
});

/** Counts of tasks, by {@link Background.stats}. */
export interface BackgroundStats {
  /** Tasks added since the start. */
  readonly total: number;
  /** Tasks waiting for a slot now. */
  readonly queued: number;
  /** Tasks running now. */
  readonly running: number;
  /** Live statuses as they are now; final statuses counted since the start. */
  readonly byStatus: Readonly<Record<TaskStatus, number>>;
}
