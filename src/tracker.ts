import type { App } from './app.js';
import type { ResolvedOptions } from './options.js';
import { deadlines, type Deadline } from './deadlines.js';
import { TaskCancelledError } from './errors.js';
import type { TaskRun, TaskStatus } from './run.js';
import type { Schedule } from './schedule.js';

type FinalStatus = Exclude<TaskStatus, 'queued' | 'delayed' | 'running' | 'retrying'>;

/** Cumulative counts: tasks added, and tasks ended in each final state. */
export type Counts = { total: number } & Record<FinalStatus, number>;

export function newCounts(): Counts {
  return { total: 0, succeeded: 0, failed: 0, cancelled: 0, timedOut: 0, skipped: 0, abandoned: 0 };
}

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
  #deadline: Deadline | undefined;

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

  /** This scope's periodic tasks not stopped yet (created with the first). */
  schedules: Set<Schedule> | undefined;
  /** Tasks added, and tasks ended in each final state, since the scope began. */
  readonly counts = newCounts();

  /** Takes a new task in: it joins its lane, or first waits for the tasks in `after`. */
  add(run: TaskRun, after?: readonly TaskRun[]): void {
    const head = this.#head;
    if (head !== undefined) head.prevLive = run;
    run.nextLive = head;
    this.#head = run;
    if (this.#pending++ === 0) this.#app.busy.add(this);
    this.counts.total++;
    this.#app.counts.total++;
    if (after === undefined || after.length === 0) run.enqueue();
    else run.after(after);
  }

  /** The live tasks (queued, delayed, running, retrying), newest first. */
  *live(): Generator<TaskRun> {
    for (let run = this.#head; run !== undefined; run = run.nextLive) yield run;
  }

  /** Called once by each task as it reaches its outcome. */
  settled(run: TaskRun): void {
    const { prevLive, nextLive } = run;
    if (prevLive !== undefined) prevLive.nextLive = nextLive;
    else this.#head = nextLive;
    if (nextLive !== undefined) nextLive.prevLive = prevLive;
    run.prevLive = run.nextLive = undefined;
    this.counts[run.status as FinalStatus]++;
    this.#app.ended(run);
    if (--this.#pending === 0) {
      this.#app.busy.delete(this);
      if (this.#disposal !== undefined) {
        if (this.#deadline !== undefined) deadlines.cancel(this.#deadline);
        this.#deadline = undefined;
        this.#state = 'closed';
      }
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

  /** Stops intake and the scope's periodic tasks. */
  close(): void {
    if (this.#state === 'open') this.#state = 'draining';
    if (this.schedules !== undefined) {
      for (const schedule of [...this.schedules]) schedule.stop(new TaskCancelledError(schedule.name, schedule.id, 'its scope was disposed'));
    }
  }

  /**
   * Stops intake, drains within the scope's deadline, abandons what is left. Idempotent; never
   * rejects.
   */
  dispose(): Promise<void> {
    this.close();
    if (this.#disposal === undefined) {
      const { drainTimeoutMs } = this.options;
      if (this.#pending > 0) this.abandonDelayedPast(Date.now() + drainTimeoutMs, drainTimeoutMs, 'scope');
      if (this.#pending === 0) {
        this.#state = 'closed';
        this.#disposal = Promise.resolve();
      } else {
        // settled() cancels the deadline and closes the scope once the last task ends.
        this.#deadline = deadlines.add(drainTimeoutMs, () => {
          this.abandon(drainTimeoutMs, 'scope');
        });
        this.#disposal = this.drain();
      }
    }
    return this.#disposal;
  }

  /**
   * Abandons at once the delayed tasks due after `deadline` (epoch ms): disposal would only
   * wait for them in vain. Delayed tasks due before it run, and disposal waits for them.
   */
  abandonDelayedPast(deadline: number, drainTimeoutMs: number, by: 'scope' | 'application'): number {
    const late: TaskRun[] = [];
    for (let run = this.#head; run !== undefined; run = run.nextLive) {
      if (run.status === 'delayed' && run.dueAt > deadline) late.push(run);
    }
    return this.#abandon(late, drainTimeoutMs, by, 'due after the drain deadline');
  }

  /**
   * Abandons every live task and logs them, saying whether the scope's disposal or the
   * application's close gave up on them; returns how many there were.
   */
  abandon(drainTimeoutMs: number, by: 'scope' | 'application'): number {
    return this.#pending === 0 ? 0 : this.#abandon([...this.live()], drainTimeoutMs, by, 'unfinished after the drain deadline');
  }

  #abandon(left: TaskRun[], drainTimeoutMs: number, by: 'scope' | 'application', what: string): number {
    if (left.length === 0) return 0;
    const running = left.filter((run) => run.status === 'running').length;
    const delayed = left.filter((run) => run.status === 'delayed' || run.status === 'retrying').length;
    for (const run of left) run.abandon(drainTimeoutMs, by === 'scope' ? 'its scope was disposed' : 'the application was closed');
    const tasks = left.slice(0, namedInLog).map((run) => `${run.name}#${run.id}`);
    try {
      this.options.logger.warn(
        { abandoned: left.length, running, queued: left.length - running - delayed, delayed, drainTimeoutMs, tasks },
        `${by === 'scope' ? 'scope disposed' : 'application closed'} with ${left.length} task(s) ${what} of ` +
          `${drainTimeoutMs} ms (${running} running, ${left.length - running - delayed} queued, ${delayed} delayed or retrying); ` +
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
