/**
 * Cancelling running durable jobs, against a real redis-server on 127.0.0.1: a cancellation made
 * just before `backend.close()` is sent first (or said, at `error`, to be unsent at its bound);
 * one made while the job's worker is dead (its lock held until it expires, nobody listening)
 * stops the job when another worker takes it again; a worker that starts after a request was sent
 * reads it; and what a worker logs: a lost lock as a lost lock, its attempts' failures to the
 * logger given to `startWorkers()`.
 */
import { Queue, Worker } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startWorkers, useBullMQ } from '../../src/adapters/bullmq.js';
import { Background, defineTask, shutdown, TaskCancelledError, TaskContext, type TaskHandle } from '../../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors, type LogEntry } from '../helpers.js';
import { startProxy } from './proxy.js';
import { openQueue, producerOn } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

/** Labels of the `noted` jobs whose task started, and of the `stoppable` ones whose signal aborted. */
const started: string[] = [];
const aborted: string[] = [];
/** Opened by a test: `noted` returns then. */
let release = deferred();
const noted = defineTask({ name: 'noted', inject: [TaskContext] }, async (ctx, label: string) => {
  started.push(label);
  await Promise.race([release.promise, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
  if (ctx.signal.aborted) aborted.push(label);
  return label;
});
/** Gates of `takenTwice`'s first and second runs; the first also ends when its signal aborts. */
let firstRun = deferred();
let secondRun = deferred();
const takenTwice = defineTask({ name: 'takenTwice', inject: [TaskContext] }, async (ctx, label: string) => {
  const run = started.push(label);
  if (run === 1) {
    await Promise.race([firstRun.promise, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
    if (ctx.signal.aborted) aborted.push(label);
  } else await secondRun.promise;
  return run;
});
/** Fails its first attempt. */
const flaky = defineTask({ name: 'flaky', inject: [TaskContext] }, async (ctx) => {
  if (ctx.attempt === 1) throw new Error('the first attempt fails');
  return ctx.attempt;
});

describe.skipIf(!hasRedis)('cancelling running durable jobs', () => {
  const redis = redisForSuite();
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  function admin(): Redis {
    const client = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => client.quit());
    return client;
  }

  /** Resolves once `count` clients listen for the cancellations of `queueName`. */
  async function listening(client: Redis, queueName: string, count = 1): Promise<void> {
    const channel = `bull:${queueName}:tsyringe-background:cancel`;
    await vi.waitFor(async () => expect(((await client.pubsub('NUMSUB', channel)) as [string, number])[1]).toBe(count), { timeout: 5_000, interval: 10 });
  }

  /** The job's state and failedReason, read with a queue of its own. */
  async function jobState(queueName: string, id: string): Promise<{ state: string; failedReason: string | undefined }> {
    const queue = new Queue(queueName, { connection: redis.connection });
    try {
      const job = await queue.getJob(id);
      return { state: await queue.getJobState(id), failedReason: job?.failedReason || undefined };
    } finally {
      await queue.close();
    }
  }

  /**
   * The producer's connections go through a proxy that, while `holdNew` is set, cuts every new
   * connection at its first request: the publisher that a first cancellation makes cannot connect.
   */
  async function heldProducer() {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const control = { holdNew: false, cuts: 0, cut: deferred() };
    proxy.onRequest = (chunk, sent) => {
      if (!control.holdNew || sent.length !== chunk.length) return 'pass';
      control.cuts++;
      control.cut.resolve();
      return 'cut';
    };
    const apps = openQueue(proxy.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    // The workers reach Redis directly.
    const workers = startWorkers({ container: apps.workerRoot, tasks: [noted], connection: redis.connection, queueName: apps.queueName });
    closers.push(() => workers.close());
    return { ...apps, control };
  }

  it('a running job cancelled just before backend.close() is stopped: close() lets the request be sent first', async () => {
    const { bg, backend, queueName, control, logger } = await heldProducer();
    started.length = aborted.length = 0;
    release = deferred();
    await listening(admin(), queueName);
    const handle = bg.with({ durable: true }).add(noted, 'stop before close');
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
    // The publisher, made by the cancellation, cannot connect until the test lets it.
    control.holdNew = true;
    expect(handle.cancel('closing')).toBe(true);
    const closing = backend.close();
    await control.cut.promise;
    control.holdNew = false;
    await closing;
    await vi.waitFor(() => expect(aborted).toEqual(['stop before close']), { timeout: 5_000, interval: 10 });
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).failedReason).toMatch(/^cancelled: /), { timeout: 5_000, interval: 10 });
    expect(logger.entries.filter(({ level }) => level === 'warn' || level === 'error')).toEqual([]);
    release.resolve();
  });

  it('a cancellation still unsent at close()\'s bound is logged once, at error, naming the task: its job may still run', async () => {
    const { bg, backend, queueName, control, logger } = await heldProducer();
    started.length = aborted.length = 0;
    release = deferred();
    await listening(admin(), queueName);
    const handle = bg.with({ durable: true }).add(noted, 'never told');
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
    control.holdNew = true;
    expect(handle.cancel('closing')).toBe(true);
    await backend.close({ timeoutMs: 200 });
    const said = logger.entries.filter(({ fields, message }) => fields.taskId === handle.id && /cancel/.test(message));
    expect(said).toEqual([
      {
        level: 'error',
        fields: { task: 'noted', taskId: handle.id },
        message: 'durable task "noted" was cancelled, but the request to stop its job could not be sent to the workers within 200 ms, before the backend was closed; it may still run',
      },
    ]);
    expect(control.cuts).toBeGreaterThan(0);
    release.resolve();
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('completed'), { timeout: 5_000, interval: 10 });
    expect(aborted).toEqual([]);
  });

  /**
   * A producer and its workers that reach Redis through one proxy: Redis can become unreachable
   * for all of them at once. A delayed job is cancelled first, so that the producer's publisher is
   * connected before the test begins (as in a process that cancelled a job before).
   */
  async function behindProxy() {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const apps = openQueue(proxy.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    const workers = startWorkers({ container: apps.workerRoot, tasks: [noted], connection: proxy.connection, queueName: apps.queueName });
    closers.push(() => workers.close());
    // Whatever a test left running ends before the workers close.
    closers.push(async () => release.resolve());
    started.length = aborted.length = 0;
    release = deferred();
    // The test's own subscriber hears the first request: the publisher is then connected.
    const heard: string[] = [];
    const subscriber = admin();
    subscriber.on('message', (_channel: string, message: string) => heard.push(message));
    await subscriber.subscribe(`bull:${apps.queueName}:tsyringe-background:cancel`);
    await listening(admin(), apps.queueName, 2);
    const early = apps.bg.with({ durable: true, delayMs: 60_000 }).add(noted, 'delayed');
    await vi.waitFor(async () => expect(await apps.backend.job(early.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    early.cancel();
    await vi.waitFor(() => expect(heard).toHaveLength(1), { timeout: 5_000, interval: 10 });
    return { ...apps, proxy };
  }

  /** Adds a `noted` job and resolves once its task runs and its handle says so (followed). */
  async function runningJob(bg: Background, label: string): Promise<TaskHandle> {
    const handle = bg.with({ durable: true }).add(noted, label);
    await vi.waitFor(() => expect(started).toEqual([label]), { timeout: 5_000, interval: 5 });
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
    return handle;
  }

  /** The entries that say a cancellation did not reach, or may not have reached, its job. */
  function unsent(logger: ReturnType<typeof captureLogger>): LogEntry[] {
    return logger.entries.filter(({ level, message }) => (level === 'warn' || level === 'error') && /could not be (sent|removed)|may still run/.test(message));
  }

  it('a running job cancelled while Redis cannot be reached is stopped once it can again', async () => {
    const { bg, queueName, proxy, logger } = await behindProxy();
    const handle = await runningJob(bg, 'cancelled in an outage');
    // Redis goes away for everyone: every connection breaks, and none can be made again.
    proxy.mode = 'refuse';
    proxy.cut();
    expect(handle.cancel('outage')).toBe(true);
    expect(handle.status).toBe('cancelled');
    // Until the clients have tried again, and been refused, a few times.
    await vi.waitFor(() => expect(proxy.refused).toBeGreaterThan(5), { timeout: 10_000, interval: 5 });
    proxy.mode = 'pass';
    await vi.waitFor(() => expect(aborted).toEqual(['cancelled in an outage']), { timeout: 10_000, interval: 10 });
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).failedReason).toMatch(/^cancelled: /), { timeout: 5_000, interval: 10 });
    expect(unsent(logger)).toEqual([]);
  });

  it('a running job cancelled while Redis does not answer (the request lost with its connection) is stopped once it answers again', async () => {
    const { bg, queueName, proxy, logger } = await behindProxy();
    const handle = await runningJob(bg, 'cancelled unanswered');
    proxy.mode = 'dropRequests';
    expect(handle.cancel('no answer')).toBe(true);
    // The request went out, and was lost: its connection breaks when Redis answers again.
    await vi.waitFor(() => expect(proxy.dropped).toMatch(/\r\neval\r\n[^]*redis\.call\("PUBLISH"/), { timeout: 5_000, interval: 5 });
    proxy.mode = 'pass';
    await vi.waitFor(() => expect(aborted).toEqual(['cancelled unanswered']), { timeout: 10_000, interval: 10 });
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).failedReason).toMatch(/^cancelled: /), { timeout: 5_000, interval: 10 });
    expect(unsent(logger)).toEqual([]);
  });

  /**
   * A running job, cancelled as Redis goes away: the producer's client is the caller's, which
   * gives up on a command when its connection breaks (maxRetriesPerRequest 0), and so does the
   * publisher, its duplicate. The first request to stop the job breaks its connection as it goes
   * out (the chunk unsent), and no connection can be made again until `reachable()`. Resolves once
   * the removal found the job running (it marked it, then asked again) and the publisher has tried
   * to reconnect since, and been refused, twice.
   */
  async function cancelledAsRedisGoes(label: string) {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const client = new Redis({ ...proxy.connection, maxRetriesPerRequest: 0 });
    client.on('error', () => undefined);
    closers.push(async () => client.disconnect());
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const queueName = `cancel-${randomUUID()}`;
    const backend = useBullMQ(producer, { connection: client, queueName, logger });
    const workerRoot = freshApp({ logger: captureLogger() });
    const workers = startWorkers({ container: workerRoot, tasks: [noted], connection: redis.connection, queueName });
    closers.push(
      () => shutdown({ container: producer }),
      () => backend.close(),
      () => workers.close(),
      () => shutdown({ container: workerRoot }),
      async () => release.resolve(),
    );
    started.length = aborted.length = 0;
    release = deferred();
    const redisClient = admin();
    await listening(redisClient, queueName);
    const handle = await runningJob(producer.resolve(Background), label);
    let held = true;
    proxy.onRequest = (chunk) => {
      // The request to stop the job: a script that records and publishes it.
      if (!held || !chunk.includes('redis.call("PUBLISH"')) return 'pass';
      proxy.mode = 'refuse';
      return 'cut';
    };
    expect(handle.cancel('stop')).toBe(true);
    await vi.waitFor(async () => expect(await redisClient.hget(`bull:${queueName}:${handle.id}`, 'data')).toContain('"cancelled"'), { timeout: 5_000, interval: 5 });
    const refused = proxy.refused;
    await vi.waitFor(() => expect(proxy.refused).toBeGreaterThanOrEqual(refused + 2), { timeout: 5_000, interval: 5 });
    const reachable = (): void => {
      held = false;
      proxy.mode = 'pass';
    };
    return { handle, queueName, backend, logger, reachable };
  }

  it('a request to stop a running job that fails with its connection is sent again once the connection is back', async () => {
    const { handle, queueName, logger, reachable } = await cancelledAsRedisGoes('told again');
    reachable();
    await vi.waitFor(() => expect(aborted).toEqual(['told again']), { timeout: 10_000, interval: 10 });
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).failedReason).toMatch(/^cancelled: /), { timeout: 5_000, interval: 10 });
    expect(unsent(logger)).toEqual([]);
  });

  it("a request to stop a running job still waiting for its connection at close()'s bound is logged at error: its job may still run", async () => {
    const { handle, queueName, backend, logger, reachable } = await cancelledAsRedisGoes('never told');
    await backend.close({ timeoutMs: 300 });
    expect(unsent(logger)).toEqual([
      {
        level: 'error',
        fields: { task: 'noted', taskId: handle.id },
        message: 'durable task "noted" was cancelled, but the request to stop its job could not be sent to the workers within 300 ms, before the backend was closed; it may still run',
      },
    ]);
    // Closed, the producer tells nobody once Redis is back: the job runs to its end.
    reachable();
    release.resolve();
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('completed'), { timeout: 5_000, interval: 10 });
    expect(aborted).toEqual([]);
  });

  it('a job cancelled while its worker is dead (its lock held, nobody listening) is cancelled before its task starts when a worker takes it again', async () => {
    const { bg, backend, queueName, workerRoot, logger } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    started.length = aborted.length = 0;
    release = deferred();
    const added = bg.with({ durable: true }).add(noted, 'taken by a dead worker');
    await vi.waitFor(async () => expect((await jobState(queueName, added.id)).state).toBe('prioritized'), { timeout: 5_000, interval: 10 });
    // A worker that takes the job and dies: its lock (1 s) is never renewed, and nobody listens.
    const dead = new Worker(queueName, undefined, { connection: redis.connection, autorun: false, lockDuration: 1_000 });
    const job = await dead.getNextJob('dead-worker-token');
    expect(job?.id).toBe(added.id);
    await dead.close();
    // Another process cancels it by id.
    const handle = (await backend.handle(added.id))!;
    expect(handle.status).toBe('running');
    expect(handle.cancel('stop it')).toBe(true);
    expect(handle.status).toBe('cancelled');
    // Its requests are sent (close() waits for them), to nobody.
    await backend.close();
    // A new worker starts, and takes the job again once its lock has expired.
    const workers = startWorkers({ container: workerRoot, tasks: [noted], connection: redis.connection, queueName, workerOptions: { lockDuration: 1_000, stalledInterval: 200 } });
    closers.push(() => workers.close());
    // Until the job has ended, or its task has started (which it must not).
    await vi.waitFor(async () => expect(started.length > 0 || ['completed', 'failed'].includes((await jobState(queueName, added.id)).state)).toBe(true), { timeout: 10_000, interval: 20 });
    expect(started).toEqual([]);
    release.resolve();
    expect(await jobState(queueName, added.id)).toEqual({ state: 'failed', failedReason: expect.stringMatching(/^cancelled: /) as unknown });
    expect(started).toEqual([]);
    expect(logger.at('error')).toEqual([]);
  });

  it("a running job cancelled while its worker's connections are down, its job then taken again by that worker (its lock lost), is cancelled before its task starts again, the job not yet marked", async () => {
    // The producer's connections, and the worker's, each through a proxy of their own.
    const toProducer = await startProxy(redis.port);
    const toWorker = await startProxy(redis.port);
    closers.push(
      () => toProducer.close(),
      () => toWorker.close(),
    );
    const { bg, queueName, workerRoot } = openQueue(toProducer.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    const workers = startWorkers({
      container: workerRoot,
      tasks: [noted],
      connection: toWorker.connection,
      queueName,
      workerOptions: { lockDuration: 1_000, stalledInterval: 200 },
    });
    closers.push(() => workers.close());
    closers.push(async () => release.resolve());
    started.length = aborted.length = 0;
    release = deferred();
    const client = admin();
    await listening(client, queueName);
    const handle = await runningJob(bg, 'taken again');
    // The mark of the running job never reaches Redis while held: the take comes before it.
    let markHeld = true;
    toProducer.onRequest = (chunk) => (markHeld && chunk.includes('cjson.decode(data)["cancelled"]') ? 'cut' : 'pass');
    // The worker's connections break, and none can be made: its lock is not renewed, and it hears nothing.
    toWorker.mode = 'refuse';
    toWorker.cut();
    expect(handle.cancel('stop')).toBe(true);
    // The request is recorded (and published to nobody); the lock expires.
    await vi.waitFor(async () => expect(await client.exists(`bull:${queueName}:tsyringe-background:cancelled:${handle.id}`)).toBe(1), { timeout: 5_000, interval: 10 });
    await vi.waitFor(async () => expect(await client.exists(`bull:${queueName}:${handle.id}:lock`)).toBe(0), { timeout: 5_000, interval: 20 });
    // The worker is back: its stalled check puts the job back, and it takes it again (its first attempt still running here).
    toWorker.mode = 'pass';
    await vi.waitFor(async () => expect(started.length > 1 || (await jobState(queueName, handle.id)).state === 'failed').toBe(true), { timeout: 10_000, interval: 20 });
    expect(started).toEqual(['taken again']);
    expect(await jobState(queueName, handle.id)).toEqual({ state: 'failed', failedReason: 'cancelled: stop' });
    expect(Number(await client.hget(`bull:${queueName}:${handle.id}`, 'ats'))).toBe(2);
    markHeld = false;
  });

  it("a job whose lock was lost, taken again by the same worker while its first run still goes on: the first run is stopped, and the second keeps its lock after the first ends (BullMQ's lock manager dropped it: the job failed as stalled, its work done)", async () => {
    const toWorker = await startProxy(redis.port);
    closers.push(() => toWorker.close());
    const { bg, queueName, workerRoot } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [takenTwice], workers: false });
    const lockDuration = 1_000;
    const workers = startWorkers({ container: workerRoot, tasks: [takenTwice], connection: toWorker.connection, queueName, workerOptions: { lockDuration, stalledInterval: 200 } });
    closers.push(() => workers.close());
    closers.push(async () => (firstRun.resolve(), secondRun.resolve()));
    started.length = aborted.length = 0;
    firstRun = deferred();
    secondRun = deferred();
    const client = admin();
    const handle = bg.with({ durable: true }).add(takenTwice, 'lost its lock');
    await vi.waitFor(() => expect(started).toHaveLength(1), { timeout: 5_000, interval: 5 });
    // The worker's connections break, and none can be made until its lock has expired.
    toWorker.mode = 'refuse';
    toWorker.cut();
    const lock = `bull:${queueName}:${handle.id}:lock`;
    await vi.waitFor(async () => expect(await client.exists(lock)).toBe(0), { timeout: 5_000, interval: 20 });
    toWorker.mode = 'pass';
    // Its stalled check puts the job back, and it takes it again: the first run is stopped.
    await vi.waitFor(() => expect(started).toHaveLength(2), { timeout: 10_000, interval: 5 });
    await vi.waitFor(() => expect(aborted).toEqual(['lost its lock']), { timeout: 5_000, interval: 5 });
    // Whatever the first run does now, the second's lock is renewed for longer than it lasts.
    firstRun.resolve();
    for (const until = Date.now() + 2.5 * lockDuration; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 50))) {
      expect(await client.exists(lock)).toBe(1);
    }
    secondRun.resolve();
    await expect(handle.result()).resolves.toBe(2);
    expect(await jobState(queueName, handle.id)).toEqual({ state: 'completed', failedReason: undefined });
  });

  it("a job taken again after its worker died counts one attempt in every reader: the handle watched from add(), one made by id while it stalled, one made after, backend.job(id), as the task's ctx.attempt", async () => {
    const { bg, backend, queueName, workerRoot } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    started.length = aborted.length = 0;
    release = deferred();
    release.resolve();
    const elsewhere = producerOn(redis.connection, closers, queueName);
    const added = bg.with({ durable: true }).add(noted, 'taken again');
    expect(added.status).toBe('queued');
    await vi.waitFor(async () => expect((await jobState(queueName, added.id)).state).toBe('prioritized'), { timeout: 5_000, interval: 10 });
    // A worker that takes the job and dies: its lock (1 s) is never renewed.
    const dead = new Worker(queueName, undefined, { connection: redis.connection, autorun: false, lockDuration: 1_000 });
    expect((await dead.getNextJob('dead-worker-token'))?.id).toBe(added.id);
    await dead.close();
    await vi.waitFor(() => expect([added.status, added.attempt]).toEqual(['running', 1]), { timeout: 5_000, interval: 10 });
    const whileDead = (await elsewhere.handle(added.id))!;
    expect([whileDead.status, whileDead.attempt]).toEqual(['running', 1]);
    const workerLogger = captureLogger();
    const workers = startWorkers({ container: workerRoot, tasks: [noted], connection: redis.connection, queueName, logger: workerLogger, workerOptions: { lockDuration: 1_000, stalledInterval: 200 } });
    closers.push(() => workers.close());
    await expect(added.result()).resolves.toBe('taken again');
    // Said by the worker that takes it again: which jobs may have run twice.
    expect(workerLogger.at('warn').filter(({ message }) => /is taken again/.test(message))).toEqual([
      {
        level: 'warn',
        fields: { task: 'noted', taskId: added.id, attempt: 1 },
        message: `durable job ${added.id} (task "noted") is taken again: an earlier take of its attempt 1 ended without an outcome (its worker died or lost its lock, or put it back as it closed); if its task had begun, it runs a second time`,
      },
    ]);
    await expect(whileDead.result()).resolves.toBe('taken again');
    const after = (await elsewhere.handle(added.id))!;
    expect([added.attempt, whileDead.attempt, after.attempt, (await backend.job(added.id))?.attempt]).toEqual([1, 1, 1, 1]);
  });

  it('a job cancelled while its worker is dead, then failed by BullMQ as stalled, reads cancelled, as its handle said, and as a handle followed elsewhere says', async () => {
    const { bg, backend, queueName } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    const added = bg.with({ durable: true }).add(noted, 'stalled for good');
    await vi.waitFor(async () => expect((await jobState(queueName, added.id)).state).toBe('prioritized'), { timeout: 5_000, interval: 10 });
    const dead = new Worker(queueName, undefined, { connection: redis.connection, autorun: false, lockDuration: 60_000 });
    closers.push(() => dead.close());
    const job = await dead.getNextJob('dead-worker-token');
    // Another process follows the job through the queue's events (its failed event says "stalled" only).
    const elsewhere = freshApp({ logger: captureLogger() });
    const other = useBullMQ(elsewhere, { connection: redis.connection, queueName, logger: captureLogger() });
    closers.push(
      () => other.close(),
      () => shutdown({ container: elsewhere }),
    );
    const followed = (await other.handle(added.id))!;
    expect(followed.status).toBe('running');
    const handle = (await backend.handle(added.id))!;
    expect(handle.cancel('stop it')).toBe(true);
    // The cancellation has marked the running job; BullMQ's stalled check then fails it (past maxStalledCount).
    await vi.waitFor(async () => expect((await backend.queue.getJob(added.id))?.data).toHaveProperty('cancelled'), { timeout: 5_000, interval: 10 });
    const marked = (await backend.queue.getJob(added.id))!;
    await marked.moveToFailed(new Error('job stalled more than allowable limit'), 'dead-worker-token');
    expect(job?.id).toBe(added.id);
    await expect(backend.job(added.id)).resolves.toMatchObject({ status: 'cancelled' });
    expect((await backend.handle(added.id))?.status).toBe('cancelled');
    expect(handle.status).toBe('cancelled');
    await expect(followed.result({ timeoutMs: 5_000 })).rejects.toMatchObject({ name: 'TaskCancelledError', message: `Task "noted" (#${added.id}) was cancelled` });
    expect(followed.status).toBe('cancelled');
  });

  it('a running job cancelled through a handle nobody watched, then the backend closed at once: the handle ends cancelled, as the job did', async () => {
    const { bg, backend, queueName } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted] });
    started.length = aborted.length = 0;
    release = deferred();
    const handle = bg.with({ durable: true }).add(noted, 'closed right after');
    await vi.waitFor(() => expect(started).toEqual(['closed right after']), { timeout: 5_000, interval: 10 });
    // Not watched: cancel() asks, and the handle waits for Redis's word; close() comes in the same turn.
    expect(handle.cancel('stop it')).toBe(true);
    const closed = backend.close();
    await expect(handle.result()).rejects.toMatchObject({ name: 'TaskCancelledError', message: `Task "noted" (#${handle.id}) was cancelled` });
    await closed;
    expect(handle.status).toBe('cancelled');
    expect(aborted).toEqual(['closed right after']);
    await vi.waitFor(async () => expect(await jobState(queueName, handle.id)).toEqual({ state: 'failed', failedReason: expect.stringMatching(/^cancelled: /) as unknown }), { timeout: 5_000, interval: 10 });
  });

  it('a worker that starts after a cancellation was sent reads it: the job it then takes is cancelled before its task starts', async () => {
    const { bg, backend, queueName, workerRoot } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    started.length = aborted.length = 0;
    release = deferred();
    const handle = bg.with({ durable: true }).add(noted, 'asked before the worker listened');
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('prioritized'), { timeout: 5_000, interval: 10 });
    // As a producer's request sent while no worker listened (published to nobody, and recorded).
    const message = JSON.stringify({ id: handle.id, reason: 'changed my mind' });
    const client = admin();
    await client.multi().zadd(`bull:${queueName}:tsyringe-background:cancelled`, Date.now(), message).publish(`bull:${queueName}:tsyringe-background:cancel`, message).exec();
    const workers = startWorkers({ container: workerRoot, tasks: [noted], connection: redis.connection, queueName });
    closers.push(() => workers.close());
    const taskStarted = vi.waitFor(() => expect(started).not.toEqual([]), { timeout: 10_000, interval: 5 }).then(() => 'its task started');
    const failure = await Promise.race([
      handle.result().then(
        () => undefined,
        (error: unknown) => error,
      ),
      taskStarted,
    ]);
    release.resolve();
    expect(failure).toBeInstanceOf(TaskCancelledError);
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'cancelled' });
    expect(started).toEqual([]);
  });

  it('a job cancelled twice, with two reasons: every process reads the first reason, that of the cancellation that removed it (not the later one, which did nothing)', async () => {
    const { bg, backend, queueName } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    const processes = [1, 2].map(() => producerOn(redis.connection, closers, queueName));
    const handle = bg.with({ durable: true, delayMs: 60_000 }).add(noted, 'cancelled twice');
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('delayed'), { timeout: 5_000, interval: 10 });
    expect((await processes[0]!.handle(handle.id))!.cancel('the first reason')).toBe(true);
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('unknown'), { timeout: 5_000, interval: 10 });
    // The handle it was added with (nobody watched it) is cancelled after, with another reason: only the first is recorded.
    expect(handle.cancel('the second reason')).toBe(true);
    await expect(handle.result()).rejects.toMatchObject({ name: 'TaskCancelledError', cause: 'the second reason' });
    await backend.close();
    expect(await admin().zcard(`bull:${queueName}:tsyringe-background:cancelled`)).toBe(1);
    const fresh = (await processes[1]!.handle(handle.id))!;
    await expect(fresh.result()).rejects.toMatchObject({ name: 'TaskCancelledError', message: `Task "noted" (#${handle.id}) was cancelled`, cause: 'the first reason' });
  });

  it("of two cancellations of one job, the one that reached Redis first is read, whatever the clocks of their processes: a first without a reason is not read as a later one's", async () => {
    const { bg, backend, queueName } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    const [first, reader] = [1, 2].map(() => producerOn(redis.connection, closers, queueName));
    const handle = bg.with({ durable: true, delayMs: 60_000 }).add(noted, 'cancelled twice');
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('delayed'), { timeout: 5_000, interval: 10 });
    const theirs = (await first!.handle(handle.id))!;
    // The first canceller's clock is 5 ms ahead of the second's (or they cancel in the same millisecond).
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now + 5);
    expect(theirs.cancel()).toBe(true);
    vi.restoreAllMocks();
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('unknown'), { timeout: 5_000, interval: 10 });
    vi.spyOn(Date, 'now').mockReturnValue(now);
    // This process cannot know that another cancelled the job first: the cancellation is asked for (true).
    expect(handle.cancel('a later reason')).toBe(true);
    vi.restoreAllMocks();
    await expect(handle.result()).rejects.toMatchObject({ name: 'TaskCancelledError', cause: 'a later reason' });
    await backend.close();
    const fresh = (await reader!.handle(handle.id))!;
    const failure = (await fresh.result().catch((e: unknown) => e)) as TaskCancelledError;
    expect(failure).toMatchObject({ name: 'TaskCancelledError', message: `Task "noted" (#${handle.id}) was cancelled` });
    expect(failure.cause).toBeUndefined();
  });

  it('a worker that starts reads only the requests of the last 10 minutes: an older one left in the record cancels nothing', async () => {
    const { bg, queueName, workerRoot } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    started.length = aborted.length = 0;
    release = deferred();
    const handle = bg.with({ durable: true }).add(noted, 'asked long ago');
    await vi.waitFor(async () => expect((await jobState(queueName, handle.id)).state).toBe('prioritized'), { timeout: 5_000, interval: 10 });
    // A request for the same id recorded 11 minutes ago (the set is trimmed only as requests are written).
    await admin().zadd(`bull:${queueName}:tsyringe-background:cancelled`, Date.now() - 11 * 60_000, JSON.stringify({ id: handle.id, reason: 'too old' }));
    const workers = startWorkers({ container: workerRoot, tasks: [noted], connection: redis.connection, queueName });
    closers.push(() => workers.close());
    await vi.waitFor(() => expect(started).toEqual(['asked long ago']), { timeout: 10_000, interval: 5 });
    release.resolve();
    await expect(handle.result()).resolves.toBe('asked long ago');
  });

  it("logs a worker's lost lock as a lost lock, naming the job (not as a lost connection)", async () => {
    const { bg, queueName, workerRoot } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [noted], workers: false });
    started.length = aborted.length = 0;
    release = deferred();
    const logger = captureLogger();
    const workers = startWorkers({ container: workerRoot, tasks: [noted], connection: redis.connection, queueName, logger, workerOptions: { lockDuration: 400 } });
    closers.push(() => workers.close());
    const handle = bg.with({ durable: true }).add(noted, 'loses its lock');
    await vi.waitFor(() => expect(started).toEqual(['loses its lock']), { timeout: 5_000, interval: 5 });
    // Its lock vanishes (as when Redis did not renew it in time): the next renewal fails.
    await admin().del(`bull:${queueName}:${handle.id}:lock`);
    await vi.waitFor(() => expect(logger.at('warn').map(({ message }) => message)).toContainEqual(expect.stringMatching(/could not renew its lock/)), { timeout: 5_000, interval: 10 });
    // BullMQ tries again every half lockDuration, and fails each time: said once a lock's duration.
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(logger.at('warn').filter(({ message }) => /could not renew its lock/.test(message))).toHaveLength(1);
    // It ends here: its end is refused.
    release.resolve();
    await vi.waitFor(() => expect(logger.at('warn').map(({ message }) => message)).toContainEqual(expect.stringMatching(/had lost its lock/)), { timeout: 5_000, interval: 10 });
    const warnings = logger.at('warn');
    expect(warnings.filter(({ message }) => /lost its connection/.test(message))).toEqual([]);
    for (const { fields, message } of warnings) {
      expect(fields.taskId).toBe(handle.id);
      expect(message).toContain(`durable job ${handle.id}: `);
    }
    expect(warnings.find(({ message }) => /had lost its lock/.test(message))?.message).toMatch(/the attempt's outcome is discarded: the job runs again/);
    // Once: BullMQ reports the lost lock twice.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(logger.at('warn').filter(({ message }) => /had lost its lock/.test(message))).toHaveLength(1);
  });

  it("sends the attempts' failures to the logger given to startWorkers(), not to the application's", async () => {
    const appLogger = captureLogger();
    const { bg, queueName, workerRoot } = openQueue(redis.connection, closers, { prefix: 'cancel', tasks: [flaky], workers: false, workerApp: { logger: appLogger } });
    const logger = captureLogger();
    const workers = startWorkers({ container: workerRoot, tasks: [flaky], connection: redis.connection, queueName, logger });
    closers.push(() => workers.close());
    const handle = bg.with({ durable: true, retries: 1, backoff: { baseMs: 0, jitter: 0 } }).add(flaky);
    await expect(handle.result()).resolves.toBe(2);
    expect(logger.at('warn')).toMatchObject([{ fields: { task: 'flaky', taskId: handle.id, attempt: 1 }, message: 'task "flaky" failed (attempt 1 of 2); its queue runs it again' }]);
    expect(appLogger.entries.filter(({ level }) => level === 'warn' || level === 'error')).toEqual([]);
  });
});
