import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { appOf } from './di/container.js';
import { describe } from './model/checks.js';
import type { TaskObserver } from './model/events.js';

/** Options of {@link observeTasks}. */
export interface ObserveOptions {
  /**
   * A container of the application to observe (any of its scopes will do).
   * @default the global container
   */
  container?: DependencyContainer | undefined;
}

/** Stops an observation: call it, or let `using` dispose it. Idempotent. */
export interface TaskObservation {
  (): void;
  [Symbol.dispose](): void;
}

/**
 * Observes the lifecycle events of every task of an application, every scope included: added,
 * started, attempt failed, retrying, and each outcome (see {@link TaskEvent}). For metrics,
 * tracing, a live view, or a test that wants to see what happened. The observer is called
 * synchronously as each event happens, inside the task's async context; one that throws is
 * logged and changes nothing. While nobody observes, no event is built.
 *
 * ```ts
 * const stop = observeTasks((event) => {
 *   if (event.type === 'failed') failures.add(1, { task: event.name });
 * });
 * // later
 * stop();
 * ```
 */
export function observeTasks(observer: TaskObserver, options: ObserveOptions = {}): TaskObservation {
  if (typeof observer !== 'function') throw new TypeError(`observeTasks(observer): observer must be a function, got ${describe(observer)}`);
  if (typeof options !== 'object' || options === null) throw new TypeError(`observeTasks(observer, options): options must be an object, got ${describe(options)}`);
  const stop = appOf(options.container ?? globalContainer).observe(observer);
  return Object.assign(() => stop(), { [Symbol.dispose]: stop });
}
