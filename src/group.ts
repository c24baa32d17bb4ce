import type { CallOptions } from './model/call-options.js';
import type { TaskHandle } from './model/handle.js';
import type { AnyTask, TaskArgs, TaskDefinition, TaskResult } from './model/task.js';

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

/** Tasks added together, awaited together: made by `Background.group()`. */
export interface TaskGroup extends TaskAdder {
  /** The handles of the tasks added so far, in order. */
  readonly handles: readonly TaskHandle[];
  /** Resolves with every result, in order; rejects with the first failure. */
  all(): Promise<unknown[]>;
  /** Resolves once every task has ended, with each outcome. */
  allSettled(): Promise<PromiseSettledResult<unknown>[]>;
}

/** A group that adds through `adder` and keeps the handles in `handles`. */
export function groupOf(adder: TaskAdder, handles: TaskHandle[] = []): TaskGroup {
  return {
    // A copy: pushed into, the group's own list would have all() wait for what it never added.
    get handles() {
      return Object.freeze([...handles]);
    },
    add: ((task: AnyTask, ...args: unknown[]) => {
      const handle = adder.add(task, ...(args as never[]));
      handles.push(handle);
      return handle;
    }) as TaskAdder['add'],
    with: (options: CallOptions) => groupOf(adder.with(options), handles),
    all: () => Promise.all(handles.map((handle) => handle.result())),
    allSettled: () => Promise.allSettled(handles.map((handle) => handle.result())),
  };
}
