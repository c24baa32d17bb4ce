import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { appOf } from './di/container.js';
import { checkCallback, checkContainer, checkKnownKeys, describe, isOptionsObject } from './model/checks.js';
import type { AttemptWrapper, TaskObserver } from './model/events.js';

/** Options of {@link observeTasks}. */
export interface ObserveOptions {
  /**
   * A container of the application to observe (any of its scopes will do).
   * @default the global container
   */
  container?: DependencyContainer | undefined;
}

const observeKeys = ['container'] as const satisfies readonly (keyof ObserveOptions)[];

/** Stops an observation: call it, or let `using` dispose it. Idempotent. */
export interface TaskObservation {
  /** Stops it: the observer (or the wrapper) is removed from the application. Idempotent. */
  (): void;
  /** The same as calling the observation, for `using`. */
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
 *
 * @throws TypeError when `observer` is not a function, an option is not a known one, or
 * `container` is not a tsyringe container.
 */
export function observeTasks(observer: TaskObserver, options: ObserveOptions = {}): TaskObservation {
  if (typeof observer !== 'function') throw new TypeError(`observeTasks(observer): observer must be a function, got ${describe(observer)}`);
  checkCallback(observer, 'observeTasks(observer): observer');
  if (!isOptionsObject(options)) throw new TypeError(`observeTasks(observer, options): options must be an object, got ${describe(options)}`);
  options = checkKnownKeys(options, observeKeys, 'observeTasks(observer, options)');
  checkContainer(options.container, 'observeTasks(observer, options)');
  return observation(appOf(options.container ?? globalContainer).observe(observer));
}

/**
 * Runs every attempt of an application's tasks inside `wrapper`, for tools that must set a
 * context around a task's code: a tracing span that the spans the task makes are children of, a
 * logging context. `wrapper(event, attempt)` receives the attempt's `started` event; it must call
 * `attempt()` once, synchronously, and return what it returns (the task's value or promise),
 * letting what it throws through. One that throws before calling it, or never calls it, is
 * logged and the attempt runs without it, still inside every other wrapper. Several wrappers
 * nest, the first added outermost.
 * While there is none, nothing is built.
 *
 * ```ts
 * const store = new AsyncLocalStorage<{ taskId: string }>();
 * wrapAttempts((event, attempt) => store.run({ taskId: event.id }, attempt));
 * ```
 *
 * @throws TypeError when `wrapper` is not a function, an option is not a known one, or
 * `container` is not a tsyringe container.
 */
export function wrapAttempts(wrapper: AttemptWrapper, options: ObserveOptions = {}): TaskObservation {
  if (typeof wrapper !== 'function') throw new TypeError(`wrapAttempts(wrapper): wrapper must be a function, got ${describe(wrapper)}`);
  checkCallback(wrapper, 'wrapAttempts(wrapper): wrapper');
  if (!isOptionsObject(options)) throw new TypeError(`wrapAttempts(wrapper, options): options must be an object, got ${describe(options)}`);
  options = checkKnownKeys(options, observeKeys, 'wrapAttempts(wrapper, options)');
  checkContainer(options.container, 'wrapAttempts(wrapper, options)');
  return observation(appOf(options.container ?? globalContainer).wrapAttempts(wrapper));
}

/** `stop`, callable and disposable, once. */
function observation(stop: () => void): TaskObservation {
  let stopped = false;
  const once = (): void => {
    if (stopped) return;
    stopped = true;
    stop();
  };
  return Object.assign(once, { [Symbol.dispose]: once });
}
