/**
 * A durable task's handle in the process that added it: followed from the queue's event stream
 * once someone watches it, and settled by its job's end. Its backend is the producer
 * (src/adapters/bullmq-producer.ts), which it knows only as a {@link HandleBackend}.
 */
import { ResultTimeoutError, TaskCancelledError, type ResultOptions, type TaskHandle, type TaskProgress, type TaskStatus } from '../index.js';
import { resultTimeoutOf, within } from '../model/checks.js';
import { inOwnContext } from '../model/own-context.js';
import { putBackEvent, runnerHandle, type DurableJob, type FailedPrerequisite, type Outcome } from './bullmq-jobs.js';

/** The events of the queue's stream that tell a handle about its job (BullMQ's, and the workers' {@link putBackEvent}). */
export const jobEvents = ['active', 'progress', 'delayed', 'waiting', 'completed', 'failed', 'removed', 'stalled', putBackEvent] as const;

export type JobEvent = (typeof jobEvents)[number];

/** What QueueEvents gives with them (parsed: `data` and `returnvalue` from JSON). */
export interface JobEventFields {
  readonly jobId: string;
  readonly data?: unknown;
  readonly returnvalue?: unknown;
  readonly failedReason?: string;
}

/** An event held for a handle being read from Redis, with its entry's id. */
export interface HeldEvent {
  readonly event: JobEvent;
  readonly fields: JobEventFields;
  readonly id: string;
}

/** What a handle needs of its backend (the producer): its queue's name, and to follow the handle once it is watched. */
export interface HandleBackend {
  readonly queue: { readonly name: string };
  follow(handle: DurableHandle): void;
}

/**
 * This process's view of a durable task. It is followed (kept up to date by the queue's event
 * stream) from the first time someone watches it: reads its `status`, `attempt` or `progress`,
 * or asks for its `result()`. Until then it costs nothing but itself: a fire-and-forget `add()`
 * reads no event. Watched after its job was sent, it first says what this process knew (the job
 * `queued` or `delayed`), and is brought up to date from Redis within a round trip.
 */
export class DurableHandle implements TaskHandle {
  /** Lets `bg.with({ after })` pass it on to its backend. */
  readonly [runnerHandle] = true;
  /** The backend whose queue holds its job. */
  readonly backend: HandleBackend;
  readonly id: string;
  name: string;
  /** Whether it stands for a schedule (its id is the task's name), which never finishes. */
  readonly periodic: boolean;
  /** Before this time (epoch ms) its job cannot start: its `delayMs` or `runAt`, as added here (0: none). */
  notBefore = 0;
  /** The durable task of this process that waits for it (its job's parent), if any. */
  awaitedBy: DurableHandle | undefined;
  /**
   * Whether its job waits in Redis for others (`after`), so that BullMQ may fail it there for one
   * that failed, unknown to this process until it reads so: set until its job is seen to have moved
   * on otherwise ({@link doomed}).
   */
  dependent = false;
  /**
   * Whether its job is one BullMQ makes wait, then active, only to fail it for a job it waited for
   * that failed (its deferred failure): it ends skipped, its task never started, whatever a
   * cancellation says meanwhile.
   */
  doomed = false;
  /**
   * Whether its job stalled (its worker lost) since it was added: BullMQ may have decided its
   * failure then (past `maxStalledCount`), unknown to this process, so that a cancellation waits
   * for Redis's word.
   */
  stalled = false;
  /**
   * Whether its job's next start is a take again of the same attempt (it stalled, or a worker put
   * it back as it closed), which keeps the attempt's progress (the job's); a new attempt starts
   * without any. The count does not hang on it: each take is counted as it starts, and taken off
   * again when it is given back (put back, or stalled).
   */
  retake = false;
  /** Once it ended skipped: the job whose failure began the chain of skips (what the guard of a task added after it says). */
  firstFailure: FailedPrerequisite | undefined = undefined;
  /** While it is being read from Redis: its job's events read meanwhile, applied after. */
  held: HeldEvent[] | undefined = undefined;
  /** Read from Redis at this entry of the stream, which the reader has not reached: its events up to it are dropped. */
  since: string | undefined = undefined;
  #status: TaskStatus;
  /** The job's attempts made while it waits, and while it runs the one it makes (`atm`, `atm + 1`). */
  #attempt = 0;
  #progress: TaskProgress | undefined = undefined;
  #watched = false;
  /**
   * Whether the job's current take is counted in {@link #attempt} (it started, or was read running)
   * and not yet given back (put back, or stalled): a take is given back once, however many ways
   * it is said (a put-back whose move failed, the job then stalling).
   */
  #taken = false;
  /** Set by {@link putBack} until the `waiting` that follows: that take is given back then, as the job's move says. */
  #puttingBack = false;
  /** The progress the last `waiting` cleared as for a retry: the job's again if that take was given back before any attempt was made (a stall). */
  #clearedByWait: TaskProgress | undefined = undefined;
  readonly #cancelJob: (error: TaskCancelledError) => boolean;
  #cancelling: TaskCancelledError | undefined;
  #outcome: Outcome | undefined;
  #result: Promise<unknown> | undefined;
  #settle: ((outcome: Outcome) => void) | undefined;

  /**
   * `cancelJob` asks for the job's cancellation, and says whether the handle ends `cancelled` at
   * once (the job is known not to have ended) or its backend settles it once Redis has said how
   * the job took it ({@link cancelling}).
   */
  constructor(backend: HandleBackend, id: string, name: string, status: TaskStatus, cancelJob: (error: TaskCancelledError) => boolean, periodic = false) {
    this.backend = backend;
    this.id = id;
    this.name = name;
    this.#status = status;
    this.#cancelJob = cancelJob;
    this.periodic = periodic;
  }

  get status(): TaskStatus {
    this.#watch();
    return this.#status;
  }

  get attempt(): number {
    this.#watch();
    return this.#attempt;
  }

  get progress(): TaskProgress | undefined {
    this.#watch();
    return this.#progress;
  }

  /** Its status as this process knows it, without following it. */
  get known(): TaskStatus {
    return this.#status;
  }

  get ended(): boolean {
    return this.#outcome !== undefined;
  }

  /** Its error, once it has ended otherwise than succeeded. */
  get error(): Error | undefined {
    return this.#outcome?.ok === false ? this.#outcome.error : undefined;
  }

  /**
   * The error of a cancellation asked for before this process knew whether the job had ended:
   * the handle ends `cancelled` with it if the cancellation reached the job in time, and as the
   * job ended otherwise.
   */
  get cancelling(): TaskCancelledError | undefined {
    return this.#outcome === undefined ? this.#cancelling : undefined;
  }

  #watch(): void {
    if (this.#watched) return;
    this.#watched = true;
    this.backend.follow(this);
  }

  /** Takes what Redis says of its job (for a handle made from an id). */
  found(job: DurableJob): void {
    this.#watched = true;
    this.name = job.name;
    if (this.#outcome !== undefined) return;
    this.caughtUp(job.status, job.attempt, job.progress);
  }

  /**
   * Takes what Redis says of its job: its status (none for a job that ended, or whose state could
   * not be read), its attempt as `backend.job(id)` counts it (the attempts made, and the one it
   * makes while a worker holds it: `taken`), its progress.
   */
  caughtUp(status: TaskStatus | undefined, attempt: number, progress: unknown, taken = status === 'running'): void {
    if (this.#outcome !== undefined) return;
    // Doomed: it waits for its failure (BullMQ's `active` for it is no start, nor one read before it was known doomed).
    if (this.doomed) {
      status = 'delayed';
      attempt = 0;
      taken = false;
    }
    // What Redis says, lower or not: a take given back (put back, stalled) whose events went unread counts no more.
    this.#attempt = attempt;
    this.#taken = taken;
    if (status !== undefined) this.#status = status;
    // Waiting for a retry: the failed attempt's progress (still on the job in Redis) is cleared.
    if (status === 'retrying') this.#progress = undefined;
    else this.reported(progress);
  }

  /**
   * Its job was taken (BullMQ's `active`): one attempt more, or, taken again after a take given
   * back, the same attempt again, counted as one more than the attempts made all the same.
   */
  started(): void {
    if (this.#outcome !== undefined || this.doomed) return;
    this.#status = 'running';
    this.#attempt++;
    this.#taken = true;
    this.#puttingBack = false;
    this.#clearedByWait = undefined;
    // A new attempt starts without progress; the same attempt again keeps its own (the job's).
    if (!this.retake) this.#progress = undefined;
    this.retake = false;
  }

  /**
   * Counts `n` attempts started when Redis says so before the event stream has (a job settled from
   * Redis); none for a doomed job, whose start BullMQ counts though its task never starts.
   */
  startedAtLeast(n: number): void {
    if (this.#outcome === undefined && !this.doomed && n > this.#attempt) this.#attempt = n;
  }

  reported(data: unknown): void {
    if (this.#outcome !== undefined || typeof data !== 'object' || data === null) return;
    const { fraction, message } = data as { fraction?: unknown; message?: unknown };
    if (typeof fraction !== 'number') return;
    this.#progress = Object.freeze({ fraction, message: typeof message === 'string' ? message : undefined });
  }

  /**
   * Its job waits (BullMQ's `waiting` or `delayed`): for its first start, for a retry once an
   * attempt was made (`retrying`), or, put back, for the same attempt again ({@link putBack},
   * said just before).
   */
  waiting(status: 'queued' | 'delayed'): void {
    if (this.#outcome !== undefined || this.doomed) return;
    if (this.#puttingBack) {
      this.#puttingBack = false;
      this.#givenBack();
    }
    // (Otherwise the take stays counted: a stall's `waiting` comes before its `stalled`, which gives it back.)
    this.#status = this.#attempt > 0 ? 'retrying' : status;
    // A retry is scheduled: the failed attempt's progress is cleared, as in process.
    if (this.#attempt > 0) {
      this.#clearedByWait = this.#progress;
      this.#progress = undefined;
    }
  }

  /**
   * A worker that took its job put it back as it closed (its {@link putBackEvent}, just before the
   * job's `waiting`): BullMQ counted the take as started, but no attempt ended. The job waits as
   * before the take (`queued`, or `retrying` after a failed attempt), its attempts made unchanged,
   * and its next start is the same attempt taken again (as the task's `ctx.attempt` and
   * `backend.job(id)` count).
   */
  putBack(): void {
    if (this.#outcome !== undefined || this.doomed) return;
    this.retake = this.#puttingBack = true;
  }

  /**
   * BullMQ's stalled check found its job's worker lost and moved the job back to wait (its
   * `stalled` comes just after that move's `waiting`, which counted the take as an attempt made):
   * as {@link putBack}, the job waits as before the take.
   */
  stalledBack(): void {
    this.stalled = true;
    this.#givenBack();
  }

  /** The take counted by {@link started} made no attempt: the job waits with the attempts it had made before it. */
  #givenBack(): void {
    if (this.#outcome !== undefined || this.doomed) return;
    this.retake = true;
    if (!this.#taken) return;
    this.#taken = false;
    this.#attempt = Math.max(0, this.#attempt - 1);
    this.#status = this.#attempt > 0 ? 'retrying' : 'queued';
    // Waiting for its first attempt, its progress is the job's (what the take reported); for a retry, none.
    this.#progress = this.#attempt > 0 ? undefined : (this.#clearedByWait ?? this.#progress);
    this.#clearedByWait = undefined;
  }

  settle(status: TaskStatus, outcome: Outcome): void {
    if (this.#outcome !== undefined) return;
    this.#status = status;
    // A skipped task never ran (BullMQ starts its job only to fail it).
    if (status === 'skipped') this.#attempt = 0;
    this.#outcome = outcome;
    this.#settle?.(outcome);
  }

  /**
   * Cancels the job: it is removed if it still waits, and a worker running it sees its
   * `TaskContext.signal` abort (the job then fails, without retries). Returns `false`, doing
   * nothing, when this process knows the task has ended (or its cancellation was asked for
   * already), `true` otherwise. The handle ends `cancelled` at once when this process knows the
   * job has not ended: not sent to Redis yet, its delay not run out, or followed and up to date.
   * Otherwise (a handle nobody watched since its job was sent, or one being read from Redis) the
   * job may have ended already: the handle ends once Redis has answered, `cancelled` if the job
   * was removed or stopped, and as the job ended if it had succeeded or failed first.
   */
  cancel(reason?: unknown): boolean {
    if (this.#outcome !== undefined || this.#cancelling !== undefined) return false;
    const error = new TaskCancelledError(this.name, this.id, reason);
    this.#cancelling = error;
    if (this.#cancelJob(error)) this.settle('cancelled', { ok: false, error });
    return true;
  }

  result(options?: ResultOptions): Promise<unknown> {
    const timeoutMs = resultTimeoutOf(options);
    this.#watch();
    // Kept with the handle: made in no caller's context (a promise keeps its stores, a request's).
    this.#result ??= inOwnContext(() => {
      const outcome = this.#outcome;
      if (outcome !== undefined) return outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
      return new Promise((resolve, reject) => {
        this.#settle = (o) => (o.ok ? resolve(o.value) : reject(o.error));
      });
    });
    if (timeoutMs === undefined || this.#outcome !== undefined) return this.#result;
    return within(this.#result, timeoutMs, () => new ResultTimeoutError(this.name, this.id, timeoutMs, this.#status));
  }
}
