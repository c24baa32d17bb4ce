import { container as globalContainer, inject, Lifecycle, scoped, type DependencyContainer } from 'tsyringe';
import type { ShutdownReport } from './app.js';
import { TaskContext } from './context.js';
import { callKeys, resolveCall, type CallOptions, type CallSpec } from './call-options.js';
import { BackgroundDisposedError, QueueFullError, TaskDependencyError } from './errors.js';
import { describe } from './describe.js';
import { TaskRun, type TaskHandle, type TaskStatus } from './run.js';
import { Schedule, type Cadence } from './schedule.js';
import { appOf, backgroundOf, CurrentScope, isDisposed, scopeInfo, setBackgroundOf } from './scope.js';
import { defaultTaskOptions, resolveTaskOptions, type ResolvedTaskOptions } from './task-options.js';
import {
  definitionKeys,
  isAsyncFunction,
  isClassTask,
  isTaskDefinition,
  tokenName,
  type ClassTask,
  type TaskDefinition,
} from './task.js';
import { Tracker } from './tracker.js';
import { checkCloneable, collectTransfers, type Transferable } from './clone.js';
import type { WorkerRequest } from './wire.js';
import { isWorkerTask, type WorkerTaskDefinition } from './worker-task.js';
import type { App } from './app.js';

let lastId = 0;

/** A class (its `prototype` is read-only, unlike a function's) that has no `run` method. */
function isClassWithoutRun(fn: object): boolean {
  return (
    'prototype' in fn &&
    Object.getOwnPropertyDescriptor(fn, 'prototype')?.writable === false &&
    !isClassTask(fn)
  );
}

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
@scoped(Lifecycle.ContainerScoped)
export class Background implements AsyncDisposable, TaskAdder {
  readonly #tracker: Tracker;
  readonly #scope: DependencyContainer;
  readonly #app: App;
  readonly #isRoot: boolean;
  #disposal: Promise<void> | undefined;
  /** Off while a periodic task is checked: a schedule takes no room in the queue. */
  #roomChecked = true;

  /**
   * Constructed by tsyringe; resolve it instead (`scope.resolve(Background)`).
   * @throws TypeError | RangeError when the registered {@link BackgroundOptions} are invalid.
   */
  constructor(@inject(CurrentScope) scope: DependencyContainer) {
    const { options, app, isRoot } = scopeInfo(scope);
    this.#scope = scope;
    this.#app = app;
    this.#isRoot = isRoot;
    this.#tracker = new Tracker(options, app);
    setBackgroundOf(scope, this);
  }

  /** Tasks of this scope queued or running now. */
  get pending(): number {
    return this.#tracker.pending;
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
   *
   * @throws TypeError when `task` is not a task.
   * @throws TaskDependencyError when a dependency cannot be resolved (nothing is queued).
   * @throws BackgroundDisposedError once disposal has begun.
   */
  add<Args extends unknown[], R>(task: TaskDefinition<Args, R>, ...args: NoInfer<Args>): TaskHandle<R>;
  add<Args extends unknown[], R>(task: ClassTask<Args, R>, ...args: NoInfer<Args>): TaskHandle<Awaited<R>>;
  add<Args extends unknown[], R>(task: (...args: Args) => R, ...args: NoInfer<Args>): TaskHandle<Awaited<R>>;
  add(task: unknown, ...args: unknown[]): TaskHandle {
    return this.#add(undefined, task, args);
  }

  /**
   * A view of this Background whose `add()` applies `options` to the tasks it adds: task
   * options (priority, retries, timeout…), which win over the definition's and the scope's,
   * and when to start (`delayMs`, `runAt`, `after`). Views can be chained.
   *
   * ```ts
   * bg.with({ priority: 'high', delayMs: 5_000 }).add(sendReminder, user.id);
   * ```
   *
   * @throws TypeError | RangeError when an option is invalid, naming it.
   */
  with(options: CallOptions): TaskAdder {
    const call = resolveCall(options);
    resolveTaskOptions(options, defaultTaskOptions, 'bg.with(options)', callKeys);
    const view: TaskAdder = {
      add: ((task: unknown, ...args: unknown[]) => this.#add(call, task, args)),
      with: (more) => this.with({ ...options, ...more }),
    };
    return view;
  }

  /**
   * A group: adds tasks like this Background (or a view of it) and keeps their handles, to await
   * them together.
   *
   * ```ts
   * const batch = bg.group();
   * for (const id of ids) batch.add(reindex, id);
   * await batch.all();          // rejects on the first failure; allSettled() waits for all
   * ```
   */
  group(): TaskGroup {
    return groupOf(this);
  }

  /**
   * The task with this id, among this scope's live tasks and its finished tasks still on
   * record (see `records`); with `{ application: true }`, among the whole application's.
   */
  get(id: number, options?: { application?: boolean | undefined }): TaskHandle | undefined {
    for (const run of this.#liveRuns(options?.application === true)) if (run.id === id) return run;
    for (const run of this.#app.finished()) {
      if (run.id === id && (options?.application === true || run.tracker === this.#tracker)) return run;
    }
    for (const schedule of this.#app.schedules) if (schedule.id === id) return schedule;
    return undefined;
  }

  /**
   * This scope's tasks, live ones first (newest first), then finished ones still on record
   * (newest first); only those in `status` when given. With `application: true`, the whole
   * application's.
   */
  list(filter: { status?: TaskStatus | readonly TaskStatus[] | undefined; application?: boolean | undefined } = {}): TaskHandle[] {
    const wanted = filter.status === undefined ? undefined : new Set<TaskStatus>(typeof filter.status === 'string' ? [filter.status] : filter.status);
    const all = filter.application === true;
    const out: TaskHandle[] = [];
    for (const run of this.#liveRuns(all)) if (wanted === undefined || wanted.has(run.status)) out.push(run);
    const finished = this.#app.finished();
    for (let i = finished.length - 1; i >= 0; i--) {
      const run = finished[i]!;
      if ((all || run.tracker === this.#tracker) && (wanted === undefined || wanted.has(run.status))) out.push(run);
    }
    return out;
  }

  /**
   * Counts for this scope (or, with `application: true`, the whole application): `total` tasks
   * added, `queued` and `running` now, and `byStatus`: the live statuses as they are now, the
   * final ones counted since the start.
   */
  stats(options?: { application?: boolean | undefined }): BackgroundStats {
    const all = options?.application === true;
    const counts = all ? this.#app.counts : this.#tracker.counts;
    const { total, ...ended } = counts;
    const byStatus: Record<TaskStatus, number> = { queued: 0, delayed: 0, running: 0, retrying: 0, ...ended };
    for (const run of this.#liveRuns(all)) byStatus[run.status]++;
    return { total, queued: byStatus.queued, running: byStatus.running, byStatus };
  }

  /**
   * Resolves once `add()` would not throw `QueueFullError` (at once when there is room): for
   * producers that would rather wait than fail.
   */
  waitForRoom(): Promise<void> {
    return this.#app.waitForRoom();
  }

  *#liveRuns(application: boolean): Generator<TaskRun> {
    if (!application) {
      yield* this.#tracker.live();
      return;
    }
    for (const tracker of this.#app.busy) yield* tracker.live();
  }

  /**
   * Resolves once this scope has no task queued or running, including tasks added while
   * waiting (by other tasks, say). Resolves at once when the scope is idle. Does not stop
   * intake.
   */
  drain(): Promise<void> {
    return this.#tracker.drain();
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
    this.#disposal ??= this.#isRoot
      ? this.#app.close(this.#tracker.options.drainTimeoutMs).then(() => undefined)
      : this.#tracker.dispose();
    return this.#disposal;
  }

  /** The same as {@link Background.dispose}, for `await using bg = scope.resolve(Background)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #add(call: CallSpec | undefined, task: unknown, args: unknown[]): TaskHandle {
    if (call?.cadence !== undefined) return this.#schedule(call, call.cadence, task, args);
    const run = this.#build(call, task, args);
    if (call === undefined) {
      this.#tracker.add(run);
    } else {
      run.dueAt = call.runAt ?? (call.delayMs === undefined ? 0 : Date.now() + call.delayMs);
      this.#tracker.add(run, call.after);
    }
    return run;
  }

  /** A periodic task: checked now (dependencies, arguments), then one run per tick. */
  #schedule(call: CallSpec, cadence: Cadence, task: unknown, args: unknown[]): TaskHandle {
    const once: CallSpec = { ...call, cadence: undefined };
    // Built once now to check the task, its dependencies and arguments; a schedule queues
    // nothing itself, so a full queue does not refuse it.
    this.#roomChecked = false;
    let first: TaskRun;
    try {
      first = this.#build(once, task, args);
    } finally {
      this.#roomChecked = true;
    }
    const logger = this.#tracker.options.logger;
    const schedule = new Schedule(
      ++lastId,
      first.name,
      cadence,
      call.overlap,
      () => this.#add(once, task, args) as TaskRun,
      (stopped) => {
        this.#tracker.schedules?.delete(stopped);
        this.#app.schedules.delete(stopped);
      },
      (error, ticked) => {
        try {
          logger.error({ task: ticked.name, taskId: ticked.id, err: error }, `periodic task "${ticked.name}" could not add this tick's run; the next tick still comes`);
        } catch (loggerError) {
          console.error('[tsyringe-background] the logger threw while logging:', loggerError);
        }
      },
    );
    (this.#tracker.schedules ??= new Set()).add(schedule);
    this.#app.schedules.add(schedule);
    return schedule;
  }

  #build(call: CallSpec | undefined, task: unknown, args: unknown[]): TaskRun {
    let run: TaskRun;
    if (typeof task === 'function') {
      if (isClassWithoutRun(task)) {
        throw new TypeError(
          `bg.add(${task.name || 'class'}): a class task needs a run() method on its prototype; ` +
            `${task.name || 'this class'} has none`,
        );
      }
      run = isClassTask(task) ? this.#classRun(task, args, call) : this.#functionRun(task as () => unknown, args, call);
    } else if (isTaskDefinition(task)) {
      run = isWorkerTask(task) ? this.#workerRun(task, args, call) : this.#definitionRun(task, args, call);
    } else {
      throw new TypeError(
        'bg.add(task): task must be a function, a defineTask() definition or an injectable ' +
          `class with a run() method, got ${describe(task)}`,
      );
    }
    return run;
  }

  /** Checks intake (open, room in the queue) before anything else is done for a task. */
  #checkOpen(taskName: string): string {
    const state = this.#tracker.state;
    if (state !== 'open') throw new BackgroundDisposedError(taskName, state === 'draining' ? 'being disposed' : 'disposed');
    const app = this.#app;
    const { maxQueued } = app.options;
    if (this.#roomChecked && app.queued >= maxQueued) throw new QueueFullError(taskName, maxQueued, app.queued, app.running);
    return taskName;
  }

  /** The task options of one task: the scope's defaults, then the definition's, then the call's. */
  #optionsFor(name: string, definitionOptions: object | undefined, call: CallSpec | undefined): ResolvedTaskOptions {
    let options = this.#tracker.options.defaults;
    if (definitionOptions !== undefined) {
      options = resolveTaskOptions(definitionOptions, options, `defineTask("${name}") options`, definitionKeys);
    }
    if (call !== undefined) options = resolveTaskOptions(call.options, options, 'bg.with(options)', callKeys);
    return options;
  }

  #functionRun(fn: () => unknown, args: unknown[], call: CallSpec | undefined): TaskRun {
    const name = this.#checkOpen(fn.name || 'anonymous');
    const options = this.#optionsFor(name, undefined, call);
    return new TaskRun(++lastId, name, fn, undefined, args, !isAsyncFunction(fn), -1, this.#tracker, this.#app.scheduler, options);
  }

  #definitionRun(definition: TaskDefinition, args: unknown[], call: CallSpec | undefined): TaskRun {
    const name = this.#checkOpen(definition.name);
    const tokens = definition.inject;
    const params = new Array<unknown>(tokens.length + args.length);
    let contextAt = -1;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === TaskContext) {
        contextAt = i;
        continue;
      }
      try {
        params[i] = this.#scope.resolve(token);
      } catch (error) {
        throw new TaskDependencyError(name, { position: i, token: tokenName(token) }, error);
      }
    }
    for (let i = 0; i < args.length; i++) params[tokens.length + i] = args[i];
    const options = this.#optionsFor(name, definition.options, call);
    const sync = !isAsyncFunction(definition.fn);
    return new TaskRun(++lastId, name, definition.fn, undefined, params, sync, contextAt, this.#tracker, this.#app.scheduler, options);
  }

  #workerRun(definition: WorkerTaskDefinition, args: unknown[], call: CallSpec | undefined): TaskRun {
    const name = this.#checkOpen(definition.name);
    const options = this.#optionsFor(name, definition.options, call);
    const transferList = checkCloneable(name, args);
    // Marked buffers move now, so the caller's are detached when add() returns, not later.
    const sent = transferList.length === 0 ? args : moveNow(name, args, transferList);
    const pool = this.#app.pool;
    const request: WorkerRequest = { module: definition.module, name, args: sent, id: ++lastId };
    const transfers = transferList.length === 0 ? transferList : collectTransfers(sent);
    const withContext = definition.inject.includes(TaskContext);
    // eslint-disable-next-line prefer-const -- the closure needs the run, which needs the closure
    let run: TaskRun;
    const start = () => pool.run(request, run, transfers, withContext);
    run = new TaskRun(request.id, name, start, undefined, [], false, -1, this.#tracker, pool.admission, options);
    return run;
  }

  #classRun(task: ClassTask, args: unknown[], call: CallSpec | undefined): TaskRun {
    const name = this.#checkOpen(task.name || 'anonymous');
    let instance: { run(...args: unknown[]): unknown };
    try {
      instance = this.#scope.resolve(task);
    } catch (error) {
      // tsyringe words it "Cannot inject the dependency "db" at position #0 of "X" constructor".
      const message = error instanceof Error ? error.message : String(error);
      const found = /^Cannot inject the dependency (?:"(.*?)" )?at position #(\d+)/.exec(message);
      throw found
        ? new TaskDependencyError(name, { position: Number(found[2]), parameter: found[1] }, error)
        : new TaskDependencyError(name, {}, error);
    }
    // eslint-disable-next-line @typescript-eslint/unbound-method -- TaskRun calls it with the instance as `this`
    const run = instance.run;
    const options = this.#optionsFor(name, undefined, call);
    return new TaskRun(++lastId, name, run, instance, args, !isAsyncFunction(run), -1, this.#tracker, this.#app.scheduler, options);
  }
}

/** Moves the marked buffers of a worker task's arguments; a detached one fails clearly. */
function moveNow(taskName: string, args: unknown[], transferList: readonly Transferable[]): unknown[] {
  try {
    return structuredClone(args, { transfer: transferList as never });
  } catch (error) {
    throw new TypeError(
      `bg.add("${taskName}"): the arguments marked with transfer() could not be moved (a buffer already transferred is detached): ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

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

/** Tasks added together, awaited together: made by {@link Background.group}. */
export interface TaskGroup extends TaskAdder {
  /** The handles of the tasks added so far, in order. */
  readonly handles: readonly TaskHandle[];
  /** Resolves with every result, in order; rejects with the first failure. */
  all(): Promise<unknown[]>;
  /** Resolves once every task has ended, with each outcome. */
  allSettled(): Promise<PromiseSettledResult<unknown>[]>;
}

function groupOf(adder: TaskAdder, handles: TaskHandle[] = []): TaskGroup {
  return {
    handles,
    add: ((task: never, ...args: never[]) => {
      const handle = adder.add(task, ...args);
      handles.push(handle);
      return handle;
    }),
    with: (options) => groupOf(adder.with(options), handles),
    all: () => Promise.all(handles.map((handle) => handle.result())),
    allSettled: () => Promise.allSettled(handles.map((handle) => handle.result())),
  };
}

/** What adds tasks: a `Background`, or a view of one made by `with()`. */
export interface TaskAdder {
  add<Args extends unknown[], R>(task: TaskDefinition<Args, R>, ...args: NoInfer<Args>): TaskHandle<R>;
  add<Args extends unknown[], R>(task: ClassTask<Args, R>, ...args: NoInfer<Args>): TaskHandle<Awaited<R>>;
  add<Args extends unknown[], R>(task: (...args: Args) => R, ...args: NoInfer<Args>): TaskHandle<Awaited<R>>;
  /** A view with more options, merged over this one's. */
  with(options: CallOptions): TaskAdder;
}

/**
 * Disposes a scope in the right order: first its Background (so tasks finish while the
 * scope's other instances, a database session say, are still alive), then the rest of the
 * container. tsyringe alone disposes everything in parallel. Safe to call on a scope that is
 * already disposed.
 */
export async function disposeScope(scope: DependencyContainer): Promise<void> {
  await backgroundOf<Background>(scope)?.dispose();
  // tsyringe would dispose every instance again on a second call.
  if (!isDisposed(scope)) await scope.dispose();
}

/** Options of {@link shutdown}. */
export interface ShutdownOptions {
  /**
   * A container of the application to close (any of its scopes will do).
   * @default the global container
   */
  container?: DependencyContainer | undefined;
  /**
   * The one deadline for every scope to drain before what is left is abandoned.
   * @default the application root's `drainTimeoutMs`
   */
  timeoutMs?: number | undefined;
}

/**
 * Closes an application: stops intake in every scope, drains every scope that has work within
 * one deadline, aborts and logs what is left, then closes shared resources. The building block
 * of graceful shutdown:
 *
 * ```ts
 * process.once('SIGTERM', async () => {
 *   server.close();
 *   const { abandoned } = await shutdown({ timeoutMs: 20_000 });
 *   process.exit(abandoned === 0 ? 0 : 1);
 * });
 * ```
 *
 * Idempotent; never rejects.
 */
export function shutdown(options: ShutdownOptions = {}): Promise<ShutdownReport> {
  const app = appOf(options.container ?? globalContainer);
  const timeoutMs = options.timeoutMs ?? app.options.drainTimeoutMs;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 2 ** 31 - 1) {
    throw new RangeError(`shutdown(options): options.timeoutMs must be an integer from 0 to ${2 ** 31 - 1}, got ${describe(timeoutMs)}`);
  }
  return app.close(timeoutMs);
}
