/**
 * The runner seam: what the facade (`Background`) hands to whatever runs a task, and what it
 * gets back. The facade sorts the task, merges its options and reads when it may start; a
 * {@link Runner} takes it from there and returns the task's handle, whose id the runner gives
 * (the in-process engine from `model/ids.ts`, a durable backend its job id).
 *
 * The in-process runner (`di/in-process-runner.ts`) is the first implementation: it resolves
 * the task's dependencies from the scope's container and runs it on the event loop or the
 * worker pool. A durable backend is the second: the same requests (definitions are found by
 * name, arguments travel as data), the same handles.
 */
import type { InjectionToken } from 'tsyringe';
import type { CallTiming } from './call-options.js';
import { describe, generatorHint, isClass, isGenerator, messageOf } from './checks.js';
import type { TaskHandle } from './handle.js';
import type { ResolvedTaskOptions } from './task-options.js';
import { isClassTask, isTaskDefinition, type ClassTask, type TaskDefinition } from './task.js';
import { isWorkerTask, type WorkerTaskDefinition } from './worker-task.js';

/** The kinds of task `add()` takes, each run its own way. */
export type TaskKind = 'function' | 'class' | 'definition' | 'worker';

/** One task, as the facade hands it to a runner. */
export interface TaskRequest {
  /** The task's name: the definition's, the class's or the function's (`anonymous` if none). */
  readonly name: string;
  /** What `task` is: a plain function, a class task, a `defineTask()` or a `workerTask()` definition. */
  readonly kind: TaskKind;
  /** The task as given to `add()`: a function, a class, a `defineTask()` or `workerTask()` definition. */
  readonly task: ((...args: never[]) => unknown) | ClassTask | TaskDefinition | WorkerTaskDefinition;
  /** The arguments given to `add()` after the task (dependencies are not among them). */
  readonly args: unknown[];
  /** Task options merged: the scope's defaults, then the definition's, then the call's. */
  readonly options: ResolvedTaskOptions;
  /**
   * When it may start, from `bg.with()`: a delay or a time (relative to now: the runner reads it
   * inside `add()`), tasks to run after, or a cadence (its handle then stands for the schedule).
   * `undefined`: now. (A field of its own, so that the plain `add()` makes one small object.)
   */
  readonly timing: CallTiming | undefined;
  /**
   * A durable task's context at `add()` (a trace's), as its job carries it to the worker: set
   * only when the application has a {@link JobContext} and it captured something.
   */
  readonly carried?: CarriedContext | undefined;
}

/** A context as strings a job can carry (W3C `traceparent`, `tracestate`, `baggage`, say). */
export type CarriedContext = Readonly<Record<string, string>>;

/**
 * What carries a task's context (its trace, typically) from the process that adds a durable
 * task to the process whose worker runs it. An adapter sets one on an application (the
 * OpenTelemetry one, while it traces) through the `Background` property under
 * {@link jobContext}; the facade captures at `add()`, the durable worker enters it around each
 * attempt of the job. Neither may throw (an adapter's own failure is its own to swallow).
 */
export interface JobContext {
  /** The caller's context, now, or `undefined` when there is none to carry. */
  capture(): CarriedContext | undefined;
  /** Calls `run` inside the context that `carried` stands for, and returns what it returns. */
  enter<T>(carried: CarriedContext, run: () => T): T;
}

/**
 * The key of a `Background` property (get and set) that is its application's {@link JobContext}.
 * Not public API; a `Symbol.for`, so that adapters, which see only the package entry, reach it.
 */
export const jobContext: unique symbol = Symbol.for('tsyringe-background.jobContext');

/** What a participant in an application's close ({@link CloseParticipant}, {@link Runner.settle}) says of how it ended. */
export interface CloseOutcome {
  /** Things it could not finish (durable jobs not in Redis, cancellations not sent): the close counts them abandoned. */
  readonly unfinished?: number | undefined;
  /**
   * Runs of durable jobs that the close abandoned (counted abandoned as they ended) and whose jobs
   * went back to their queue, to run again on another worker: abandoned here, not lost.
   */
  readonly requeued?: number | undefined;
}

/**
 * Something an adapter closes with an application (a durable backend's workers): called once, as
 * the application's close begins, with its deadline; the close then waits for the promise
 * (which must settle, within `timeoutMs` and a few seconds at most, and never reject) as it does
 * for the worker pool's, and adds up what it resolves with.
 */
export type CloseParticipant = (timeoutMs: number) => Promise<CloseOutcome | void>;

/**
 * The key of a `Background` method, `(participant: CloseParticipant) => () => void`, that has its
 * application close `participant` with it (at once when it is closing or closed already); the
 * function it returns takes `participant` off. Not public API; a `Symbol.for`, as {@link jobContext}.
 */
export const closeWith: unique symbol = Symbol.for('tsyringe-background.closeWith');

/**
 * The key of a `Background` property, the logger of its application (the `BackgroundOptions.logger`
 * its root reads): where the durable backend logs when it was given no logger of its own. Not
 * public API; a `Symbol.for`, as {@link jobContext}.
 */
export const applicationLogger: unique symbol = Symbol.for('tsyringe-background.applicationLogger');

/** What runs tasks: the in-process engine, or a durable backend. */
export interface Runner {
  /**
   * Takes one task and returns its handle at once; the task runs later. Throws, having kept
   * nothing, when it cannot take the task: `QueueFullError`, `TaskDependencyError`, or a
   * `TypeError` for arguments it cannot carry.
   */
  add(request: TaskRequest): TaskHandle;
  /**
   * What the application's close waits for, called once as it begins (intake has stopped): the
   * tasks this runner took are where they go (a durable backend: every job added is in Redis, or
   * has failed its bound), so that a process may exit once the close has resolved. Settles within
   * `timeoutMs` and a second at most; never rejects. Resolves with how many it could not finish
   * (jobs not in Redis, cancellations not sent: `unfinished`), which the close counts abandoned.
   */
  settle?(timeoutMs: number): Promise<CloseOutcome | void>;
}

/**
 * The token under which an application's durable backend is registered (on its root container):
 * the runner of the tasks added with `durable: true`. `tsyringe-background/bullmq` registers one.
 */
export const DurableRunner: InjectionToken<Runner> = Symbol.for('tsyringe-background.DurableRunner');

/** Which kind of task a value is; a `TypeError` naming the problem when it is none. */
export function kindOf(task: unknown): TaskKind {
  let sorted: TaskKind | 'class without run()' | 'generator' | undefined;
  try {
    if (typeof task === 'function') sorted = isClassTask(task) ? 'class' : isClass(task) ? 'class without run()' : isGenerator(task) ? 'generator' : 'function';
    else if (isTaskDefinition(task)) sorted = isWorkerTask(task) ? 'worker' : 'definition';
  } catch (error) {
    // A getter of the task's that throws (its prototype's run), a revoked Proxy: said, not passed on as it came.
    throw new TypeError(`bg.add(task): the task could not be read (${messageOf(error)}): a getter of it threw, or it is a revoked Proxy`, { cause: error });
  }
  if (sorted === 'class without run()') {
    const name = nameOf('class', task as TaskRequest['task']);
    throw new TypeError(`bg.add(${name === 'anonymous' ? 'class' : name}): a class task needs a run() method on its prototype; ${name === 'anonymous' ? 'this class' : name} has none`);
  }
  if (sorted === 'generator') throw new TypeError(`${notATask}${describe(task)}${generatorHint}`);
  if (sorted === undefined) throw new TypeError(`${notATask}${describe(task)}`);
  return sorted;
}

const notATask = 'bg.add(task): task must be a function, a defineTask() definition or an injectable class with a run() method, got ';

/** The name a task goes by in handles, logs and errors. */
export function nameOf(kind: TaskKind, task: TaskRequest['task']): string {
  if (kind === 'definition' || kind === 'worker') return (task as TaskDefinition).name;
  // A function's own name, when it is a string: a name getter that throws, or a number, is no name.
  let name: unknown;
  try {
    name = (task as { name?: unknown }).name;
  } catch {
    name = undefined;
  }
  return typeof name === 'string' && name !== '' ? name : 'anonymous';
}
