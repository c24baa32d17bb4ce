import type { InjectionToken } from 'tsyringe';
import type { BackgroundLogger } from './logger.js';

/**
 * What a running task can learn about itself. Ask for it like any other dependency, by putting
 * the {@link TaskContext} token in a definition's `inject` list:
 *
 * ```ts
 * const crawl = defineTask({ name: 'crawl', inject: [TaskContext] }, async (ctx, url: string) => {
 *   const res = await fetch(url, { signal: ctx.signal });
 *   ctx.logger.info({ status: res.status }, 'crawled');
 * });
 * ```
 */
export interface TaskContext {
  /** The task's id, the same string as its handle's. */
  readonly id: string;
  /** The task's name, the same as its handle's. */
  readonly name: string;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  readonly attempt: number;
  /**
   * Aborted when the attempt times out, when the task is cancelled through its handle, or when
   * it is abandoned because its scope was disposed and the drain deadline passed. The reason is
   * a `TaskTimeoutError`, a `TaskCancelledError` or a `TaskAbandonedError`. Each attempt has
   * its own signal.
   */
  readonly signal: AbortSignal;
  /**
   * Throws the signal's reason once the attempt is aborted: for a loop that never yields. In a
   * worker thread, `signal.aborted` and this see an abort at once, even in a synchronous loop
   * (the main thread sets a flag in shared memory); the reason itself arrives once the task
   * yields, so until then it is an `AbortError` saying so.
   */
  throwIfAborted(): void;
  /** The scope's logger, adding the task's name, id and attempt to every entry. */
  readonly logger: BackgroundLogger;
  /**
   * Reports how far the task has come, read through `handle.progress`.
   * @param fraction from 0 to 1
   * @param message a short text shown with it (the live view, `handle.progress`)
   * @throws RangeError when `fraction` is outside 0 to 1
   * @throws TypeError when `message` is given and is not a string
   */
  progress(fraction: number, message?: string): void;
}

/** The token that injects a {@link TaskContext} into a task. */
export const TaskContext: InjectionToken<TaskContext> = Symbol.for('tsyringe-background.TaskContext');
