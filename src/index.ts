/**
 * tsyringe-background: dependency-injected background tasks for tsyringe.
 * @packageDocumentation
 */
import 'reflect-metadata';

export {
  Background,
  disposeScope,
  shutdown,
  type BackgroundStats,
  type ShutdownOptions,
  type TaskAdder,
  type TaskGroup,
} from './background.js';
export type { ShutdownReport } from './app.js';
export { TaskContext } from './context.js';
export {
  BackgroundDisposedError,
  BackgroundError,
  QueueFullError,
  ResultTimeoutError,
  TaskAbandonedError,
  TaskCancelledError,
  TaskDependencyError,
  TaskNonErrorError,
  TaskSkippedError,
  TaskTimeoutError,
  type BackgroundErrorCode,
} from './errors.js';
export type { CallOptions } from './call-options.js';
export { priorities, type Backoff, type Priority, type TaskOptions } from './task-options.js';
export { consoleLogger, type BackgroundLogger, type LogFn } from './logger.js';
export { BackgroundOptions } from './options.js';
export type { ResultOptions, TaskHandle, TaskProgress, TaskStatus } from './run.js';
export {
  defineTask,
  type ClassTask,
  type DefineTaskOptions,
  type Instances,
  type TaskDefinition,
} from './task.js';
export { transfer } from './clone.js';
export { WorkerTaskError, type WorkerErrorCode } from './errors.js';
export type { PoolOptions } from './options.js';
export { workerTask, type WorkerTaskDefinition } from './worker-task.js';
