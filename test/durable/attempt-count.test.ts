/**
 * A job's attempt and status as every reader says them, against a real redis-server on
 * 127.0.0.1, through takes that are no attempt (a put-back by a closing worker, a stall), a failed
 * attempt waiting for its retry, and the retry: the handle followed from `add()`, handles made by
 * id (`backend.handle(id)`) in another process at each of those moments and followed from then on,
 * one first watched late (read back from Redis), `backend.job(id)`, and the task's `ctx.attempt`.
 */
import { Worker } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startWorkers, type DurableBackend } from '../../src/adapters/bullmq.js';
import { defineTask, shutdown, TaskContext, type TaskHandle, type TaskProgress } from '../../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors, type Deferred } from '../helpers.js';
import { openQueue, producerOn } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

/** Each run of `step`, in order: its label and its `ctx.attempt`. */
const entered: { label: string; attempt: number }[] = [];
/** Each run's gate: resolved by the test with how the run ends. */
const gates: Deferred<'fail' | 'pass'>[] = [];
/** Ends as the test says, or when its signal aborts (its run abandoned by a closing application). */
const step = defineTask({ name: 'step', inject: [TaskContext] }, async (ctx, label: string) => {
  entered.push({ label, attempt: ctx.attempt });
  const gate = deferred<'fail' | 'pass'>();
  gates.push(gate);
  const how = await Promise.race([gate.promise, new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve('aborted'), { once: true }))]);
  if (how === 'fail') throw new Error(`${label}: attempt ${ctx.attempt} fails`);
  return ctx.attempt;
});

type Moment = readonly [status: string, attempt: number];

describe.skipIf(!hasRedis)("a job's attempt in every reader, through put-backs, stalls and retries", () => {
  const redis = redisForSuite();
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const gate of gates.splice(0)) gate.resolve('pass');
    entered.length = 0;
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** Workers for `step` on a fresh application of their own; `close()` closes both. */
  function workersOn(queueName: string) {
    const app = freshApp({ logger: captureLogger() });
    const workers = startWorkers({ container: app, tasks: [step], connection: redis.connection, queueName, concurrency: 4, logger: captureLogger() });
    const close = async (): Promise<void> => {
      await workers.close({ timeoutMs: 2_000 });
      await shutdown({ container: app, timeoutMs: 100 });
    };
    closers.push(close);
    return { app, workers, close };
  }

  /**
   * The readers of job `id`: the handle followed since `add()`, and a handle made by id in a
   * process of its own at each call of `rebuild()` (followed from then on). `agree()` waits until
   * every one of them, and `backend.job(id)`, says `moment` (and its progress, when given).
   */
  function readersOf(backend: DurableBackend, queueName: string, followed: TaskHandle) {
    const rebuilt: { at: string; handle: TaskHandle }[] = [];
    let withProgress: TaskProgress | undefined;
    const says = (reader: Pick<TaskHandle, 'status' | 'attempt' | 'progress'> | undefined): readonly unknown[] =>
      withProgress === undefined ? [reader?.status, reader?.attempt] : [reader?.status, reader?.attempt, reader?.progress];
    return {
      async rebuild(at: string): Promise<void> {
        const handle = (await producerOn(redis.connection, closers, queueName).handle(followed.id))!;
        rebuilt.push({ at, handle });
      },
      async agree(moment: Moment, progress?: TaskProgress): Promise<void> {
        withProgress = progress;
        const expected = progress === undefined ? moment : [...moment, progress];
        await vi.waitFor(
          async () => {
            expect({
              job: says(await backend.job(followed.id)),
              followed: says(followed),
              ...Object.fromEntries(rebuilt.map(({ at, handle }) => [`made by id ${at}`, says(handle)])),
            }).toEqual({
              job: expected,
              followed: expected,
              ...Object.fromEntries(rebuilt.map(({ at }) => [`made by id ${at}`, expected])),
            });
          },
          { timeout: 5_000, interval: 10 },
        );
      },
    };
  }

  /** Waits until `n` runs of `step` have begun. */
  async function runs(n: number): Promise<void> {
    await vi.waitFor(() => expect(entered).toHaveLength(n), { timeout: 5_000, interval: 5 });
  }

  /** Promotes the job from its retry's backoff (60 s): a `waiting` event, as when the backoff runs out. */
  async function promote(backend: DurableBackend, id: string): Promise<void> {
    await (await backend.queue.getJob(id))!.promote();
  }

  it("a job put back by its closing workers, then failed, counts its retry as attempt 2: so say its handles however made, backend.job(id) and ctx.attempt", async () => {
    const { bg, backend, queueName } = openQueue(redis.connection, closers, { prefix: 'attempts', tasks: [step], workers: false });
    const retried = bg.with({ durable: true, retries: 2, backoff: { baseMs: 60_000, jitter: 0 } });
    const followed = retried.add(step, 'followed');
    expect(followed.status).toBe('queued');
    // Another job through the same steps, first watched (read back from Redis) as it waits for its retry.
    const late = retried.add(step, 'late');
    const readers = readersOf(backend, queueName, followed);
    await readers.agree(['queued', 0]);
    await readers.rebuild('queued');

    // Taken, its task running: attempt 1.
    const first = workersOn(queueName);
    await runs(2);
    await readers.agree(['running', 1]);
    await readers.rebuild('running');
    // Its application closes with a short deadline: the runs are abandoned, the jobs put back.
    expect(await shutdown({ container: first.app, timeoutMs: 100 })).toMatchObject({ requeued: 2 });
    await first.close();
    await readers.agree(['queued', 0]);
    await readers.rebuild('put back');

    // Taken again: the same attempt 1, which fails; its retry waits for its backoff.
    workersOn(queueName);
    await runs(4);
    await readers.agree(['running', 1]);
    await readers.rebuild('taken again');
    gates[2]!.resolve('fail');
    gates[3]!.resolve('fail');
    await readers.agree(['retrying', 1]);
    await readers.rebuild('waiting for its retry');
    expect([late.status, late.attempt]).toEqual(['queued', 0]);
    await vi.waitFor(() => expect([late.status, late.attempt]).toEqual(['retrying', 1]), { timeout: 5_000, interval: 5 });

    // Its retry: attempt 2 in every reader.
    await promote(backend, followed.id);
    await promote(backend, late.id);
    await runs(6);
    await readers.agree(['running', 2]);
    await vi.waitFor(() => expect([late.status, late.attempt]).toEqual(['running', 2]), { timeout: 5_000, interval: 5 });
    gates[4]!.resolve('pass');
    gates[5]!.resolve('pass');
    await expect(followed.result()).resolves.toBe(2);
    await expect(late.result()).resolves.toBe(2);
    await readers.agree(['succeeded', 2]);
    expect(entered.filter(({ label }) => label === 'followed').map(({ attempt }) => attempt)).toEqual([1, 1, 2]);
  });

  it("a job that stalled reads queued, its attempts made unchanged, in every reader while it waits; taken again it is the same attempt, and its retry after a failure the next", async () => {
    const { bg, backend, queueName } = openQueue(redis.connection, closers, { prefix: 'attempts', tasks: [step], workers: false });
    const admin = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => admin.quit());
    const followed = bg.with({ durable: true, retries: 2, backoff: { baseMs: 60_000, jitter: 0 } }).add(step, 'followed');
    const readers = readersOf(backend, queueName, followed);
    await readers.agree(['queued', 0]);

    /** A take by a worker that then dies (having reported `progress`, if given). */
    const takeAndDie = async (progress?: TaskProgress): Promise<void> => {
      const dead = new Worker(queueName, undefined, { connection: redis.connection, autorun: false, lockDuration: 60_000 });
      const job = await dead.getNextJob(`dead-${randomUUID()}`);
      expect(job?.id).toBe(followed.id);
      if (progress !== undefined) await job.updateProgress({ ...progress });
      await dead.close();
    };
    /** Its lock gone, BullMQ's stalled check moves the job back to wait. */
    const stall = async (): Promise<void> => {
      await admin.del(`bull:${queueName}:${followed.id}:lock`);
      const checker = new Worker(queueName, undefined, { connection: redis.connection, autorun: false, stalledInterval: 100, maxStalledCount: 5 });
      const stalled = new Promise((resolve) => checker.on('stalled', resolve));
      void checker.startStalledCheckTimer();
      await stalled;
      await checker.close();
    };

    // What the take reported stays the job's progress while the job waits for the same attempt.
    const half = { fraction: 0.5, message: 'half' };
    await takeAndDie(half);
    await readers.agree(['running', 1], half);
    await readers.rebuild('taken by a worker that died');
    await stall();
    await readers.agree(['queued', 0], half);
    await readers.rebuild('stalled');

    // Taken again: the same attempt 1, which fails.
    const workers = workersOn(queueName);
    await runs(1);
    await readers.agree(['running', 1]);
    gates[0]!.resolve('fail');
    await readers.agree(['retrying', 1]);
    await readers.rebuild('waiting for its retry');
    await workers.close();

    // Its retry, taken by a worker that dies: attempt 2, then back to waiting for it.
    await promote(backend, followed.id);
    await takeAndDie();
    await readers.agree(['running', 2]);
    await readers.rebuild('retry taken by a worker that died');
    await stall();
    await readers.agree(['retrying', 1]);
    await readers.rebuild('retry stalled');

    // Taken again: the same attempt 2.
    workersOn(queueName);
    await runs(2);
    await readers.agree(['running', 2]);
    gates[1]!.resolve('pass');
    await expect(followed.result()).resolves.toBe(2);
    await readers.agree(['succeeded', 2]);
    expect(entered.map(({ attempt }) => attempt)).toEqual([1, 2]);
  });
});
