/**
 * The worker side of the durable backend (src/adapters/bullmq.ts is its entry point):
 * `startWorkers()` runs the jobs of a set of definitions in any process, each in a child scope of
 * a container there, as a local run of the workers' application; producers' cancellations reach
 * the running job over a Redis channel.
 */
import { Job, UnrecoverableError, WaitingError, Worker, type WorkerOptions } from 'bullmq';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import {
  Background,
  BackgroundDisposedError,
  BackgroundOptions,
  disposeScope,
  TaskContext,
  type BackgroundLogger,
  type TaskDefinition,
  type TaskHandle,
} from '../index.js';
import { describe, isOptionsObject, ownOptions, messageOf } from '../model/checks.js';
import { expiry } from '../model/timing.js';
import { safeLogger } from './request-scope.js';
import {
  applicationLoggerOf,
  afterJob,
  ownJobPrefix,
  backoffFor,
  cancelChannel,
  cancelledPrefix,
  closeWith,
  cancelRecordKey,
  cancelRecordMs,
  checkCloseOptions,
  checkConnection,
  jsonProblem,
  cronRepeatStrategy,
  defaultConnection,
  defaultQueueName,
  endClient,
  endedWith,
  isClient,
  isDefinitionByShape,
  jobEnded,
  jobContext,
  jobRun,
  notInQueue,
  putBackEvent,
  redisFor,
  within,
  type AfterData,
  type JobLink,
  type JobRunAdder,
  type BullMQConnection,
  type FailedPrerequisite,
  type JobData,
} from './bullmq-jobs.js';

/**
 * How long a worker remembers the cancellation of a job it was not running, beyond the time its
 * job may take to be taken again after its worker died (the lock's `lockDuration`, then up to two
 * stalled-job checks, `stalledInterval` apart), in ms: a job's fetch and the cancellation travel
 * on two connections, and a job whose worker died is taken again once its lock has expired.
 */
const cancelMarginMs = 10_000;

/** How long the workers' connections may take to close once no job is active, in ms, before they are dropped. */
const connectionsCloseMs = 1_000;

/**
 * A job this process is running: what its local run is an attempt of (its `JobLink`:
 * the job's id, its attempt number and attempts in all, its progress saved on the job, and the
 * job's own child scope when its task has dependencies to resolve there), the local run, whether
 * the job's producer cancelled it, and whether the task's `retryIf` refused it another attempt.
 * One object a job.
 */
class RunningJob implements JobLink {
  readonly id: string | undefined;
  readonly attempt: number;
  readonly attempts: number;
  readonly scope: DependencyContainer | undefined;
  local: TaskHandle | undefined = undefined;
  /** The first reason it was cancelled with, once it was: what its `failedReason` records after `cancelled: `. */
  cancelReason: string | undefined;
  /** Set when the task's `retryIf` said no while the job had attempts left: it then fails for good. */
  retryRefused = false;
  #job: Job | undefined;
  readonly #logger: BackgroundLogger;

  constructor(job: Job, logger: BackgroundLogger, scope: DependencyContainer | undefined) {
    this.id = job.id;
    this.attempt = job.attemptsMade + 1;
    // BullMQ's default is 0: one attempt.
    this.attempts = Math.max(1, job.opts.attempts ?? 1);
    this.scope = scope;
    this.#job = job;
    this.#logger = logger;
  }

  stopRetrying(): void {
    this.retryRefused = true;
  }

  progress(fraction: number, message: string | undefined): void {
    const job = this.#job;
    job?.updateProgress({ fraction, message }).catch((error: unknown) => {
      this.#logger.warn({ err: error, taskId: job.id }, `the progress of durable task "${job.name}" could not be saved`);
    });
  }

  cancel(reason: string): void {
    this.cancelReason ??= reason;
    this.local?.cancel(reason);
  }

  /**
   * Stops the local run of an attempt whose lock was lost and whose job this process took
   * again (its outcome would be discarded), without reading as the job's cancellation.
   */
  supersede(): void {
    this.local?.cancel('its lock was lost, and its job was taken again');
  }

  /**
   * Lets go of the job and the local run once the job is over. Not for correctness (nothing
   * reachable keeps this object then), for the GC: measured, while these stayed set most of
   * each job's graph (the BullMQ job, its data, the run) reached the old generation through
   * scavenges, in most processes: the processor alone took ≈ 6–8 µs a job against ≈ 3 µs, with a
   * mark-compact every ≈ 250 ms (bench/analysis.mjs, durable).
   */
  end(): void {
    this.#job = undefined;
    this.local = undefined;
  }
}

/** Options of {@link startWorkers}. */
export interface StartWorkersOptions extends BullMQConnection {
  /** The definitions this process runs; a job of another name fails at once, without retries, saying so (`ERR_DURABLE_FAILED` for its producer; logged at `error`). */
  tasks: readonly TaskDefinition<never[]>[];
  /**
   * The container each job's scope is a child of: the job's dependencies are resolved there.
   * @default the global container
   */
  container?: DependencyContainer | undefined;
  /** Jobs run at once in this process. @default 10 */
  concurrency?: number | undefined;
  /**
   * More of BullMQ's worker options, passed as they are: how long a job's lock lasts and how
   * often stalled jobs are looked for (`lockDuration`, `stalledInterval`, `maxStalledCount`:
   * how soon, and how many times, a job whose worker died is run again elsewhere), `limiter`,
   * `name`… `connection`, `concurrency` and `prefix` are the options above; the retries'
   * backoff (`settings.backoffStrategy`) is always the task's own, and a cron schedule's next
   * time (`settings.repeatStrategy`) the library's (as in process, across daylight-saving changes).
   * @default BullMQ's defaults (`lockDuration` 30 s, `stalledInterval` 30 s, `maxStalledCount` 1)
   *
   * ```ts
   * startWorkers({ tasks, connection, workerOptions: { lockDuration: 10_000, stalledInterval: 5_000 } });
   * ```
   */
  workerOptions?: Omit<WorkerOptions, 'connection' | 'concurrency' | 'prefix'> | undefined;
}

/** The keys of {@link StartWorkersOptions} besides those of {@link BullMQConnection}. */
const startWorkersKeys = ['tasks', 'container', 'concurrency', 'workerOptions'] as const satisfies readonly (keyof StartWorkersOptions)[];

/** Workers started by {@link startWorkers}. */
export interface DurableWorkers {
  /**
   * The BullMQ worker that takes the jobs, for its events and metrics. Close the workers with
   * `close()` below rather than its own: that one also closes the connection that listens for
   * cancellations, and drops connections to a Redis that stopped answering.
   */
  readonly worker: Worker;
  /**
   * Stops taking jobs and waits for the active ones to end (BullMQ's `worker.close()`); their
   * scopes drain and are disposed. With `timeoutMs`, waits at most that long: jobs still active
   * then are left to run again on another worker once their locks expire (as after a crash),
   * logged with their ids, and their tasks here are not stopped (end the process). Once no job
   * is active, the connections close within a second, and are dropped after it (logged at
   * `warn`: a Redis that stopped answering never answers their QUIT). Once they are closing
   * (a first call, or their application's close), returns that close.
   * @throws RangeError (the promise rejects) when `timeoutMs` is a number but not an integer from
   * 0 to 2147483647; TypeError when it is not a number, or for another option.
   */
  close(options?: { timeoutMs?: number | undefined }): Promise<void>;
}

/**
 * Runs the durable jobs of `tasks` in this process: each job in a child scope of `container`
 * (its dependencies resolved there; the scope drained and disposed after the job), with a
 * `TaskContext` whose `progress()` becomes the job's progress; a `workerTask()` runs on this
 * process's worker-thread pool. Retries and their backoff are the job's (`retries`, `backoff`
 * of the task; its `retryIf` saying no fails the job for good); `timeoutMs` bounds each attempt,
 * and the attempt's run takes the job's id (`ctx.id`, its logs and errors). A value the task
 * returns that JSON cannot carry as it is fails the job without retries, logged at `error`.
 *
 * Once they have taken a job, the workers close with the application of `container` (`shutdown()`,
 * `gracefulShutdown()`): they stop taking jobs as its close begins, and its close waits for theirs
 * (up to a second past its deadline); a job taken as it began, and a job whose run the close
 * abandoned at its deadline, go back to the queue without counting an attempt, for another worker
 * to run (the latter counted in the close's report as `requeued`: not lost, so `gracefulShutdown()`
 * exits 0 for them). `close()` afterwards returns the same close.
 *
 * ```ts
 * const workers = startWorkers({ tasks: [sendInvoice, renderReport], connection, concurrency: 20 });
 * process.once('SIGTERM', () => workers.close({ timeoutMs: 20_000 }));
 * ```
 *
 * @throws TypeError when an option is not a known one (`workerOptions` and `connection` are
 * BullMQ's and ioredis's, passed as they are) or has the wrong type (`queueName` with a `:`
 * among them); RangeError when `concurrency` is a number but not a positive integer.
 */
export function startWorkers(options: StartWorkersOptions): DurableWorkers {
  options = checkConnection('startWorkers', options, startWorkersKeys);
  const { tasks, concurrency, container } = options;
  // BullMQ's own refusal comes from its Worker, once a duplicate of the client is made (left reconnecting), as a plain Error.
  const given = options.connection;
  const retries = given !== undefined && isClient(given) ? (given as { options?: { maxRetriesPerRequest?: unknown } }).options?.maxRetriesPerRequest : null;
  if (retries !== null) {
    throw new TypeError(
      `startWorkers(options): options.connection is an ioredis client whose maxRetriesPerRequest is ${describe(retries)}; BullMQ's workers need null (new Redis({ maxRetriesPerRequest: null, … })), or give the client's options instead of the client`,
    );
  }
  if (!Array.isArray(tasks) || tasks.length === 0) {
    throw new TypeError(`startWorkers(options): options.tasks must be a non-empty array of defineTask() or workerTask() definitions, got ${describe(tasks)}`);
  }
  const names = new Set<string>();
  // entries(), not forEach(): it visits the holes of a sparse array too.
  for (const [i, task] of (tasks as readonly unknown[]).entries()) {
    if (!isDefinitionByShape(task)) {
      throw new TypeError(`startWorkers(options): options.tasks[${i}] must be a defineTask() or workerTask() definition, got ${describe(task)}`);
    }
    const { name } = task;
    // A definition made by defineTask() cannot have such a name; one made by shape can.
    if (name.startsWith(ownJobPrefix)) {
      throw new TypeError(`startWorkers(options): options.tasks[${i}] is named ${JSON.stringify(name)}; a name beginning with "${ownJobPrefix}" is reserved for the library's own jobs`);
    }
    if (names.has(name)) throw new TypeError(`startWorkers(options): options.tasks has two definitions named "${name}"; a job finds its task by name`);
    names.add(name);
  }
  if (concurrency !== undefined && !(Number.isSafeInteger(concurrency) && concurrency >= 1)) {
    const ErrorType = typeof concurrency === 'number' ? RangeError : TypeError;
    throw new ErrorType(`startWorkers(options): options.concurrency must be a positive integer, got ${describe(concurrency)}`);
  }
  if (container !== undefined && typeof (container as Partial<DependencyContainer> | null)?.createChildContainer !== 'function') {
    throw new TypeError(`startWorkers(options): options.container must be a tsyringe container, got ${describe(container)}`);
  }
  if (options.workerOptions !== undefined && !isOptionsObject(options.workerOptions)) {
    throw new TypeError(`startWorkers(options): options.workerOptions must be an object (BullMQ's WorkerOptions), got ${describe(options.workerOptions)}`);
  }
  // BullMQ's own options, read once, from their own copy (its settings too), as every options object is.
  const workerOptions: Partial<WorkerOptions> =
    options.workerOptions === undefined ? {} : ownOptions(options.workerOptions, 'startWorkers(options): options.workerOptions');
  if (workerOptions.settings !== undefined && isOptionsObject(workerOptions.settings)) {
    workerOptions.settings = ownOptions(workerOptions.settings, 'startWorkers(options): options.workerOptions.settings');
  }
  // What the library sets itself, the same for the queue's producers and the cancellations: not taken here.
  const own = (['connection', 'concurrency', 'prefix'] as const).find((key) => workerOptions[key] !== undefined);
  if (own !== undefined) throw new TypeError(`startWorkers(options): options.workerOptions.${own} is not taken there; give it as options.${own}`);
  const scopeRoot = container ?? globalContainer;
  // Safe to call: a logger that throws must not fail a job (retried, its work done again).
  // Without a logger of their own, the application's, read at each entry.
  const logger = safeLogger(options.logger ?? applicationLoggerOf(() => workersScope.resolve(Background)));
  const byName = new Map<string, TaskDefinition<never[]>>();
  for (const task of options.tasks) byName.set(task.name, task);
  /**
   * The definitions whose jobs get a child scope each: those with a dependency other than their
   * TaskContext. Every job's local run is added on one Background, the workers' (a child scope
   * of the container, made once); the job's own scope, when it has one, is where its dependencies
   * are resolved (a Background among them: its tasks drain with the job), and it is drained and
   * disposed once the job is over.
   */
  const scoped = new Set<TaskDefinition<never[]>>(options.tasks.filter((task) => task.inject.some((token: unknown) => token !== TaskContext)));
  const workersScope = scopeRoot.createChildContainer();
  // The attempts' own entries (their failures, their ctx.logger) go where the workers log, when
  // given (merged over the application's options, the nearest winning).
  if (options.logger !== undefined) workersScope.register(BackgroundOptions, { useValue: { logger: options.logger } });
  /**
   * The workers' Background, made with their first job (as any Background, it reads the
   * application's options as it is made): from then on the workers close with its application.
   */
  let background: (Background & JobRunAdder) | undefined;
  const backgroundNow = (): Background & JobRunAdder => {
    if (background !== undefined) return background;
    background = workersScope.resolve(Background) as Background & JobRunAdder;
    // The application's close closes them too, within its deadline and a second more: a job whose
    // run it abandoned at the deadline is put back in the queue then (one round trip), not left to
    // wait out its lock because the process exited first. Called at once when it is closing
    // already: its deadline is then what was left of it.
    let joining = true;
    leave = background[closeWith]((timeoutMs) => (closed ??= closeNow(timeoutMs, { late: joining })).then(() => ({ requeued })));
    joining = false;
    return background;
  };
  /** The jobs this process is running, by job id: how a producer's cancellation reaches one. */
  const running = new Map<string, RunningJob>();
  /**
   * Cancellations of jobs this process was not running when they came, by job id, with when they
   * are forgotten: one may come just before this process takes the job (the producer asks again
   * once it knows a worker has it, and the job would run if both came early).
   */
  const cancelledEarly = new Map<string, { reason: string; until: number }>();
  /** How many jobs the processor is in (its scope's disposal included): `close({ timeoutMs })` waits for 0. */
  let active = 0;
  /** Called when no job is active any more (one waiter at a time: close()). */
  let whenIdle: (() => void) | undefined;
  const idle = (): Promise<true> => (active === 0 ? Promise.resolve(true) : new Promise<true>((resolve) => (whenIdle = () => resolve(true))));
  /** Whether the workers stopped taking jobs because their application closed. */
  let stopped = false;
  /**
   * The workers' application has closed (its Background takes no new task, or abandoned a job's
   * run at its drain deadline): the worker takes no more jobs (paused here; `close()` still
   * closes it), said once.
   */
  const stopTaking = (): void => {
    if (stopped) return;
    stopped = true;
    logger.warn(
      { queue: worker.name },
      'durable workers stopped taking jobs: their application closed (shutdown()); the jobs they took and could not run go back to the queue, ' +
        'to run on another worker without counting an attempt',
    );
    worker.pause(true).catch((error: unknown) => logger.warn({ err: error }, 'durable workers could not be paused'));
  };
  /**
   * Puts back a job this process took and cannot run, its application having closed: waiting
   * again, its lock released and its attempts unchanged (BullMQ's `WaitingError` tells the worker
   * that the processor moved it), for another worker to run.
   */
  const putBack = async (job: Job<JobData>, token: string | undefined, abandoned: boolean): Promise<never> => {
    stopTaking();
    // Said on the event stream first, for the handles that follow the job (its next start is the
    // same attempt: BullMQ counted this take as started), on the connection the move then takes:
    // Redis runs the two in the order they were sent. Unsaid (Redis away), the move fails too.
    const client = await worker.getBackend().client;
    client.runCommand('xadd', [worker.keys.events, '*', 'event', putBackEvent, 'jobId', job.id ?? '']).catch(() => undefined);
    await job.moveToWait(token);
    if (abandoned) requeued++;
    throw new WaitingError();
  };
  /** Jobs put back whose run the application's close had abandoned (its report's `requeued`: not lost). */
  let requeued = 0;
  // Two parameters, not three: BullMQ gives every job of a processor that takes its signal an
  // AbortController, ≈ 5–10 µs of a worker's CPU per job (bench/durable.mjs); `running` does the same.
  const ended = (): void => {
    if (--active === 0) whenIdle?.();
  };
  const processor = (job: Job<JobData>, token?: string): Promise<unknown> => {
    active++;
    const run = runJob(job, token);
    // Followed, not awaited: BullMQ gets the job's own promise, a hop sooner (this comes first:
    // the job is no longer active when BullMQ learns that it ended).
    run.then(ended, ended);
    return run;
  };
  /**
   * Whether the cancellation requests producers recorded before this worker listened have been
   * read (or could not be, or {@link recordedWaitMs} have passed): until then a job taken waits
   * for them, or one cancelled before this worker started would run. Once read, no job waits.
   */
  let recordedRead = false;
  let readRecorded!: () => void;
  const recordedLoaded = new Promise<void>(
    (resolve) =>
      (readRecorded = () => {
        recordedRead = true;
        clearTimeout(recordedWait); // which would hold these workers, closed or not, until it fires
        resolve();
      }),
  );
  const recordedWait = setTimeout(() => readRecorded(), recordedWaitMs).unref();
  const runJob = async (job: Job<JobData>, token: string | undefined): Promise<unknown> => {
    if (!recordedRead) await recordedLoaded;
    if (job.name === afterJob) return passAfter(worker, job as unknown as Job<AfterData>, (id) => cancelledEarly.get(id)?.reason);
    const definition = byName.get(job.name);
    if (definition === undefined) {
      const known = [...byName.keys()];
      const message =
        `no durable task named "${job.name}" is known to this worker (it runs ${known.map((n) => `"${n}"`).join(', ') || 'none'}); ` +
        'pass its definition to startWorkers({ tasks })';
      logger.error({ task: job.name, taskId: job.id, known }, `durable job ${job.id} failed without retries: ${message}`);
      throw new UnrecoverableError(message);
    }
    // The job's own child scope, for a task with dependencies to resolve there; a task without
    // any could not tell it from the workers' (below), and the scope would cost every job.
    const jobId = job.id ?? '';
    // Taken after the workers stopped taking jobs (a fetch already on its way, maybe of the job
    // just put back): back at once, nothing said of it, nothing read.
    if (stopped) return await putBack(job, token, false);
    // Taken before without an outcome (its worker lost its lock, or put it back): a cancellation
    // recorded since may have gone unheard here (this worker's connection was down when it was
    // sent, or it was told to the attempt that lost the job) and not be in the job's data (the
    // mark can come after this take). One look at Redis, for these jobs only.
    const takenAgain = job.attemptsStarted > job.attemptsMade + 1;
    if (takenAgain) {
      // Said, so that an operator knows which jobs may have run twice (a crash says nothing itself).
      logger.warn(
        { task: job.name, taskId: jobId, attempt: job.attemptsMade + 1 },
        `durable job ${jobId} (task "${job.name}") is taken again: an earlier take of its attempt ${job.attemptsMade + 1} ended without an outcome ` +
          '(its worker died or lost its lock, or put it back as it closed); if its task had begun, it runs a second time',
      );
    }
    const recorded = takenAgain ? await recordedCancellation(jobId) : undefined;
    // Taken again by this process while the attempt that lost its lock still runs here: that one
    // is stopped (its outcome would be discarded). BullMQ follows locks by job id, so its end
    // stops the renewal of this take's lock too (which then expired, and the job, stalled again,
    // failed for good with its work done): this take renews its own lock as well.
    const older = running.get(jobId);
    older?.supersede();
    const renewing = older === undefined ? undefined : renewLock(job, token);
    const scope = scoped.has(definition) ? scopeRoot.createChildContainer() : undefined;
    try {
      const { args, timeoutMs, context } = job.data;
      const entry = new RunningJob(job, logger, scope);
      let local: TaskHandle;
      try {
        const adder = backgroundNow();
        // An attempt of the job: it counts its attempt as the job does (ctx.attempt, its events and
        // logs), its progress is the job's, and it is on record in Redis, not in this process.
        // Added inside the context its add() carried (its trace), when this application enters one.
        const entering = context === undefined ? undefined : adder[jobContext];
        if (entering === undefined || context === undefined) local = adder[jobRun](definition, args, entry, timeoutMs);
        else local = entering.enter(context, () => adder[jobRun](definition, args, entry, timeoutMs));
      } catch (error) {
        if (error instanceof BackgroundDisposedError) return await putBack(job, token, false);
        throw error;
      }
      entry.local = local;
      running.set(jobId, entry);
      // Cancelled while its job ran on a worker that died: the producer marked the job.
      if (job.data.cancelled !== undefined) entry.cancel(job.data.cancelled);
      else if (recorded !== undefined) entry.cancel(recorded);
      else if (cancelledEarly.size > 0) {
        const early = cancelledEarly.get(jobId);
        if (early !== undefined) {
          cancelledEarly.delete(jobId);
          entry.cancel(early.reason);
        }
      }
      let value: unknown;
      try {
        value = await local.result();
      } catch (error) {
        // Cancelled by its producer: not worth another attempt.
        // Recorded with the reason given to cancel(), which any process then reads as the cause.
        if (entry.cancelReason !== undefined) throw new UnrecoverableError(`${cancelledPrefix}${entry.cancelReason}`);
        // Abandoned at the drain deadline of the application's close: not the task's failure.
        if (local.status === 'abandoned') return await putBack(job, token, true);
        // The task's retryIf said no.
        if (entry.retryRefused) throw new UnrecoverableError(messageOf(error));
        throw error;
      } finally {
        // (Not a later attempt's entry: an attempt that lost its lock may end after the job was taken again here.)
        if (running.get(jobId) === entry) running.delete(jobId);
        entry.end();
      }
      // (Most tasks return nothing, or a primitive: no walk for those.)
      const problem = value === undefined || value === null || typeof value === 'string' || typeof value === 'boolean' ? undefined : jsonProblem([value], 'result');
      if (problem !== undefined) {
        // The task's work is done: another attempt would do it again.
        const message = `durable task "${definition.name}" (job ${jobId}) returned a value that does not survive JSON: ${problem}; its job fails without retries (a durable task must return plain data)`;
        logger.error({ task: definition.name, taskId: jobId, attempt: entry.attempt }, message);
        throw new UnrecoverableError(message);
      }
      return value;
    } finally {
      clearInterval(renewing);
      if (scope !== undefined) await disposeScope(scope);
    }
  };
  /** Renews a job's lock for as long as its take runs, as BullMQ's lock manager does (errors are BullMQ's to report). */
  const renewLock = (job: Job<JobData>, token: string | undefined): NodeJS.Timeout =>
    setInterval(() => void job.extendLock(token ?? '', lockDuration).catch(() => undefined), lockDuration / 2).unref();
  const worker = new Worker<JobData>(options.queueName ?? defaultQueueName, processor, {
    // Their own copy (read once above, inherited options included).
    ...workerOptions,
    connection: options.connection ?? defaultConnection,
    concurrency: options.concurrency ?? 10,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    settings: {
      ...workerOptions.settings,
      backoffStrategy: (attemptsMade, _type, _error, job) => backoffFor((job?.data as JobData | undefined)?.backoff, attemptsMade),
      repeatStrategy: cronRepeatStrategy(),
    },
  });
  worker.on('error', (error) => logWorkerError(logger, error, lockDuration));
  // Producers' cancellations of running jobs: the worker running one cancels its task.
  const connection = options.connection ?? defaultConnection;
  const lockDuration = workerOptions.lockDuration ?? 30_000;
  const stalledInterval = workerOptions.stalledInterval ?? 30_000;
  const rememberMs = lockDuration + 2 * stalledInterval + cancelMarginMs;
  const subscriber = redisFor(connection);
  subscriber.on('error', () => undefined);
  const channel = cancelChannel(worker.name, options.prefix);
  const record = cancelRecordKey(worker.name, options.prefix);
  /** Set when close() begins: a failure to listen is then no news. */
  let closing = false;
  /** A request to stop a job: stops it if it runs here, else is remembered for {@link rememberMs}. */
  const cancelRequested = (message: string, now: number): void => {
    let request: { id: string; reason: string };
    try {
      request = JSON.parse(message) as { id: string; reason: string };
    } catch {
      return; // Not ours.
    }
    const { id, reason } = request;
    if (typeof id !== 'string' || typeof reason !== 'string') return;
    const entry = running.get(id);
    if (entry !== undefined) {
      entry.cancel(reason);
      return;
    }
    for (const [early, { until }] of cancelledEarly) {
      if (until > now) break;
      cancelledEarly.delete(early);
    }
    // The first request's reason, as a job's `failedReason` keeps it; remembered from the last one.
    const first = cancelledEarly.get(id)?.reason ?? reason;
    cancelledEarly.delete(id);
    cancelledEarly.set(id, { reason: first, until: now + rememberMs });
  };
  /** The reason of the first cancellation recorded for job `id` (`<record>:<id>`), if one was. */
  const recordedCancellation = async (id: string): Promise<string | undefined> => {
    const client = await worker.getBackend().client;
    const message = await client.get(`${record}:${id}`);
    if (message === null) return undefined;
    try {
      const { reason } = JSON.parse(message) as { reason?: unknown };
      if (typeof reason === 'string') return reason;
    } catch {
      // Written by an older version, which kept no message there.
    }
    return '';
  };
  subscriber.on('message', (from: string, message: string) => {
    if (from === channel) cancelRequested(message, Date.now());
  });
  /**
   * Listens, then reads the requests producers recorded (those sent while this worker was not
   * listening yet, or while its subscription was reconnecting): once the subscription is
   * confirmed, so that none falls between the two. Each time the subscriber's connection is ready.
   */
  const listen = async (): Promise<void> => {
    try {
      await subscriber.subscribe(channel);
      const client = await worker.getBackend().client;
      // Those of the window only: the set is trimmed as requests are written, so with none written
      // for a while it holds older ones.
      const recorded = await client.zrange(record, 0, -1, { WITHSCORES: true });
      const now = Date.now();
      for (let i = 0; i + 1 < recorded.length; i += 2) if (Number(recorded[i + 1]) >= now - cancelRecordMs) cancelRequested(recorded[i]!, now);
    } catch (error) {
      if (closing) return;
      // Refused for good, not for a while: the Redis user may not subscribe to the channel (Redis 7's ACL users get no channel unless given one).
      if (messageOf(error).startsWith('NOPERM')) {
        logger.error(
          { err: error, channel },
          `a durable worker cannot listen for cancellations (${messageOf(error)}): its Redis user may not subscribe to the channel ${channel} (ACL: give it &${channel}); cancel() of a running job cannot reach this worker`,
        );
      } else logger.warn({ err: error }, `a durable worker could not listen for cancellations (${messageOf(error)}); it listens again once its connection is back`);
    } finally {
      readRecorded();
    }
  };
  subscriber.on('ready', () => void listen());
  /** Takes the workers off their application's close (set with their Background, above). */
  let leave = (): void => undefined;
  /**
   * Closes the workers: their jobs within `timeoutMs` (none: no bound), then their connections,
   * within a second. With their application (`withApplication`), `timeoutMs` is its close deadline
   * (`late`: what was left of it when they joined its close), and the whole close takes at most
   * {@link putBackMs} more: the jobs' wait, then the connections'. Its warnings name the deadline
   * that was given, not the sums made of it.
   */
  const closeNow = async (timeoutMs: number | undefined, withApplication?: { late: boolean }): Promise<void> => {
    leave();
    closing = true;
    readRecorded();
    const closeBy = withApplication === undefined || timeoutMs === undefined ? undefined : performance.now() + timeoutMs + putBackMs;
    /** With their application: when the close gives up, said by the deadline it was given. */
    const pastDeadline =
      withApplication === undefined
        ? ''
        : `${putBackMs} ms past their application's close deadline ${withApplication.late ? `(${timeoutMs} ms away when they joined its close)` : `of ${timeoutMs} ms`}`;
    let inTime = true;
    if (timeoutMs !== undefined) {
      // Paused, the worker takes no new job and its active ones go on; at the deadline, closing
      // with force stops renewing their locks instead of waiting for them. (Not BullMQ's
      // `pause()` that waits for them: still waiting when the worker was closed with force, it
      // reconnected the worker's blocking connection once they ended, and that connection,
      // listened to by nobody, kept the process alive and reconnecting for ever.)
      await worker.pause(true);
      // (Late-aware: jobs that ended as the event loop was held count as ended in time.)
      const expires = expiry(closeBy === undefined ? timeoutMs : Math.max(0, closeBy - performance.now()));
      inTime = await Promise.race([idle(), expires.expired]);
      whenIdle = undefined;
      expires.clear();
      if (!inTime) {
        const left = [...running.keys()];
        const [fields, when] =
          withApplication === undefined
            ? [{ jobs: left, timeoutMs }, `after ${timeoutMs} ms`]
            : [{ jobs: left, timeoutMs, putBackMs }, `${pastDeadline} (the time given to put back the jobs whose runs it abandoned)`];
        logger.warn(fields, `durable workers closed with ${left.length} job(s) still active ${when}; they run again on another worker once their locks expire`);
      }
    }
    const workerClosed = worker.close(!inTime);
    // Once no job of ours is active (at once with `timeoutMs`), BullMQ has only its connections
    // to close (and the outcomes of the jobs that ended to write): a Redis that stopped answering
    // never answers, so they are dropped once a second has passed, one second for them all.
    if (inTime) await idle();
    whenIdle = undefined;
    const until = closeBy ?? performance.now() + connectionsCloseMs;
    const left = (): number => Math.max(0, until - performance.now());
    if (!(await within(workerClosed, closeBy === undefined ? connectionsCloseMs : left()))) {
      if (closeBy === undefined) {
        logger.warn({ ms: connectionsCloseMs }, `the durable workers' connections to Redis did not close within ${connectionsCloseMs} ms once no job was active (Redis did not answer); they are dropped`);
      } else {
        logger.warn({ timeoutMs, putBackMs }, `the durable workers' connections to Redis had not closed ${pastDeadline} (Redis did not answer); they are dropped`);
      }
      await within(Promise.allSettled([worker.disconnect(), workerClosed]), left());
    }
    await endClient(subscriber, left());
  };
  let closed: Promise<void> | undefined;
  return {
    worker,
    async close(options = {}) {
      const timeoutMs = checkCloseOptions('workers.close(options)', options);
      return (closed ??= closeNow(timeoutMs));
    },
  };
}

/** How much longer than its application's close deadline the workers' close may take: the time to put back the jobs it abandoned. */
const putBackMs = 1_000;

/** The longest a job taken as the workers start waits for the cancellation requests recorded before they listened. */
const recordedWaitMs = 5_000;

/** Lost locks said lately, by job and command, with when. */
const lostLocksSaid = new Map<string, number>();

/** Whether `key` was said less than `withinMs` ago (BullMQ's second report of one loss); records it now otherwise. */
function saidLately(key: string, withinMs = 100): boolean {
  const now = performance.now();
  const at = lostLocksSaid.get(key);
  if (at !== undefined && now - at < withinMs) return true;
  if (lostLocksSaid.size >= 1_000) lostLocksSaid.clear();
  lostLocksSaid.set(key, now);
  return false;
}

/** The codes of Node's and ioredis's errors that say the connection to Redis failed. */
const connectionCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/**
 * Logs what a BullMQ worker reported as an error, as what it is. A lost lock (BullMQ's `Missing
 * lock for job <id>. <command>`, `Lock mismatch for job <id>…`, or `could not renew lock for job
 * <id>`): Redis did not renew the job's lock in time (it did not answer within `lockDuration`, or
 * the process was held that long), so another worker may take the job (BullMQ's stalled-job
 * check moves it back to wait, or fails it once it stalled more than `maxStalledCount` times);
 * what the attempt here returns is refused, and the job runs again. A lost connection: ioredis
 * reconnects. Anything else, as BullMQ said it.
 */
function logWorkerError(logger: BackgroundLogger, error: Error, lockDuration: number): void {
  const message = messageOf(error);
  const lost = /^(?:Missing lock|Lock mismatch) for job (\S+?)\.? (?:Cmd )?(\w+)/.exec(message);
  if (lost !== null) {
    const [, taskId, command] = lost;
    // BullMQ reports each lost lock twice, at once (its worker's error, then its processing
    // loop's): once here. Another attempt's loss comes a lock's duration later at the least.
    if (saidLately(`${taskId} ${command}`)) return;
    logger.warn(
      { taskId, err: error },
      `durable job ${taskId}: this worker had lost its lock on the job when its attempt ended (${command}), so the attempt's outcome is discarded: ` +
        `the job runs again, on whichever worker takes it once BullMQ finds it stalled (it fails if it stalled more than maxStalledCount times); ` +
        'a lock is lost when Redis does not renew it within lockDuration (Redis or this process held that long)',
    );
    return;
  }
  const unrenewed = /^could not renew lock for job (\S+)/.exec(message);
  if (unrenewed !== null) {
    const taskId = unrenewed[1];
    // BullMQ tries again every half lockDuration while Redis stays away: once a lock's duration.
    if (saidLately(`${taskId} renew`, lockDuration)) return;
    logger.warn(
      { taskId, err: error },
      `durable job ${taskId}: this worker could not renew its lock on the job, whose attempt goes on here; once the lock expires, another worker may take the job and run it again, ` +
        "and this attempt's outcome is then discarded (Redis or this process held longer than lockDuration)",
    );
    return;
  }
  const code = (error as { code?: unknown }).code;
  if ((typeof code === 'string' && connectionCodes.has(code)) || message === 'Connection is closed.' || message.includes('ECONNREFUSED') || error.name === 'MaxRetriesPerRequestError') {
    logger.warn({ err: error }, `a durable worker lost its connection to Redis (${message}); it reconnects`);
    return;
  }
  logger.warn({ err: error }, `a durable worker's BullMQ worker reported an error: ${message}`);
}

/**
 * Runs a job of {@link afterJob}. A guard checks, once its dependent's flow is in Redis, the jobs
 * the dependent waits for: one that had failed before it was attached would never move the
 * dependent on, nor would one another durable task waits for (BullMQ did not attach it). Its
 * failure, and that of the other kinds, which fail at once, fails the dependent: skipped.
 */
async function passAfter(worker: Worker, job: Job<AfterData>, cancelledWith: (id: string) => string | undefined): Promise<null> {
  const data = job.data;
  const fail = async (failed: FailedPrerequisite): Promise<never> => {
    if (data.kind === 'guard') await job.updateData({ ...data, failed });
    throw new UnrecoverableError(`durable task "${failed.name}" (#${failed.id}) ${failed.status === 'cancelled' ? 'was cancelled' : failed.status}${failed.reason === undefined ? '' : `: ${failed.reason}`}`);
  };
  if (data.kind === 'missing') return fail({ id: data.id, name: data.name, status: notInQueue });
  if (data.kind === 'cancelled') return fail({ id: data.id, name: data.name, status: 'cancelled', reason: data.reason });
  // Known to have failed where it was added (its producer skipped it at once).
  if (data.failed !== undefined) return fail(data.failed);
  for (const { id, name } of data.after) {
    const prerequisite = await Job.fromId(worker, id);
    if (prerequisite === undefined) {
      // Removed by its cancellation (a guard that runs late, after it): said so, with its reason.
      const reason = cancelledWith(id);
      return fail(reason === undefined ? { id, name, status: notInQueue } : { id, name, status: 'cancelled', reason });
    }
    // Made by the flow for want of the job: it fails by itself.
    if (prerequisite.name === afterJob) continue;
    const state = await prerequisite.getState();
    if (state === 'completed') continue;
    if (state === 'failed') {
      // Read while it was still active, it failed since: its reason is read now.
      // Its data read with it: a cancellation may have marked it before BullMQ failed it as stalled.
      const read = prerequisite.failedReason === undefined ? await Job.fromId(worker, id) : prerequisite;
      return fail({ id, name, ...(read?.failedReason === undefined ? endedWith('failed') : jobEnded(read)) });
    }
    if (prerequisite.parentKey !== job.parentKey) {
      return fail({ id, name, status: `is waited for by another durable task already (${prerequisite.parentKey ?? 'another job'}), and BullMQ gives a job one parent` });
    }
  }
  return null;
}
