/**
 * The application's worker-thread pool: the only module that knows Piscina. Created with the
 * first worker task; closed by the application's close.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import type * as PiscinaModule from 'piscina';
import type { Piscina } from 'piscina';
import { requireCjs } from '../model/cjs.js';
import { messageOf } from '../model/checks.js';
import { cpuTime, memoryLeft, threadRoom, usableCpus } from '../model/limits.js';
import { inOwnContext } from '../model/own-context.js';
import { WorkerTaskError } from '../model/errors.js';
import { logSafely, type BackgroundLogger } from '../model/logger.js';
import type { PoolSettings } from '../model/options.js';
import type { Transferable } from '../worker/clone.js';
import { StartMarks, type StartMark } from '../worker/start-marks.js';
import type { WorkerConfig } from '../worker/thread.js';
import { workerTaskModules } from '../model/worker-task.js';
import {
  isThreadMessage,
  logFieldsOf,
  outcomeOf,
  toWire,
  type ChannelMessage,
  type Died,
  type LeftBehind,
  type WorkerCall,
  type WorkerRequest,
  type WorkerResponse,
} from '../worker/wire.js';
import { monotonicNow } from '../model/timing.js';
import { withDeadline } from './deadlines.js';
import { Lane } from './lane.js';
import type { Invocation } from './task-run.js';

/** What the pool needs of a task's attempt: when it aborts, and where its progress goes. */
export interface AttemptLink {
  readonly id: string;
  /** The attempt's number (the task's attempts begun, this one included). */
  readonly attempts: number;
  /** Calls `listener` when the attempt aborts, with the reason; `undefined` stops listening. */
  onAbort(listener: ((reason: Error) => void) | undefined): void;
  reportProgress(fraction: number, message?: string): void;
  /** Writes an entry the task logged in its worker, for the given attempt. */
  logFromWorker(attempt: number, level: 'error' | 'warn' | 'info' | 'debug', fields: Record<string, unknown>, message: string): void;
}

/** How often the admission window is reconsidered while tasks wait for it. */
const sampleMs = 200;
/** The least time the pool's close gives its threads to be terminated, past the close's deadline if need be. */
const destroyAtLeastMs = 1_000;
/**
 * How long an error thrown again and again by callbacks left behind on the threads (a timer of
 * the setup module that throws every 10 ms on each thread) is logged once; the next entry after
 * that says how many of it were not logged.
 */
const repeatWindowMs = 10_000;
/** How many distinct such errors are counted at once. */
const repeatKinds = 100;

/** How many idle threads a callback left behind by the setup module may end before new threads stop prewarming. */
const setupExitsToStop = 3;
/** Above this share of its CPUs' time idle, waiting tasks are admitted wider. */
const idleEnough = 0.25;

/**
 * Piscina starts a new thread, up to `maxThreads`, whenever its own queue is not empty; on a
 * small machine, 40 threads each loading the task modules make a burst of CPU-bound tasks many
 * times slower than a pool the size of the cores. So tasks reach Piscina through an admission
 * window: at first as many as there are cores this process may use (its affinity's, within its
 * CPU quota); wider, up to `maxThreads`, only while the window is full and those CPUs sit idle
 * (admitted tasks that wait rather than compute); back to the cores once no task waits.
 * Idleness is the CPUs', not this process's share: when other processes keep them busy, more
 * threads would only take turns on them. CPUs this process may not run on are not looked at
 * (pinned beside a busy process, it saw the others idle, and widened).
 */
export class Pool {
  readonly admission: Lane;
  readonly settings: PoolSettings;
  readonly #logger: BackgroundLogger;
  /** The window's width at first and once nothing waits: the cores, within {@link #maxThreads}. */
  #base: number;
  /**
   * The most threads: `maxThreads`, or fewer when the system lets this process start fewer (a
   * cgroup's pids limit, read as the pool starts; a thread Piscina could not start).
   */
  #maxThreads: number;
  /** The CPUs this process may use: its affinity's, within its CPU quota. */
  readonly #cpus = usableCpus();
  /** Where workers mark tasks started: a task handed to Piscina is queued until its thread takes it. */
  readonly #marks: StartMarks;
  #piscina: Piscina | undefined;
  #closed = false;
  /** Runs not settled yet. */
  #inFlight = 0;
  #sampler: NodeJS.Timeout | undefined;
  #lastCpu = cpuTime(this.#cpus.ids);
  #lastOwn = ownCpu();
  #lastAt = performance.now();
  /** Tasks whose thread a callback left behind by an ended task is ending with process.exit(): what to say. */
  readonly #exitedBy = new Map<string, string>();
  /** Tasks whose thread an error thrown outside an ended task's call is ending: that error. */
  readonly #diedOf = new Map<string, WorkerResponse>();
  /** Flags the threads read (see {@link WorkerConfig.controls}): whether new threads still prewarm. */
  readonly #controls = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  /** Threads that a callback their setup module left behind ended while they ran no task. */
  #setupExits = 0;
  /** Idle threads ended by an error no task could be named for (see {@link #died}). */
  #idleDeaths = 0;
  /** Errors of callbacks left behind, by where and message: until when a repeat is only counted, and how many were. */
  readonly #repeats = new Map<string, { until: number; more: number; readonly where: string; readonly thread: number | undefined; readonly message: string }>();
  /**
   * The exits of threads an abort terminated: Piscina drops such a thread from its pool at once,
   * so its `destroy()` does not wait for it, and a thread stuck in a native call outlives it.
   */
  readonly #terminating = new Set<Promise<void>>();
  /** The process's resident memory as the pool started, before its threads: what they add is measured from it. */
  #rssBefore = 0;
  /** Whether the window was held back for memory (said once). */
  #heldForMemory = false;
  /** The most memory a thread of this pool has added to the process (its own and its tasks'), {@link threadBytes} at least. */
  #perThread = threadBytes;

  constructor(settings: PoolSettings, logger: BackgroundLogger) {
    this.settings = settings;
    this.#logger = logger;
    this.#maxThreads = settings.maxThreads;
    this.#base = Math.min(this.#cpus.cores, settings.maxThreads);
    this.admission = new Lane(this.#base);
    // Enough cells for every admitted attempt, and for attempts given up on that Piscina has
    // not answered for yet (a thread in its grace period); past that, an attempt counts as
    // started when it is handed over.
    this.#marks = new StartMarks(4 * settings.maxThreads + 16);
  }

  /**
   * What each attempt of a worker task calls: {@link Pool.run} with its request. It tells when
   * the current attempt reached its thread (`startedAt`): until then the task is queued.
   */
  call(task: WorkerCall, transferList: readonly Transferable[], withContext: boolean): Invocation {
    let current: StartMark | undefined;
    /** Which attempt `current` marks: a retry's is not handed on yet while its own start is told. */
    let of = 0;
    return {
      sync: false,
      invoke: (attempt: AttemptLink) => {
        current = this.#marks.take();
        of = attempt.attempts;
        return this.run(task, attempt, transferList, withContext, current);
      },
      startedAt: (attempts: number) => (current === undefined || of !== attempts ? 0 : this.#marks.startedAt(current)),
      finishedAt: (attempts: number) => (current === undefined || of !== attempts ? 0 : this.#marks.finishedAt(current)),
    };
  }

  /** Starts the threads now (`minThreads` of them), rather than with the first worker task. */
  prewarm(): void {
    if (this.#closed) return;
    try {
      this.#start();
    } catch (error) {
      // The tasks say it when they run; the application starts all the same.
      logSafely(this.#logger, 'error', { err: error }, `the worker pool could not be prewarmed: ${messageOf(error)}`);
    }
  }

  /** Live worker threads (0 until the first worker task). */
  get threads(): number {
    return this.#piscina?.threads.length ?? 0;
  }

  /**
   * Runs one attempt of a task on a worker; rejects with the task's own error, rebuilt. When
   * the attempt's signal aborts, a task that injects `TaskContext` sees its own signal abort
   * in the worker and gets `terminateAfterMs` to end; then (or at once, for a task that cannot
   * see its signal) its thread is terminated.
   */
  async run(
    task: WorkerCall,
    attempt: AttemptLink,
    transferList: readonly Transferable[],
    withContext: boolean,
    mark: StartMark = this.#marks.take(),
  ): Promise<unknown> {
    this.#inFlight++;
    try {
      if (this.#closed) {
        throw new WorkerTaskError('ERR_WORKER_FAILED', `worker task "${task.name}" was not run: the worker pool is closed`);
      }
      this.#watch();
      const request: WorkerRequest = { module: task.module, name: task.name, args: task.args, id: attempt.id, attempt: attempt.attempts, slot: mark.slot, token: mark.token };
      // What Piscina listens to, to stop the task (dequeue it, or terminate its thread).
      const kill = new Kill();
      if (withContext) return await this.#runWithContext(request, attempt, transferList, mark, kill);
      // The task cannot see a signal: an abort terminates its thread at once. (In this one async
      // function: the common path, one promise and one microtask fewer per attempt.)
      attempt.onAbort((reason) => {
        this.#kill(kill, reason);
      });
      let response: WorkerResponse;
      try {
        response = await this.#submit(request, kill, transferList);
      } catch (error) {
        if (kill.aborted) throw kill.reason;
        throw this.#explain(request, error);
      } finally {
        attempt.onAbort(undefined);
      }
      return outcomeOf(task.name, response, attempt.id);
    } finally {
      this.#inFlight--;
      this.#marks.release(mark);
      this.#exitedBy.delete(attempt.id);
      this.#diedOf.delete(attempt.id);
    }
  }

  /** An attempt of a task that injects `TaskContext`: its signal, progress and logs over a channel of its own. */
  async #runWithContext(task: WorkerRequest, attempt: AttemptLink, transferList: readonly Transferable[], mark: StartMark, kill: Kill): Promise<unknown> {
    let aborted: Error | undefined;
    let grace: NodeJS.Timeout | undefined;
    const channel = new MessageChannel();
    const onAbort = (reason: Error): void => {
      aborted = reason;
      this.#marks.abort(mark);
      channel.port1.postMessage({ abort: toWire(reason) } satisfies ChannelMessage);
      grace = setTimeout(() => {
        this.#kill(kill, reason);
      }, this.settings.terminateAfterMs);
    };
    const attemptNo = attempt.attempts;
    const onMessage = (message: ChannelMessage): void => {
      if ('progress' in message) attempt.reportProgress(...message.progress);
      else if ('log' in message) {
        const [level, fields, text, errors] = message.log;
        attempt.logFromWorker(attemptNo, level, logFieldsOf(fields, errors), text);
      }
    };
    channel.port1.on('message', onMessage);
    const request: WorkerRequest = { ...task, port: channel.port2 };
    attempt.onAbort(onAbort);
    let response: WorkerResponse;
    try {
      response = await this.#submit(request, kill, [...transferList, channel.port2]);
    } catch (error) {
      if (aborted !== undefined) throw aborted;
      throw this.#explain(request, error);
    } finally {
      attempt.onAbort(undefined);
      clearTimeout(grace);
      // The result travels on another port and can overtake the last progress reports: take
      // them before closing, while the task still counts as running.
      for (let left = receiveMessageOnPort(channel.port1); left !== undefined; left = receiveMessageOnPort(channel.port1)) {
        onMessage(left.message as ChannelMessage);
      }
      channel.port1.close();
    }
    return outcomeOf(task.name, response, attempt.id);
  }

  /**
   * Hands `request` to Piscina, which starts a thread for it when none is free. The system may
   * refuse one (a cgroup's pids limit, `ulimit -u`, memory): Piscina's call then throws, maybe
   * after queueing the request. That copy is emptied (the thread that takes it answers at once,
   * running nothing: see thread.ts), Piscina is kept to the threads it has, and the request
   * waits for one of them (with none, for a terminated one to exit and give its room back); with
   * none at all, the refusal is the attempt's failure.
   */
  async #submit(request: WorkerRequest, kill: Kill, transferList: readonly Transferable[]): Promise<WorkerResponse> {
    for (;;) {
      const piscina = this.#start();
      const transfers = [...transferList];
      try {
        return (await piscina.run(request, { signal: kill, transferList: transfers as never })) as WorkerResponse;
      } catch (error) {
        const ending = [...this.#terminating];
        if (!isThreadRefused(error) || (piscina.threads.length === 0 && ending.length === 0)) throw error;
        const again = { ...request };
        // Piscina holds this object and this list until a thread takes the copy it may have queued.
        Object.assign(request, { void: true, args: [], port: undefined });
        transfers.length = 0;
        request = again;
        this.#refused(piscina, error);
        // No thread left, some terminated and still ending: the room they hold comes back as they exit.
        if (piscina.threads.length === 0) await Promise.race(ending);
      }
    }
  }

  /**
   * The system refused Piscina a thread: it keeps to the threads it has (one at least, started
   * when a task needs it), and replaces none that ends (minThreads one fewer: the thread it
   * replaces still counts against the limit while it ends).
   */
  #refused(piscina: Piscina, error: unknown): void {
    this.#keepTo(Math.max(1, piscina.threads.length), `the system refused a new worker thread (${messageOf(error)}: a cgroup's pids limit, ulimit -u, or memory)`);
    // Piscina reads these at each decision to start a thread: lowered, it starts no more.
    Object.assign(piscina.options, { maxThreads: this.#maxThreads, minThreads: Math.min(piscina.options.minThreads, this.#maxThreads - 1) });
  }

  /** Lowers the most threads to `most` (and the admission window with it), saying why once. */
  #keepTo(most: number | undefined, why: string): void {
    if (most === undefined || most >= this.#maxThreads) return;
    logSafely(this.#logger, 'warn', { maxThreads: this.settings.maxThreads, threads: most }, `the worker pool keeps to ${most} thread(s), not maxThreads ${this.settings.maxThreads}: ${why}`);
    this.#maxThreads = most;
    this.#base = Math.min(this.#base, most);
    this.admission.limit = Math.min(this.admission.limit, most);
  }

  /**
   * Stops an attempt: Piscina dequeues it, or terminates its thread (and starts another), which
   * is then followed until it exits, for {@link Pool.close} to wait for.
   */
  #kill(kill: Kill, reason: Error): void {
    const piscina = this.#piscina;
    const before = piscina?.threads ?? [];
    try {
      kill.abort(reason);
    } catch (error) {
      // Piscina starts a thread in place of the one it terminates (to keep minThreads) while that
      // one still counts against the system's limit: refused, that throws here, the task stopped.
      if (piscina === undefined || !isThreadRefused(error)) throw error;
      this.#refused(piscina, error);
    }
    const after = new Set(this.#piscina?.threads);
    for (const thread of before) {
      if (after.has(thread)) continue;
      const exited = new Promise<void>((resolve) =>
        thread.once('exit', () => {
          // Piscina replaces a thread that exits while its pool is not being destroyed, even one
          // destroyed already (minThreads started again, after the close): stopped at once. Only
          // then: a destroy() that finds nothing to stop ends Piscina's `destroying` under one
          // still waiting for its threads, whose exits would then be replaced in turn.
          if (this.#closed && (this.#piscina?.threads.length ?? 0) > 0) void this.#piscina?.destroy();
          resolve();
        }),
      );
      this.#terminating.add(exited);
      void exited.then(() => this.#terminating.delete(exited));
    }
  }

  /**
   * Stops every thread, within `timeoutMs` (a second at least: terminating them takes a moment,
   * and a close that abandoned work at its deadline has none left); never rejects. The application closes its pool once
   * every task has ended, so a run still in flight belongs to a task that was given up on (an
   * abandoned or cancelled task that injects TaskContext, in its grace period): its thread is
   * terminated now rather than waited for. (Piscina's own close() waits for such runs, and after
   * an abort it can wait out the whole deadline.) Threads an abort terminated earlier are waited
   * for too (one stuck in a native call ends only when the call returns). A close that overruns
   * is logged.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    this.#stopWatching();
    const piscina = this.#piscina;
    if (piscina === undefined) return;
    const stranded = this.#inFlight;
    try {
      const boundMs = Math.max(Math.round(timeoutMs), destroyAtLeastMs);
      if (!(await withDeadline(Promise.all([piscina.destroy(), ...this.#terminating]), boundMs))) {
        logSafely(this.#logger, 'warn', { timeoutMs: boundMs }, `closing the worker pool took longer than the ${boundMs} ms left of the close's deadline; it goes on in the background`);
      }
    } catch (error) {
      logSafely(this.#logger, 'error', { err: error }, 'closing the worker pool failed');
    }
    if (stranded > 0) {
      logSafely(this.#logger, 'debug', { stranded }, `closing the worker pool terminated ${stranded} thread(s) still running tasks that had ended`);
    }
    for (const { more, where, thread, message } of this.#repeats.values()) {
      if (more > 0) logSafely(this.#logger, 'error', {}, `callbacks ${where} left behind on worker thread ${thread} threw the same error ${more} more time(s) after its last entry, not logged: ${message}`);
    }
    this.#repeats.clear();
  }

  #start(): Piscina {
    // Piscina and its threads live as long as the pool: not in the context of the task that came first.
    return this.#piscina ?? inOwnContext(() => this.#create());
  }

  #create(): Piscina {
    const fromSource = import.meta.url.endsWith('.ts');
    const { maxThreads, minThreads, idleTimeout, resourceLimits, setupModule, niceIncrement } = this.settings;
    const workerData: WorkerConfig = {
      setupModule,
      startMarks: this.#marks.buffer,
      abortFlags: this.#marks.abortBuffer,
      ...(this.settings.prewarm ? { preload: workerTaskModules(), controls: this.#controls.buffer } : {}),
    };
    // Loaded here, not at import: every worker thread imports this library through its task
    // modules, and should not pay for loading Piscina (nor should an app with no worker task).
    const entry = new URL(fromSource ? '../worker/thread.ts' : '../worker/thread.js', import.meta.url);
    // Bundled into an application, the library's files are no longer beside each other.
    if (!existsSync(entry)) throw new EntryMissing(fileURLToPath(entry));
    const { Piscina: PiscinaPool } = requireCjs('piscina') as typeof PiscinaModule;
    this.#keepTo(threadsAllowed(maxThreads), 'this process may start only so many more threads (its cgroup\'s pids.max, less the threads and processes it counts already)');
    this.#rssBefore = process.memoryUsage.rss();
    const piscina = new PiscinaPool({
      filename: entry.href,
      // The library's own tests run it from TypeScript source; tsx loads the worker entry.
      ...(fromSource ? { execArgv: ['--import', 'tsx'] } : {}),
      maxThreads: this.#maxThreads,
      // Kept to a limit, one fewer: a thread started in place of one that ends needs room while that one still counts.
      minThreads: Math.min(minThreads, this.#maxThreads < maxThreads ? this.#maxThreads - 1 : maxThreads),
      idleTimeout,
      workerData,
      // Piscina's idle threads block in Atomics.wait(), where nothing asynchronous moves: a
      // prewarmed thread waits asynchronously instead, so that its setup and imports go on.
      ...(this.settings.prewarm ? { atomics: 'async' as const } : {}),
      ...(resourceLimits === undefined ? {} : { resourceLimits }),
      // Lower the threads' priority, so that the event loop preempts a worker on its core.
      ...(niceIncrement === 0 ? {} : { niceIncrement }),
    });
    // Piscina emits 'error' for failures that belong to no task (a close that timed out, say);
    // with no listener, that would crash the process.
    piscina.on('error', (error: unknown) => {
      logSafely(this.#logger, 'error', { err: error }, 'the worker pool reported an error');
    });
    piscina.on('message', (message: unknown) => {
      if (!isThreadMessage(message)) return;
      if ('leftBehind' in message) this.#leftBehind(message.leftBehind);
      else this.#died(message.died);
    });
    this.#piscina = piscina;
    return piscina;
  }

  /**
   * A callback that an ended task left behind on its thread threw, or called process.exit(): it
   * is that task's doing, logged as such. It cannot fail the task, which has ended; a throw fails
   * nothing else either (the thread goes on), an exit fails the tasks its thread was running.
   */
  #leftBehind({ task, setup, settingUp, error, rejection = false, exitCode, running, thread }: LeftBehind): void {
    if (setup === true) {
      this.#setupLeftBehind(task.module, error, rejection, exitCode, running, thread, settingUp === true);
      return;
    }
    const where = `worker task "${task.name}" (#${task.id}, ${task.module})`;
    const fields = { task: task.name, taskId: task.id, attempt: task.attempt };
    const others = running.map(({ id, name }) => `"${name}" (#${id})`).join(', ');
    if (error !== undefined) {
      const err = errorOf(task.name, error);
      const more = this.#repeated(where, thread, messageOf(err));
      if (more === undefined) return;
      const then = others === '' ? '' : `; its thread was running ${others} by then, which goes on`;
      logSafely(this.#logger, 'error', { ...fields, err }, `${where} had ended when a callback it left behind ${rejection ? 'rejected a promise nothing handled' : 'threw'}: ${messageOf(err)}${then}${more}`);
      return;
    }
    const failing = others === '' ? 'and was replaced' : `failing ${others}`;
    logSafely(this.#logger, 'error', fields, `${where} had ended when a callback it left behind called process.exit(${exitCode}): its thread ended, ${failing}`);
    for (const { id } of running) this.#exitedBy.set(id, `process.exit(${exitCode}) in a callback that ${where} left behind after it ended`);
  }

  /**
   * A callback the setup module set up threw (logged; the thread goes on, and so do the tasks it
   * has) or called process.exit() (its thread ended; the tasks it had fail). A prewarmed
   * thread runs the setup as it starts, so one that such a callback ends is replaced by one that
   * runs it again: after {@link setupExitsToStop} such ends with no task running, new threads
   * stop running it as they start, and run it with their first task instead, as without prewarm.
   */
  #setupLeftBehind(module: string, error: WorkerResponse | undefined, rejection: boolean, exitCode: number | undefined, running: LeftBehind['running'], thread: number | undefined, settingUp: boolean): void {
    const others = running.map(({ id, name }) => `"${name}" (#${id})`).join(', ');
    if (error !== undefined) {
      const err = errorOf('setup module', error);
      const more = this.#repeated(`the setup module ${module}`, thread, messageOf(err));
      if (more === undefined) return;
      const then = others === '' ? '; the thread goes on' : `; its thread was running ${others} by then, which goes on`;
      logSafely(this.#logger, 'error', { setupModule: module, err }, `a callback the setup module ${module} set up ${rejection ? 'rejected a promise nothing handled' : 'threw'}: ${messageOf(err)}${then}${more}`);
      return;
    }
    const failing = others === '' ? 'and was replaced' : `failing ${others}`;
    // While the setup ran, the exit may be its function's own call or a callback's: the thread cannot tell which.
    const who = settingUp ? `the setup module ${module} called process.exit(${exitCode}) while it set up the thread (its function, or a callback it set up)` : `a callback the setup module ${module} set up called process.exit(${exitCode})`;
    logSafely(this.#logger, 'error', { setupModule: module }, `${who}: its thread ended, ${failing}`);
    const by = settingUp ? `in the setup module ${module}, while it set up the thread` : `in a callback that the setup module ${module} set up`;
    for (const { id } of running) this.#exitedBy.set(id, `process.exit(${exitCode}) ${by}`);
    if (!this.settings.prewarm || running.length > 0 || Atomics.load(this.#controls, 0) === 1) return;
    if (++this.#setupExits < setupExitsToStop) return;
    Atomics.store(this.#controls, 0, 1);
    logSafely(
      this.#logger,
      'error',
      { setupModule: module },
      `the setup module ${module} has ended ${this.#setupExits} idle threads (process.exit() in a callback it set up): new threads no longer run it as they start (prewarm), only with their first task`,
    );
  }

  /**
   * Whether a callback's error left behind on a thread is logged now: `undefined` when the same
   * error (where, the thread, its message) was logged less than {@link repeatWindowMs} ago (it is
   * counted), else what the entry adds: how many of it were not logged since the last one.
   */
  #repeated(where: string, thread: number | undefined, message: string): string | undefined {
    const key = `${where}\n${thread ?? ''}\n${message}`;
    const now = monotonicNow();
    const seen = this.#repeats.get(key);
    if (seen !== undefined && now < seen.until) {
      seen.more++;
      return undefined;
    }
    const more = seen?.more ?? 0;
    this.#repeats.delete(key);
    if (this.#repeats.size >= repeatKinds) this.#repeats.delete(this.#repeats.keys().next().value!);
    this.#repeats.set(key, { until: now + repeatWindowMs, more: 0, where, thread, message });
    return more === 0 ? '' : ` (the same error ${more} more time(s) on this thread since the last entry, not logged: one entry per ${repeatWindowMs / 1000} s)`;
  }

  /**
   * A thread is ending because of an error thrown outside any ended task's call: it fails the
   * tasks it ran, or is logged. A prewarmed thread loads the task modules as it starts, so one
   * that a callback of a module's top level ends is replaced by one that loads it again: after
   * {@link setupExitsToStop} such ends with no task running, new threads stop loading them as they
   * start (as for the setup module's exits, {@link #setupLeftBehind}).
   */
  #died({ error, running, exitCode, rejection = false }: Died): void {
    for (const { id } of running) this.#diedOf.set(id, error);
    if (running.length > 0) return;
    const err = errorOf('worker thread', error);
    const by = rejection ? 'a promise nothing handled rejected with it, in a callback' : 'thrown by a callback';
    const what =
      exitCode === undefined
        ? `${messageOf(err)} (${by} no task could be named for: one a task module's top level set up)`
        : `process.exit(${exitCode}) in a callback no task could be named for (one a task module's top level set up)`;
    logSafely(this.#logger, 'error', { err }, `a worker thread ended, running no task: ${what}; it is replaced`);
    if (!this.settings.prewarm || Atomics.load(this.#controls, 0) === 1) return;
    if (++this.#idleDeaths < setupExitsToStop) return;
    Atomics.store(this.#controls, 0, 1);
    logSafely(
      this.#logger,
      'error',
      { err },
      `${this.#idleDeaths} idle worker threads have ended so: new threads no longer set up and load the task modules as they start (prewarm), only with their first task`,
    );
  }

  #explain(request: WorkerRequest, error: unknown): unknown {
    const { name, module, id } = request;
    const where = `worker task "${name}" (#${id}, ${module})`;
    const code = (error as { code?: unknown } | undefined)?.code;
    const message = messageOf(error);
    if (error instanceof EntryMissing) return new WorkerTaskError('ERR_WORKER_FAILED', `${where} cannot run: ${message}`, { cause: error });
    if (isThreadRefused(error)) {
      return new WorkerTaskError(
        'ERR_WORKER_FAILED',
        `${where} was not run: the system refused to start a worker thread for it (${message}: a cgroup's pids limit, ulimit -u, or memory), and the pool has no other`,
        { cause: error },
      );
    }
    if (code === 'ERR_WORKER_OUT_OF_MEMORY') {
      return new WorkerTaskError(
        'ERR_WORKER_OUT_OF_MEMORY',
        `${where} failed: its worker thread ran out of memory (${JSON.stringify(this.settings.resourceLimits ?? {})}) and was replaced`,
        { cause: error },
      );
    }
    const died = this.#diedOf.get(id);
    // Piscina copies the arguments when a thread takes the task, not at add() (which checked them):
    // a value changed since into one that cannot be cloned fails there, in this thread. Nothing ran
    // and the thread goes on.
    if (died === undefined && (error as { name?: unknown } | undefined)?.name === 'DataCloneError') {
      return new WorkerTaskError(
        'ERR_WORKER_FAILED',
        `${where} failed: its arguments could not be copied to the thread when it took the task (${message}); ` +
          'add() checked them, so they were changed after it: a worker task takes its arguments as they are when a thread takes it, so do not change them after add()',
        { cause: error },
      );
    }
    // Its thread ended because of an error it reported first: that error, as if thrown.
    if (died !== undefined && /worker exited/i.test(message)) return this.#explain(request, errorOf(name, died));
    if (/worker exited/i.test(message)) {
      const by = this.#exitedBy.get(id);
      const how = by === undefined ? '' : `, by ${by}`;
      return new WorkerTaskError('ERR_WORKER_EXITED', `${where} failed: its worker thread exited before the task finished (${message}${how}) and was replaced`, {
        cause: error,
      });
    }
    // The worker reports an error from a callback an ended task left behind, and its thread goes
    // on: one that ends the thread came from this task's own callbacks, or from one no task can be
    // named for (see thread.ts).
    return new WorkerTaskError(
      'ERR_WORKER_FAILED',
      `${where} failed in the worker pool: ${message} (thrown outside the task's own call, which ends its thread: ` +
        'by a callback the task started, or by one left behind on the thread that no ended task could be named for)',
      { cause: error },
    );
  }

  /** Samples CPU use while tasks wait for admission, to widen the window when it idles. */
  #watch(): void {
    if (this.#sampler !== undefined || this.#maxThreads <= this.#base) return;
    this.#lastCpu = cpuTime(this.#cpus.ids);
    this.#lastOwn = ownCpu();
    this.#lastAt = performance.now();
    this.#sampler = inOwnContext(() => setInterval(this.#sample, sampleMs)).unref();
  }

  #stopWatching(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
  }

  readonly #sample = (): void => {
    const cpu = cpuTime(this.#cpus.ids);
    const own = ownCpu();
    const at = performance.now();
    const total = cpu.total - this.#lastCpu.total;
    // Idle time of the CPUs this process may run on: others' idle CPUs are no room for its threads.
    const idleShare = total > 0 ? (cpu.idle - this.#lastCpu.idle) / total : 0;
    // This process's CPU time as a share of what it may use of the cores the window starts with.
    const room = (at - this.#lastAt) * Math.min(this.#cpus.capacity, this.#base);
    const ownShare = room > 0 ? (own - this.#lastOwn) / room : 1;
    this.#lastCpu = cpu;
    this.#lastOwn = own;
    this.#lastAt = at;
    const { admission } = this;
    const { queued, running, limit } = admission;
    const sample = { limit, queued, running, idleShare, ownShare, base: this.#base, max: this.#maxThreads };
    const wider = admissionWindow(sample);
    // Wider only as far as the memory left holds more threads.
    admission.limit = wider > limit ? admissionWindow({ ...sample, memoryFor: this.#memoryFor() }) : wider;
    if (wider > limit && admission.limit === limit) this.#heldBack();
    if (queued === 0 && running === 0) this.#stopWatching();
  };

  /**
   * How many more threads the memory left holds: each counted twice what a thread of this pool
   * has added to the process at most so far (its own memory and its tasks'; {@link threadBytes}
   * at least), for those that have just started and not grown yet, and one more kept free. Under
   * a cgroup's memory limit, a pool that widened past it had the whole process killed.
   */
  #memoryFor(): number {
    const left = memoryLeft();
    if (left === undefined) return Infinity;
    const threads = this.#piscina?.threads.length ?? 0;
    const used = Math.max(0, process.memoryUsage.rss() - this.#rssBefore);
    this.#perThread = Math.max(this.#perThread, threads === 0 ? 0 : used / threads);
    const each = 2 * this.#perThread;
    const live = Math.max(threads, this.admission.limit);
    return Math.max(0, Math.floor((left + used - each * (live + 1)) / each));
  }

  /** The window stayed as it was for want of memory: said once, as the tasks then wait. */
  #heldBack(): void {
    if (this.#heldForMemory) return;
    this.#heldForMemory = true;
    const mb = (bytes: number): number => Math.round(bytes / 2 ** 20);
    const left = memoryLeft() ?? 0;
    const perThread = this.#perThread;
    logSafely(
      this.#logger,
      'warn',
      { window: this.admission.limit, maxThreads: this.#maxThreads, leftMb: mb(left), perThreadMb: mb(perThread) },
      `the worker pool runs no more than ${this.admission.limit} task(s) at once for now, not maxThreads ${this.#maxThreads}: the memory left to this process ` +
        `(${mb(left)} MB, under its cgroup's limit or the machine's) holds no more: a thread of this pool takes up to ${mb(perThread)} MB, counted twice for threads still growing, ` +
        "and one more thread's worth is kept free; the other tasks wait",
    );
  }
}

/** The error a worker's failure record holds, rebuilt. */
function errorOf(name: string, failure: WorkerResponse): unknown {
  try {
    return outcomeOf(name, failure);
  } catch (error) {
    return error;
  }
}

/** What the admission window sees at one sample. */
export interface AdmissionSample {
  /** The window now. */
  readonly limit: number;
  /** Tasks waiting for admission. */
  readonly queued: number;
  /** Tasks admitted and not settled. */
  readonly running: number;
  /** Share of the CPU time of the CPUs this process may run on spent idle since the last sample, 0 to 1. */
  readonly idleShare: number;
  /** This process's CPU time since the last sample, as a share of what it may use of the starting window's cores (`base`, within its CPU quota). */
  readonly ownShare: number;
  /** The starting window (the cores, at most maxThreads). */
  readonly base: number;
  readonly max: number;
  /** How many more threads the memory left holds (`Infinity` when unknown). */
  readonly memoryFor?: number;
}

/**
 * The next admission window: wider by `base`, up to `max` and to what the memory left holds,
 * while tasks wait behind a full window, the CPUs this process may run on sit idle and it leaves
 * what it may use of them idle too (both: under a CPU quota, idle CPUs are no room for it); back
 * to `base` once nothing waits.
 */
export function admissionWindow({ limit, queued, running, idleShare, ownShare, base, max, memoryFor = Infinity }: AdmissionSample): number {
  if (queued === 0) return base;
  if (running >= limit && idleShare > idleEnough && ownShare < 1 - idleEnough) return Math.max(limit, Math.min(max, limit + base, limit + memoryFor));
  return limit;
}

/** The least memory a thread is counted for: a thread of the library with a task module and no data measured ≈ 13 MB. */
const threadBytes = 16 * 2 ** 20;

/** Threads kept free for what else this process starts (libuv's pool, child processes): not the pool's to take. */
const threadsSpared = 4;

/** The most threads the pool may start as the system's limits say, or `undefined` when they do not limit it. */
function threadsAllowed(maxThreads: number): number | undefined {
  const room = threadRoom();
  return room === undefined ? undefined : Math.max(1, Math.min(maxThreads, room - threadsSpared));
}

/** Whether `error` is a thread the system would not start (Node's `ERR_WORKER_INIT_FAILED`: EAGAIN, ENOMEM). */
function isThreadRefused(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_WORKER_INIT_FAILED';
}

/** This process's CPU time so far (all its threads), in ms. */
function ownCpu(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * What Piscina needs of an `AbortSignal` to stop a task (it reads `aborted`, and listens for
 * `abort` once), without the cost of an `AbortController` per attempt.
 */
class Kill {
  aborted = false;
  reason: unknown = undefined;
  #listener: (() => void) | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    this.#listener = listener;
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    if (this.#listener === listener) this.#listener = undefined;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listener = this.#listener;
    this.#listener = undefined;
    listener?.();
  }
}

/**
 * The worker threads' entry (`dist/worker/thread.js`) is not beside the pool's own file: the
 * library was bundled into the application, whose bundle has no such file.
 */
class EntryMissing extends Error {
  constructor(path: string) {
    super(
      `the worker pool cannot start: its threads' entry ${path} is not there (was tsyringe-background bundled into the application? ` +
        "keep it external, loaded from node_modules: esbuild's packages: 'external' or external: ['tsyringe-background'])",
    );
  }
}
