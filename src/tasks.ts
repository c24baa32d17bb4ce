/**
 * `tsyringe-background/tasks`: what a module of task definitions needs, and nothing of the
 * runner. Worker threads import each worker task's module, so a module that imports from here
 * rather than from `tsyringe-background` starts a thread without loading the scheduler, the pool
 * and the rest of the library (a fresh thread's first task waits for that). The definitions and
 * the `TaskContext` token are the same objects through either entry point.
 *
 * ```ts
 * // report-tasks.ts, imported by the application and by the pool's threads
 * import { TaskContext, workerTask } from 'tsyringe-background/tasks';
 * export const renderReport = workerTask(import.meta.url, { name: 'renderReport', inject: [Fonts, TaskContext] }, (fonts, ctx, id: string) => …);
 * ```
 * @packageDocumentation
 */
import { loadReflectMetadata } from './model/cjs.js';

// Before any task module's decorators run: such a module imports this one first.
loadReflectMetadata();

export { TaskContext } from './model/context.js';
export type { BackgroundLogger, LogFn } from './model/logger.js';
export { priorities, type Backoff, type Priority, type TaskOptions } from './model/task-options.js';
export {
  defineTask,
  type AnyTask,
  type ClassTask,
  type DefineTaskOptions,
  type InjectOfUnknownLength,
  type Instances,
  type TaskArgs,
  type TaskDefinition,
  type TaskResult,
} from './model/task.js';
export { workerTask, type WorkerTaskDefinition } from './model/worker-task.js';
export { transfer } from './worker/clone.js';
export { registerErrorClass, type ErrorClass } from './worker/wire.js';
