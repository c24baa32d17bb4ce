/**
 * The producer side of the durable backend (src/adapters/bullmq.ts is its entry point):
 * `useBullMQ()` registers it on an application's root, so that `add()` of a task with
 * `durable: true` enqueues a job (its handle's id is the job's id), sent at the end of the turn;
 * it follows the handles someone watches from the queue's event stream, reads back what they
 * missed, cancels jobs, and maps `after` onto BullMQ flows.
 *
 * `after` is a BullMQ flow: the dependent job is a parent in `waiting-children`, and the jobs it
 * waits for, already in Redis, are attached to it as its children by their ids (BullMQ attaches
 * an existing job to the parent of a flow that names its id); each is attached with
 * `failParentOnFailure`, so that its failure fails the dependent, which then reads `skipped`.
 */
import { randomUUID } from 'node:crypto';
// Node's own, which a test's fake timers do not replace (imported, not the global): a burst is sent under them too.
import { setImmediate } from 'node:timers';
import { FlowProducer, Job, Queue, QueueEvents, type ConnectionOptions, type FlowJobNode, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import {
  Background,
  DurableRunner,
  DurableTaskError,
  TaskCancelledError,
  TaskSkippedError,
  type BackgroundLogger,
  type CloseOutcome,
  type Runner,
  type TaskDefinition,
  type TaskHandle,
  type TaskOptions,
  type TaskRequest,
  type TaskResult,
  type TaskStatus,
} from '../index.js';
import { describe, messageOf } from '../model/checks.js';
import { soon } from '../model/soon.js';
import { inOwnContext } from '../model/own-context.js';
import { lateMs } from '../model/timing.js';
import { safeLogger } from './request-scope.js';
import {
  applicationLoggerOf,
  afterJob,
  afterJobOptions,
  bullPriority,
  cancelChannel,
  cancelledPrefix,
  cancelRecordKey,
  cancelRecordMax,
  cancelRecordMs,
  cronRepeatStrategy,
  checkCloseOptions,
  checkConnection,
  checkCron,
  checkJson,
  checkMs,
  childFailed,
  closeWith,
  defaultConnection,
  defaultQueueName,
  endClient,
  failureOf,
  isClient,
  isDefinitionByShape,
  jobData,
  keepCompleted,
  keepFailed,
  queueClientFor,
  redisFor,
  refusedByRedis,
  retryOptions,
  markOf,
  stalledReason,
  putBackEvent,
  within,
  type AfterData,
  type BullMQConnection,
  type DurableJob,
  type FailedPrerequisite,
  type JobData,
  type JobRunAdder,
  type Outcome,
} from './bullmq-jobs.js';
import { DurableHandle, jobEvents, type HeldEvent, type JobEvent, type JobEventFields } from './bullmq-handle.js';

/** Options of {@link useBullMQ}. */
export interface UseBullMQOptions extends BullMQConnection {
  /**
   * How long `add()`'s job may wait to be sent to Redis (the connection down, or a burst ahead of
   * it that Redis has not answered for that long) before its handle fails with `DurableTaskError`
   * `ERR_DURABLE_ENQUEUE` (logged and counted, never dropped silently; the job is then never
   * sent), in ms. A job already sent is
   * settled by Redis's answer, however late: if the connection broke under it, ioredis sends it
   * again once Redis is back, or gives up on it after its `maxRetriesPerRequest` (the handle then
   * follows the job if Redis has it, and fails if not).
   * @default 10_000
   */
  enqueueTimeoutMs?: number | undefined;
}

/**
 * Jobs sent to Redis per turn of the event loop in a burst of add() calls. The queue's event
 * stream, which the handles follow, keeps about 10 000 events (BullMQ trims it), 4–5 a job: a
 * burst of thousands of jobs sent in one turn left its reader more than that behind, and every
 * live handle was then read from Redis to make up for the events trimmed unread (in a burst of
 * 5 000 jobs, a tenth of the producer's and worker's time). Slices let the reader, and a worker
 * in the same process, take their turns in between.
 */
const burstSlice = 500;

/**
 * Adds sent to Redis and not answered yet, at most, in a burst: the rest is sent as Redis answers.
 * Sent all at once, a burst queued thousands of adds on the connection ahead of the commands sent
 * after them (a cancellation, a look at the event stream's first entry) and, on a Redis slower
 * than this process, ran that far ahead of the stream's reader too.
 */
const burstInFlight = 2 * burstSlice;

/**
 * How long the event stream's reader stays open once no handle is followed, in ms: a process that
 * awaits a handle now and then keeps one connection rather than opening one each time.
 */
const readerIdleMs = 2_000;
/** How much longer than its application's close deadline the backend's {@link BullMQBackend.settle} may wait for Redis's answers. */
const settleGraceMs = 1_000;

/**
 * What differs between two saves of a schedule (`JSON.stringify([cadence, tz, template])`): its
 * arguments, its times or its options, with the two values (cut short) where that is all.
 */
function scheduleChange(before: string, now: string): string {
  type Saved = [cadence: unknown, tz: unknown, template: { data: { args: unknown }; opts: unknown }];
  const [a, b] = [JSON.parse(before) as Saved, JSON.parse(now) as Saved];
  const short = (value: unknown): string => {
    const text = JSON.stringify(value) ?? 'undefined';
    return text.length > 80 ? `${text.slice(0, 80)}…` : text;
  };
  const changes: string[] = [];
  if (JSON.stringify(a[2].data.args) !== JSON.stringify(b[2].data.args)) changes.push(`arguments (${short(a[2].data.args)} before, ${short(b[2].data.args)} now)`);
  const times = ([cadence, tz]: Saved): string => {
    const { every, expression } = cadence as { every?: number; expression?: string };
    return every === undefined ? `cron ${JSON.stringify(expression)} in ${String(tz)}` : `every ${every} ms`;
  };
  if (times(a) !== times(b)) changes.push(`times (${times(a)} before, ${times(b)} now)`);
  const rest = (saved: Saved): string => JSON.stringify([{ ...saved[2].data, args: undefined }, saved[2].opts]);
  if (rest(a) !== rest(b)) changes.push('options');
  return changes.join(' and ');
}

/** The name a handle made by id has until its job is read (and keeps when no record names its task). */
const unnamedTask = 'durable task';

/**
 * Refuses an id that is not a string, as `bg.get()` does (BullMQ would fail on it in its own words,
 * or find nothing). `method` is the backend's method as messages name it.
 * @throws TypeError (from an async method: its promise rejects) naming the call and what was received.
 */
function checkId(id: unknown, method: 'job' | 'handle'): void {
  if (typeof id !== 'string') throw new TypeError(`backend.${method}(id): id must be a string (a handle's id), got ${describe(id)}`);
}

/** The durable backend of one application, as {@link useBullMQ} returns it. */
export interface DurableBackend {
  /**
   * The BullMQ queue the jobs go to. Made again (on the same connection) should BullMQ fail to set
   * up its connection (Redis went away during it): read it when needed rather than keep it.
   */
  readonly queue: Queue;
  /** Jobs that could not be enqueued since the start. */
  readonly enqueueFailures: number;
  /**
   * A durable task by id, from Redis: any process's, while BullMQ keeps its job.
   * @throws TypeError (the promise rejects) when `id` is not a string.
   * @throws Error (the promise rejects) once `close()` was called.
   */
  job(id: string): Promise<DurableJob | undefined>;
  /**
   * A handle of a durable task by id, whichever process added it (`undefined` when BullMQ keeps
   * no job of that id, unless a cancellation removed it in the last 10 minutes: the handle then
   * reads `cancelled`): it follows the job from now on (`status`, `result()`, `cancel()`), and
   * another durable task can run after it (`bg.with({ durable: true, after: [handle] })`). The id
   * of a periodic task's schedule is its task's name: its handle, `delayed`, stands for the
   * schedule as `add()`'s does (`cancel()` removes it).
   *
   * A job's or a schedule's handle reads what this process knows: one whose schedule another
   * process removed stays `delayed` here (the removal reaches no handle but the remover's).
   *
   * ```ts
   * const invoice = await backend.handle(invoiceJobId);           // added by another process
   * if (invoice) bg.with({ durable: true, after: [invoice] }).add(sendInvoice, id);
   * ```
   *
   * @throws TypeError (the promise rejects) when `id` is not a string.
   * @throws Error (the promise rejects) once `close()` was called, unless this process follows that job already.
   */
  handle(id: string): Promise<TaskHandle | undefined>;
  /**
   * A handle that follows the job of this id, as {@link DurableBackend.handle | handle(id)}
   * gives, typed with the result of `task`, whose job it must be
   * (`await backend.handle(id, sendInvoice)` is a `TaskHandle<Receipt>`).
   *
   * @throws TypeError (the promise rejects) when `id` is not a string, when `task` is not a
   * `defineTask()` or `workerTask()` definition, or when the job is another task's.
   * @throws Error (the promise rejects) once `close()` was called, unless this process follows that job already.
   */
  handle<T extends TaskDefinition<never[], unknown>>(id: string, task: T): Promise<TaskHandle<TaskResult<T>> | undefined>;
  /**
   * Closes the queue and its event stream: the jobs added before are sent first, and what was
   * sent is answered before the connections close, for `timeoutMs` at most (a Redis that stopped
   * answering would hold them for ever); then they are dropped, and the jobs still unanswered fail
   * saying they may or may not have been enqueued. Handles followed that still wait for their
   * jobs' outcome reject with `DurableTaskError` (the jobs themselves run as usual).
   * @throws RangeError (the promise rejects) when `timeoutMs` is a number but not an integer from
   * 0 to 2147483647; TypeError when it is not a number, or for another option.
   */
  close(options?: { timeoutMs?: number | undefined }): Promise<void>;
}

/**
 * Registers a durable backend on an application's root container: from then on, `add()` of a
 * task with `durable: true` (on its definition, or `bg.with({ durable: true })`) enqueues a
 * BullMQ job and returns its handle at once. Only definitions can be durable, and their
 * arguments must survive JSON (a `TypeError` at `add()` otherwise); `every` and `cron` make a job
 * scheduler, and `after` a flow (the task's job waits in Redis for the jobs of the handles given).
 *
 * ```ts
 * const backend = useBullMQ(container, { connection: { host: '127.0.0.1', port: 6379 } });
 * bg.with({ durable: true }).add(sendInvoice, invoiceId);   // survives a restart of this process
 * ```
 *
 * @throws TypeError when `root` has a durable backend already, or when an option is not a known
 * one (`connection` is ioredis's or BullMQ's, passed as it is) or has the wrong type (`queueName`
 * with a `:` among them); RangeError when
 * `enqueueTimeoutMs` is a number but not an integer from 1 to 2147483647.
 */
export function useBullMQ(root: DependencyContainer = globalContainer, options: UseBullMQOptions = {}): DurableBackend {
  if (typeof (root as Partial<DependencyContainer> | null)?.register !== 'function') {
    throw new TypeError(`useBullMQ(root): root must be a tsyringe container, got ${describe(root)}`);
  }
  options = checkConnection('useBullMQ', options, ['enqueueTimeoutMs']);
  checkMs('useBullMQ(root, options): options.enqueueTimeoutMs', options.enqueueTimeoutMs, 1);
  // A second one would take the scopes made from then on to its queue, the first still open.
  if (root.isRegistered(DurableRunner, false)) {
    throw new TypeError('useBullMQ(root): this container has a durable backend already (useBullMQ() was called on it before); use that one, or close it and register the new one on another container');
  }
  const backend = new BullMQBackend(options, root);
  root.register(DurableRunner, { useValue: backend });
  return backend;
}

class BullMQBackend implements Runner, DurableBackend {
  #queue: Queue;
  /** The queue's client when this backend made it (from connection options), to end at close; undefined when the caller gave one. */
  readonly #ownClient: Redis | undefined;
  /** What a queue is made on: the client above, or the caller's. */
  readonly #queueConnection: ConnectionOptions;
  readonly #queueName: string;
  /** Cancelled jobs being removed from Redis: close() lets them end first. */
  readonly #removals = new Map<Promise<void>, { readonly id: string; readonly name: string }>();
  /** Cancellation requests being sent to the workers ({@link #tellWorkers}): close() lets them be sent first. */
  readonly #tells = new Set<Promise<void>>();
  /** The cancellations being sent, by job id: how many tries are on their way, and whether one was sent. */
  readonly #telling = new Map<string, Telling>();
  /** Cancelled jobs that close() said may still run (their removal still pending at its bound). */
  readonly #unremoved = new Set<string>();
  /** Set when {@link close} begins: no queue is made again after. */
  #closing = false;
  /** Waiting for every job added to be answered or failed ({@link settle}). */
  readonly #sentWaiters = new Set<() => void>();
  enqueueFailures = 0;
  /**
   * The reader of the queue's event stream, while a handle is followed: from the moment its first
   * position is known (a job enqueued after it has every event read) until it is closed, once no
   * handle has been followed for {@link readerIdleMs}.
   */
  #events: QueueEvents | undefined;
  /** The reader's opening, from the first handle followed until the reader is closed. */
  #reading: Promise<void> | undefined;
  /** Whether the reader is connected and reading: every event of a job sent from now on is read. */
  #readerReady = false;
  /** Whether {@link #flush} waits for the reader to be ready. */
  #awaitingReader = false;
  /** Counts the readers closed: a reader still opening when it was closed is not opened. */
  #readersClosed = 0;
  /** Closes the reader when no handle has been followed for a while. */
  #idleTimer: NodeJS.Timeout | undefined;
  /** Handles followed that may have missed events of their jobs, read from Redis once the reader is open. */
  readonly #toReadBack = new Set<DurableHandle>();
  #ready: Promise<unknown> | undefined;
  readonly #connection: ConnectionOptions;
  readonly #prefix: string | undefined;
  readonly #logger: BackgroundLogger;
  readonly #enqueueTimeoutMs: number;
  /**
   * The handles this process follows (someone watches them: {@link DurableHandle}) and that wait
   * for their job's outcome, by job id. A handle nobody watches is in no map once its job is sent.
   */
  readonly #live = new Map<string, DurableHandle>();
  /** Handles being made by id ({@link handle}) whose name is not read yet: what ends them waits for it. */
  readonly #unnamed = new Map<string, (() => void)[]>();
  /** Why jobs read lately were skipped, by id (a job skipped stays so): the links of a chain of skips, read once. */
  readonly #skips = new Map<string, Skipped>();
  /** Publishes cancellations of running jobs to the workers; made on the first. */
  #publisher: Redis | undefined;
  /** While the publisher's connection is down and a request waits for it: resolves when it is ready again. */
  #publisherReady: Promise<void> | undefined;
  /** While the queue's connection (or the flow producer's) is down: resolves when it is ready again. */
  readonly #reconnected = new Map<Queue | FlowProducer, Promise<void>>();
  /**
   * Jobs not enqueued yet (their add not sent, or not answered) and within their deadline, by id,
   * oldest first: their deadlines come in the same order, so one timer, for the first, serves all.
   */
  readonly #sending = new Map<string, Sending>();
  /** The schedules this process added, by task name: their handle, and what they were saved with. */
  readonly #schedules = new Map<string, { readonly handle: DurableHandle; readonly saved: string }>();
  /** Jobs whose deadline passed before they were handed to BullMQ (their handles failed): never sent, by id. */
  readonly #late = new Map<string, Sending>();
  /**
   * Jobs handed to BullMQ whose answer has not come by their deadline (the connection broke under
   * them), by id: Redis may have them, and ioredis sends them again once it is back, so their
   * handles wait for the answer rather than fail.
   */
  readonly #overdue = new Map<string, Sending>();
  /**
   * While jobs sent to Redis have gone unanswered past their bound (an episode, said once as it
   * begins, and once as it ends: when none is left unanswered): how many went so, and how many of
   * those Redis has answered since.
   */
  #unanswered: { late: number; answered: number } | undefined;
  /**
   * What waits until {@link close} begins ({@link #orClosed}): a look in Redis for a job in doubt,
   * a removal waiting for its job to be sent, a wait for a connection. A set, not a promise each
   * raced against one that lives as long as the backend: every race left a reaction (and the
   * async context it was made in, a request's span) on that promise until close().
   */
  readonly #closeWaiters = new Set<() => void>();
  /** Set when close() has told the waiters. */
  #closeTold = false;
  /** Jobs added in this turn, sent at its end ({@link #flush}). */
  #unsent: Sending[] = [];
  /** Whether {@link #flush} waits for the queue's connection to be ready. */
  #awaitingConnection = false;
  /** Adds sent by {@link #flush} straight to the queue's client and not answered yet. */
  #inFlight = 0;
  /** Whether {@link #flush} waits for answers to adds: {@link burstInFlight} are unanswered. */
  #awaitingAnswers = false;
  /** When Redis last answered an add of {@link #flush} (`performance.now()`). */
  #lastAnswer = 0;
  /** The last error of the queue's connection (a refused connection, a wrong password): what a job that could not be sent is told. */
  #connectionError: unknown;
  /** Fires at the deadline of the first job in {@link #sending}, if any. */
  #sendTimer: NodeJS.Timeout | undefined;
  /** Whether {@link #sweep} was put off a turn, having fired late: it runs then, whatever the clock. */
  #sweepPutOff = false;
  /** The deadline {@link #sendTimer} was set for: once it fires, that time has come, whatever the clock says (a test's fake timers). */
  #sendTimerFor = 0;
  /** The queue's Redis client, once ready: while it is connected, jobs go to it at once. */
  #client: QueueClient | undefined;
  /** Adds the flows of tasks with `after`; made on the first. */
  #flowProducer: FlowProducer | undefined;
  /** The id of the last event read from the stream, and where the next look for a gap starts. */
  #position = '0-0';
  #checkedFrom = '0-0';
  #lookingForGap = false;

  /** The container given to useBullMQ(): its application's close waits for {@link settle} once this backend has cancelled a job ({@link #joinClose}). */
  readonly #root: DependencyContainer;
  #joinedClose = false;
  /** The settle going on, shared by an application's close that joined it twice. */
  #settling: Promise<CloseOutcome> | undefined;

  constructor(options: UseBullMQOptions, root: DependencyContainer) {
    this.#root = root;
    const connection = options.connection ?? defaultConnection;
    // Safe to call: a logger that throws must not change what happens to a job.
    // Without a logger of its own, the application's, read at each entry (it may be registered after this call).
    this.#logger = safeLogger(options.logger ?? applicationLoggerOf(() => root.resolve(Background)));
    this.#enqueueTimeoutMs = options.enqueueTimeoutMs ?? 10_000;
    this.#connection = connection;
    this.#prefix = options.prefix;
    this.#queueName = options.queueName ?? defaultQueueName;
    this.#ownClient = isClient(connection) ? undefined : queueClientFor(connection);
    // Its errors are the queue's, said there; after the queue is closed (while it quits) nobody listens.
    this.#ownClient?.on('error', () => undefined);
    this.#queueConnection = this.#ownClient ?? connection;
    this.#queue = this.#newQueue();
  }

  /** The queue the jobs go to (made again on the same connection if BullMQ could not set it up: {@link #setUpFailed}). */
  get queue(): Queue {
    return this.#queue;
  }

  #newQueue(): Queue {
    // A cron schedule's times are the library's (BullMQ asks the queue of the process that adds it, then the worker that takes each run).
    const queue = new Queue(this.#queueName, { connection: this.#queueConnection, settings: { repeatStrategy: cronRepeatStrategy() }, ...(this.#prefix === undefined ? {} : { prefix: this.#prefix }) });
    queue.on('error', (error) => {
      this.#connectionError = error;
      this.#logger.warn({ err: error }, `the durable queue lost its connection to Redis (${messageOf(error)}); it reconnects`);
    });
    // The first reaction to a failed set-up: whatever awaited it finds the new queue in place.
    queue.getBackend().client.catch((error: unknown) => this.#setUpFailed(queue, error));
    return queue;
  }

  /**
   * BullMQ sets a queue's connection up once (it waits for it, then asks Redis its version): when
   * the connection breaks during that and the client gives up on the question (its
   * `maxRetriesPerRequest`), the queue fails every command for ever. It is made again, on the same
   * client, which keeps reconnecting.
   */
  #setUpFailed(queue: Queue, error: unknown): void {
    if (queue !== this.#queue || this.#closing) return;
    this.#logger.warn({ err: error }, `BullMQ could not set up the durable queue's connection to Redis (${messageOf(error)}); the queue is made again`);
    this.#ready = undefined;
    this.#client = undefined;
    this.#reconnected.delete(queue);
    this.#queue = this.#newQueue();
    void queue.close().catch(() => undefined);
  }

  /** Resolves once the queue's connection is ready: from then on, jobs go to it at once. */
  #whenReady(): Promise<unknown> {
    // Kept once resolved: made in no add()'s context (a promise keeps its stores, a request's).
    this.#ready ??= inOwnContext(async () => {
      for (;;) {
        const queue = this.queue;
        try {
          await queue.waitUntilReady();
          this.#client = await queue.getBackend().client;
          return;
        } catch (error) {
          // Unless its set-up failed and a new queue was made, whose turn it is now.
          if (queue === this.queue) throw error;
        }
      }
    });
    // A failed attempt is tried again by the next job.
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
  }

  /**
   * Opens the reader of the event stream, from the stream's last entry as it is now: a job
   * enqueued after has every event read, and what happened to a job before is in its hash, read
   * after this position ({@link #readBack}). (Reading from `$`, QueueEvents' default, starts only
   * when its first XREAD reaches Redis, after `waitUntilReady()` has resolved: events in between
   * were lost, and the ends of quick jobs with them.) Should it fail, the handles followed are
   * read back by the next reader.
   */
  #openReader(): Promise<void> {
    if (this.#reading === undefined) {
      // The event stream lives while handles are followed: not in the context of the first add() that asked.
      const reading = inOwnContext(() => this.#startReader());
      this.#reading = reading;
      reading.catch(() => {
        if (this.#reading !== reading) return;
        this.#reading = undefined;
        this.#readerReady = false;
        void this.#events?.close().catch(() => undefined);
        this.#events = undefined;
        if (this.queue.closing === undefined) this.#readBackLater(this.#live.values());
      });
    }
    return this.#reading;
  }

  async #startReader(): Promise<void> {
    const generation = this.#readersClosed;
    await this.#whenReady();
    const [last] = (await this.#client!.runCommand('xrevrange', [this.queue.keys.events, '+', '-', 'COUNT', 1])) as [string, unknown][];
    // Closed meanwhile: an event stream opened now would never be closed (nor the process end).
    if (this.#closing) throw new Error('the durable backend was closed');
    if (generation !== this.#readersClosed) throw new Error('the event stream was closed');
    this.#position = this.#checkedFrom = last?.[0] ?? '0-0';
    const events = new QueueEvents(this.queue.name, {
      connection: this.#connection,
      lastEventId: this.#position,
      ...(this.#prefix === undefined ? {} : { prefix: this.#prefix }),
    });
    events.on('error', (error) => this.#logger.warn({ err: error }, "the durable queue's event stream lost its connection to Redis; it reconnects"));
    this.#events = events;
    this.#listen(events);
    await events.waitUntilReady();
    if (generation !== this.#readersClosed) return;
    this.#readerReady = true;
    // Back after a lost connection: the followed handles are read from Redis. What the stream
    // carried meanwhile may be gone with it (a Redis restarted without its data has neither the
    // events nor the jobs, and no event would ever come to say so: the handles waited for ever).
    (await events.getBackend().client).on('ready', () => {
      if (generation !== this.#readersClosed || this.#events !== events) return;
      this.#reconcile('event stream reconnected to Redis (what it carried meanwhile may be lost)').catch((error: unknown) => {
        if (this.queue.closing === undefined) this.#logger.warn({ err: error }, "the durable handles being followed could not be read from Redis once the queue's event stream reconnected; their events still come");
      });
    });
  }

  /**
   * Follows a handle someone watches (its `status`, `attempt` or `progress` read, or its
   * `result()` asked for) until its job ends: its job's events are read from the stream, and,
   * unless it was watched before its job was sent, what happened before is read from Redis. The
   * stream is read only while a handle is followed: a fire-and-forget `add()` costs no reading.
   */
  follow(handle: DurableHandle): void {
    if (handle.ended || handle.periodic || this.#live.has(handle.id)) return;
    if (this.queue.closing !== undefined) {
      handle.settle('failed', { ok: false, error: closedError(handle) });
      return;
    }
    this.#keep(handle);
    const sending = this.#sendingOf(handle.id);
    // Not sent yet: it is sent once the reader runs ({@link #flush}), or read back.
    if (sending !== undefined && sending.done === undefined) return;
    this.#readBackLater([handle]);
  }

  /** Puts a handle among those followed: the reader stays open. */
  #keep(handle: DurableHandle): void {
    this.#live.set(handle.id, handle);
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** Reads handles back from Redis once the reader is open, with any others waiting for it. */
  #readBackLater(handles: Iterable<DurableHandle>): void {
    const first = this.#toReadBack.size === 0;
    for (const handle of handles) this.#toReadBack.add(handle);
    if (first && this.#toReadBack.size > 0) this.#readBackSoon();
  }

  readonly #readBackSoon = (): void => {
    this.#openReader()
      .then(() => {
        const handles = [...this.#toReadBack].filter((handle) => this.#live.get(handle.id) === handle);
        this.#toReadBack.clear();
        return this.#readBack(handles);
      })
      .catch((error: unknown) => {
        if (this.queue.closing !== undefined) {
          this.#logger.debug({ err: error }, 'the durable handles being followed were not read from Redis: the backend was closed');
          return;
        }
        this.#logger.warn({ err: error }, 'the durable handles being followed could not be read from Redis; tried again in 1 s');
        setTimeout(this.#readBackSoon, 1_000).unref();
      });
  };

  /** Takes a handle out of those followed; the reader is closed once none has been for a while. */
  #unfollow(id: string): void {
    if (!this.#live.delete(id) || this.#live.size > 0 || this.#reading === undefined) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = inOwnContext(() => setTimeout(this.#closeReader, readerIdleMs));
    this.#idleTimer.unref();
  }

  readonly #closeReader = (): void => {
    this.#idleTimer = undefined;
    if (this.#reading === undefined || this.#live.size > 0) return;
    this.#readersClosed++;
    this.#reading = undefined;
    this.#readerReady = false;
    void this.#events?.close().catch(() => undefined);
    this.#events = undefined;
  };

  add(request: TaskRequest): TaskHandle {
    const { name, kind, args, options, timing } = request;
    if (kind !== 'definition' && kind !== 'worker') {
      throw new TypeError(`bg.add("${name}"): a durable task must be a defineTask() or workerTask() definition, got ${kind === 'class' ? 'a class' : 'a plain function'}: a worker finds it by its name`);
    }
    // The worker, in another process, has the definition and nothing of this call: it applies the definition's own retryIf.
    if (options.retries > 0 && options.retryIf !== undefined && options.retryIf !== (request.task as { options: TaskOptions }).options.retryIf) {
      throw new TypeError(
        `bg.add("${name}"): a retryIf given per call (bg.with({ retryIf })) or as a scope default cannot reach the worker that runs a durable task ` +
          `(it may be another process, which has only the definition); put retryIf on the definition of "${name}" (defineTask({ name: "${name}", retryIf, … }))`,
      );
    }
    const { after, detach, undecided } = timing === undefined || timing.after.length === 0 ? noPrerequisites : this.#prerequisites(name, timing.after);
    checkJson(name, args);
    const cadence = timing?.cadence;
    if (cadence !== undefined) return this.#schedule(request, cadence, timing!.overlap);
    const id = randomUUID();
    const delay = timing === undefined ? 0 : Math.max(0, dueAt(timing) - Date.now());
    const data = jobData(args, options, request.carried);
    const jobOptions: JobsOptions = {
      jobId: id,
      // Every job has a priority: BullMQ runs jobs without one before all prioritized jobs.
      priority: bullPriority(options.priority),
      removeOnComplete: keepCompleted,
      removeOnFail: keepFailed,
    };
    if (delay > 0) jobOptions.delay = delay;
    if (options.retries > 0) Object.assign(jobOptions, retryOptions(options.retries));
    // One this process knows has ended otherwise than succeeded: skipped at once, as in process.
    const ended = after.find((prerequisite) => prerequisite.ended);
    if (ended !== undefined) return this.#skippedAtOnce(id, name, ended, data, jobOptions);
    const handle: DurableHandle = new DurableHandle(this, id, name, delay > 0 || after.length > 0 ? 'delayed' : 'queued', (error) => this.#cancel(handle, error));
    // Added once backend.close() was called: never sent, its handle fails at once, as one still unsent at the close.
    if (this.#closing) {
      this.#failEnqueue(handle, new Error('the durable backend was closed (backend.close()) before it could be sent'));
      return handle;
    }
    if (delay > 0) handle.notBefore = Date.now() + delay;
    handle.dependent = after.length > 0;
    for (const prerequisite of after) if (!undecided.includes(prerequisite)) prerequisite.awaitedBy = handle;
    this.#enqueue(handle, data, jobOptions, after, detach, undefined, undecided);
    return handle;
  }

  /**
   * A durable task added after one this process knows has ended otherwise than succeeded: its
   * handle is skipped at once, as in process, and its job goes to Redis all the same, with a guard
   * that fails it at once saying why, so that every process reads it skipped, in the same words.
   */
  #skippedAtOnce(id: string, name: string, prerequisite: DurableHandle, data: JobData, options: JobsOptions): DurableHandle {
    const handle = new DurableHandle(this, id, name, 'skipped', () => false);
    this.#enqueue(handle, data, options, [prerequisite], [], this.#skip(handle, prerequisite));
    return handle;
  }

  /**
   * Ends `handle` skipped, as it was to run after `prerequisite`, which has ended otherwise than
   * succeeded; what its guard says: that task's failure (a cancellation's reason given, as text),
   * and after a skipped one the failure that began the chain of skips, so that every process reads
   * the same cause.
   */
  #skip(handle: DurableHandle, prerequisite: DurableHandle): FailedPrerequisite {
    const { id, name } = handle;
    // After a skipped task, the error that began the chain of skips, as in process: causes do not nest.
    const before = prerequisite.error;
    const cause = prerequisite.known === 'skipped' && before instanceof TaskSkippedError ? before.cause : before;
    const error = new TaskSkippedError(name, id, { id: prerequisite.id, name: prerequisite.name, status: prerequisite.known }, cause);
    const reason = before instanceof TaskCancelledError ? cancelText(before) : before?.message;
    const failed: FailedPrerequisite = { id: prerequisite.id, name: prerequisite.name, status: prerequisite.known, reason };
    const first = prerequisite.known === 'skipped' ? prerequisite.firstFailure : undefined;
    handle.firstFailure = first ?? failed;
    handle.settle('skipped', { ok: false, error });
    this.#logger.debug({ task: name, taskId: id, err: error }, `task "${name}" was skipped`);
    return first === undefined ? failed : { ...failed, first };
  }

  /**
   * The handles a durable task waits for, checked: the jobs of this queue's one-off tasks, each
   * waited for by one durable task at a time (BullMQ gives a job one parent). Those known to have
   * succeeded already are left out (as are those whose former dependent succeeded: it ran after
   * them); the others become children of the task's job. `detach`: jobs whose former dependent
   * has ended otherwise, to be freed from it before the task's flow is sent.
   */
  #prerequisites(name: string, handles: readonly TaskHandle[]): Prerequisites {
    const kept = new Set<DurableHandle>();
    const detach: Detachment[] = [];
    const undecided: DurableHandle[] = [];
    handles.forEach((handle, i) => {
      const which = `bg.add("${name}"): options.after[${i}]`;
      if (!(handle instanceof DurableHandle)) {
        throw new TypeError(
          `${which} is in-process task "${handle.name}" (#${handle.id}), and a durable task waits only for durable tasks of its queue (the wait lives in Redis, ` +
            `where no worker sees this process's tasks); make "${handle.name}" durable too, or add "${name}" once that handle's result() has resolved`,
        );
      }
      if (handle.backend !== this) {
        throw new TypeError(
          `${which} is durable task "${handle.name}" (#${handle.id}) of another queue ("${handle.backend.queue.name}"), and a durable task waits only for jobs of its own queue ("${this.queue.name}"); ` +
            `add "${name}" through that queue's application, or once that handle's result() has resolved`,
        );
      }
      if (handle.periodic) {
        throw new TypeError(`${which} is the schedule of durable task "${handle.name}", which never finishes; give the handle of a one-off task`);
      }
      const other = handle.awaitedBy;
      if (handle.known === 'succeeded' || other?.known === 'succeeded' || kept.has(handle)) return;
      // Its own cancellation asked for, its outcome not known yet: decided once it is ({@link #sendWhenUp}).
      if (handle.cancelling !== undefined) {
        kept.add(handle);
        undecided.push(handle);
        return;
      }
      // A dependent ended, or being cancelled, no longer waits: the job is freed from it before the new dependent's flow is sent.
      if (other !== undefined && !other.ended && other.cancelling === undefined && !handle.ended) {
        throw new TypeError(
          `${which} is durable task "${handle.name}" (#${handle.id}), which durable task "${other.name}" (#${other.id}) waits for already: ` +
            `BullMQ gives a job one parent, so one durable task at most can wait for it; run "${name}" after "${other.name}", or after a task of its own`,
        );
      }
      kept.add(handle);
      if (other !== undefined) detach.push({ id: handle.id, from: other.id });
    });
    return { after: [...kept], detach, undecided };
  }

  /**
   * A durable periodic task: a BullMQ job scheduler whose id is the task's name, so that every
   * process adding it keeps one schedule (the last one's arguments and options win), and each
   * tick makes one job in the whole cluster. Its handle stands for the schedule.
   */
  #schedule(request: TaskRequest, cadence: NonNullable<NonNullable<TaskRequest['timing']>['cadence']>, overlap: boolean): TaskHandle {
    const { name, args, options } = request;
    if (!overlap) {
      throw new TypeError(
        `bg.add("${name}"): a durable periodic task's runs are separate jobs, which may overlap when one outlasts the interval; ` +
          'say that you accept it with overlap: true',
      );
    }
    if (!('every' in cadence)) checkCron(name, cadence.expression, cadence.tz);
    // The first run one period after add(), as in process (BullMQ's would be at once); a schedule
    // already in Redis keeps its own times (BullMQ reads startDate only for a new one).
    // Without a tz, the zone of the process that adds it (as in process), saved with the schedule:
    // else each worker would read the expression in its own zone, and the producer in its.
    const tz = 'every' in cadence ? undefined : (cadence.tz ?? processZone());
    const repeat = 'every' in cadence ? { every: cadence.every, startDate: Date.now() + cadence.every } : { pattern: cadence.expression, ...(tz === undefined ? {} : { tz }) };
    const data = jobData(args, options);
    // Its runs are kept in Redis as long as one-off jobs are, not for ever.
    const template = {
      name,
      data,
      opts: { priority: bullPriority(options.priority), removeOnComplete: keepCompleted, removeOnFail: keepFailed, ...(options.retries > 0 ? retryOptions(options.retries) : {}) },
    };
    // One schedule per task name in the whole cluster: this process's second add() of it gets the
    // same handle, and one with other arguments or times, which would replace the first (whose
    // handle would go on reading 'delayed'), is refused.
    const what = JSON.stringify([cadence, tz, template]);
    const earlier = this.#schedules.get(name);
    if (earlier !== undefined && !earlier.handle.ended) {
      if (earlier.saved === what) return earlier.handle;
      throw new TypeError(
        `bg.add("${name}"): durable task "${name}" is scheduled by this process already, with other ${scheduleChange(earlier.saved, what)}; a durable schedule is one per task name ` +
          'in the whole cluster (a BullMQ job scheduler named after the task), so this one would replace it: cancel() the first one first, or define a task for each schedule',
      );
    }
    let saved: Promise<unknown> = Promise.resolve();
    // Removed after it is saved (or failed to be), never before: it would come back.
    const handle = new DurableHandle(this, name, name, 'delayed', (cancelled) => this.#removeSchedule(name, cancelled, saved), true);
    this.#schedules.set(name, { handle, saved: what });
    /** Fails the handle: the schedule is not in Redis, or, `inDoubt`, may be (its save was cut off, and the backend closed). */
    const fail = (error: unknown, inDoubt: boolean): void => {
      this.enqueueFailures++;
      const said = inDoubt ? 'may or may not have been saved' : 'could not be saved';
      const failure = new DurableTaskError('ERR_DURABLE_ENQUEUE', name, `the schedule of durable task "${name}" ${said}: ${messageOf(error)}${inDoubt ? '; it may run' : ''}`, { cause: error });
      this.#logger.error({ task: name, err: failure }, `the schedule of durable task "${name}" ${said}; ${inDoubt ? 'it may run' : 'it will not run'}`);
      handle.settle('failed', { ok: false, error: failure });
    };
    saved = this.#saveSchedule(name, repeat, template).then(
      (cutOff) => cutOff !== undefined && fail(cutOff, true),
      (error: unknown) => fail(error, false),
    );
    return handle;
  }

  /**
   * Saves a schedule, again after each break of the connection under it (saving it twice is
   * harmless: its id is the task's name), until Redis answers (undefined) or refuses it (it
   * throws), or the backend is closed first: then it returns the error that cut the last save
   * off, in doubt (that save may have reached Redis before the connection broke).
   */
  async #saveSchedule(name: string, repeat: Parameters<Queue['upsertJobScheduler']>[1], template: Parameters<Queue['upsertJobScheduler']>[2]): Promise<Error | undefined> {
    for (;;) {
      await this.#whenReady();
      try {
        await this.queue.upsertJobScheduler(name, repeat, template);
        return undefined;
      } catch (error) {
        const next = await this.#afterFailure(error);
        if (next === 'answer') throw error;
        if (next === 'closed') return new Error(`${messageOf(error)} (the backend was closed before it could be saved again)`, { cause: error });
      }
    }
  }

  /**
   * After a command on the queue's connection failed: `again` once the connection is up again if
   * it broke under the command (Redis may or may not have run it), `closed` if the backend is
   * closed first, or `answer` if the failure was the answer (Redis refused it, or BullMQ did).
   */
  async #afterFailure(error: unknown): Promise<'again' | 'closed' | 'answer'> {
    if (refusedByRedis(error)) return 'answer';
    const queue = this.queue;
    const client = await queue.getBackend().client.catch(() => undefined);
    // Its set-up failed: a new queue is made, unless the backend is closed.
    if (client === undefined) return queue === this.queue ? 'closed' : 'again';
    if ((error as Error | undefined)?.name !== 'MaxRetriesPerRequestError' && client.status === 'ready') return 'answer';
    if (this.queue.closing !== undefined) return 'closed';
    return this.#connected().then(
      () => 'again',
      () => 'closed',
    );
  }

  /**
   * Enqueues a job, or fails its handle once `enqueueTimeoutMs` has passed. The job is sent only
   * while the connection is up and only before the deadline: sent while Redis is down, ioredis
   * would keep it and send it once Redis is back, and a job whose handle said it would not run
   * would run. One handed to BullMQ in time is settled by Redis's answer alone, however late: the
   * connection may have broken under it after Redis ran the add, or ioredis sends it again once
   * Redis is back, so failing its handle at the deadline could say "will not run" of a job that
   * runs. While the connection is up
   * (most jobs), the jobs of a turn go to BullMQ at its end ({@link #flush}), with nothing per job
   * but its entry in the map: no timer (one for all: {@link #sweep}), no promise but BullMQ's.
   */
  #enqueue(
    handle: DurableHandle,
    data: JobData,
    options: JobsOptions,
    after: readonly DurableHandle[],
    detach: readonly Detachment[] = [],
    failed?: FailedPrerequisite,
    undecided: readonly DurableHandle[] = [],
  ): void {
    const sending: Sending = { handle, deadline: performance.now() + this.#enqueueTimeoutMs, data, options, done: undefined, handed: false, detach, failed, undecided };
    this.#sending.set(handle.id, sending);
    if (this.#sendTimer === undefined) {
      // Armed again from itself while jobs are being sent: in no add()'s context.
      this.#sendTimer = inOwnContext(() => setTimeout(this.#sweep, this.#enqueueTimeoutMs));
      this.#sendTimerFor = sending.deadline;
    }
    if (after.length === 0) {
      // Sent after the caller's turn, with the other jobs added in it: add() returns without
      // BullMQ's work on the job (its serialization, its command).
      if (this.#unsent.push(sending) === 1) soon(this.#flush);
      return;
    }
    // Those it waits for must be on their way first (their `done` set).
    this.#flush(true);
    this.#track(sending, this.#sendWhenUp(sending, after));
  }

  /**
   * Sends the jobs added since the last turn: straight to the queue's client while it is
   * connected, {@link burstSlice} at most a turn of the event loop unless `everything` is asked
   * for, the rest at the next turns, in order.
   */
  readonly #flush = (everything = false): void => {
    const unsent = this.#unsent;
    if (unsent.length === 0) return;
    const direct = this.#client?.status === 'ready';
    // Jobs of followed handles wait for the stream's reader to be running (a connection's set-up,
    // when none is): a burst sent before it would run ahead of it, past what the stream keeps.
    if (direct && !everything && !this.#readerReady && this.#live.size > 0 && unsent.some(({ handle }) => this.#live.get(handle.id) === handle)) {
      if (!this.#awaitingReader) {
        this.#awaitingReader = true;
        void this.#openReader()
          .catch(() => undefined)
          .then(() => {
            this.#awaitingReader = false;
            this.#flush();
          });
      }
      return;
    }
    // Not connected (not yet, or not now): the jobs wait here for the connection, and then go
    // paced as any burst (each sent on its own as it came back, a burst went at once, every other
    // command behind it). Should the wait fail (the queue's set-up), each waits on its own.
    if (!direct && !everything) {
      if (!this.#awaitingConnection) {
        this.#awaitingConnection = true;
        this.#whenReady()
          .then(() => this.#connected())
          .then(
            () => {
              this.#awaitingConnection = false;
              this.#flush();
            },
            () => {
              this.#awaitingConnection = false;
              this.#flush(true);
            },
          );
      }
      return;
    }
    let batch = unsent;
    const room = burstInFlight - this.#inFlight;
    if (direct && !everything && unsent.length > Math.min(burstSlice, room)) {
      // The rest at the next turn, or once Redis has answered enough of those sent.
      if (room < burstSlice) this.#awaitingAnswers = true;
      else setImmediate(this.#flush);
      if (room <= 0) return;
      batch = unsent.splice(0, Math.min(burstSlice, room));
    } else {
      this.#unsent = [];
    }
    // Sent with the reader running, a followed handle's job has every event read; else (a flush
    // of everything, for a cancellation, an `after` or close(), or no connection) it is read back.
    const covered = direct && this.#readerReady;
    for (const sending of batch) {
      const { handle } = sending;
      // Failed already while it waited for its turn (its deadline passed): never sent.
      if (this.#late.delete(handle.id)) continue;
      sending.handed = direct;
      this.#track(sending, direct ? this.#add(sending) : this.#sendWhenUp(sending, []));
      if (!covered && this.#live.get(handle.id) === handle) this.#readBackLater([handle]);
    }
  };

  /** Sends a job straight to the queue's client, counted among the adds in flight until Redis answers. */
  async #add({ handle, data, options }: Sending): Promise<unknown> {
    this.#inFlight += 1;
    try {
      return await this.queue.add(handle.name, data, options);
    } finally {
      this.#inFlight -= 1;
      this.#lastAnswer = performance.now();
      if (this.#awaitingAnswers && this.#inFlight <= burstInFlight - burstSlice) {
        this.#awaitingAnswers = false;
        setImmediate(this.#flush);
      }
    }
  }

  /** Follows a job's sending to its end. */
  #track(sending: Sending, sent: Promise<unknown>): void {
    sending.done = sent.then(
      () => this.#sent(sending),
      (error: unknown) => this.#notSent(sending, error),
    );
  }

  /** Sends a job once the stream is open, the jobs it waits for are in Redis, and the connection is up; undefined if it came too late. */
  async #sendWhenUp(sending: Sending, waitedFor: readonly DurableHandle[]): Promise<unknown> {
    const { handle, data, options } = sending;
    await this.#whenReady();
    let after = waitedFor;
    if (sending.undecided.length > 0) {
      // Tasks whose cancellation was asked for before this process knew whether they had ended:
      // once they have, one that ended otherwise than succeeded skips this one; one that had
      // succeeded is left out, as a task known to have succeeded is.
      sending.awaitingPrerequisites = true;
      await Promise.all(sending.undecided.map((prerequisite) => prerequisite.result().then(noop, noop)));
      const ended = sending.undecided.find((prerequisite) => prerequisite.known !== 'succeeded');
      if (ended !== undefined) {
        sending.failed = this.#skip(handle, ended);
        after = [ended];
      } else {
        after = after.filter((prerequisite) => !sending.undecided.includes(prerequisite));
        for (const prerequisite of after) prerequisite.awaitedBy ??= handle;
      }
    }
    if (after.length > 0) {
      // The jobs waited for are attached by id: this process's own must be in Redis first.
      sending.awaitingPrerequisites = true;
      await Promise.allSettled(after.flatMap((prerequisite) => this.#sendingOf(prerequisite.id)?.done ?? []));
      if (sending.detach.length > 0) await this.#detach(sending.detach);
      sending.awaitingPrerequisites = false;
      let flows = this.#flows();
      for (;;) {
        try {
          await flows.waitUntilReady();
          break;
        } catch (error) {
          // Unless its set-up failed and it was dropped, for a new one.
          if (this.#flowProducer === flows) throw error;
          flows = this.#flows();
        }
      }
      await this.#connected(flows);
    }
    await this.#connected();
    if (this.#late.has(handle.id)) return undefined;
    sending.handed = true;
    if (after.length === 0) return this.queue.add(handle.name, data, options);
    return this.#flows().add({ name: handle.name, queueName: this.queue.name, data, opts: options, children: this.#childrenOf(handle.id, after, sending.failed) });
  }

  /**
   * Frees jobs from the dependents that waited for them before and have ended since: BullMQ
   * attaches a job to a new parent only once its old one is gone (a cancelled dependent's job,
   * whose removal is waited for) or has let it go. Each job left attached (Redis unreachable,
   * say) is found by the new dependent's guard, which then skips it, saying why.
   */
  async #detach(detach: readonly Detachment[]): Promise<void> {
    const formerly = new Set(detach.map(({ from }) => from));
    await Promise.all([...this.#removals].flatMap(([removal, { id }]) => (formerly.has(id) ? [removal] : [])));
    await Promise.all(
      detach.map(async ({ id, from }) => {
        const job = await Job.fromId(this.queue, id);
        if (job?.parentKey === this.queue.toKey(from)) await job.removeChildDependency();
      }),
    ).catch(() => undefined);
  }

  /** A job not yet in Redis: within its deadline, past it unsent, or past it unanswered. */
  #sendingOf(id: string): Sending | undefined {
    return this.#sending.get(id) ?? this.#late.get(id) ?? this.#overdue.get(id);
  }

  /** Redis has the job, or it was never sent, being late. */
  #sent({ handle }: Sending): void {
    if (this.#unanswered !== undefined && this.#overdue.has(handle.id)) this.#unanswered.answered++;
    this.#forget(handle.id);
    this.#late.delete(handle.id);
  }

  /**
   * Sending the job failed: its handle fails, unless its deadline had failed it already. When
   * Redis itself refused the job (a ReplyError), or it was never handed to BullMQ, it is not in
   * Redis. Otherwise (the connection failed under it: ioredis gave up on it after its retries, or
   * the queue was closed) Redis may have run the add before the connection broke: Redis is asked
   * once it can be reached, and the handle follows the job if it is there (ioredis will not send
   * an add it gave up on again: its answer is final).
   */
  async #notSent(sending: Sending, error: unknown): Promise<void> {
    const { handle } = sending;
    if (this.#late.delete(handle.id)) return this.#forget(handle.id);
    if (sending.handed && !refusedByRedis(error)) {
      // In doubt until Redis is asked: found by a cancellation or an `after` meanwhile, which wait for it.
      this.#forget(handle.id);
      this.#overdue.set(handle.id, sending);
      const there = await this.#lookFor(handle.id);
      this.#forget(handle.id);
      if (there === true) {
        this.#logger.warn({ task: handle.name, taskId: handle.id, err: error }, `durable task "${handle.name}" was enqueued, though its add failed (${messageOf(error)}): Redis had run it before the connection broke`);
        if (this.#live.get(handle.id) === handle) this.#readBackLater([handle]);
        return;
      }
      if (there === undefined) return this.#failEnqueue(handle, new Error(`${messageOf(error)} (the backend was closed before Redis could be asked whether it has the job)`, { cause: error }), true);
      return this.#failEnqueue(handle, new Error(`${messageOf(error)} (asked once it could be reached, Redis does not have the job)`, { cause: error }));
    }
    this.#forget(handle.id);
    this.#failEnqueue(handle, error);
  }

  /** Whether Redis has a job, once the queue's connection is up; undefined if the backend closes first. */
  async #lookFor(id: string): Promise<boolean | undefined> {
    while (!this.#closing) {
      try {
        await this.#connected();
        const client = await this.queue.getBackend().client;
        return (await client.hexists(this.queue.toKey(id), 'timestamp')) === 1;
      } catch {
        if (this.#closing) return undefined;
        // The connection broke again: wait a little, and for it again.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    return undefined;
  }

  /** Takes a job out of those on their way, and stops the timer once none is within its deadline. */
  #forget(id: string): void {
    if (this.#overdue.delete(id) && this.#overdue.size === 0) this.#answeredAll();
    if (this.#sending.delete(id) && this.#sending.size === 0 && this.#sendTimer !== undefined) {
      clearTimeout(this.#sendTimer);
      this.#sendTimer = undefined;
    }
    this.#wakeIfSent();
  }

  /** Wakes {@link settle} once no job added is on its way. */
  #wakeIfSent(): void {
    if (this.#sending.size > 0 || this.#overdue.size > 0 || this.#sentWaiters.size === 0) return;
    for (const wake of this.#sentWaiters) wake();
    this.#sentWaiters.clear();
  }

  /**
   * What the application's close waits for (as it begins, intake stopped): every job added before
   * it is answered by Redis (or has failed its bound), and every cancellation asked for is sent,
   * within `timeoutMs` and a second more; a process may then exit without losing a job `add()`
   * accepted. What is still on its way then is logged at `error`. The backend stays open
   * (`close()` closes it): its handles go on following their jobs.
   */
  settle(timeoutMs: number): Promise<CloseOutcome> {
    // Joined twice by one application (its first durable add(), its first cancellation): one
    // settle, its outcome counted once.
    if (this.#settling !== undefined) return this.#settling.then(() => ({}));
    const settling = (this.#settling = this.#settleNow(timeoutMs));
    void settling.then(() => {
      if (this.#settling === settling) this.#settling = undefined;
    });
    return settling;
  }

  /**
   * Has the application of {@link #root} wait for {@link settle} at its close, once: a process
   * that cancels jobs it did not add (handles of `handle(id)`) must have sent the cancellations
   * before it exits, as one that adds jobs (the application joins it at its first durable add()).
   */
  #joinClose(): void {
    if (this.#joinedClose) return;
    this.#joinedClose = true;
    try {
      const background = this.#root.resolve(Background) as unknown as Pick<JobRunAdder, typeof closeWith>;
      background[closeWith]((timeoutMs) => this.settle(timeoutMs));
    } catch {
      // A container tsyringe has disposed: its application has closed already.
    }
  }

  async #settleNow(timeoutMs: number): Promise<CloseOutcome> {
    // The jobs of this turn go as every burst does, a slice a turn (not all at once: the event
    // loop would be held for as long, and Redis's answers read only after the bound had passed).
    const startedAt = performance.now();
    // Jobs whose bound passes while the close waits for them are lost to it (the process exits).
    const failedBefore = this.enqueueFailures;
    const until = startedAt + timeoutMs + settleGraceMs;
    const onTheirWay = (): boolean => this.#sending.size > 0 || this.#overdue.size > 0 || this.#removals.size > 0 || this.#tells.size > 0;
    while (onTheirWay() && performance.now() < until) {
      const waiting = this.#sending.size > 0 || this.#overdue.size > 0 ? new Promise<void>((resolve) => this.#sentWaiters.add(resolve)) : Promise.allSettled([...this.#removals.keys(), ...this.#tells]);
      if (!(await within(waiting, until - performance.now()))) break;
    }
    // Past the bound: what Redis answered meanwhile is read first (a timer can come before the
    // answers waiting on the connection).
    if (onTheirWay()) await new Promise((resolve) => setImmediate(resolve));
    const failedMeanwhile = this.enqueueFailures - failedBefore;
    if (!onTheirWay()) return { unfinished: failedMeanwhile };
    const unsent = [...this.#sending.values(), ...this.#overdue.values()].map(({ handle }) => handle);
    const cancelled = new Set([...[...this.#removals.values()].map(({ id }) => id), ...this.#telling.keys()]);
    const listed = (ids: Iterable<string>): string[] => [...ids].slice(0, 100);
    this.#logger.error(
      { taskIds: listed(unsent.map(({ id }) => id)), tasks: [...new Set(unsent.map(({ name }) => name))], cancelledTaskIds: listed(cancelled) },
      `the application closed with ${unsent.length} durable job(s) added before it not yet in Redis (a process that exits now may lose them), ` +
        `and ${cancelled.size} cancellation(s) not yet sent (their jobs may still run), ${Math.round(performance.now() - startedAt)} ms after its close began (still being sent, or not answered by Redis)`,
    );
    return { unfinished: unsent.length + cancelled.size + failedMeanwhile };
  }

  /** Fails the handles of the jobs whose deadline has passed, and waits for the next one's. */
  readonly #sweep = (): void => {
    // Fired late (the event loop held): Redis's answers that came meanwhile are taken in first (at
    // the poll phase, before the next turn's timers), so that a job waiting its turn behind a burst
    // Redis was answering all along is not failed for answers not yet read.
    if (!this.#sweepPutOff && performance.now() - this.#sendTimerFor > lateMs) {
      this.#sweepPutOff = true;
      this.#sendTimer = setTimeout(this.#sweep, 0);
      return;
    }
    this.#sweepPutOff = false;
    this.#sendTimer = undefined;
    const now = Math.max(performance.now(), this.#sendTimerFor);
    const unanswered: DurableHandle[] = [];
    for (const [id, sending] of this.#sending) {
      if (sending.deadline > now) {
        this.#sendTimer = setTimeout(this.#sweep, sending.deadline - now);
        this.#sendTimerFor = sending.deadline;
        break;
      }
      this.#sending.delete(id);
      if (sending.handed) {
        this.#overdue.set(id, sending);
        unanswered.push(sending.handle);
        continue;
      }
      const waitingItsTurn = sending.done === undefined && sending.awaitingPrerequisites !== true && !(this.#awaitingReader && this.#live.get(id) === sending.handle);
      if (waitingItsTurn && this.#client?.status === 'ready' && now - this.#lastAnswer < this.#enqueueTimeoutMs) {
        // A burst ahead of it, sent as Redis answers, and Redis answers: it is not stuck, and fails
        // only once Redis has answered none for the bound (sent at once, as before the adds were
        // paced, it would have waited for Redis's answer however late). Last in line again.
        sending.deadline = now + this.#enqueueTimeoutMs;
        this.#sending.set(id, sending);
        continue;
      }
      this.#late.set(id, sending);
      const why =
        sending.awaitingPrerequisites === true
          ? `the jobs it runs after were not in Redis within ${this.#enqueueTimeoutMs} ms (Redis could not be reached, or had not answered their adds); it was never sent`
          : sending.done !== undefined
            ? `Redis could not be reached within ${this.#enqueueTimeoutMs} ms (it was never sent)${this.#connectionError === undefined ? '' : `; the connection's last error: ${messageOf(this.#connectionError)}`}`
            : this.#awaitingConnection
              ? `Redis could not be reached within ${this.#enqueueTimeoutMs} ms (it was never sent)${this.#connectionError === undefined ? '' : `; the connection's last error: ${messageOf(this.#connectionError)}`}`
              : !waitingItsTurn
              ? `it was still waiting after ${this.#enqueueTimeoutMs} ms for the queue's event stream to be opened (its handle is watched, and its job is sent once its events can be read)`
              : `it was still waiting for its turn to be sent after ${this.#enqueueTimeoutMs} ms (a burst of add() calls ahead of it, and no answer from Redis to their adds in that time: Redis slow or unreachable, or this process too busy to hear it)`;
      this.#failEnqueue(sending.handle, new Error(why));
    }
    this.#wakeIfSent();
    if (unanswered.length > 0) this.#unansweredPast(unanswered);
  };

  /**
   * Jobs sent to Redis have had no answer within their bound: said at `warn` as the first do, not
   * at each sweep after (a slow but healthy burst said it 51 times in one run), until Redis has
   * answered every one left unanswered ({@link #answeredAll}).
   */
  #unansweredPast(unanswered: readonly DurableHandle[]): void {
    if (this.#unanswered !== undefined) {
      this.#unanswered.late += unanswered.length;
      return;
    }
    this.#unanswered = { late: unanswered.length, answered: 0 };
    this.#logger.warn(
      { taskIds: unanswered.map(({ id }) => id), tasks: [...new Set(unanswered.map(({ name }) => name))] },
      `${unanswered.length} durable job(s) sent to Redis have had no answer within ${this.#enqueueTimeoutMs} ms (Redis is slow to answer, or the connection broke under them): their handles wait for Redis's answer (after a broken connection, ioredis sends the adds again once Redis is back); ` +
        'said once, until none is left unanswered',
    );
  }

  /** No job sent to Redis is left unanswered past its bound: the episode {@link #unansweredPast} said ends, said at `info` with how it ended. */
  #answeredAll(): void {
    const episode = this.#unanswered;
    if (episode === undefined) return;
    this.#unanswered = undefined;
    const { late, answered } = episode;
    const rest = late - answered;
    this.#logger.info(
      { late, answered },
      `Redis has answered ${answered} of the ${late} durable job(s) sent to it that had had no answer within ${this.#enqueueTimeoutMs} ms` +
        (rest === 0 ? '' : ` (the other ${rest} got none: their adds failed, or the backend closed; each is logged as it ends)`),
    );
  }

  /**
   * Fails a handle whose job is not in Redis, or, `inDoubt`, whose job Redis may have (its add was
   * cut off, and the backend closed before Redis could be asked): said so, never "will not run".
   */
  #failEnqueue(handle: DurableHandle, error: unknown, inDoubt = false): void {
    this.#unfollow(handle.id);
    // Cancelled meanwhile: the job not being enqueued is what was asked for.
    if (handle.ended) return;
    this.enqueueFailures++;
    const { name, id } = handle;
    const failure = inDoubt
      ? new DurableTaskError('ERR_DURABLE_ENQUEUE', id, `durable task "${name}" (#${id}) may or may not have been enqueued: ${messageOf(error)}; it may run`, { cause: error })
      : new DurableTaskError('ERR_DURABLE_ENQUEUE', id, `durable task "${name}" (#${id}) could not be enqueued: ${messageOf(error)}`, { cause: error });
    const said = inDoubt ? 'may or may not have been enqueued (the backend was closed before Redis could say); it may run' : 'could not be enqueued; it will not run';
    this.#logger.error({ task: name, taskId: id, err: failure }, `durable task "${name}" ${said}`);
    handle.settle('failed', { ok: false, error: failure });
  }

  /**
   * The children of a dependent's job: each job waited for, by its id (BullMQ attaches the job of
   * that id, its failure failing the dependent; were there none, it makes one under that id that
   * fails at once, saying so), and the dependent's guard.
   */
  #childrenOf(id: string, after: readonly DurableHandle[], failed: FailedPrerequisite | undefined): FlowJobNode[] {
    const queueName = this.queue.name;
    // Known to have failed (skipped at add()): the guard alone, which fails at once.
    const children: FlowJobNode[] = failed !== undefined ? [] : after.map(({ id: jobId, name }) => ({
      name: afterJob,
      queueName,
      data: { kind: 'missing', id: jobId, name } satisfies AfterData,
      opts: { ...afterJobOptions, jobId, failParentOnFailure: true },
    }));
    children.push({
      name: afterJob,
      queueName,
      data: { kind: 'guard', after: after.map(({ id: jobId, name }) => ({ id: jobId, name })), ...(failed === undefined ? {} : { failed }) } satisfies AfterData,
      opts: { ...afterJobOptions, jobId: `${id}.after`, failParentOnFailure: true },
    });
    return children;
  }

  #flows(): FlowProducer {
    if (this.#flowProducer === undefined) {
      if (this.#closing) throw new Error('the durable backend was closed');
      // On the queue's client: one connection fewer, and one that close() ends for sure.
      const flows = new FlowProducer({ connection: this.#queueConnection, ...(this.#prefix === undefined ? {} : { prefix: this.#prefix }) });
      flows.on('error', (error) => this.#logger.warn({ err: error }, 'the durable flow producer lost its connection to Redis; it reconnects'));
      // Its set-up failed as a queue's can ({@link #setUpFailed}): the next dependent makes a new one.
      flows.getBackend().client.catch(() => {
        if (this.#flowProducer !== flows || this.#closing) return;
        this.#flowProducer = undefined;
        void flows.close().catch(() => undefined);
      });
      this.#flowProducer = flows;
    }
    return this.#flowProducer;
  }

  /**
   * Resolves once the queue's connection (or the flow producer's) is up (at once when it is);
   * rejects if the backend is closed first.
   */
  async #connected(flows?: FlowProducer): Promise<void> {
    const on = flows ?? this.queue;
    const client = await on.getBackend().client.catch((error: unknown) => {
      // The queue's set-up failed and a new one was made: its connection is waited for.
      if (flows === undefined && on !== this.queue) return undefined;
      throw error;
    });
    if (client === undefined) return this.#connected();
    if (client.status === 'ready') return;
    // One listener for every job waiting, however many (one each piled up past Node's limit of 10).
    let reconnected = this.#reconnected.get(on);
    if (reconnected === undefined) {
      reconnected = new Promise<void>((resolve) => {
        client.once('ready', () => {
          this.#reconnected.delete(on);
          resolve();
        });
      });
      this.#reconnected.set(on, reconnected);
    }
    // Closed meanwhile, it will not reconnect: what waited for it (a job to send, a look) ends now.
    await this.#orClosed(reconnected);
    if (this.queue.closing !== undefined) throw new Error('the durable backend was closed while Redis could not be reached');
  }

  #listen(events: QueueEvents): void {
    // (The workers' own event is not among those BullMQ's types know: QueueEvents emits every event of the stream by its name.)
    const on = events.on.bind(events) as (event: JobEvent, listener: (fields: JobEventFields, id: string) => void) => unknown;
    for (const event of jobEvents) {
      on(event, (fields, id) => {
        this.#read(id);
        const handle = this.#live.get(fields.jobId);
        if (handle === undefined) return;
        // Being read from Redis: its events wait for what is read, and those after it apply then.
        if (handle.held !== undefined) handle.held.push({ event, fields, id });
        else if (handle.since === undefined) this.#apply(handle, event, fields);
        else this.#applyAfter(handle, event, fields, id);
      });
    }
  }

  /**
   * Applies an event to a handle read from Redis at the stream's entry `handle.since` only if it
   * came after that entry: one before is in what was read (a reader that lags behind reads it
   * after), and counted twice it would count an attempt twice.
   */
  #applyAfter(handle: DurableHandle, event: JobEvent, fields: JobEventFields, id: string): void {
    if (compareStreamIds(id, handle.since ?? '0-0') <= 0) return;
    handle.since = undefined;
    this.#apply(handle, event, fields);
  }

  /** What an event of its job tells a followed handle. */
  #apply(handle: DurableHandle, event: JobEvent, fields: JobEventFields): void {
    const id = handle.id;
    switch (event) {
      case 'active':
        return handle.dependent && !handle.doomed ? this.#movedOn(handle, event, fields) : handle.started();
      case 'progress':
        return handle.reported(fields.data);
      case 'delayed':
        return handle.waiting('delayed');
      case 'waiting':
        return handle.dependent && !handle.doomed ? this.#movedOn(handle, event, fields) : handle.waiting('queued');
      case 'completed':
        return this.#counted(id, () => this.#end(id, 'succeeded', { ok: true, value: fields.returnvalue }));
      case 'failed':
        return this.#counted(id, () => this.#failedFromEvent(id, fields.failedReason ?? ''));
      case 'stalled':
        // Its worker lost it, and BullMQ moved it back to wait (its `waiting` came first): no attempt made.
        return handle.stalledBack();
      case putBackEvent:
        return handle.putBack();
      case 'removed':
        if (handle.cancelling !== undefined) return this.#end(id, 'cancelled', { ok: false, error: handle.cancelling });
        return void this.#removed(handle);
    }
  }

  /**
   * A `removed` event of a job this process did not cancel: `cancelled` as another process's
   * cancellation recorded it (its reason, none when none was given), as a handle made by id reads
   * it; else removed by someone else (the dashboard, a script).
   */
  async #removed(handle: DurableHandle): Promise<void> {
    const { id } = handle;
    const unnamed = this.#unnamed.get(id);
    if (unnamed !== undefined) return void unnamed.push(() => void this.#removed(handle));
    const recorded = await this.queue
      .getBackend()
      .client.then((client) => this.#recordedCancellations(client))
      .then(
        (requested) => requested.get(id),
        () => undefined,
      );
    this.#end(id, 'cancelled', { ok: false, error: recorded === undefined ? removedError(handle.name, id) : cancelledError(handle.name, id, recorded.reason) });
  }

  /**
   * The first `waiting` or `active` event of a dependent's job: BullMQ moves a job on so once the
   * jobs it waited for have succeeded, and also, to fail it at once (its task never starts), when
   * one of them failed (its deferred failure, `defa`, set then). One read tells which, for
   * dependents only ({@link #skipDecided}: also once the job has been failed so, as it may have
   * been by the time the event is read); the handle's events are held meanwhile, and applied after,
   * in order. A doomed job's handle reads `delayed` until its failure skips it, never `running`.
   */
  #movedOn(handle: DurableHandle, event: JobEvent, fields: JobEventFields): void {
    handle.held = [];
    void this.#skipDecided(handle.id)
      .then(
        ({ doomed }) => void (doomed ? (handle.doomed = true) : (handle.dependent = false)),
        // Unread (Redis went away): taken as a start, as before dependents were told apart.
        () => void (handle.dependent = false),
      )
      .then(() => {
        const held = handle.held ?? [];
        handle.held = undefined;
        this.#release(handle, [{ event, fields, id: '' }, ...held]);
      });
  }

  /**
   * Whether BullMQ has decided the skip of a dependent's job (a job it waited for failed): its
   * deferred failure (`defa`) is set in the step that moves the job on to be failed at once, and
   * cleared when a worker has failed it (its `failedReason` then `child <key> failed`); read in one
   * HMGET with whether the job has ended. A job that moved on with neither runs its task.
   */
  async #skipDecided(id: string): Promise<{ doomed: boolean; ended: boolean }> {
    const client = await this.queue.getBackend().client;
    const [deferred, finishedOn, failedReason] = (await client.runCommand('hmget', [this.queue.toKey(id), 'defa', 'finishedOn', 'failedReason'])) as (string | null)[];
    const ended = finishedOn !== null && finishedOn !== undefined;
    return { doomed: skipDeferred(deferred) || (ended && childFailed(failedReason ?? '') !== undefined), ended };
  }

  /** Applies events held for a handle, in order; those left once a new hold begins are held again. */
  #release(handle: DurableHandle, events: readonly HeldEvent[], after?: string): void {
    for (const [i, { event, fields, id }] of events.entries()) {
      if (this.#live.get(handle.id) !== handle) return;
      if (handle.held !== undefined) {
        handle.held.push(...events.slice(i));
        return;
      }
      if (after === undefined || id === '' || compareStreamIds(id, after) > 0) this.#apply(handle, event, fields);
    }
  }

  /**
   * Follows the position of the reader of the event stream. BullMQ trims the stream (to about
   * 10 000 events): a reader that falls further behind (a busy process, a burst of jobs) never
   * sees the events trimmed before it read them, and a handle whose end was among them would
   * never settle. So, while events come, the stream's first entry is compared with the position
   * as it was before the last look: past it, events may have been trimmed unread, and the live
   * handles are read from Redis instead.
   */
  #read(id: string): void {
    this.#position = id;
    if (!this.#lookingForGap) void this.#lookForGaps();
  }

  async #lookForGaps(): Promise<void> {
    this.#lookingForGap = true;
    let from = this.#checkedFrom;
    try {
      while (this.#checkedFrom !== this.#position && this.queue.closing === undefined) {
        from = this.#checkedFrom;
        this.#checkedFrom = this.#position;
        const client = await this.queue.getBackend().client;
        const stream = this.queue.keys.events;
        const [first] = (await client.runCommand('xrange', [stream, '-', '+', 'COUNT', 1])) as [string, unknown][];
        const trimmed = first !== undefined && compareStreamIds(first[0], from) > 0 && !(from === '0-0' && (await neverTrimmed(client, stream)));
        if (trimmed) await this.#reconcile();
      }
    } catch (error) {
      // What was read since `from` is not checked: the next look, at the next event, checks it.
      this.#checkedFrom = from;
      if (this.queue.closing === undefined) this.#logger.warn({ err: error }, "the durable queue's event stream could not be checked for events trimmed unread; it is checked again at the next event");
    } finally {
      this.#lookingForGap = false;
    }
  }

  /** Reads every followed handle back from Redis: events may have been lost unread (`why`). */
  async #reconcile(why = 'event stream may have been trimmed past events this process had not read (it fell behind)'): Promise<void> {
    if (this.#live.size === 0) return;
    this.#logger.info({ handles: this.#live.size }, `the durable queue's ${why}: its ${this.#live.size} followed handles are read from Redis`);
    await this.#readBack([...this.#live.values()]);
  }

  /**
   * Brings followed handles up to date from their jobs in Redis, in one transaction (one round
   * trip) however many: the stream's last entry, and each job's hash. A job's hash says if it
   * ended: BullMQ sets `finishedOn` when it does, with `returnvalue` (JSON, `null` for undefined)
   * if it succeeded and none if it failed (an attempt that failed before sets `failedReason`, so
   * that field alone does not tell); `atm` counts the attempts made (a take again after a stall is
   * the same attempt, as the task's `ctx.attempt` says), `name` is there while the
   * job is. The state of each job not ended takes one more command. Meanwhile a handle's events
   * are held; those after the stream's entry read with the hashes apply then, in order (those
   * before are in what was read).
   */
  async #readBack(handles: readonly DurableHandle[]): Promise<void> {
    const reading = handles.filter((handle) => handle.held === undefined);
    if (reading.length === 0) return;
    for (const handle of reading) handle.held = [];
    let at: string | undefined;
    try {
      const client = await this.queue.getBackend().client;
      // Jobs still on their way when the look was made: their absence from Redis says nothing.
      const wasSending = reading.map((handle) => this.#sendingOf(handle.id) !== undefined);
      const transaction = client.multi();
      transaction.runCommand('xrevrange', [this.queue.keys.events, '+', '-', 'COUNT', 1]);
      for (const { id } of reading) {
        transaction.runCommand('hmget', [this.queue.toKey(id), 'finishedOn', 'returnvalue', 'failedReason', 'atm', 'name', 'progress', 'defa', 'stc', 'ats']);
        // Whether a worker holds it at that entry: a start without an outcome that is not is one to be taken again.
        transaction.runCommand('lpos', [this.queue.keys.active, id]);
      }
      const [last, ...replies] = (await transaction.exec()) ?? [];
      if (last === undefined || last[0] !== null) throw last?.[0] ?? new Error('the transaction was discarded');
      at = (last[1] as [string, unknown][])[0]?.[0] ?? '0-0';
      const going: { handle: DurableHandle; made: number; active: boolean; progress: unknown }[] = [];
      const gone: DurableHandle[] = [];
      reading.forEach((handle, i) => {
        const [error, fields] = replies[2 * i] ?? [];
        const active = replies[2 * i + 1]?.[1] !== null && replies[2 * i + 1]?.[0] === null;
        if (error !== null || !Array.isArray(fields) || this.#live.get(handle.id) !== handle) return;
        const [finishedOn, returnvalue, failedReason, atm, name, progress, deferred, stalls, ats] = fields as (string | null)[];
        // To be failed for a job it waited for (BullMQ's deferred failure): skipped, whatever it reads meanwhile.
        if (skipDeferred(deferred)) handle.dependent = handle.doomed = true;
        if (Number(stalls ?? 0) > 0) handle.stalled = true;
        const made = Number(atm ?? 0);
        handle.retake = retakeNext(made, Number(ats ?? 0), active);
        const reported = progress === null || progress === undefined ? undefined : (JSON.parse(progress) as unknown);
        if (finishedOn !== null && finishedOn !== undefined) {
          handle.caughtUp(undefined, made, reported);
          if (returnvalue !== null && returnvalue !== undefined) this.#end(handle.id, 'succeeded', { ok: true, value: JSON.parse(returnvalue) as unknown });
          else this.#failed(handle.id, failedReason ?? '');
        } else if (name === null || name === undefined) {
          if (!wasSending[i]) gone.push(handle);
        } else {
          going.push({ handle, made, active, progress: reported });
        }
      });
      if (gone.length > 0) await this.#endGone(gone, client);
      const states = await Promise.all(going.map(({ handle }) => this.queue.getJobState(handle.id).catch(() => 'unknown')));
      // A dependent's job read waiting for its children, then moved on (its state read after): to run, or
      // only to be failed, its skip decided meanwhile? One more read tells.
      const doomed = await Promise.all(
        going.map(async ({ handle }, i) =>
          handle.dependent && !handle.doomed && movedOnStates.has(states[i] ?? 'unknown') ? this.#skipDecided(handle.id).then(({ doomed }) => doomed, () => false) : false,
        ),
      );
      going.forEach(({ handle, made, active, progress }, i) => {
        if (doomed[i]) handle.doomed = true;
        // A running attempt, at the stream's entry read, is counted (the task's ctx.attempt); a take
        // that made none (put back, stalled) is not, whatever its events said before.
        handle.caughtUp(waitingOrRunning(states[i] ?? 'unknown', made), active ? made + 1 : made, progress, active);
      });
    } finally {
      // Then the events held meanwhile that came after what was read (or all of them, if
      // nothing was); those of the entries up to it are dropped when the reader reaches them.
      for (const handle of reading) {
        const held = handle.held ?? [];
        handle.held = undefined;
        this.#release(handle, held, at);
        if (at !== undefined && compareStreamIds(at, this.#position) > 0) handle.since = at;
      }
    }
  }

  /**
   * Ends the handle of a job that failed: `skipped` when it failed because a job it waited for
   * did (BullMQ fails a parent so: `child <key> failed`), once that job is read; `failed` otherwise.
   */
  /**
   * A `failed` event: for a job BullMQ failed as stalled (its worker died, again and again), the
   * job's data is read first, one HGET, as `backend.job(id)` reads it: a cancellation may have
   * marked it while no worker could be told ({@link JobData.cancelled}), and it then ends `cancelled`.
   */
  #failedFromEvent(id: string, failedReason: string): void {
    if (failedReason !== stalledReason) return this.#failed(id, failedReason);
    this.queue
      .getBackend()
      .client.then((client) => client.runCommand('hget', [this.queue.toKey(id), 'data']))
      .then(
        (data) => (JSON.parse(typeof data === 'string' ? data : '{}') as Partial<JobData>).cancelled,
        () => undefined,
      )
      .then((cancelledMark) => this.#failed(id, failedReason, cancelledMark))
      .catch((error: unknown) => this.#logger.error({ taskId: id, err: error }, `the handle of durable job ${id} could not be settled from its job's last event`));
  }

  #failed(id: string, failedReason: string, cancelledMark?: string): void {
    const handle = this.#live.get(id);
    if (handle === undefined) return;
    // Its name not read yet (a handle being made by id): its errors wait for it.
    const unnamed = this.#unnamed.get(id);
    if (unnamed !== undefined) return void unnamed.push(() => this.#failed(id, failedReason, cancelledMark));
    // Stopped by a cancellation (this process's, or another's: then with what Redis recorded of
    // it), or failed after one marked it (BullMQ failing it as stalled, its worker dead); not one
    // failed for a job it waited for, which reads skipped whatever marked it (as job(id) reads it).
    if (failedReason.startsWith(cancelledPrefix) || (cancelledMark !== undefined && childFailed(failedReason) === undefined)) {
      const reason = cancelledMark ?? failedReason.slice(cancelledPrefix.length);
      this.#end(id, 'cancelled', { ok: false, error: handle.cancelling ?? cancelledError(handle.name, id, reason) });
      return;
    }
    if (childFailed(failedReason) === undefined) {
      this.#end(id, 'failed', { ok: false, error: new DurableTaskError('ERR_DURABLE_FAILED', id, failedReason) });
      return;
    }
    void this.#skipped(id, handle.name, failedReason)
      .catch(() => undefined)
      .then((skipped) => {
        if (skipped !== undefined) {
          handle.firstFailure = skipped.first;
          this.#end(id, 'skipped', { ok: false, error: skipped.error });
        }
        else this.#end(id, 'failed', { ok: false, error: new DurableTaskError('ERR_DURABLE_FAILED', id, failedReason) });
      });
  }

  /**
   * Why a job was skipped, when it failed because a job it waited for did: that job's failure
   * (or, when it is one of ours, what it says of the job waited for), read from Redis. A job
   * waited for that was skipped in turn reads `skipped`, and the error that began the chain of
   * skips is the cause, as in process (causes do not nest): the chain is followed back to it, the
   * links this process read lately remembered.
   */
  async #skipped(id: string, name: string, failedReason: string, depth = 0): Promise<Skipped | undefined> {
    const remembered = this.#skips.get(id);
    if (remembered !== undefined) return remembered;
    const key = childFailed(failedReason);
    if (key === undefined) return undefined;
    let childId = key.slice(key.lastIndexOf(':') + 1);
    let child = await Job.fromId(this.queue, childId).catch(() => undefined);
    // A guard failed by BullMQ itself (as stalled, its worker dead) says nothing: the job it
    // checks that failed, or is gone, is read instead (a guard is never named as the job waited for).
    const guard = child?.name === afterJob ? (child.data as AfterData) : undefined;
    if (guard?.kind === 'guard' && guard.failed === undefined) {
      const prerequisite = await this.#failedPrerequisite(guard.after).catch(() => undefined);
      if (prerequisite === undefined) return undefined;
      ({ id: childId, job: child } = prerequisite);
    }
    // The job that failed the dependent, or the job its guard says failed: followed back when it was itself skipped.
    const said = child?.name === afterJob ? failureOf(child) : undefined;
    const link =
      child === undefined || depth >= maxSkipChain ? undefined
      : said === undefined ? { id: childId, name: child.name, failedReason: child.failedReason ?? '' }
      : said.status === 'failed' && said.reason !== undefined ? { id: said.id, name: said.name, failedReason: said.reason }
      : undefined;
    const before = link === undefined ? undefined : await this.#skipped(link.id, link.name, link.failedReason, depth + 1);
    let failed: FailedPrerequisite;
    let first: FailedPrerequisite;
    let cause: unknown;
    if (link !== undefined && before !== undefined) {
      failed = { id: link.id, name: link.name, status: 'skipped', reason: before.error.message };
      first = before.first;
      cause = before.error.cause;
    } else {
      failed = child === undefined ? await this.#gone(childId) : failureOf(child);
      // After a job skipped at its add() (its guard says so), the job that began the chain, as its guard carries it.
      first = failed.first ?? failed;
      // Its error as its own handle reads it: cancelled (with the reason given), or failed.
      cause =
        first.status === 'cancelled'
          ? cancelledError(first.name, first.id, first.reason)
          : new DurableTaskError('ERR_DURABLE_FAILED', first.id, first.reason ?? `durable task "${first.name}" (#${first.id}) ${first.status}`);
    }
    const error = new TaskSkippedError(name, id, failed, cause);
    const skipped = { error, failedReason: failed.reason === undefined ? error.message : `${error.message}: ${failed.reason}`, first };
    if (this.#skips.size >= maxSkipsRemembered) this.#skips.delete(this.#skips.keys().next().value!);
    this.#skips.set(id, skipped);
    return skipped;
  }

  /**
   * Of the jobs a guard checks, the first that failed or is no longer in Redis (`job` undefined),
   * as the guard would have said, had it run to its end.
   */
  async #failedPrerequisite(after: readonly { id: string }[]): Promise<{ id: string; job: Job | undefined } | undefined> {
    for (const { id } of after) {
      const job = await Job.fromId(this.queue, id);
      if (job === undefined || (job.name !== afterJob && (await job.getState()) === 'failed')) return { id, job };
    }
    return undefined;
  }

  /**
   * A job waited for that is no longer in Redis: `cancelled`, named and with its reason, when the
   * cancellation record has it (a job cancelled as it waited is removed); else `failed`, saying so.
   */
  async #gone(id: string): Promise<FailedPrerequisite> {
    const recorded = (await this.queue.getBackend().client.then((client) => this.#recordedCancellations(client)).catch(() => undefined))?.get(id);
    if (recorded !== undefined) return { id, name: recorded.name ?? this.#live.get(id)?.name ?? unnamedTask, status: 'cancelled', reason: recorded.reason };
    return { id, name: this.#live.get(id)?.name ?? unnamedTask, status: 'failed', reason: `its job ${this.queue.toKey(id)} is no longer in Redis` };
  }

  /**
   * Ends a handle from its job's last event, once it counts its job's attempts: a handle that saw
   * none start had its `active` events trimmed unread (the stream is read in order), so it reads
   * the attempts its job made (`atm`) first, one round trip.
   */
  #counted(id: string, end: () => void): void {
    const handle = this.#live.get(id);
    if (handle === undefined || handle.attempt > 0) {
      end();
      return;
    }
    this.queue
      .getBackend()
      .client.then((client) => client.runCommand('hget', [this.queue.toKey(id), 'atm']))
      .then(
        (started) => handle.startedAtLeast(Number(started ?? 0)),
        () => undefined,
      )
      .then(end)
      .catch((error: unknown) => this.#logger.error({ task: handle.name, taskId: id, err: error }, `the handle of durable task "${handle.name}" (#${id}) could not be settled from its job's last event`));
  }

  /**
   * Ends the handles whose jobs are no longer in Redis: `cancelled` when the cancellation record
   * has a request for the job (another process cancelled it, and removed it if it waited: every
   * cancellation is recorded, for 10 minutes), else failed with `ERR_DURABLE_GONE`, its outcome
   * unknown here. The record is read once for them all.
   */
  async #endGone(handles: readonly DurableHandle[], client: QueueClient): Promise<void> {
    // Unread (Redis went away): the outcome stays unknown.
    const requested = await this.#recordedCancellations(client).catch(() => new Map<string, RecordedCancellation>());
    // A cancelled one counts the attempts its job had made (unread: those it counts already).
    const cancelled = handles.filter(({ id }) => requested.has(id));
    const made = cancelled.length === 0 ? [] : await this.#attemptsOfRemoved(client, cancelled.map(({ id }) => id)).catch(() => []);
    cancelled.forEach((handle, i) => handle.startedAtLeast(made[i] ?? 0));
    for (const handle of handles) {
      if (this.#live.get(handle.id) !== handle) continue;
      const reason = requested.get(handle.id)?.reason;
      if (reason === undefined) this.#end(handle.id, 'failed', { ok: false, error: goneError(handle.name, handle.id) });
      else this.#end(handle.id, 'cancelled', { ok: false, error: cancelledError(handle.name, handle.id, reason) });
    }
  }

  /** Where the removal of a cancelled job that made attempts leaves their number ({@link removeIfWaitingScript}). */
  #attemptsRecordKey(id: string): string {
    return `${cancelRecordKey(this.queue.name, this.#prefix)}:${id}:atm`;
  }

  /**
   * The attempts made by cancelled jobs that were removed as they waited for a retry, by job id
   * (none for the others): one MGET.
   */
  async #attemptsOfRemoved(client: QueueClient, ids: readonly string[]): Promise<number[]> {
    const made = (await client.runCommand('mget', ids.map((id) => this.#attemptsRecordKey(id)))) as (string | null)[];
    return made.map((n) => Number(n ?? 0));
  }

  /** The cancellations every process recorded in Redis in the last 10 minutes, by job id. */
  async #recordedCancellations(client: QueueClient): Promise<Map<string, RecordedCancellation>> {
    const requested = new Map<string, RecordedCancellation>();
    const record = cancelRecordKey(this.queue.name, this.#prefix);
    const recorded = (await client.runCommand('zrangebyscore', [record, Date.now() - cancelRecordMs, '+inf'])) as string[];
    for (const message of recorded) {
      try {
        const { id, reason, name } = JSON.parse(message) as { id?: unknown; reason?: unknown; name?: unknown };
        // A record written by an older version has no name. The first request for a job is the one
        // that took effect (read in the order they were sent; only it is recorded, but an older version
        // recorded later ones too): a later one found it cancelled already.
        if (typeof id === 'string' && typeof reason === 'string' && !requested.has(id)) requested.set(id, { reason, name: typeof name === 'string' ? name : undefined });
      } catch {
        // Not ours.
      }
    }
    return requested;
  }

  #end(id: string, status: TaskStatus, outcome: Outcome): void {
    const handle = this.#live.get(id);
    if (handle === undefined) return;
    this.#unfollow(id);
    handle.settle(status, outcome);
  }

  /**
   * Cancels a job wherever it is: removed if it still waits (or is delayed), never sent if it is
   * still in this process, and every worker is asked to stop it if one is running it. Returns
   * whether its handle ends `cancelled` at once: when this process knows that the job has not
   * ended (it is on its way to Redis, its delay has not run out, or its handle is followed and up
   * to date; a 50 ms margin on the delay covers the clocks of Redis and this process). Otherwise the
   * handle is followed and ended by what Redis says: `cancelled` once the job is removed or
   * stopped, and as it ended if it had ended first. A dependent's job in Redis is never known not
   * to have ended: BullMQ decides its skip there (a job it waits for failed) before any event says so;
   * nor is a job that stalled (its worker lost): BullMQ decides there whether it fails for that.
   */
  #cancel(handle: DurableHandle, error: TaskCancelledError): boolean {
    this.#joinClose();
    const { id, name } = handle;
    const known =
      this.#sendingOf(id) !== undefined ||
      (!handle.dependent && !handle.stalled && (Date.now() + 50 < handle.notBefore || (this.#live.get(id) === handle && handle.held === undefined && !this.#toReadBack.has(handle))));
    if (known) this.#unfollow(id);
    else this.#keep(handle);
    // What other processes read as the cause: the reason given to cancel(), as text.
    const reason = cancelText(error);
    // Recorded before the job is removed: a process that sees it gone reads why.
    const told = this.#tellWorkers(id, name, reason);
    const removal = this.#remove(handle, reason, told).catch((failure: unknown) => {
      this.#logger.error({ task: name, taskId: id, err: failure }, `durable task "${name}" was cancelled, but its job could not be removed from Redis; it may still run`);
    });
    this.#removals.set(removal, { id, name });
    void removal.then(() => {
      this.#removals.delete(removal);
      // Not removed (running, ended, or Redis could not say): the handle follows the job to its end.
      if (!known && this.#live.get(id) === handle) this.#readBackLater([handle]);
    });
    return known;
  }

  /**
   * Asks every worker to stop the job if it runs it: the request is published on the workers'
   * channel and recorded in Redis in one transaction ({@link cancelRecordKey}: a worker that was
   * not listening at that instant reads it once it listens, and remembers it a while in case it
   * takes the job just after). As a removal is ({@link #remove}), a request whose connection broke
   * under it is sent again once the connection is back, until Redis has it or the backend is
   * closed; `close()` lets the requests on their way be sent first, within its bound, and says at
   * `error` which could not be. One that Redis refused is logged once, whatever the number of tries.
   */
  #tellWorkers(id: string, name: string, reason: string): Promise<void> {
    // Closed: no worker is told, as no job of this backend is followed any more (and a publisher
    // made now would never be closed).
    if (this.queue.closing !== undefined) return Promise.resolve();
    let telling = this.#telling.get(id);
    if (telling === undefined) {
      telling = { name, pending: 0, sent: false, error: undefined, reported: false };
      this.#telling.set(id, telling);
    }
    telling.pending++;
    const told = telling;
    const settled: Promise<void> = this.#sendCancellation(id, name, reason)
      .then(
        () => void (told.sent = true),
        (error: unknown) => void (told.error ??= error),
      )
      .finally(() => {
        this.#tells.delete(settled);
        if (--told.pending > 0) return;
        this.#telling.delete(id);
        if (told.sent || told.reported) return;
        this.#logger.error(
          { task: name, taskId: id, err: told.error },
          `the cancellation of durable task "${name}" (#${id}) could not be sent to the workers (${messageOf(told.error)}); a worker running its job is not told to stop it: it may still run`,
        );
      });
    this.#tells.add(settled);
    return settled;
  }

  /**
   * Publishes and records one request to stop a job, again each time the publisher's connection
   * broke under it (Redis may or may not have it: a second copy only tells the workers twice),
   * once it is back. Rejects when Redis refused it, or when the backend is closed before it could
   * be sent.
   */
  async #sendCancellation(id: string, name: string, reason: string): Promise<void> {
    if (this.#publisher === undefined) {
      this.#publisher = inOwnContext(() => redisFor(this.#connection));
      this.#publisher.on('error', () => undefined);
    }
    const publisher = this.#publisher;
    const message = JSON.stringify({ id, reason, name });
    const record = cancelRecordKey(this.queue.name, this.#prefix);
    const channel = cancelChannel(this.queue.name, this.#prefix);
    for (;;) {
      const now = Date.now();
      try {
        await publisher.eval(recordCancellationScript, 2, record, `${record}:${id}`, now, message, cancelRecordMs, cancelRecordMax, channel);
        return;
      } catch (error) {
        // Refused by Redis (it answered), or failed otherwise on a connection that is up: the answer.
        if (refusedByRedis(error)) throw error;
        if ((error as Error | undefined)?.name !== 'MaxRetriesPerRequestError' && publisher.status === 'ready') throw error;
        if (!(await this.#publisherBack(publisher))) throw error;
      }
    }
  }

  /**
   * Resolves true once the publisher's connection is ready again (at once when it is), false when
   * the backend is closed first (or the publisher ended). One listener, however many requests wait.
   */
  async #publisherBack(publisher: Redis): Promise<boolean> {
    const status = (): string => publisher.status;
    if (status() === 'ready') return true;
    if (status() === 'end') return false;
    this.#publisherReady ??= new Promise<void>((resolve) => {
      publisher.once('ready', () => {
        this.#publisherReady = undefined;
        resolve();
      });
    });
    // (close() tells the waiters once its wait for the requests on their way has ended.)
    await this.#orClosed(this.#publisherReady);
    return status() === 'ready';
  }

  /**
   * Removes a cancelled job that waits. A job that a durable task waits for (its parent) is not
   * just removed: BullMQ would move the parent on once it has no child left, and the task would
   * run. A child that fails at once is added to the parent first, which then ends skipped. (Its
   * children, the jobs it waited for, are tasks of their own: they stay.) A job not handed to
   * BullMQ yet is never sent.
   */
  async #remove(handle: DurableHandle, reason: string, told: Promise<void>): Promise<void> {
    const { id, name } = handle;
    const sending = this.#sendingOf(id);
    if (sending !== undefined && !sending.handed && this.#sending.has(id)) {
      // Its turn to be sent, or the wait for the connection, finds it late: it is skipped.
      this.#forget(id);
      this.#late.set(id, sending);
      return;
    }
    // A job still on its way (handed to BullMQ: one not handed yet is never sent, above) is removed
    // once Redis has it: looked for before, it would be missed. (Or until the backend closes: an
    // add that Redis never answers would hold it for ever.) The burst it came in goes on at its pace.
    if (sending !== undefined) await this.#orClosed(sending.done);
    // Set once its job is removed while a dependent waits for it: that dependent is failed next.
    const removal: Removal = { parent: undefined };
    for (;;) {
      try {
        await this.#removeOnce(handle, reason, told, removal);
        return;
      } catch (error) {
        // Redis went away: the job is looked for again once it is back (else it would run, cancelled).
        const next = await this.#afterFailure(error);
        if (next === 'again') continue;
        if (next === 'closed' && !this.#unremoved.has(id)) {
          this.#logger.error({ task: name, taskId: id, err: error }, `durable task "${name}" was cancelled, but its job could not be removed from Redis before the backend was closed; it may still run`);
        }
        // Taken by a worker meanwhile, or refused: told again, a worker stops the job if it has it.
        void this.#tellWorkers(id, name, reason);
        return;
      }
    }
  }

  /**
   * One look at a cancelled job in Redis, and its removal if it waits: a handle that waits for
   * Redis's word ({@link DurableHandle.cancelling}) ends `cancelled` once its job is removed. The
   * removal is checked and made in one script run on Redis ({@link removeIfWaitingScript}): a job
   * whose skip BullMQ decided meanwhile (a job it waited for failed, as the look was answered) is
   * never removed, nor one that began or ended. A dependent that waits for the job is failed next,
   * by a child that fails at once ({@link Removal}).
   */
  async #removeOnce(handle: DurableHandle, reason: string, told: Promise<void>, removal: Removal): Promise<void> {
    const { id, name } = handle;
    if (removal.parent === undefined) {
      // The state first: a job active to be failed for a job it waited for has its deferred failure
      // set before, so the job read after shows it.
      const state = await this.queue.getJobState(id);
      const job = state === 'unknown' ? undefined : await this.queue.getJob(id);
      if (job === undefined) return;
      // Its failure decided in Redis (a job it waited for failed, or it stalled more than BullMQ
      // allows): the cancellation came too late, and the handle ends as every process reads it,
      // skipped or failed.
      if (job.deferredFailure !== undefined) return;
      // Running: its worker is told (again: the first word may have come before it took the job),
      // and fails it (a record then kept, as a cancelled job's). The job is marked too: should its
      // worker be dead (the job locked until its lock expires), the worker that takes it again
      // cancels it before its task starts, however long after.
      if (state === 'active') {
        await this.#markCancelled(job, reason);
        void this.#tellWorkers(id, name, reason);
      }
      if (state === 'active' || state === 'completed' || state === 'failed') return;
      // The cancellation recorded first (or given up on): a process that sees the job removed reads why.
      await told;
      const client = await this.queue.getBackend().client;
      const keys = [this.queue.toKey(id), this.queue.keys.meta, this.queue.keys.events, this.queue.toKey('repeat'), this.#attemptsRecordKey(id)];
      const [outcome, parent] = (await client.runCommand('eval', [removeIfWaitingScript, keys.length, ...keys, this.queue.toKey(''), id, cancelRecordMs])) as [string, string?];
      // Ended, or its skip decided, since the look: it ends as it did. Gone: removed meanwhile.
      if (outcome === 'ended' || outcome === 'gone') return;
      if (outcome === 'scheduler') {
        // The next job of a schedule: BullMQ refuses its removal, saying so.
        await this.queue.remove(id, { removeChildren: false });
        return;
      }
      if (outcome === 'locked') {
        // Taken by a worker meanwhile, which is told now.
        await this.#markCancelled(job, reason);
        void this.#tellWorkers(id, name, reason);
        return;
      }
      if (handle.cancelling !== undefined && this.#live.get(id) === handle) this.#end(id, 'cancelled', { ok: false, error: handle.cancelling });
      if (parent === undefined) return;
      removal.parent = JSON.parse(parent) as { id: string; queueKey: string };
    }
    // Its dependent still counts it among the jobs it waits for (it does not move on): a child that
    // fails at once fails it, skipped after a cancelled job.
    const data: AfterData = { kind: 'cancelled', id, name, reason };
    await this.queue.add(afterJob, data, { ...afterJobOptions, parent: { id: removal.parent.id, queue: removal.parent.queueKey }, failParentOnFailure: true });
  }

  /**
   * Writes the cancellation into a running job's data ({@link JobData.cancelled}): the worker that
   * takes the job (again) reads it with the job, at no cost to other jobs. A job gone meanwhile
   * (ended and removed) needs none.
   */
  async #markCancelled(job: Job, reason: string): Promise<void> {
    const client = await this.queue.getBackend().client;
    await client.runCommand('eval', [markCancelledScript, 1, this.queue.toKey(job.id ?? ''), JSON.stringify(reason)]);
  }

  /**
   * Resolves when `promise` settles (with its value, or `undefined` if it rejects), or when
   * {@link close} has told its waiters, whichever comes first; leaves nothing behind either way.
   */
  #orClosed<T>(promise: Promise<T> | undefined): Promise<T | undefined> {
    if (promise === undefined || this.#closeTold) return Promise.resolve(undefined);
    return new Promise<T | undefined>((resolve) => {
      const wake = (): void => resolve(undefined);
      this.#closeWaiters.add(wake);
      const done = (value: T | undefined): void => {
        this.#closeWaiters.delete(wake);
        resolve(value);
      };
      promise.then(done, () => done(undefined));
    });
  }

  /**
   * At close: reads the jobs of handles whose cancellation was asked while their outcome was
   * unknown here, until each has ended (a running job's worker stops it in a moment) or is gone
   * (removed, as a waiting job is); its handle then ends as the job did. `close()` bounds the wait.
   */
  async #settleCancelled(handles: readonly DurableHandle[]): Promise<void> {
    let waiting = handles;
    while (waiting.length > 0) {
      const reads = await Promise.all(waiting.map(({ id }) => this.#jobAndState(id).catch(() => null)));
      const next: DurableHandle[] = [];
      waiting.forEach((handle, i) => {
        const read = reads[i];
        if (handle.ended || this.#live.get(handle.id) !== handle) return;
        if (read === undefined) this.#end(handle.id, 'cancelled', { ok: false, error: handle.cancelling! });
        else if (read?.state === 'completed') this.#end(handle.id, 'succeeded', { ok: true, value: read.job.returnvalue as unknown });
        else if (read?.state === 'failed') this.#failed(handle.id, read.job.failedReason ?? '', (read.job.data as Partial<JobData> | undefined)?.cancelled);
        else next.push(handle);
      });
      waiting = next;
      if (waiting.length > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Refuses a read once `close()` was called (ioredis's own "Connection is closed." said less). */
  #checkOpen(method: 'job' | 'handle'): void {
    if (this.#closing) throw new Error(`backend.${method}(id): the durable backend was closed (backend.close()); read jobs with an open one`);
  }

  /**
   * A job and its state, read one after the other: a job that ended between the two reads is read
   * again, so that its outcome (`failedReason`, `returnvalue`) is there with its final state. So is
   * one read not yet started and without a deferred failure, whose state then says it moved on,
   * when its skip was decided (or it ended) meanwhile: a dependent's job read waiting for its
   * children, then moved on only to be failed, would otherwise read `running` (one more HMGET for a
   * job read by id before it started).
   */
  async #jobAndState(id: string): Promise<{ job: Job; state: string } | undefined> {
    const job = await this.queue.getJob(id);
    if (job === undefined) return undefined;
    const state = await job.getState();
    if ((state === 'completed' || state === 'failed') && job.finishedOn === undefined) return { job: (await this.queue.getJob(id)) ?? job, state };
    if (job.attemptsStarted === 0 && job.deferredFailure === undefined && movedOnStates.has(state)) {
      const since = await this.#skipDecided(id);
      if (since.doomed || since.ended) return this.#jobAndState(id);
    }
    return { job, state };
  }

  async job(id: string): Promise<DurableJob | undefined> {
    checkId(id, 'job');
    this.#checkOpen('job');
    const read = await this.#jobAndState(id);
    if (read === undefined) return undefined;
    const { job, state } = read;
    const skipped = state === 'failed' ? await this.#skipped(id, job.name, job.failedReason ?? '') : undefined;
    return snapshot(job, state, skipped);
  }

  async handle(id: string, task?: TaskDefinition<never[], unknown>): Promise<TaskHandle | undefined> {
    checkId(id, 'handle');
    if (task === undefined) return this.#handleOf(id);
    if (!isDefinitionByShape(task)) throw new TypeError(`backend.handle(${JSON.stringify(id)}, task): task must be a defineTask() or workerTask() definition, got ${describe(task)}`);
    const handle = await this.#handleOf(id);
    // A job whose task is not known (removed, its cancellation recorded without a name) passes.
    if (handle !== undefined && handle.name !== unnamedTask && handle.name !== task.name) {
      throw new TypeError(`backend.handle(${JSON.stringify(id)}, ${task.name}): its job is one of task "${handle.name}", not of "${task.name}"`);
    }
    return handle;
  }

  async #handleOf(id: string): Promise<TaskHandle | undefined> {
    const live = this.#live.get(id);
    if (live !== undefined) return live;
    this.#checkOpen('handle');
    // Followed before its job is read: an end that comes meanwhile settles it too, once its name is read.
    const handle: DurableHandle = new DurableHandle(this, id, unnamedTask, 'queued', (error) => this.#cancel(handle, error));
    const unnamed: (() => void)[] = [];
    this.#unnamed.set(id, unnamed);
    this.#keep(handle);
    try {
      return await this.#readHandle(handle);
    } finally {
      if (this.#unnamed.get(id) === unnamed) this.#unnamed.delete(id);
      for (const end of unnamed) end();
    }
  }

  /** Reads the job of a handle made by id ({@link handle}), and brings the handle up to date with it. */
  async #readHandle(handle: DurableHandle): Promise<TaskHandle | undefined> {
    const { id } = handle;
    let job: Job | undefined;
    let state: string | undefined;
    // Its job's events read meanwhile are held: applied before what was read, they would be undone
    // by it (an `active` applied, then the job read waiting: `queued` for its whole run).
    handle.held = [];
    try {
      await this.#openReader();
      ({ job, state } = (await this.#jobAndState(id)) ?? {});
    } finally {
      if (job === undefined) {
        handle.held = undefined;
        this.#unfollow(id);
      }
    }
    const held = handle.held ?? [];
    handle.held = undefined;
    if (job === undefined) {
      // Removed by a cancellation (it waited), which every process records for 10 minutes.
      const client = await this.queue.getBackend().client;
      const recorded = (await this.#recordedCancellations(client)).get(id);
      if (recorded === undefined) return this.#scheduleHandle(id);
      handle.name = recorded.name ?? handle.name;
      handle.startedAtLeast((await this.#attemptsOfRemoved(client, [id]))[0] ?? 0);
      handle.settle('cancelled', { ok: false, error: cancelledError(handle.name, id, recorded.reason) });
      return handle;
    }
    // Skipped (a job it waited for failed): read before the handle is given, as job(id) reads it, so
    // that it never reads `failed` first (nor `cancelled`: a cancellation that marked the job as
    // BullMQ failed it for that job came too late).
    const cancelledMark = markOf(job.data, job.failedReason ?? '');
    const skipped = state === 'failed' ? await this.#skipped(id, job.name, job.failedReason ?? '').catch(() => undefined) : undefined;
    handle.doomed = skipDeferred(job.deferredFailure);
    handle.dependent = state === 'waiting-children' || handle.doomed;
    handle.stalled = job.stalledCounter > 0;
    handle.retake = retakeNext(job.attemptsMade, job.attemptsStarted, state === 'active');
    handle.found(snapshot(job, state ?? 'unknown', skipped));
    if (state === 'completed') this.#end(id, 'succeeded', { ok: true, value: job.returnvalue as unknown });
    else if (skipped !== undefined) {
      handle.firstFailure = skipped.first;
      this.#end(id, 'skipped', { ok: false, error: skipped.error });
    } else if (state === 'failed') {
      this.#unnamed.delete(id);
      this.#failed(id, job.failedReason ?? '', cancelledMark);
    } else if (held.length > 0) {
      // It moved while it was read (which may or may not show it): read again with the stream's
      // position, the events after it applied (those held are before it, so in what is read).
      await this.#readBack([handle]).catch(() => this.#readBackLater([handle]));
    }
    return handle;
  }

  /**
   * The handle of a schedule in Redis whose id (its task's name) is `name`, as `add()` of a
   * periodic task gives it (`delayed`, never finishing; `cancel()` removes the schedule), or
   * `undefined` when there is none.
   */
  async #scheduleHandle(name: string): Promise<TaskHandle | undefined> {
    if ((await this.queue.getJobScheduler(name)) === undefined) return undefined;
    return new DurableHandle(this, name, name, 'delayed', (cancelled) => this.#removeSchedule(name, cancelled), true);
  }

  /**
   * A schedule's handle's cancel(): removes the schedule once `after` has settled (its save);
   * a failure is logged. A schedule never ends by itself: its handle ends cancelled at once (true).
   */
  #removeSchedule(name: string, cancelled: TaskCancelledError, after: Promise<unknown> = Promise.resolve()): true {
    after
      .catch(() => undefined)
      .then(() => this.queue.removeJobScheduler(name))
      .catch((error: unknown) => {
        this.#logger.error({ task: name, err: error }, `the schedule of durable task "${name}" could not be removed (${cancelled.message})`);
      });
    return true;
  }

  /**
   * At close, once the connections are closed or about to be dropped: what is still on its way
   * will never be answered (ioredis does not even fail the commands it kept to send again after a
   * break when it is disconnected): a job never handed to BullMQ is not sent, one handed is in doubt.
   */
  #failUnanswered(): void {
    for (const [id, sending] of [...this.#sending, ...this.#overdue]) {
      this.#forget(id);
      if (sending.handed) {
        this.#failEnqueue(sending.handle, new Error('Redis had not answered its add when the backend was closed'), true);
      } else {
        this.#late.set(id, sending);
        this.#failEnqueue(sending.handle, new Error('the durable backend was closed before it could be sent'));
      }
    }
  }

  async close(options: { timeoutMs?: number | undefined } = {}): Promise<void> {
    // Read once, from the options' own copy.
    const timeoutMs = checkCloseOptions('backend.close(options)', options) ?? 5_000;
    const deadline = performance.now() + timeoutMs;
    this.#closing = true;
    // What was added before is sent before the queue closes, and what was cancelled is removed
    // (within the bound: a removal may be waiting for Redis to be back).
    // So are the requests to stop running jobs sent to the workers (a removal that finds its job
    // running sends one more: waited for until none is left).
    this.#flush(true);
    const cancellations = async (): Promise<void> => {
      while (this.#removals.size > 0 || this.#tells.size > 0) await Promise.allSettled([...this.#removals.keys(), ...this.#tells]);
    };
    if (!(await within(cancellations(), timeoutMs))) {
      for (const { id, name } of this.#removals.values()) {
        this.#unremoved.add(id);
        // Both on their way (a job that may be running): one entry says both.
        const what = this.#telling.has(id) ? 'its job could not be removed from Redis, nor the request to stop it sent to the workers,' : 'its job could not be removed from Redis';
        this.#logger.error({ task: name, taskId: id }, `durable task "${name}" was cancelled, but ${what} within ${timeoutMs} ms, before the backend was closed; it may still run`);
      }
      for (const [id, telling] of this.#telling) {
        telling.reported = true;
        if (this.#unremoved.has(id)) continue;
        this.#logger.error(
          { task: telling.name, taskId: id },
          `durable task "${telling.name}" was cancelled, but the request to stop its job could not be sent to the workers within ${timeoutMs} ms, before the backend was closed; it may still run`,
        );
      }
    }
    // Handles whose cancellation was asked before this process knew how their job stood: how it
    // ended (stopped, or as the job had ended first) is read from Redis, within the bound.
    const deciding = [...this.#live.values()].filter((handle) => handle.cancelling !== undefined);
    if (deciding.length > 0) await within(this.#settleCancelled(deciding), Math.max(0, deadline - performance.now()));
    this.#closeTold = true;
    for (const wake of this.#closeWaiters) wake();
    this.#closeWaiters.clear();
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    // The queue's own client is ended here, after the queue (BullMQ leaves a client it was given
    // alone): quit, what was sent answered first, within the bound.
    const ownClient = this.#ownClient;
    const queueClosed = this.queue
      .close()
      .catch(() => undefined)
      .then(() => (ownClient === undefined ? undefined : endClient(ownClient, timeoutMs)));
    const closing = Promise.allSettled([this.#events?.close(), queueClosed, this.#publisher === undefined ? undefined : endClient(this.#publisher), this.#flowProducer?.close()]);
    if (!(await within(closing, Math.max(0, deadline - performance.now())))) {
      // Their QUIT unanswered: dropped, which fails what they still wait for (and ends their close()).
      this.#logger.warn({ timeoutMs }, `the durable backend's connections to Redis did not close within ${timeoutMs} ms (Redis did not answer); they are dropped`);
      // Before they are dropped, which would fail each add with a mere "Connection is closed".
      this.#failUnanswered();
      ownClient?.disconnect();
      this.#publisher?.disconnect();
      // BullMQ's own connections (the event stream's, the flows'): its disconnect() and close()
      // wait for ever on a connection whose set-up never ended, so they are given a moment, not more.
      await within(Promise.allSettled([this.#events?.disconnect(), this.#flowProducer?.disconnect(), closing]), 1_000);
    }
    this.#failUnanswered();
    clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
    for (const handle of this.#live.values()) handle.settle('failed', { ok: false, error: closedError(handle) });
    this.#live.clear();
  }
}

/** The requests to stop one job on their way to the workers ({@link BullMQBackend.#tellWorkers}). */
interface Telling {
  readonly name: string;
  /** Tries not settled yet. */
  pending: number;
  /** Whether one of them reached Redis. */
  sent: boolean;
  /** The first failure, said once all have failed. */
  error: unknown;
  /** Said already (at close()'s bound, at `error`): not said again when the tries fail. */
  reported: boolean;
}

/** A request to stop a job, as every process records it in Redis for 10 minutes. */
interface RecordedCancellation {
  reason: string;
  /** The task's name (undefined in a record an older version wrote). */
  name: string | undefined;
}

/**
 * Records a request to stop a job and publishes it to the workers, in one step on Redis. Only the
 * first request for a job (in the last {@link cancelRecordMs}) is recorded, the one that takes
 * effect, whichever process's clock is ahead: a key per job (`<record>:<id>`, set if absent, kept
 * as long as the record) holds that one's message; a later one is published only (a worker keeps
 * the first reason it hears). KEYS: the record, its key for the job; ARGV: now (ms), the message, how
 * long and how many the record keeps, the workers' channel.
 */
const recordCancellationScript = `
if redis.call("SET", KEYS[2], ARGV[2], "NX", "PX", ARGV[3]) then
  redis.call("ZADD", KEYS[1], ARGV[1], ARGV[2])
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", tonumber(ARGV[1]) - tonumber(ARGV[3]))
  redis.call("ZREMRANGEBYRANK", KEYS[1], 0, -tonumber(ARGV[4]) - 1)
  redis.call("PEXPIRE", KEYS[1], ARGV[3])
end
redis.call("PUBLISH", ARGV[5], ARGV[2])
return 1
`;

/**
 * Marks a job cancelled ({@link JobData.cancelled}) in one step on Redis, unless a cancellation
 * marked it already: the first mark is kept, as the first cancellation is recorded. A job gone
 * (ended and removed) is left alone. KEYS: the job; ARGV: the reason, as JSON. Its data is our
 * JSON object, to which the field is appended (cjson would rewrite the rest: `[]` as `{}`).
 */
const markCancelledScript = `
local data = redis.call("HGET", KEYS[1], "data")
if not data or string.sub(data, -1) ~= "}" or cjson.decode(data)["cancelled"] ~= nil then return 0 end
local sep = ","
if string.match(data, "^%s*{%s*}$") then sep = "" end
redis.call("HSET", KEYS[1], "data", string.sub(data, 1, -2) .. sep .. '"cancelled":' .. ARGV[1] .. "}")
return 1
`;

/** A cancelled job's removal, across its tries: the dependent its job was removed from, still to be failed. */
interface Removal {
  parent: { id: string; queueKey: string } | undefined;
}

/**
 * Removes a job that waits (waiting, prioritized, delayed, or waiting for its children), checked
 * and done in one step on Redis: a job whose skip BullMQ decided (`defa`, its deferred failure),
 * or whose guard carries a failure (its dependent skipped at its add(), or about to be failed by
 * it), that a worker holds (its lock), or that has ended is left as it is. The removal is BullMQ's
 * (`removeJob`, without the job's children), but for a dependent that waits for the job: the job
 * stays among its dependencies, so that it does not move on before a child that fails at once
 * (added next) fails it. Answers `gone`, `locked`, `ended`, `scheduler` (a schedule's next job,
 * which BullMQ refuses to remove), or `removed` and the job's `parent` data when its dependent
 * still waits for it. A job that made attempts (it waits for a retry) leaves their number beside
 * the cancellation record, as long as the record is kept: a handle made after the removal counts them.
 * KEYS: the job, the queue's meta, its event stream, its job schedulers, the key for its attempts
 * made; ARGV: the queue's key prefix, the job's id, how long the record is kept (ms).
 */
const removeIfWaitingScript = `
local rcall = redis.call
local jobKey, prefix, jobId = KEYS[1], ARGV[1], ARGV[2]
if rcall("EXISTS", jobKey) == 0 then return {"gone"} end
if rcall("EXISTS", jobKey .. ":lock") == 1 then return {"locked"} end
if rcall("HEXISTS", jobKey, "defa") == 1 then return {"ended"} end
local guard = rcall("HGET", jobKey .. ".after", "data")
if guard and cjson.decode(guard)["failed"] ~= nil then return {"ended"} end
local rjk = rcall("HGET", jobKey, "rjk")
if rjk then
  local millis = rcall("ZSCORE", KEYS[4], rjk)
  if millis and jobId == "repeat:" .. rjk .. ":" .. millis then return {"scheduler"} end
end
local prev
for _, state in ipairs({"waiting-children", "prioritized", "delayed"}) do
  if rcall("ZREM", prefix .. state, jobId) == 1 then prev = state break end
end
if not prev then
  for _, state in ipairs({"wait", "paused"}) do
    if rcall("LREM", prefix .. state, 1, jobId) == 1 then prev = state break end
  end
end
if not prev then
  if rcall("ZSCORE", prefix .. "completed", jobId) or rcall("ZSCORE", prefix .. "failed", jobId) then return {"ended"} end
  return {"locked"}
end
local deid = rcall("HGET", jobKey, "deid")
if deid and rcall("GET", prefix .. "de:" .. deid) == jobId then rcall("DEL", prefix .. "de:" .. deid, prefix .. "dn:" .. deid) end
local parent = rcall("HGET", jobKey, "parent")
if parent then
  local data = cjson.decode(parent)
  local parentKey = data["queueKey"] .. ":" .. data["id"]
  if not (rcall("ZSCORE", data["queueKey"] .. ":waiting-children", data["id"]) and rcall("SISMEMBER", parentKey .. ":dependencies", jobKey) == 1) then parent = nil end
end
local made = tonumber(rcall("HGET", jobKey, "atm") or "0")
if made > 0 then rcall("SET", KEYS[5], made, "PX", ARGV[3]) end
rcall("DEL", jobKey, jobKey .. ":logs", jobKey .. ":dependencies", jobKey .. ":processed", jobKey .. ":failed", jobKey .. ":unsuccessful")
local maxEvents = rcall("HGET", KEYS[2], "opts.maxLenEvents") or 10000
rcall("XADD", KEYS[3], "MAXLEN", "~", maxEvents, "*", "event", "removed", "jobId", jobId, "prev", prev)
if parent then return {"removed", parent} end
return {"removed"}
`;

/**
 * Whether a job's deferred failure (`defa`) is its skip: BullMQ sets it to fail a dependent whose
 * child failed (`child <key> failed`), and also on a job that stalled more than it allows, which
 * ran: that one reads as it is until it is failed.
 */
function skipDeferred(deferred: string | null | undefined): boolean {
  return deferred !== null && deferred !== undefined && childFailed(deferred) !== undefined;
}

/** The queue's connection, as BullMQ gives it. */
type QueueClient = Awaited<ReturnType<Queue['getBackend']>['client']>;

/**
 * A job on its way to Redis: its handle, when its handle fails if the job has not been handed to
 * BullMQ by then (`performance.now()`: the system clock set back or forward moves no job's bound), the job, the sending's end once it has begun, and whether the job was
 * handed to BullMQ (from then, only Redis's answer settles it: it may be in Redis).
 */
interface Sending {
  readonly handle: DurableHandle;
  /** When it fails unless sent (`performance.now()`); later while a burst ahead of it is answered ({@link BullMQBackend.#sweep}). */
  deadline: number;
  readonly data: JobData;
  readonly options: JobsOptions;
  done: Promise<void> | undefined;
  handed: boolean;
  /** While its sending waits for the jobs it runs after (`after`) to be in Redis. */
  awaitingPrerequisites?: boolean;
  /** Jobs it runs after, to be freed from the dependent that waited for them before ({@link BullMQBackend.#detach}). */
  readonly detach: readonly Detachment[];
  /** Skipped (a job it was to run after had ended otherwise): its guard says so at once. */
  failed?: FailedPrerequisite | undefined;
  /** Jobs it runs after whose cancellation was asked for while their outcome was unknown here: decided before it is sent. */
  readonly undecided: readonly DurableHandle[];
}

/** A job a new dependent waits for, and the id of the dependent, ended since, that waited for it before. */
interface Detachment {
  readonly id: string;
  readonly from: string;
}

/** The jobs a durable task waits for, checked. */
interface Prerequisites {
  readonly after: readonly DurableHandle[];
  readonly detach: readonly Detachment[];
  /** Those whose cancellation was asked for, their outcome not known yet. */
  readonly undecided: readonly DurableHandle[];
}

const noPrerequisites: Prerequisites = { after: [], detach: [], undecided: [] };
const noop = (): void => undefined;

/** The `failedReason` BullMQ gives a job it failed as stalled too often (moveStalledJobsToWait). */

/** This process's time zone (`TZ`, or the system's), if the runtime says. */
/** The longest cancellation reason sent to other processes (it is kept in Redis with the job, and in the record of cancellations). */
const reasonMaxLength = 1_000;

/** What other processes read as the reason of a cancellation: the reason given, as text, or the cancellation's own message when none was given. */
function cancelText(error: TaskCancelledError): string {
  return error.cause === undefined ? error.message : reasonText(error.cause);
}

/**
 * A cancellation as a process that did not ask for it reads it: its reason as recorded (as text),
 * and none when what was recorded is the cancellation's own message (cancel() without a reason:
 * its `cause` is then undefined, as in process and in the handle that cancelled it).
 */
function cancelledError(name: string, id: string, recorded: string | undefined): TaskCancelledError {
  const own = recorded !== undefined && recorded.startsWith('Task "') && recorded.endsWith(`" (#${id}) was cancelled`);
  return new TaskCancelledError(name, id, own ? undefined : recorded);
}

/**
 * A reason given to `cancel()` as other processes read it: a string as it is, an `Error`'s
 * message, anything else as JSON (or its printed form); cut to {@link reasonMaxLength} characters.
 */
function reasonText(reason: unknown): string {
  let text: string;
  if (typeof reason === 'string') text = reason;
  else if (reason instanceof Error) text = reason.message;
  else {
    try {
      text = JSON.stringify(reason) ?? String(reason);
    } catch {
      text = String(reason);
    }
  }
  return text.length <= reasonMaxLength ? text : `${text.slice(0, reasonMaxLength)}… (${text.length - reasonMaxLength} more characters)`;
}

function processZone(): string | undefined {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || undefined;
}

/** What a followed handle fails with when the backend is closed before its job ended. */
function closedError({ name, id, cancelling }: DurableHandle): DurableTaskError {
  const why =
    cancelling === undefined
      ? 'the durable backend of this process was closed before its job ended (the job itself runs as usual)'
      : 'the durable backend of this process was closed before Redis said how its cancellation ended (its workers were asked to stop its job; backend.job(id) elsewhere reads the outcome)';
  return new DurableTaskError('ERR_DURABLE_FAILED', id, `durable task "${name}" (#${id}): ${why}`);
}

/** The states of a job that has left `waiting-children` (or never waited for any) and not ended. */
const movedOnStates: ReadonlySet<string> = new Set(['waiting', 'prioritized', 'delayed', 'active']);

/**
 * The status of a job in one of BullMQ's states before its end (`queue.getJobState()`), after
 * `started` attempts (waiting again after one: `retrying`); undefined for the other states.
 */
/**
 * Whether a job read from Redis is next taken again for the same attempt, which keeps its progress
 * ({@link DurableHandle.retake}): no worker holds it, and a take of it made no attempt (`ats`, the
 * takes, past `atm`, the attempts made: put back, or stalled). After a failed attempt its hash
 * cannot tell whether its last take was such a one or the attempt that failed; it need not: waiting
 * for a retry, its handle has no progress to keep, and the attempt is counted from `atm` either way
 * (one more once taken).
 */
function retakeNext(made: number, takes: number, active: boolean): boolean {
  return !active && takes > made;
}

function waitingOrRunning(state: string, started: number): TaskStatus | undefined {
  switch (state) {
    case 'active':
      return 'running';
    case 'waiting':
    case 'prioritized':
      return started > 0 ? 'retrying' : 'queued';
    case 'delayed':
      return started > 0 ? 'retrying' : 'delayed';
    case 'waiting-children':
      return 'delayed';
    default:
      return undefined;
  }
}

/**
 * What a handle read from Redis fails with when its job is not there: it ended and the queue's
 * retention removed its record, or it was removed; which, and how it ended, nobody can tell.
 */
function goneError(name: string, id: string): DurableTaskError {
  return new DurableTaskError(
    'ERR_DURABLE_GONE',
    id,
    `durable task "${name}" (#${id}): its job is no longer in Redis, so its outcome is unknown here (the queue keeps a completed job ${keepCompleted.age / 3600} h, ` +
      `the last ${keepCompleted.count} of them, and a failed one ${keepFailed.age / 24 / 3600} days; a job can also be removed by hand, or lost with Redis's data: a Redis restarted without persistence, or one that evicts keys); ` +
      'watch a handle (read its status or ask for its result) before its job ends to be told how it ended',
  );
}

/** What a handle whose job was removed fails with. */
function removedError(name: string | undefined, id: string): TaskCancelledError {
  return new TaskCancelledError(name ?? unnamedTask, id, 'its job was removed');
}

/** Orders two stream entry ids (`<ms>-<sequence>`). */
function compareStreamIds(a: string, b: string): number {
  const [aMs = 0, aSeq = 0] = a.split('-').map(Number);
  const [bMs = 0, bSeq = 0] = b.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq;
}

/**
 * Whether no entry of a stream was ever trimmed (every entry added is still there): how a reader
 * that started on an empty stream, and so compares with no entry it read, tells a first entry
 * that is the first ever from a stream trimmed before it read. Redis 7's `entries-added`; false
 * (perhaps trimmed) without it.
 */
async function neverTrimmed(client: { runCommand(name: string, args: unknown[]): Promise<unknown> }, stream: unknown): Promise<boolean> {
  const info = (await client.runCommand('xinfo', ['STREAM', stream])) as unknown[];
  const field = (name: string): unknown => info[info.indexOf(name) + 1];
  return info.includes('entries-added') && Number(field('entries-added')) === Number(field('length'));
}

function dueAt(timing: NonNullable<TaskRequest['timing']>): number {
  if (timing.runAt !== undefined) return timing.runAt;
  return Date.now() + (timing.delayMs ?? 0);
}

/** How far back a chain of skips is followed to the error that began it (one read of Redis a link). */
const maxSkipChain = 1_000;
/** How many jobs' skips a producer remembers. */
const maxSkipsRemembered = 1_000;

/** Why a job was skipped: the handle's error, the job's reason as `backend.job(id)` reads it, and the job whose failure began the chain of skips. */
interface Skipped {
  readonly error: TaskSkippedError;
  readonly failedReason: string;
  readonly first: FailedPrerequisite;
}

function snapshot(job: Job, state: string, skipped?: Skipped): DurableJob {
  const ended: Record<string, TaskStatus> = { completed: 'succeeded', failed: 'failed' };
  const progress = job.progress as { fraction?: unknown; message?: unknown } | number;
  // Failed after a cancellation marked it (BullMQ failing it as stalled, its worker dead): cancelled too.
  const cancelled = state === 'failed' && ((job.failedReason ?? '').startsWith(cancelledPrefix) || markOf(job.data, job.failedReason ?? '') !== undefined);
  // To be failed for a job it waited for (BullMQ's deferred failure; made active only for that): it waits for its skip.
  const doomed = skipDeferred(job.deferredFailure) && ended[state] === undefined;
  const status = skipped !== undefined ? 'skipped' : cancelled ? 'cancelled' : doomed ? 'delayed' : (ended[state] ?? waitingOrRunning(state, job.attemptsMade) ?? 'queued');
  return Object.freeze({
    id: job.id ?? '',
    name: job.name,
    status,
    // The attempts made, and while it runs the one it makes (the task's ctx.attempt: a stalled job
    // taken again makes the same attempt).
    attempt: skipped !== undefined || doomed ? 0 : state === 'active' ? job.attemptsMade + 1 : job.attemptsMade,
    // Waiting for a retry: the failed attempt's progress, still on the job, is cleared, as in process.
    progress:
      status !== 'retrying' && typeof progress === 'object' && typeof progress.fraction === 'number'
        ? Object.freeze({ fraction: progress.fraction, message: typeof progress.message === 'string' ? progress.message : undefined })
        : undefined,
    result: job.returnvalue as unknown,
    failedReason: skipped !== undefined ? skipped.failedReason : job.failedReason || undefined,
  });
}
