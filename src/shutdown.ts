import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import type { Background } from './background.js';
import { appOf, appOfDisposed, backgroundOf, disposeRest, isDisposed } from './di/container.js';
import type { ShutdownReport } from './engine/application.js';
import { checkContainer, checkKnownKeys, describe, invalid, isOptionsObject, isTimerMs, maxTimerMs } from './model/checks.js';
import { newCounts } from './model/handle.js';

/**
 * Disposes a scope in the right order: first its Background (so tasks finish while the
 * scope's other instances, a database session say, are still alive), then the rest of the
 * container. tsyringe alone disposes everything in parallel. Safe to call on a scope that is
 * already disposed. Never rejects for the Background's part; tsyringe's disposal of the rest
 * rejects when one of its instances' `dispose()` does.
 * @throws TypeError when `scope` is not a tsyringe container.
 */
export function disposeScope(scope: DependencyContainer): Promise<void> {
  if (typeof (scope as Partial<DependencyContainer> | null | undefined)?.createChildContainer !== 'function') {
    throw new TypeError(`disposeScope(scope): scope must be a tsyringe container, got ${describe(scope)}`);
  }
  const background = backgroundOf<Background>(scope);
  // tsyringe would dispose every instance again on a second call.
  const rest = (): Promise<void> | void => (isDisposed(scope) ? undefined : disposeRest(scope, background));
  // Chained rather than an async function: one disposal per request, one promise fewer each.
  // A disposable's dispose() that throws rejects the promise, as tsyringe's would.
  if (background === undefined) return new Promise((resolve) => resolve(rest()));
  return background.dispose().then(rest);
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

const shutdownKeys = ['container', 'timeoutMs'] as const satisfies readonly (keyof ShutdownOptions)[];

/**
 * Closes an application: stops intake in every scope, drains every scope that has work within
 * one deadline, aborts and logs what is left, then closes shared resources. The building block
 * of graceful shutdown:
 *
 * ```ts
 * process.once('SIGTERM', async () => {
 *   await new Promise((closed) => server.close(closed));   // stop accepting, finish in-flight requests
 *   const { totals, abandoned, requeued } = await shutdown({ timeoutMs: 20_000 });
 *   // Request scopes' abandoned work counts too; durable jobs put back in their queue are not lost;
 *   // `abandoned` also counts durable jobs and cancellations this close could not send.
 *   process.exit(totals.abandoned === requeued && abandoned === requeued ? 0 : 1);
 * });
 * ```
 *
 * Idempotent; never rejects.
 * @throws TypeError (RangeError for a `timeoutMs` out of range), synchronously, naming the option that is wrong.
 */
export function shutdown(options: ShutdownOptions = {}): Promise<ShutdownReport> {
  if (!isOptionsObject(options)) throw new TypeError(`shutdown(options): options must be an object, got ${describe(options)}`);
  options = checkKnownKeys(options, shutdownKeys, 'shutdown(options)');
  checkContainer(options.container, 'shutdown(options)');
  const scope = options.container ?? globalContainer;
  // Under a disposed container no registration can be read: the application is found without
  // them (a root's disposal has closed it, or is closing it: the close is shared).
  const found = appOfDisposed(scope);
  if (found === null) return Promise.resolve(Object.freeze({ abandoned: 0, requeued: 0, durationMs: 0, totals: Object.freeze(newCounts()) }));
  const app = found ?? appOf(scope);
  const timeoutMs = options.timeoutMs ?? app.options.drainTimeoutMs;
  if (!isTimerMs(timeoutMs)) throw invalid('shutdown(options): options.timeoutMs', `an integer from 0 to ${maxTimerMs}`, timeoutMs);
  return app.close(timeoutMs);
}
