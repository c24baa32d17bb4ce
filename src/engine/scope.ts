/**
 * One scope's side of the engine: its live tasks, its periodic tasks, its drain and its
 * deadline. Knows nothing of dependency injection, and nothing of the application but the
 * {@link ScopeHost} it reports to.
 */
import { soon } from '../model/soon.js';
import { TaskCancelledError } from '../model/errors.js';
import type { TaskHooks } from '../model/events.js';
import { newCounts, type Counts, type FinalStatus } from '../model/handle.js';
import { logSafely, type BackgroundLogger } from '../model/logger.js';
import type { ResolvedOptions } from '../model/options.js';
import { deadlines, type Deadline } from './deadlines.js';
import { Periodic, type PeriodicOwner, type PeriodicSpec } from './periodic.js';
import type { RunOwner, TaskRun } from './task-run.js';

/** A scope's lifecycle: open for tasks, draining on disposal, closed once disposal is done. */
export type ScopeState = 'open' | 'draining' | 'closed';

/** Who gave up on a task: its scope's disposal, or the application's close. */
export type AbandonedBy = 'scope' | 'application';

/** What a scope reports to the one that owns it (the application), which implements it. */
export interface ScopeHost {
  /** The scope's first live task was added: it is busy until its last one ends. */
  busy(scope: Scope): void;
  /** The scope's last live task ended. */
  idle(scope: Scope): void;
  /** A task of the scope was added. */
  added(run: TaskRun): void;
  /** A task of the scope reached its final status. */
  ended(run: TaskRun): void;
  /** A periodic task of the scope was scheduled. */
  scheduled(periodic: Periodic): void;
  /** A periodic task of the scope stopped. */
  unscheduled(periodic: Periodic): void;
  /** Who watches the scope's tasks (their events, their attempts), if anyone. */
  readonly hooks?: TaskHooks | undefined;
}

/** What the scope does at each tick of its periodic tasks: its runner adds the tick's run. */
export type PeriodicTicks = Pick<PeriodicOwner, 'spawn' | 'tickFailed'>;

let scopesMade = 0;

/** What the log entry says of delayed tasks abandoned as the drain begins. */
const dueAfterDeadline = 'due after the drain deadline';

/** The most abandoned tasks named one by one in the log entry. */
const namedInLog = 20;

/**
 * One scope's bookkeeping: its live tasks (delayed, queued, running, retrying) in an intrusive
 * list, its periodic tasks, the drain waiters and the lifecycle.
 */
export class Scope implements RunOwner {
  readonly options: ResolvedOptions;
  /** The scope's number, in the order scopes other than roots are made in this process. */
  readonly #number: number;
  /** Its name when it is not `scope #<number>` (the application root's). */
  #label: string | undefined;
  /** When its intake closed (epoch ms): its disposal began. */
  closedAt: number | undefined;
  /** Links in its host's list of busy scopes; the host keeps them. */
  prevBusy: Scope | undefined = undefined;
  nextBusy: Scope | undefined = undefined;
  /** Tasks added, and tasks ended in each final state, since the scope began. */
  readonly counts: Counts = newCounts();
  readonly #host: ScopeHost;
  #state: ScopeState = 'open';
  #pending = 0;
  /** Whether a task of this scope was ever delayed (by `delayMs`, `runAt` or `after`): only then does disposal look for late ones. */
  #everDelayed = false;
  #head: TaskRun | undefined;
  #periodics: Set<Periodic> | undefined;
  /** What drain() returns while tasks are pending, and what resolves it once they have ended. */
  #idle: Promise<void> | undefined;
  #resolveIdle: (() => void) | undefined;
  #disposal: Promise<void> | undefined;
  #deadline: Deadline | undefined;

  constructor(options: ResolvedOptions, host: ScopeHost, label?: string) {
    this.options = options;
    this.#host = host;
    this.#label = label;
    this.#number = label === undefined ? ++scopesMade : 0;
  }

  /** How errors and events name this scope: `scope #3` (numbered as scopes are made), or the root's name. */
  get label(): string {
    // Made when first asked for: most request scopes are never named.
    return (this.#label ??= `scope #${this.#number}`);
  }

  get state(): ScopeState {
    return this.#state;
  }

  get logger(): BackgroundLogger {
    return this.options.logger;
  }

  get warnBlockingMs(): number {
    return this.options.warnBlockingMs;
  }

  get hooks(): TaskHooks | undefined {
    return this.#host.hooks;
  }

  /** Tasks not ended yet. */
  get pending(): number {
    return this.#pending;
  }

  /** Takes a new task in: it joins its lane, or first waits for the tasks in `after`. `now`: the clock's time its due time was read at. */
  add(run: TaskRun, after?: readonly TaskRun[], now?: number): void {
    const head = this.#head;
    if (head !== undefined) head.prevLive = run;
    run.nextLive = head;
    this.#head = run;
    if (this.#pending++ === 0) this.#host.busy(this);
    this.counts.total++;
    this.#host.added(run);
    if (after === undefined || after.length === 0) run.enqueue(now);
    else run.after(after);
    if (run.status === 'delayed') this.#everDelayed = true;
    // Told once the task is in place (queued in its lane, delayed, or waiting for `after`), before
    // it can start (a lane starts from a microtask): an observer that cancels it, or disposes
    // the scope, then ends a task that is where its status says.
    run.added();
  }

  /** Starts a periodic task of this scope; each tick asks `ticks` for its run. */
  schedule(spec: PeriodicSpec, ticks: PeriodicTicks): Periodic {
    const periodic = new Periodic(spec, {
      spawn: (p, adopt) => ticks.spawn(p, adopt),
      tickFailed: (p, error) => {
        ticks.tickFailed(p, error);
      },
      stopped: (p) => {
        this.#periodics?.delete(p);
        this.#host.unscheduled(p);
      },
      logger: this.logger,
    });
    // Stopped as it was made (a cron with no further run): never registered, so nothing keeps it.
    if (periodic.status === 'cancelled') return periodic;
    (this.#periodics ??= new Set()).add(periodic);
    this.#host.scheduled(periodic);
    return periodic;
  }

  /** The live tasks, newest first. */
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
    this.#host.ended(run);
    if (--this.#pending === 0) {
      this.#host.idle(this);
      if (this.#disposal !== undefined) {
        if (this.#deadline !== undefined) deadlines.cancel(this.#deadline);
        this.#deadline = undefined;
        this.#state = 'closed';
      }
      // Waiters are told from a microtask, if no task came meanwhile: an observer of this task's
      // end (told right after this) may add one, which they wait for too.
      if (this.#resolveIdle !== undefined) soon(() => this.#tellIdle());
    }
  }

  #tellIdle(): void {
    if (this.#pending !== 0) return;
    const resolve = this.#resolveIdle;
    this.#idle = this.#resolveIdle = undefined;
    resolve?.();
  }

  /** Resolves once no task is left, tasks added meanwhile included. */
  drain(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return (this.#idle ??= new Promise<void>((resolve) => (this.#resolveIdle = resolve)));
  }

  /** Stops intake and the scope's periodic tasks; `now`: the time, if the caller has read it. */
  close(now?: number): void {
    if (this.#state === 'open') {
      this.#state = 'draining';
      this.closedAt = now ?? Date.now();
    }
    if (this.#periodics !== undefined) {
      for (const periodic of [...this.#periodics]) periodic.stop(new TaskCancelledError(periodic.name, periodic.id, 'its scope was disposed'));
    }
  }

  /**
   * Stops intake, drains within the scope's deadline, abandons what is left. Idempotent; never
   * rejects.
   */
  dispose(): Promise<void> {
    // One clock read for the close, the late delayed tasks and the deadline.
    const now = Date.now();
    this.close(now);
    // Set before anything calls out (abandoning calls observers and abort listeners, which may
    // dispose again: they get this promise, and set no deadline of their own).
    if (this.#disposal === undefined) {
      this.#disposal = this.drain();
      const { drainTimeoutMs } = this.options;
      if (this.#pending > 0) this.abandonDelayedPast(now + drainTimeoutMs, drainTimeoutMs, 'scope');
      // settled() cancels the deadline and closes the scope once the last task ends.
      if (this.#pending === 0) this.#state = 'closed';
      else this.#deadline = deadlines.add(drainTimeoutMs, Scope.#drainExpired, this);
    }
    return this.#disposal;
  }

  static #drainExpired(scope: Scope): void {
    scope.abandon(scope.options.drainTimeoutMs, 'scope');
  }

  /**
   * Abandons at once the delayed tasks due after `deadline` (epoch ms): disposal would only
   * wait for them in vain. Delayed tasks due before it run, and disposal waits for them.
   */
  abandonDelayedPast(deadline: number, drainTimeoutMs: number, by: AbandonedBy): number {
    // Most scopes never delay a task: no walk through their queued ones then.
    if (!this.#everDelayed) return 0;
    let late: TaskRun[] | undefined;
    for (let run = this.#head; run !== undefined; run = run.nextLive) {
      if (run.status === 'delayed' && run.dueAt > deadline) (late ??= []).push(run);
    }
    return late === undefined ? 0 : this.#abandon(late, drainTimeoutMs, by, dueAfterDeadline);
  }

  /**
   * Abandons every live task and logs them, saying whether the scope's disposal or the
   * application's close gave up on them; returns how many there were.
   */
  abandon(drainTimeoutMs: number, by: AbandonedBy): number {
    return this.#pending === 0 ? 0 : this.#abandon([...this.live()], drainTimeoutMs, by, 'unfinished after the drain deadline');
  }

  #abandon(left: TaskRun[], drainTimeoutMs: number, by: AbandonedBy, what: string): number {
    if (left.length === 0) return 0;
    const why = by === 'scope' ? 'its scope was disposed' : 'the application was closed';
    // Abandoning a task gives its slot back, which must not start one being abandoned too: the
    // lanes start nothing until the sweep is over.
    const lanes = new Set(left.map((run) => run.lane));
    for (const lane of lanes) lane.hold();
    // Those the sweep abandons, with their status then: one may end otherwise meanwhile (an abort
    // listener of another cancels it), and is neither abandoned nor counted so.
    let running = 0;
    let delayed = 0;
    const abandoned: TaskRun[] = [];
    try {
      for (const run of left) {
        const status = run.status;
        if (!run.abandon(drainTimeoutMs, why, what === dueAfterDeadline)) continue;
        abandoned.push(run);
        if (status === 'running') running++;
        else if (status === 'delayed' || status === 'retrying') delayed++;
      }
    } finally {
      for (const lane of lanes) lane.resume();
    }
    left = abandoned;
    if (left.length === 0) return 0;
    const tasks = left.slice(0, namedInLog).map((run) => `${run.name}#${run.id}`);
    // Abandoned work is lost work: an error, naming the first tasks (the rest are counted).
    logSafely(
      this.options.logger,
      'error',
      { abandoned: left.length, running, queued: left.length - running - delayed, delayed, drainTimeoutMs, tasks },
      `${by === 'scope' ? 'scope disposed' : 'application closed'} with ${left.length} task(s) ${what} of ` +
        `${drainTimeoutMs} ms (${running} running, ${left.length - running - delayed} queued, ${delayed} delayed or retrying); ` +
        'they were aborted and abandoned' +
        (by === 'scope' ? "; work that must outlive its request belongs on the application's Background (inject ApplicationBackground)" : ''),
    );
    return left.length;
  }
}
