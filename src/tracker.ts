import type { App } from './app.js';
import type { ResolvedOptions } from './options.js';
import type { TaskRun } from './run.js';

/** A scope's lifecycle: open for tasks, draining on disposal, closed once disposal is done. */
export type ScopeState = 'open' | 'draining' | 'closed';

/** The most abandoned tasks named one by one in the log entry. */
const namedInLog = 20;

/**
 * One scope's bookkeeping: its live tasks (queued or running) in an intrusive list, the drain
 * waiters, and the lifecycle. Knows nothing of dependency injection.
 */
export class Tracker {
  readonly options: ResolvedOptions;
  readonly #app: App;
  #state: ScopeState = 'open';
  #pending = 0;
  #head: TaskRun | undefined;
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  #disposal: Promise<void> | undefined;

  constructor(options: ResolvedOptions, app: App) {
    this.options = options;
    this.#app = app;
  }

  /** The scope's own state, or the application's when the application is closing. */
  get state(): ScopeState {
    const app = this.#app.state;
    if (app === 'closed') return 'closed';
    if (this.#state !== 'open') return this.#state;
    return app === 'closing' ? 'draining' : 'open';
  }

  /** Tasks queued or running. */
  get pending(): number {
    return this.#pending;
  }

  add(run: TaskRun): void {
    const head = this.#head;
    if (head !== undefined) head.prevLive = run;
    run.nextLive = head;
    this.#head = run;
    if (this.#pending++ === 0) this.#app.busy.add(this);
    run.lane.submit(run);
  }

  /** Called once by each task as it reaches its outcome. */
  settled(run: TaskRun): void {
    const { prevLive, nextLive } = run;
    if (prevLive !== undefined) prevLive.nextLive = nextLive;
    else this.#head = nextLive;
    if (nextLive !== undefined) nextLive.prevLive = prevLive;
    run.prevLive = run.nextLive = undefined;
    if (--this.#pending === 0) {
      this.#app.busy.delete(this);
      const idle = this.#idle;
      this.#idle = undefined;
      idle?.resolve();
    }
  }

  /** Resolves once nothing is queued or running, tasks added meanwhile included. */
  drain(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    if (this.#idle === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  /** Stops intake. */
  close(): void {
    if (this.#state === 'open') this.#state = 'draining';
  }

  /**
   * Stops intake, drains within the scope's deadline, abandons what is left. Idempotent; never
   * rejects.
   */
  dispose(): Promise<void> {
    this.close();
    this.#disposal ??= this.#dispose();
    return this.#disposal;
  }

  async #dispose(): Promise<void> {
    if (this.#pending > 0) await withDeadline(this.drain(), this.options.drainTimeoutMs);
    this.abandon(this.options.drainTimeoutMs, 'scope');
    this.#state = 'closed';
  }

  /**
   * Abandons every live task and logs them, saying whether the scope's disposal or the
   * application's close gave up on them; returns how many there were.
   */
  abandon(drainTimeoutMs: number, by: 'scope' | 'application'): number {
    const left: TaskRun[] = [];
    for (let run = this.#head; run !== undefined; run = run.nextLive) left.push(run);
    if (left.length === 0) return 0;
    const running = left.filter((run) => run.status === 'running').length;
    for (const run of left) run.abandon(drainTimeoutMs, by === 'scope' ? 'its scope was disposed' : 'the application was closed');
    const tasks = left.slice(0, namedInLog).map((run) => `${run.name}#${run.id}`);
    try {
      this.options.logger.warn(
        { abandoned: left.length, running, queued: left.length - running, drainTimeoutMs, tasks },
        `${by === 'scope' ? 'scope disposed' : 'application closed'} with ${left.length} task(s) unfinished after the drain deadline of ` +
          `${drainTimeoutMs} ms (${running} running, ${left.length - running} queued); ` +
          'they were aborted and abandoned',
      );
    } catch (loggerError) {
      console.error('[tsyringe-background] the logger threw while logging abandoned tasks:', loggerError);
    }
    return left.length;
  }
}

/** Waits for `promise` at most `ms`; returns whether it settled in time. Leaves no timer. */
export async function withDeadline(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([promise.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}
