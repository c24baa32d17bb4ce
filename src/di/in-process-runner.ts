/**
 * The in-process runner: the first {@link Runner}. Turns a task into a run of the engine: its
 * dependencies resolved from the scope's container now, at `add()` (so a missing registration
 * fails at the call site, and no task touches a container after its disposal), then a run in
 * the event loop's lane or the worker pool's.
 */
import type { DependencyContainer } from 'tsyringe';
import type { Application } from '../engine/application.js';
import type { Scope } from '../engine/scope.js';
import { Call, TaskRun, type Invocation } from '../engine/task-run.js';
import { messageOf } from '../model/checks.js';
import { TaskContext } from '../model/context.js';
import { QueueFullError, TaskDependencyError } from '../model/errors.js';
import type { TaskHandle } from '../model/handle.js';
import { logSafely } from '../model/logger.js';
import { dueAtOf, type Cadence } from '../model/call-options.js';
import type { Runner, TaskRequest } from '../model/runner.js';
import { isDelayToken, tokenName, type ClassTask, type TaskDefinition } from '../model/task.js';
import { inLibraryThread, type WorkerTaskDefinition } from '../model/worker-task.js';
import { checkCloneable, checkResult, collectTransfers, type Transferable } from '../worker/clone.js';
import { failureOf, outcomeOf, type WorkerResponse } from '../worker/wire.js';

/** Runs the tasks of one scope in this process. */
export class InProcessRunner implements Runner {
  readonly #container: DependencyContainer;
  readonly #scope: Scope;
  readonly #app: Application;

  constructor(container: DependencyContainer, scope: Scope, app: Application) {
    this.#container = container;
    this.#scope = scope;
    this.#app = app;
  }

  add(request: TaskRequest): TaskHandle {
    const { timing } = request;
    if (timing?.cadence !== undefined) return this.#schedule(request, timing.cadence, timing.overlap);
    if (timing !== undefined) checkAfter(request.name, timing.after);
    // One clock read for the due time and the wait: read twice, a millisecond boundary in between
    // took a millisecond off a delay (a 1 000 ms delay was 999 ms of a test's fake timers).
    const now = Date.now();
    const dueAt = timing === undefined ? 0 : dueAtOf(timing, now);
    // A task that waits (its time, or tasks it runs after that have not ended) joins the queue
    // later, never refused then, and one after a task that did not succeed is skipped: a full
    // queue refuses neither now. (After tasks that have all succeeded, it joins now.)
    const waits = dueAt > now || (timing?.after?.some((handle) => handle.status !== 'succeeded') ?? false);
    const run = this.#run(request, !waits);
    if (timing !== undefined) {
      run.dueAt = dueAt;
      // An attempt of a job kept elsewhere (a durable worker's) counts from the job's attempts.
      if (timing.job !== undefined) {
        run.attempts = timing.job.attempt - 1;
        run.job = timing.job;
      }
    }
    this.#scope.add(run, timing?.after as readonly TaskRun[] | undefined, now);
    return run;
  }

  /** A periodic task: checked now (dependencies, arguments), then one run per tick. */
  #schedule(request: TaskRequest, cadence: Cadence, overlap: boolean): TaskHandle {
    const { name } = request;
    // A worker task's buffers marked with transfer() move once, now, into the schedule's own
    // copy of the arguments; each tick's run sends a copy of that.
    const args = request.kind === 'worker' ? this.#moveMarked(request) : request.args;
    const once: TaskRequest = { ...request, args, timing: undefined };
    // Built once now to check the task, its dependencies and arguments; a schedule queues
    // nothing itself, so a full queue does not refuse it.
    this.#run(once, false);
    return this.#scope.schedule(
      { name, cadence, overlap },
      {
        spawn: (_periodic, adopt) => {
          this.#app.checkIntake(this.#scope, name);
          const run = this.#run(once, true);
          adopt(run);
          this.#scope.add(run);
          return run;
        },
        tickFailed: (periodic, error) => {
          logSafely(
            this.#scope.logger,
            'error',
            { task: periodic.name, taskId: periodic.id, err: error },
            `periodic task "${periodic.name}" could not add this tick's run; the next tick still comes`,
          );
        },
      },
    );
  }

  /** The run of one task, its dependencies resolved; `checkRoom`: refuse it when the queue is full. */
  #run(request: TaskRequest, checkRoom: boolean): TaskRun {
    const app = this.#app;
    if (checkRoom) {
      const { maxQueued } = app.options;
      const waiting = app.waiting;
      // (Tasks about to take a free slot are counted as running.)
      if (waiting >= maxQueued) throw new QueueFullError(request.name, maxQueued, waiting, app.running + app.queued - waiting);
    }
    const { task, args } = request;
    switch (request.kind) {
      case 'function':
        return new TaskRun(request, new Call(task as () => unknown, args), this.#scope, app.lane);
      case 'class':
        return this.#classRun(request, task as ClassTask);
      case 'definition':
        return this.#definitionRun(request, task as TaskDefinition);
      case 'worker':
        return this.#workerRun(request, task as WorkerTaskDefinition);
    }
  }

  /** Where a request's dependencies come from: its job's own scope, if it has one, or this runner's. */
  #containerFor(request: TaskRequest): DependencyContainer {
    return request.timing?.job?.scope ?? this.#container;
  }

  #definitionRun(request: TaskRequest, definition: TaskDefinition): TaskRun {
    const { params, contextAt } = this.#paramsOf(this.#containerFor(request), request.name, definition.inject, request.args);
    return new TaskRun(request, new Call(definition.fn, params, undefined, contextAt), this.#scope, this.#app.lane);
  }

  /**
   * A definition's parameters: its dependencies resolved from the scope (the place of a
   * `TaskContext` kept, at `contextAt`), then `args`.
   */
  #paramsOf(container: DependencyContainer, name: string, tokens: TaskDefinition['inject'], args: readonly unknown[]): { params: unknown[]; contextAt: number } {
    const params = new Array<unknown>(tokens.length + args.length);
    let contextAt = -1;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === TaskContext) {
        contextAt = i;
        continue;
      }
      try {
        const value: unknown = container.resolve(token);
        // tsyringe's delay() gives a proxy that resolves its class on first use: from a container
        // that may be disposed by then, and failing in the task rather than here. Resolved now.
        if (isDelayToken(token)) Reflect.getPrototypeOf(value as object);
        params[i] = value;
      } catch (error) {
        throw new TaskDependencyError(name, { position: i, token: tokenName(token) }, error);
      }
    }
    for (let i = 0; i < args.length; i++) params[tokens.length + i] = args[i];
    return { params, contextAt };
  }

  #classRun(request: TaskRequest, task: ClassTask): TaskRun {
    let instance: { run(...args: unknown[]): unknown };
    try {
      instance = this.#containerFor(request).resolve(task);
    } catch (error) {
      throw classTaskFailure(request.name, error);
    }
    // eslint-disable-next-line @typescript-eslint/unbound-method -- Call calls it with the instance as `this`
    return new TaskRun(request, new Call(instance.run, request.args, instance), this.#scope, this.#app.lane);
  }

  /** The arguments of a worker task, checked, with the buffers marked with transfer() moved into a copy. */
  #moveMarked({ name, args }: TaskRequest): unknown[] {
    const transferList = checkCloneable(name, args);
    return transferList.length === 0 ? args : moveNow(name, args, transferList);
  }

  #workerRun(request: TaskRequest, definition: WorkerTaskDefinition): TaskRun {
    if (this.#app.options.pool.inline) return this.#inlineRun(request, definition);
    const { name, args } = request;
    const transferList = checkCloneable(name, args);
    // Marked buffers move now, so the caller's are detached when add() returns, not later.
    const sent = transferList.length === 0 ? args : moveNow(name, args, transferList);
    // They then move on to the worker; unless the task may be tried again, when each attempt
    // gets a copy and the task keeps what was moved.
    const transfers = transferList.length === 0 || request.options.retries > 0 ? [] : collectTransfers(sent);
    if (inLibraryThread()) throw nestedPoolError(name, definition.module);
    const pool = this.#app.pool;
    const call = pool.call({ module: definition.module, name, args: sent }, transfers, definition.inject.includes(TaskContext));
    return new TaskRun(request, call, this.#scope, pool.admission);
  }

  /** A worker task under `pool.inline`: its dependencies from the scope now, like a definition's. */
  #inlineRun(request: TaskRequest, definition: WorkerTaskDefinition): TaskRun {
    const { name } = request;
    const args = this.#moveMarked(request);
    const { params, contextAt } = this.#paramsOf(this.#containerFor(request), name, definition.inject, []);
    const invocation = inline(name, definition.fn as (...params: unknown[]) => unknown, params, contextAt, args);
    return new TaskRun(request, invocation, this.#scope, this.#app.lane);
  }
}

/** Why tsyringe could not build a class task, read from its outermost message (`error` is kept as the `cause`). */
function classTaskFailure(taskName: string, error: unknown): TaskDependencyError {
  const message = messageOf(error);
  // tsyringe words it "Cannot inject the dependency "db" at position #0 of "X" constructor".
  const found = /^Cannot inject the dependency (?:"(.*?)" )?at position #(\d+)/.exec(message);
  if (found) return new TaskDependencyError(taskName, { position: Number(found[2]), parameter: found[1] }, error);
  // A constructor with parameters and no list of them: no @injectable(), or no decorator
  // metadata (tsx, esbuild) and no @inject() on its parameters. The constructor never ran.
  const unknown = /^TypeInfo not known for "(.*)"$/.exec(message);
  if (unknown) return new TaskDependencyError(taskName, { unknownParametersOf: unknown[1] }, error);
  return new TaskDependencyError(taskName, {}, error);
}

/** An in-process task waits in this process's memory: only for tasks run here, not a durable task's job. */
function checkAfter(name: string, after: readonly TaskHandle[]): void {
  after.forEach((handle, i) => {
    if (handle instanceof TaskRun) return;
    throw new TypeError(
      `bg.add("${name}"): options.after[${i}] is durable task "${handle.name}" (#${handle.id}), and an in-process task waits only for in-process tasks; ` +
        `make "${name}" durable too (its wait then lives in Redis), or add it once the handle's result() has resolved`,
    );
  });
}

/**
 * A worker task added inside one of the library's worker threads, which would start a pool there,
 * whose threads would do the same: what happens when a thread imports a task module that runs the
 * application (a bundle whose entry holds the task definitions).
 */
function nestedPoolError(name: string, module: string): Error {
  return new Error(
    `Cannot add worker task "${name}" inside one of the library's worker threads: it would start a worker pool there, and its threads would do the same. ` +
      `A thread imports the module of each task it runs; one that runs the application when imported (${module}: a bundle whose entry holds the workerTask() definitions, say) adds its tasks again. ` +
      'Define worker tasks in modules of their own, without side effects, and with a bundler build each as an entry point of its own',
  );
}

/**
 * What runs a worker task on the main thread (`pool.inline`, for tests) as a worker would run it:
 * each attempt gets a copy of the arguments; the result is checked and copied, and a failure
 * comes back rebuilt, the way they cross from a thread.
 */
function inline(name: string, fn: (...params: unknown[]) => unknown, dependencies: readonly unknown[], contextAt: number, args: readonly unknown[]): Invocation {
  return {
    sync: false,
    async invoke(run: TaskRun): Promise<unknown> {
      let response: WorkerResponse;
      try {
        const params = [...dependencies, ...structuredClone(args)];
        if (contextAt >= 0) params[contextAt] = run.context();
        const value = await fn(...params);
        checkResult(name, value);
        response = { ok: true, value: structuredClone(value) };
      } catch (error) {
        response = failureOf(error);
      }
      return outcomeOf(name, response);
    },
  };
}

/** Moves the marked buffers of a worker task's arguments; a detached one fails clearly. */
function moveNow(taskName: string, args: unknown[], transferList: readonly Transferable[]): unknown[] {
  try {
    return structuredClone(args, { transfer: transferList as never });
  } catch (error) {
    throw new TypeError(
      `bg.add("${taskName}"): the arguments marked with transfer() could not be moved (a buffer already transferred is detached): ${messageOf(error)}`,
      { cause: error },
    );
  }
}
