import type { CallOptions } from './model/call-options.js';
import type { TaskHandle } from './model/handle.js';
import type { AnyTask, ClassTask, TaskArgs, TaskDefinition, TaskResult } from './model/task.js';

/**
 * What adds tasks: a `Background`, or a view of one made by `with()`. `Task` is what its `add()`
 * takes: any task, or only definitions for a view made with `durable: true` (a durable task is
 * found by its name, which only a definition has).
 */
export interface TaskAdder<Task extends AnyTask = AnyTask> {
  /**
   * Adds a task with the arguments it takes after its injected dependencies, and returns its
   * handle at once; see `Background.add()`. A group also keeps the handle in `handles`.
   */
  add<T extends Task>(task: T, ...args: TaskArgs<T>): TaskHandle<TaskResult<T>>;
  /** A view with more options, merged over this one's; `durable: true` written in them: one that adds definitions only. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a definition of any arguments and result
  with(options: CallOptions & { durable: true }): TaskAdder<TaskDefinition<any, any>>;
  /** A view with more options, merged over this one's; `durable: false` written in them: one that adds any task again. */
  with(options: CallOptions & { durable: false }): TaskAdder;
  /** A view with more options, merged over this one's: it adds what this one adds. */
  with(options: CallOptions): TaskAdder<Task>;
}

/**
 * The tasks whose result is an `R`, what a `TaskGroup<R>` adds: a definition of that result, a
 * class task whose `run()` returns one or a promise of one, a function that does. Any task for
 * `unknown` (or `any`).
 */
export type TaskResolvingTo<R> = unknown extends R
  ? AnyTask
  : // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any arguments: only the result is asked
    TaskDefinition<any, R> | ClassTask<any, R | PromiseLike<R>> | ((...args: any[]) => R | PromiseLike<R>);

/**
 * The definitions whose result is an `R`, what a durable view of a `TaskGroup<R>` adds (a durable
 * task is found by its name, which only a definition has). Any definition for `unknown` (or `any`).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a definition of any arguments, and of any result for unknown
export type DefinitionResolvingTo<R> = TaskDefinition<any, unknown extends R ? any : R>;

/**
 * Tasks added together, awaited together: made by `Background.group()`. `R` is the result of
 * each task, as `bg.group<R>()` names it: its `add()` takes only tasks that resolve to an `R`,
 * and `all()` resolves to an `R[]`; `unknown` (by default) takes any task. `Task` is what
 * `add()` takes, narrowed to definitions by a view made with `durable: true`.
 */
export interface TaskGroup<R = unknown, Task extends AnyTask = TaskResolvingTo<R>> extends TaskAdder<Task> {
  /** The handles of the tasks added so far, through the group or its views, in order. */
  readonly handles: readonly TaskHandle<R>[];
  /** Resolves with every result, in order; rejects with the first failure. */
  all(): Promise<R[]>;
  /** Resolves once every task has ended, with each outcome. */
  allSettled(): Promise<PromiseSettledResult<R>[]>;
  /**
   * A view of this group, with more options merged over this one's, that adds to this group: its
   * handles are this group's, and its `all()` awaits them all; `durable: true` written in the
   * options: one that adds definitions only.
   */
  with(options: CallOptions & { durable: true }): TaskGroup<R, DefinitionResolvingTo<R>>;
  /** A view of this group, as above; `durable: false` written in the options: one that adds any task resolving to an `R` again. */
  with(options: CallOptions & { durable: false }): TaskGroup<R>;
  /** A view of this group, as above: it adds what this one adds. */
  with(options: CallOptions): TaskGroup<R, Task>;
}

/** A group that adds through `adder` and keeps the handles in `handles`. */
export function groupOf<R>(adder: TaskAdder, handles: TaskHandle<R>[] = []): TaskGroup<R> {
  return {
    // A copy: pushed into, the group's own list would have all() wait for what it never added.
    get handles() {
      return Object.freeze([...handles]);
    },
    add: ((task: AnyTask, ...args: unknown[]) => {
      // The group's type lets in only tasks that resolve to an R.
      const handle = adder.add(task, ...(args as never[])) as TaskHandle<R>;
      handles.push(handle);
      return handle;
    }) as TaskGroup<R>['add'],
    // The same handles: a view adds to this group, and this group's all() awaits what it added.
    with: (options: CallOptions) => groupOf(adder.with(options), handles),
    all: () => Promise.all(handles.map((handle) => handle.result())),
    allSettled: () => Promise.allSettled(handles.map((handle) => handle.result())),
  };
}
