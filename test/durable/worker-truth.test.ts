/**
 * What a durable worker says and does about its jobs, against a real redis-server on 127.0.0.1:
 * an attempt's run takes its job's id and attempts (ctx.id, logs, errors; a retry logged at warn),
 * the task's retryIf stops the job's retries, the workers' application closing puts the jobs it
 * took back without counting an attempt, a result JSON cannot carry fails the job for good, and a
 * job of an unknown task is logged.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startWorkers, useBullMQ, type DurableWorkers } from '../../src/adapters/bullmq.js';
import { Background, defineTask, DurableTaskError, gracefulShutdown, shutdown, TaskContext, type TaskDefinition } from '../../src/index.js';
import { captureLogger, failureOf, freshApp, watchProcessErrors } from '../helpers.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

let runs = new Map<string, number>();
const count = (label: string): number => {
  const n = (runs.get(label) ?? 0) + 1;
  runs.set(label, n);
  return n;
};

const who = defineTask({ name: 'who', inject: [TaskContext] }, async (ctx) => ({ id: ctx.id, attempt: ctx.attempt }));
const slow = defineTask({ name: 'slow', inject: [TaskContext] }, async (ctx, label: string, ms: number) => {
  count(label);
  await sleep(ms);
  return { label, attempt: ctx.attempt };
});
const fails = defineTask({ name: 'fails' }, async (label: string) => {
  throw new Error(`${label}: run ${count(label)} fails`);
});
const refuses = defineTask({ name: 'refuses', retryIf: () => false }, async (label: string) => {
  throw new Error(`${label}: run ${count(label)} fails`);
});
const accepts = defineTask({ name: 'accepts', retryIf: () => true }, async (label: string) => {
  throw new Error(`${label}: run ${count(label)} fails`);
});
const charges = defineTask({ name: 'charges' }, async (label: string) => {
  count(label);
  return { amount: 1999n };
});
const indexes = defineTask({ name: 'indexes' }, async (label: string) => {
  count(label);
  return { label, index: new Map([['a', 1]]) };
});
const unknownHere = defineTask({ name: 'unknownHere' }, async () => 'never');

const tasks = [who, slow, fails, refuses, accepts, charges, indexes] as unknown as TaskDefinition<never[]>[];

describe.skipIf(!hasRedis)('what a durable worker says and does about its jobs', () => {
  const redis = redisForSuite();

  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** Workers on a fresh application: their own logger, and their application's. */
  function worker(queueName: string, concurrency = 4) {
    const logger = captureLogger();
    const appLogger = captureLogger();
    const app = freshApp({ logger: appLogger });
    const workers: DurableWorkers = startWorkers({ container: app, tasks, connection: redis.connection, queueName, concurrency, logger });
    closers.push(
      () => workers.close({ timeoutMs: 2_000 }),
      () => shutdown({ container: app, timeoutMs: 100 }),
    );
    return { app, workers, logger, appLogger };
  }

  /** A producer application on a fresh queue, with workers (unless `workers: false`). */
  function setup(options: { workers?: boolean; concurrency?: number } = {}) {
    runs = new Map();
    const queueName = `test-${randomUUID()}`;
    const producer = freshApp({ logger: captureLogger() });
    const backend = useBullMQ(producer, { connection: redis.connection, queueName, logger: captureLogger() });
    closers.push(
      async () => {
        await backend.queue.obliterate({ force: true }).catch(() => undefined);
        await backend.close();
      },
      () => shutdown({ container: producer }),
    );
    const bg = producer.createChildContainer().resolve(Background).with({ durable: true });
    const first = options.workers === false ? undefined : worker(queueName, options.concurrency);
    return { bg, backend, queueName, ...first! };
  }

  it("an attempt's ctx.id is its job's id, the handle's", async () => {
    const { bg } = setup();
    const handle = bg.add(who);
    await expect(handle.result()).resolves.toEqual({ id: handle.id, attempt: 1 });
  });

  it("a timed-out attempt's error, the job's failedReason, names the job's id", async () => {
    const { bg, backend } = setup();
    const handle = bg.with({ timeoutMs: 50 }).add(slow, 'late', 2_000);
    const failure = await failureOf(handle.result());
    expect(failure).toBeInstanceOf(DurableTaskError);
    expect((failure as Error).message).toContain(`Task "slow" (#${handle.id}) timed out after 50 ms (attempt 1)`);
    expect((await backend.job(handle.id))?.failedReason).toBe(`Task "slow" (#${handle.id}) timed out after 50 ms (attempt 1)`);
  });

  it('a failed attempt the queue runs again is logged at warn, with the job id; the last at error: through the logger given to startWorkers()', async () => {
    const { bg, logger, appLogger } = setup();
    const handle = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(fails, 'twice');
    await expect(handle.result()).rejects.toThrow('twice: run 2 fails');
    expect(appLogger.entries.filter((entry) => entry.level !== 'debug')).toEqual([]);
    expect(logger.entries.filter((entry) => entry.level !== 'debug').map(({ level, message, fields }) => ({ level, message, taskId: fields.taskId, attempt: fields.attempt }))).toEqual([
      { level: 'warn', message: 'task "fails" failed (attempt 1 of 2); its queue runs it again', taskId: handle.id, attempt: 1 },
      { level: 'error', message: 'task "fails" failed', taskId: handle.id, attempt: 2 },
    ]);
  });

  it("the task's retryIf decides whether the job is run again: false stops its retries, true lets them run", async () => {
    const { bg, backend, logger } = setup();
    const refused = bg.with({ retries: 3, backoff: { baseMs: 1, jitter: 0 } }).add(refuses, 'refused');
    await expect(refused.result()).rejects.toThrow('refused: run 1 fails');
    await expect(backend.job(refused.id)).resolves.toMatchObject({ status: 'failed', attempt: 1, failedReason: 'refused: run 1 fails' });
    expect(runs.get('refused')).toBe(1);
    expect(logger.at('error').map((entry) => entry.message)).toEqual(['task "refuses" failed']);
    const accepted = bg.with({ retries: 2, backoff: { baseMs: 1, jitter: 0 } }).add(accepts, 'accepted');
    await expect(accepted.result()).rejects.toThrow('accepted: run 3 fails');
    await expect(backend.job(accepted.id)).resolves.toMatchObject({ status: 'failed', attempt: 3 });
    expect(runs.get('accepted')).toBe(3);
  });

  it("closing the workers' application puts the jobs it took back, none failed nor its attempt counted; another worker runs them", async () => {
    const { bg, backend, app, logger, queueName } = setup({ concurrency: 2 });
    const retried = bg.with({ retries: 2, backoff: { baseMs: 1, jitter: 0 } });
    const active = retried.add(slow, 'active', 1_000);
    // Its task running (not only its job taken: a job taken may still wait to start, and be put back).
    await vi.waitFor(() => expect(runs.get('active')).toBe(1), { timeout: 5_000, interval: 5 });
    await vi.waitFor(async () => expect((await backend.job(active.id))?.status).toBe('running'), { timeout: 5_000, interval: 5 });
    // Its application closes with a deadline shorter than the active job: jobs come meanwhile.
    const closing = shutdown({ container: app, timeoutMs: 300 });
    const added = ['a', 'b', 'c'].map((label) => retried.add(slow, label, 10));
    // The active one's run was abandoned at the deadline, and its job put back: not lost.
    expect(await closing).toMatchObject({ abandoned: 1, requeued: 1, totals: { abandoned: 1 } });
    // Once the close has resolved (a process would exit then), every job it took is back in Redis:
    // the workers closed with their application.
    const queue = backend.queue;
    expect(await queue.getJobCounts('active', 'wait', 'prioritized')).toEqual({ active: 0, wait: 0, prioritized: 4 });
    const handles = [active, ...added];
    expect(await queue.getJobCounts('failed', 'completed', 'delayed')).toEqual({ failed: 0, completed: 0, delayed: 0 });
    for (const handle of handles) expect((await queue.getJob(handle.id))?.attemptsMade).toBe(0);
    // The active one was taken here; so is, most often, the first added (the worker's second slot
    // fetches it before the close), whose run the closed application refused: either way, put back
    // with its attempt not counted (attemptsMade 0, above).
    expect((await queue.getJob(active.id))?.attemptsStarted).toBe(1);
    expect((await queue.getJob(added[0]!.id))?.attemptsStarted).toBeLessThanOrEqual(1);
    expect(logger.at('warn').map((entry) => entry.message)).toEqual([expect.stringContaining('durable workers stopped taking jobs: their application closed')]);
    // None of the added ones ran here.
    expect([runs.get('active'), runs.get('a'), runs.get('b'), runs.get('c')]).toEqual([1, undefined, undefined, undefined]);
    worker(queueName);
    const results = await Promise.all(handles.map((handle) => handle.result()));
    expect(results).toEqual([
      { label: 'active', attempt: 1 },
      { label: 'a', attempt: 1 },
      { label: 'b', attempt: 1 },
      { label: 'c', attempt: 1 },
    ]);
    for (const handle of handles) await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'succeeded', attempt: 1 });
  });

  it("a followed handle counts a job put back by its closing workers as no attempt: it waits queued, and its run on another worker is attempt 1 (an immediate retry, which BullMQ's events write alike, still counts)", async () => {
    const { bg, app, queueName } = setup({ concurrency: 2 });
    // Followed from the start (its status read): kept up to date by the queue's events.
    const handle = bg.add(slow, 'put back', 1_000);
    const statuses: string[] = [];
    const attempts = new Set<number>();
    const look = setInterval(() => {
      if (statuses.at(-1) !== handle.status) statuses.push(handle.status);
      attempts.add(handle.attempt);
    }, 2);
    try {
      await vi.waitFor(() => expect(runs.get('put back')).toBe(1), { timeout: 5_000, interval: 5 });
      await vi.waitFor(() => expect(handle.attempt).toBe(1), { timeout: 5_000, interval: 5 });
      // Its run abandoned at the deadline, its job put back: BullMQ counted the take as started.
      expect(await shutdown({ container: app, timeoutMs: 200 })).toMatchObject({ requeued: 1 });
      // Waiting with no attempt made, as backend.job(id) says.
      await vi.waitFor(() => expect(handle.status).toBe('queued'), { timeout: 5_000, interval: 5 });
      expect(handle.attempt).toBe(0);
      worker(queueName);
      await expect(handle.result()).resolves.toEqual({ label: 'put back', attempt: 1 });
    } finally {
      clearInterval(look);
    }
    expect(handle.attempt).toBe(1);
    expect([...attempts].filter((attempt) => attempt > 1)).toEqual([]);
    expect(statuses.filter((status) => status === 'retrying')).toEqual([]);
    // Control: a retry BullMQ makes at once (no backoff) writes the same `waiting` event, and counts.
    const retried = bg.with({ retries: 1, backoff: { baseMs: 0, jitter: 0 } }).add(fails, 'at once');
    void retried.status;
    await expect(retried.result()).rejects.toThrow('at once: run 2 fails');
    expect(retried.attempt).toBe(2);
  });

  it("gracefulShutdown() of a worker process whose jobs outlast its deadline exits 0: their runs were abandoned, their jobs put back, nothing lost", async () => {
    const { bg, backend, app, queueName } = setup({ concurrency: 2 });
    const handles = ['long-1', 'long-2'].map((label) => bg.add(slow, label, 1_000));
    await vi.waitFor(() => expect([runs.get('long-1'), runs.get('long-2')]).toEqual([1, 1]), { timeout: 5_000, interval: 5 });
    const logger = captureLogger();
    const exits: number[] = [];
    const report = await gracefulShutdown({ container: app, timeoutMs: 300, signals: [], logger, exit: (code) => exits.push(code) }).close();
    expect(report).toMatchObject({ abandoned: 2, requeued: 2, totals: { abandoned: 2 }, exitCode: 0 });
    expect(logger.at('info').map((entry) => entry.message)).toEqual([
      expect.stringMatching(/^shut down gracefully in \d+ ms: .*, 2 abandoned \(2 of them durable jobs put back in their queue, to run on another worker\)$/),
    ]);
    expect(logger.at('error')).toEqual([]);
    // They run again elsewhere, their first attempt not counted.
    worker(queueName);
    await expect(Promise.all(handles.map((handle) => handle.result()))).resolves.toEqual([
      { label: 'long-1', attempt: 1 },
      { label: 'long-2', attempt: 1 },
    ]);
    await expect(backend.job(handles[0]!.id)).resolves.toMatchObject({ status: 'succeeded', attempt: 1 });
  });

  it('workers started on an application already closed put back the first job they take, say so once at warn, and close with it', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const app = freshApp({ logger: captureLogger() });
    await shutdown({ container: app });
    const logger = captureLogger();
    const workers = startWorkers({ container: app, tasks, connection: redis.connection, queueName, logger });
    closers.push(() => workers.close());
    const handle = bg.add(slow, 'never here', 10);
    await vi.waitFor(() => expect(logger.at('warn').map((entry) => entry.message)).toEqual([expect.stringContaining('durable workers stopped taking jobs: their application closed')]), { timeout: 5_000, interval: 10 });
    // Closed with their application, with nobody calling close().
    await vi.waitFor(() => expect(workers.worker.isRunning()).toBe(false), { timeout: 5_000, interval: 10 });
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'queued', attempt: 0 });
    expect(runs.get('never here')).toBeUndefined();
  });

  it("a logger that throws, or whose promise rejects, changes nothing for the job: one whose result JSON cannot carry still fails at once, never retried (its work done again)", async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    for (const error of <unknown[]>[
      () => {
        throw new Error('log sink down');
      },
      async () => {
        throw new Error('log sink down');
      },
    ]) {
      const { bg, queueName } = setup({ workers: false });
      const app = freshApp({ logger: captureLogger() });
      const workers = startWorkers({ container: app, tasks, connection: redis.connection, queueName, logger: { ...captureLogger(), error: error as () => void } });
      closers.push(() => workers.close({ timeoutMs: 2_000 }), () => shutdown({ container: app, timeoutMs: 100 }));
      const charged = bg.with({ retries: 2, backoff: { baseMs: 1, jitter: 0 } }).add(charges, 'charged');
      await expect(charged.result()).rejects.toThrow(`durable task "charges" (job ${charged.id}) returned a value that does not survive JSON`);
      expect(runs.get('charged')).toBe(1);
    }
    expect(consoleError).toHaveBeenCalledWith('[tsyringe-background] the logger threw while logging:', expect.stringContaining('returned a value that does not survive JSON'), expect.objectContaining({ taskId: expect.any(String) as unknown }), expect.objectContaining({ message: 'log sink down' }));
    consoleError.mockRestore();
  });

  it('a result JSON cannot carry fails its job at once, without retries, naming the task, the job and the path; logged at error', async () => {
    const { bg, logger } = setup();
    const retried = bg.with({ retries: 2, backoff: { baseMs: 1, jitter: 0 } });
    const charged = retried.add(charges, 'charged');
    const indexed = retried.add(indexes, 'indexed');
    await expect(charged.result()).rejects.toThrow(`durable task "charges" (job ${charged.id}) returned a value that does not survive JSON: result.amount is a bigint`);
    await expect(indexed.result()).rejects.toThrow(`durable task "indexes" (job ${indexed.id}) returned a value that does not survive JSON: result.index is an instance of Map`);
    expect([runs.get('charged'), runs.get('indexed')]).toEqual([1, 1]);
    expect(logger.at('error').map((entry) => [entry.fields.taskId, entry.message.slice(0, 60)]).sort()).toEqual(
      [
        [charged.id, `durable task "charges" (job ${charged.id}) returned a value`.slice(0, 60)],
        [indexed.id, `durable task "indexes" (job ${indexed.id}) returned a value`.slice(0, 60)],
      ].sort(),
    );
    expect(logger.at('warn')).toEqual([]);
  });

  it('a job whose task the worker does not know is logged at error, once, with its name, its id and the names known', async () => {
    const { bg, logger } = setup();
    const handle = bg.with({ retries: 2 }).add(unknownHere);
    await expect(handle.result()).rejects.toThrow('no durable task named "unknownHere" is known to this worker');
    expect(logger.at('error')).toEqual([
      {
        level: 'error',
        fields: { task: 'unknownHere', taskId: handle.id, known: ['who', 'slow', 'fails', 'refuses', 'accepts', 'charges', 'indexes'] },
        message: expect.stringContaining(`durable job ${handle.id} failed without retries: no durable task named "unknownHere"`) as string,
      },
    ]);
  });
});
