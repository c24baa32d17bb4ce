/**
 * tsyringe-background: dependency-injected background tasks for tsyringe.
 * @packageDocumentation
 */
import 'reflect-metadata';

export { ApplicationBackground, Background, type BackgroundStats } from './background.js';
export { disposeScope, shutdown, type ShutdownOptions } from './shutdown.js';
export { gracefulShutdown, type GracefulServer, type GracefulShutdown, type GracefulShutdownOptions, type GracefulShutdownReport } from './graceful.js';
export { observeTasks, wrapAttempts, type ObserveOptions, type TaskObservation } from './observe.js';
export type { AttemptWrapper, TaskEvent, TaskEventBase, TaskEventType, TaskObserver, TaskStartedEvent } from './model/events.js';
export type { DefinitionResolvingTo, TaskAdder, TaskGroup, TaskResolvingTo } from './group.js';
export type { ShutdownReport } from './engine/application.js';
export { TaskContext } from './model/context.js';
export {
  BackgroundDisposedError,
  BackgroundError,
  DurableTaskError,
  QueueFullError,
  ResultTimeoutError,
  TaskAbandonedError,
  TaskCancelledError,
  TaskDependencyError,
  TaskNonErrorError,
  TaskSkippedError,
  TaskTimeoutError,
  WorkerTaskError,
  type BackgroundErrorCode,
  type DurableErrorCode,
  type WorkerErrorCode,
} from './model/errors.js';
export type { CallOptions } from './model/call-options.js';
export { priorities, type Backoff, type Priority, type TaskOptions } from './model/task-options.js';
export { consoleLogger, type BackgroundLogger, type LogFn } from './model/logger.js';
export { BackgroundOptions, type PoolOptions } from './model/options.js';
export type { ResultOptions, TaskHandle, TaskProgress, TaskStatus } from './model/handle.js';
export {
  defineTask,
  type ClassTask,
  type DefineTaskOptions,
  type AnyTask,
  type InjectOfUnknownLength,
  type Instances,
  type TaskArgs,
  type TaskDefinition,
  type TaskResult,
} from './model/task.js';
export { workerTask, type WorkerTaskDefinition } from './model/worker-task.js';
export { DurableRunner, type CloseOutcome, type Runner, type TaskKind, type TaskRequest } from './model/runner.js';
export { transfer } from './worker/clone.js';
export { registerErrorClass, type ErrorClass } from './worker/wire.js';
