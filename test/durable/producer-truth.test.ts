/**
 * What the producer's handles and add() say must be what Redis and the workers do (faults found
 * by an outside probe): cancel() of a handle nobody watched never turns a job that ended into a
 * cancelled one; options a worker elsewhere cannot apply, or BullMQ cannot take, are refused at
 * add(); schedules keep their runs as long as one-off jobs, and start one period after add();
 * result({ timeoutMs }) is checked as in process; a job cancelled by another process reads
 * cancelled; a retry clears the failed attempt's progress; odd arguments get the documented
 * TypeError. Against a real redis-server, with workers in this process on another container.
 */
import { Job, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { defineTask, DurableTaskError, shutdown, TaskCancelledError, TaskContext } from '../../src/index.js';
import { captureLogger, deferred, failureOf, freshApp, watchProcessErrors } from '../helpers.js';
import { openQueue, producerOn } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

const answer = defineTask({ name: 'truthAnswer' }, async (n: number) => n);
const broken = defineTask({ name: 'truthBroken' }, async (why: string) => {
  throw new Error(why);
});
/** Runs until its signal aborts. */
const abortable = defineTask({ name: 'truthAbortable', inject: [TaskContext] }, async (ctx) => {
  await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
});
/** Reports half its work, then fails. */
const halfThenFail = defineTask({ name: 'truthHalfThenFail', inject: [TaskContext] }, async (ctx) => {
  ctx.progress(0.5, `half of attempt ${ctx.attempt}`);
  throw new Error(`attempt ${ctx.attempt} fails`);
});
const tick = defineTask({ name: 'truthTick' }, async () => undefined);
const never = (): boolean => false;
const picky = defineTask({ name: 'truthPicky', durable: true, retries: 2, retryIf: never }, async (label: string) => label);

describe.skipIf(!hasRedis)('durable producer: what handles and add() say is what Redis does', () => {
  const redis = redisForSuite();

  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** A producer application and, unless told otherwise, a worker application on one fresh queue. */
  function setup(options: { workers?: boolean } = {}) {
    return openQueue(redis.connection, closers, { prefix: 'truth', tasks: [answer, broken, abortable, halfThenFail, tick, picky], workers: options.workers });
  }

  it("the application's close waits until every durable job add() accepted is in Redis: a process may exit once shutdown() has resolved (gracefulShutdown() does)", async () => {
    const { bg, backend, producer, queueName } = setup({ workers: false });
    // Connected, as a running service is; and a client of the test's, ready to read at once.
    await backend.queue.count();
    const admin = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => admin.quit());
    await admin.ping();
    // A burst goes out in slices, a turn each: most of it is still on its way when the close begins.
    for (let i = 0; i < 5_000; i++) bg.with({ durable: true }).add(answer, i);
    await shutdown({ container: producer });
    expect(await admin.zcard(`bull:${queueName}:prioritized`)).toBe(5_000);
    expect(backend.enqueueFailures).toBe(0);
  });

  /** Waits until Redis says the job has `status`, reading it from Redis only (the handle is not watched). */
  async function untilJob(backend: DurableBackend, id: string, status: string): Promise<void> {
    await vi.waitFor(async () => expect((await backend.job(id))?.status).toBe(status), { timeout: 5_000, interval: 10 });
  }

  describe('cancel() of a handle nobody watched', () => {
    it('after its job succeeded: the handle ends succeeded with the value, not cancelled, and Redis keeps the job', async () => {
      const { bg, backend } = setup();
      const handle = bg.with({ durable: true }).add(answer, 42);
      await untilJob(backend, handle.id, 'succeeded');
      expect(handle.cancel('too late')).toBe(true);
      await expect(handle.result()).resolves.toBe(42);
      expect(handle.status).toBe('succeeded');
      expect(handle.cancel('again')).toBe(false);
      await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'succeeded', result: 42 });
    });

    it('after its job failed: the handle ends failed with the job\'s reason, not cancelled', async () => {
      const { bg, backend } = setup();
      const handle = bg.with({ durable: true }).add(broken, 'no luck');
      await untilJob(backend, handle.id, 'failed');
      expect(handle.cancel('too late')).toBe(true);
      const error = await failureOf(handle.result());
      expect(error).toBeInstanceOf(DurableTaskError);
      expect(error.message).toBe('no luck');
      expect(handle.status).toBe('failed');
    });

    it('while its job waits: the job is removed, and the handle ends cancelled with the reason', async () => {
      const { bg, backend } = setup({ workers: false });
      const handle = bg.with({ durable: true }).add(answer, 1);
      await untilJob(backend, handle.id, 'queued');
      expect(handle.cancel('not needed')).toBe(true);
      const error = await failureOf(handle.result());
      expect(error).toBeInstanceOf(TaskCancelledError);
      expect(error.cause).toBe('not needed');
      expect(handle.status).toBe('cancelled');
      await expect(backend.job(handle.id)).resolves.toBeUndefined();
    });

    it('while its delay has not run out: the handle ends cancelled at once (its job cannot have run), and the job is removed', async () => {
      const { bg, backend } = setup();
      const handle = bg.with({ durable: true, delayMs: 60_000 }).add(answer, 3);
      await untilJob(backend, handle.id, 'delayed');
      expect(handle.cancel('not needed')).toBe(true);
      expect(handle.status).toBe('cancelled');
      await expect(handle.result()).rejects.toMatchObject({ cause: 'not needed' });
      await vi.waitFor(async () => expect(await backend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    });

    it('while its job runs: the worker stops it, and the handle ends cancelled with the reason', async () => {
      const { bg, backend } = setup();
      const handle = bg.with({ durable: true, retries: 2 }).add(abortable);
      await untilJob(backend, handle.id, 'running');
      expect(handle.cancel('stop')).toBe(true);
      const error = await failureOf(handle.result());
      expect(error).toBeInstanceOf(TaskCancelledError);
      expect(error.cause).toBe('stop');
      expect(handle.status).toBe('cancelled');
      await untilJob(backend, handle.id, 'cancelled');
    });
  });

  it('refuses at add() a retryIf a worker cannot see (per call, or unlike the definition\'s), and accepts the definition\'s own', async () => {
    const { bg, backend } = setup({ workers: false });
    const perCall = `bg.add("truthAnswer"): a retryIf given per call (bg.with({ retryIf })) or as a scope default cannot reach the worker that runs a durable task`;
    expect(() => bg.with({ durable: true, retries: 2, retryIf: never }).add(answer, 1)).toThrow(new RegExp(`^${perCall.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*put retryIf on the definition of "truthAnswer"`));
    expect(() => bg.with({ retryIf: () => true }).add(picky, 'x')).toThrow(TypeError);
    expect(() => bg.with({ retryIf: () => true }).add(picky, 'x')).toThrow(/^bg\.add\("truthPicky"\): a retryIf given per call/);
    const accepted = bg.add(picky, 'fine');
    await untilJob(backend, accepted.id, 'queued');
    expect(await backend.queue.count()).toBe(1);
  });

  it.each([
    ['a year field', '0 0 9 * * * 2030', 'too many fields'],
    ['a W day', '0 0 15W * *', '15W'],
  ])('refuses at add() a cron expression BullMQ\'s scheduler does not take: %s', async (_what, expression, said) => {
    const { bg, backend } = setup({ workers: false });
    const view = bg.with({ durable: true, cron: expression, overlap: true });
    let error: unknown;
    try {
      view.add(tick);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain(`bg.add("truthTick"): options.cron ${JSON.stringify(expression)} is not taken by BullMQ's job scheduler`);
    expect((error as Error).message).toContain(said);
    expect(await backend.queue.getJobSchedulersCount()).toBe(0);
    // One both take still passes.
    bg.with({ durable: true, cron: '0 0 9 * * MON-FRI', tz: 'Europe/Paris', overlap: true }).add(tick);
    await vi.waitFor(async () => expect(await backend.queue.getJobScheduler('truthTick')).toMatchObject({ pattern: '0 0 9 * * MON-FRI' }), { timeout: 5_000, interval: 10 });
  });

  it('gives the runs of a durable schedule the retention of one-off jobs, and its first run one period after add()', async () => {
    const { bg, backend } = setup({ workers: false });
    const addedAt = Date.now();
    bg.with({ durable: true, every: 60_000, overlap: true }).add(tick);
    await vi.waitFor(async () => expect(await backend.queue.getJobScheduler('truthTick')).toBeDefined(), { timeout: 5_000, interval: 10 });
    const scheduler = (await backend.queue.getJobScheduler('truthTick'))!;
    expect(scheduler.template?.opts).toMatchObject({ removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } });
    expect(scheduler.next).toBeGreaterThanOrEqual(addedAt + 60_000);
    const [run] = await backend.queue.getJobs(['delayed']);
    expect(run?.opts).toMatchObject({ removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } });
    expect(run!.timestamp + run!.delay).toBeGreaterThanOrEqual(addedAt + 60_000);
  });

  it.each([[-1], [1.5], [2 ** 40], ['x'], [Number.NaN]])('checks result({ timeoutMs: %s }) as an in-process handle does', (timeoutMs) => {
    const { bg } = setup({ workers: false });
    const local = bg.add(async () => 1);
    const expected = (() => {
      try {
        void local.result({ timeoutMs: timeoutMs as number });
      } catch (error) {
        return error as Error;
      }
      throw new Error('the in-process handle took it');
    })();
    const durable = bg.with({ durable: true, delayMs: 60_000 }).add(answer, 1);
    expect(() => durable.result({ timeoutMs: timeoutMs as number })).toThrow(expected);
    expect(() => durable.result({ timeoutMs: timeoutMs as number })).toThrow(expected.constructor);
    durable.cancel();
  });

  it("ends another process's handle of a job cancelled while it ran cancelled, as backend.job(id) reads it", async () => {
    const { bg, backend, queueName } = setup();
    const other = freshApp({ logger: captureLogger() });
    const otherBackend = useBullMQ(other, { connection: redis.connection, queueName });
    closers.push(() => shutdown({ container: other }), () => otherBackend.close());
    const handle = bg.with({ durable: true }).add(abortable);
    await untilJob(backend, handle.id, 'running');
    const seen = (await otherBackend.handle(handle.id))!;
    expect(seen.status).toBe('running');
    expect(handle.cancel('stop it')).toBe(true);
    const error = await failureOf(seen.result());
    expect(error).toBeInstanceOf(TaskCancelledError);
    expect(seen.status).toBe('cancelled');
    await untilJob(backend, handle.id, 'cancelled');
    // Read after the end, by id, from Redis alone.
    const later = (await otherBackend.handle(handle.id))!;
    expect(later.status).toBe('cancelled');
    await expect(later.result()).rejects.toBeInstanceOf(TaskCancelledError);
  });

  it("another process's handle of a job that starts while the handle is being read reads it running, not queued for the whole run", async () => {
    const { bg, queueName } = setup({ workers: false });
    const other = producerOn(redis.connection, closers, queueName);
    const handle = bg.with({ durable: true }).add(answer, 7);
    await vi.waitFor(async () => expect(await other.job(handle.id)).toMatchObject({ status: 'queued' }), { timeout: 5_000, interval: 10 });
    // A worker takes the job just after the handle's read of its state, and the other process's
    // event stream has read its `active` before the handle is given.
    const worker = new Worker(queueName, undefined, { connection: redis.connection, autorun: false });
    closers.push(() => worker.close());
    const activeRead = deferred();
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the instance's own this
    const emit = QueueEvents.prototype.emit as (this: QueueEvents, event: string, ...args: unknown[]) => boolean;
    vi.spyOn(QueueEvents.prototype, 'emit').mockImplementation(function (this: QueueEvents, event: string, ...args: unknown[]) {
      if (event === 'active' && (args[0] as { jobId?: string } | undefined)?.jobId === handle.id) activeRead.resolve();
      return emit.call(this, event, ...args);
    });
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the job as this
    const getState = Job.prototype.getState;
    let taken = false;
    vi.spyOn(Job.prototype, 'getState').mockImplementation(async function (this: Job) {
      const state = await getState.call(this);
      if (this.id === handle.id && !taken) {
        taken = true;
        expect((await worker.getNextJob('worker-token'))?.id).toBe(handle.id);
        await activeRead.promise;
      }
      return state;
    });
    const seen = (await other.handle(handle.id))!;
    vi.restoreAllMocks();
    expect(taken).toBe(true);
    expect([seen.status, seen.attempt]).toEqual(['running', 1]);
  });

  it('clears the progress of a failed attempt once its retry is scheduled, on the handle and in backend.job(id)', async () => {
    const { bg, backend } = setup();
    const handle = bg.with({ durable: true, retries: 1, backoff: { baseMs: 60_000, jitter: 0 } }).add(halfThenFail);
    expect(handle.status).toBe('queued');
    await vi.waitFor(() => expect(handle.status).toBe('retrying'), { timeout: 5_000, interval: 5 });
    expect(handle.attempt).toBe(1);
    expect(handle.progress).toBeUndefined();
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'retrying', progress: undefined });
    // A handle read from Redis while it waits says the same.
    const read = (await backend.handle(handle.id))!;
    expect(read.status).toBe('retrying');
    expect(read.progress).toBeUndefined();
    expect(handle.cancel()).toBe(true);
  });

  it('a job cancelled as it waited for its retry keeps its attempts made: a handle that followed it, and one made by id after its removal, count the attempt that failed', async () => {
    const { bg, backend, queueName } = setup();
    const watcher = producerOn(redis.connection, closers, queueName);
    const handle = bg.with({ durable: true, retries: 1, backoff: { baseMs: 60_000, jitter: 0 } }).add(halfThenFail);
    await untilJob(backend, handle.id, 'retrying');
    // Another process's handle, made while it waits, follows it to its end.
    const followed = (await watcher.handle(handle.id))!;
    expect([followed.status, followed.attempt]).toEqual(['retrying', 1]);
    expect(handle.cancel('not any more')).toBe(true);
    await expect(followed.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect([followed.status, followed.attempt]).toEqual(['cancelled', 1]);
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    // A process that never saw the job reads it from the cancellation's record alone.
    const late = (await producerOn(redis.connection, closers, queueName).handle(handle.id))!;
    expect([late.status, late.attempt]).toEqual(['cancelled', 1]);
    await expect(late.result()).rejects.toBeInstanceOf(TaskCancelledError);
  });

  describe('arguments that do not survive JSON', () => {
    it('refuses an argument nested too deep with the documented TypeError, naming the task and the path', async () => {
      const { bg, backend } = setup({ workers: false });
      const root: Record<string, unknown> = {};
      let node = root;
      for (let i = 0; i < 20_000; i++) node = (node.a = {});
      expect(() => bg.with({ durable: true }).add(answer, root as unknown as number)).toThrow(
        new TypeError("bg.add(\"truthAnswer\"): args[0].a.a.a.a.a.a.a….a.a is nested more than 1000 levels deep, which does not survive JSON; a durable task's arguments must be plain data"),
      );
      expect(await backend.queue.count()).toBe(0);
    });

    it.each([
      ['a non-enumerable toJSON', Object.defineProperty({ x: 1 }, 'toJSON', { value: () => 'replaced' }), 'args[0]'],
      ['a toJSON on a list', { a: Object.defineProperty([1, 2], 'toJSON', { value: () => 'replaced' }) }, 'args[0].a'],
      ['an enumerable toJSON', { a: [{ toJSON: () => 'replaced' }] }, 'args[0].a[0]'],
    ])('refuses an object with %s, which JSON would replace', async (_what, value, path) => {
      const { bg, backend } = setup({ workers: false });
      expect(() => bg.with({ durable: true }).add(answer, value as unknown as number)).toThrow(
        new TypeError(`bg.add("truthAnswer"): ${path} is an object with a toJSON method (JSON would send what it returns instead), which does not survive JSON; a durable task's arguments must be plain data`),
      );
      expect(await backend.queue.count()).toBe(0);
    });
  });

  it('a cancellation asked twice before Redis answered is asked once', async () => {
    const { bg, backend } = setup({ workers: false });
    const handle = bg.with({ durable: true }).add(answer, 7);
    await untilJob(backend, handle.id, 'queued');
    expect(handle.cancel('once')).toBe(true);
    expect(handle.cancel('twice')).toBe(false);
    await expect(handle.result()).rejects.toMatchObject({ cause: 'once' });
  });
});
