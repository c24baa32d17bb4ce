/**
 * Jobs whose add was sent when the producer's connection broke (a proxy on 127.0.0.1 in front of
 * a real redis-server breaks it at the chosen moment): Redis may or may not have run the add, and
 * ioredis may send it again. A handle never says "will not run" of a job that runs: it is settled
 * by Redis's answer, or by asking Redis once it can be reached, however long after the deadline.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startWorkers, useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { Background, defineTask, shutdown } from '../../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors, type Deferred } from '../helpers.js';
import { startProxy, type RedisProxy } from './proxy.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

/** How many times each label ran, in the workers of this process. */
const runs = new Map<string, number>();
const counted = defineTask({ name: 'counted' }, async (label: string) => {
  runs.set(label, (runs.get(label) ?? 0) + 1);
  return `ran ${label}`;
});

/** Its run waits until the test opens the gate its label names (made on first use). */
const gates = new Map<string, Deferred>();
const gateOf = (label: string): Deferred => gates.get(label) ?? gates.set(label, deferred()).get(label)!;
/** The labels whose runs have begun. */
const entered = new Set<string>();
const gated = defineTask({ name: 'gated' }, async (label: string) => {
  entered.add(label);
  await gateOf(label).promise;
  return `ran ${label}`;
});

/** Waits until the producer has said, at warn, that the add of job `id` had no answer by its deadline. */
function saidUnanswered(logger: ReturnType<typeof captureLogger>, id: string): Promise<void> {
  return vi.waitFor(() => expect(logger.at('warn').some((entry) => (entry.fields.taskIds as string[] | undefined)?.includes(id))).toBe(true), { timeout: 5_000, interval: 10 });
}

/** `'closed'` once `closing` settles, or `'still closing'` after 3 s: a hang fails the test that sees it, not the suite's timeout. */
function closedWithin3s(closing: Promise<unknown>): Promise<unknown> {
  return Promise.race([closing.then(() => 'closed'), new Promise((resolve) => setTimeout(resolve, 3_000, 'still closing'))]);
}

describe.skipIf(!hasRedis)('durable jobs in doubt: sent when the connection broke', () => {
  const redis = redisForSuite();
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /**
   * A producer whose connections go through a proxy (its deadline 200 ms; ioredis gives up on a
   * command at the first break when `giveUp`), and workers in this process on a direct connection.
   * A first job, awaited, leaves the queue's connection and the event stream's reader open.
   */
  async function setup(giveUp: boolean) {
    const proxy: RedisProxy = await startProxy(redis.port);
    const queueName = `doubt-${randomUUID()}`;
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const connection = { ...proxy.connection, retryStrategy: () => 20, ...(giveUp ? { maxRetriesPerRequest: 0 } : {}) };
    const backend: DurableBackend = useBullMQ(producer, { connection, queueName, logger, enqueueTimeoutMs: 200 });
    const workerRoot = freshApp({ logger: captureLogger() });
    const workers = startWorkers({ container: workerRoot, tasks: [counted], connection: redis.connection, queueName });
    const direct = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(
      () => proxy.close(),
      () => shutdown({ container: producer }),
      () => backend.close(),
      () => workers.close(),
      () => shutdown({ container: workerRoot }),
      () => direct.quit(),
    );
    const bg = producer.resolve(Background).with({ durable: true });
    await expect(bg.add(counted, `warm-${queueName}`).result()).resolves.toBe(`ran warm-${queueName}`);
    /** Whether Redis has the job. */
    const inRedis = async (id: string): Promise<boolean> => (await direct.hexists(backend.queue.toKey(id), 'timestamp')) === 1;
    return { proxy, logger, backend, bg, inRedis };
  }

  it('a job sent as the connection broke is not failed at its deadline: ioredis sends it again once Redis is back, and its handle ends as its job does', async () => {
    const { proxy, logger, backend, bg } = await setup(false);
    proxy.mode = 'dropRequests';
    const label = randomUUID();
    const handle = bg.add(counted, label);
    const outcome = handle.result();
    // Its deadline passes with the add sent and unanswered: said once, at warn; the handle waits.
    await saidUnanswered(logger, handle.id);
    const warned = logger.at('warn').find((entry) => entry.fields.taskIds !== undefined);
    expect(warned?.message).toMatch(/^1 durable job\(s\) sent to Redis have had no answer within 200 ms/);
    expect(warned?.fields).toEqual({ taskIds: [handle.id], tasks: ['counted'] });
    expect(handle.status).toBe('queued');
    expect(backend.enqueueFailures).toBe(0);
    proxy.mode = 'pass';
    proxy.cut();
    await expect(outcome).resolves.toBe(`ran ${label}`);
    expect(runs.get(label)).toBe(1);
    expect(backend.enqueueFailures).toBe(0);
    expect(logger.at('error')).toEqual([]);
  });

  it('an add Redis ran whose answer was lost, and that ioredis gave up on, is looked for once Redis can be reached: its handle follows the job', async () => {
    const { proxy, logger, backend, bg, inRedis } = await setup(true);
    proxy.mode = 'dropReplies';
    const label = randomUUID();
    const handle = bg.add(counted, label);
    await vi.waitFor(async () => expect(await inRedis(handle.id)).toBe(true), { timeout: 5_000, interval: 10 });
    // The break rejects the add (maxRetriesPerRequest: 0): ioredis will not send it again.
    proxy.mode = 'pass';
    proxy.cut();
    await expect(handle.result()).resolves.toBe(`ran ${label}`);
    expect(runs.get(label)).toBe(1);
    expect(backend.enqueueFailures).toBe(0);
    // The look that settles the add's doubt may come after the handle's own read from Redis.
    await vi.waitFor(
      () =>
        expect(logger.at('warn').map((entry) => entry.message)).toContain(
          'durable task "counted" was enqueued, though its add failed (Reached the max retries per request limit (which is 0). Refer to "maxRetriesPerRequest" option for details.): Redis had run it before the connection broke',
        ),
      { timeout: 5_000, interval: 10 },
    );
    expect(logger.at('error')).toEqual([]);
  });

  it('an add that never reached Redis, and that ioredis gave up on, fails its handle once Redis says it does not have the job; it never runs', async () => {
    const { proxy, backend, bg, inRedis } = await setup(true);
    proxy.mode = 'dropRequests';
    const label = randomUUID();
    const handle = bg.add(counted, label);
    await vi.waitFor(() => expect(proxy.dropped).toContain(handle.id), { timeout: 5_000, interval: 5 });
    proxy.mode = 'pass';
    proxy.cut();
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: handle.id });
    expect((error as Error).message).toBe(
      `durable task "counted" (#${handle.id}) could not be enqueued: Reached the max retries per request limit (which is 0). Refer to "maxRetriesPerRequest" option for details. (asked once it could be reached, Redis does not have the job)`,
    );
    expect(backend.enqueueFailures).toBe(1);
    // A round trip on the producer's queue connection: anything it still had to send was answered before.
    await backend.queue.count();
    expect(await inRedis(handle.id)).toBe(false);
    expect(runs.has(label)).toBe(false);
  });

  it("a schedule whose save was cut off is saved again once Redis can be reached (saving it twice is harmless): its handle never says it will not run", async () => {
    const { proxy, logger, backend, bg } = await setup(true);
    proxy.mode = 'dropRequests';
    const name = 'counted';
    const handle = bg.with({ every: 60_000, overlap: true }).add(counted, 'tick');
    await vi.waitFor(() => expect(proxy.dropped).toContain('every'), { timeout: 5_000, interval: 5 });
    proxy.mode = 'pass';
    proxy.cut();
    await vi.waitFor(async () => expect(await backend.queue.getJobScheduler(name)).toMatchObject({ key: name, every: 60_000 }), { timeout: 5_000, interval: 20 });
    expect(handle.status).toBe('delayed');
    expect(backend.enqueueFailures).toBe(0);
    expect(logger.at('error')).toEqual([]);
    handle.cancel();
    await vi.waitFor(async () => expect(await backend.queue.getJobScheduler(name)).toBeUndefined(), { timeout: 5_000, interval: 20 });
  });

  it('close() before a schedule cut off could be saved again fails its handle saying the schedule may or may not have been saved, never "will not run"', async () => {
    const { proxy, logger, backend, bg } = await setup(true);
    proxy.mode = 'dropRequests';
    const handle = bg.with({ every: 60_000, overlap: true }).add(counted, 'tick');
    await vi.waitFor(() => expect(proxy.dropped).toContain('every'), { timeout: 5_000, interval: 5 });
    proxy.mode = 'refuse';
    proxy.cut();
    const outcome = handle.result().catch((e: unknown) => e);
    expect(await closedWithin3s(backend.close())).toBe('closed');
    const error = await outcome;
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE' });
    expect((error as Error).message).toMatch(/^the schedule of durable task "counted" may or may not have been saved: .* \(the backend was closed before it could be saved again\); it may run$/);
    expect(logger.at('error').map((entry) => entry.message)).toEqual(['the schedule of durable task "counted" may or may not have been saved; it may run']);
  });

  it('a cancellation whose removal was cut off removes the job once Redis can be reached: a cancelled job does not run later', async () => {
    const { proxy, logger, bg, inRedis } = await setup(true);
    const label = randomUUID();
    // Delayed past the workers' memory of cancellations of jobs they do not have (10 s).
    const handle = bg.with({ delayMs: 60_000 }).add(counted, label);
    await vi.waitFor(async () => expect(await inRedis(handle.id)).toBe(true), { timeout: 5_000, interval: 10 });
    proxy.mode = 'dropRequests';
    handle.cancel();
    expect(handle.status).toBe('cancelled');
    await vi.waitFor(() => expect(proxy.dropped).toContain(handle.id), { timeout: 5_000, interval: 5 });
    proxy.mode = 'pass';
    proxy.cut();
    await vi.waitFor(async () => expect(await inRedis(handle.id)).toBe(false), { timeout: 5_000, interval: 20 });
    expect(logger.at('error')).toEqual([]);
  });

  it('a dependent whose prerequisite is in doubt past its own deadline fails saying so, never sent', async () => {
    const { proxy, logger, bg, inRedis } = await setup(false);
    proxy.mode = 'dropReplies';
    const first = bg.add(counted, randomUUID());
    const second = bg.with({ after: [first] }).add(counted, randomUUID());
    const error = await second.result().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: second.id });
    expect((error as Error).message).toMatch(
      /could not be enqueued: the jobs it runs after were not in Redis within 200 ms \(Redis could not be reached, or had not answered their adds\); it was never sent$/,
    );
    await saidUnanswered(logger, first.id);
    expect(await inRedis(second.id)).toBe(false);
  });

  it('close() right after a cancellation waits for its removal within timeoutMs, and says so when Redis did not answer it: the job may still run', async () => {
    const { logger, backend, bg, inRedis } = await setup(false);
    const removed = bg.with({ delayMs: 60_000 }).add(counted, randomUUID());
    const stays = bg.with({ delayMs: 60_000 }).add(counted, randomUUID());
    await vi.waitFor(async () => expect([await inRedis(removed.id), await inRedis(stays.id)]).toEqual([true, true]), { timeout: 5_000, interval: 10 });
    // Removed before the backend closes, although close() comes in the same turn.
    removed.cancel();
    await backend.close({ timeoutMs: 2_000 });
    expect(await inRedis(removed.id)).toBe(false);
    expect(logger.at('error')).toEqual([]);
    const { backend: second, bg: bg2, proxy: proxy2, logger: logger2, inRedis: inRedis2 } = await setup(false);
    const unanswered = bg2.with({ delayMs: 60_000 }).add(counted, randomUUID());
    await vi.waitFor(async () => expect(await inRedis2(unanswered.id)).toBe(true), { timeout: 5_000, interval: 10 });
    proxy2.mode = 'dropRequests';
    unanswered.cancel();
    expect(await closedWithin3s(second.close({ timeoutMs: 200 }))).toBe('closed');
    expect(logger2.at('error').map(({ fields, message }) => [fields.taskId, message])).toContainEqual([
      unanswered.id,
      // Its removal and the request to the workers both unanswered: one entry says both.
      'durable task "counted" was cancelled, but its job could not be removed from Redis, nor the request to stop it sent to the workers, within 200 ms, before the backend was closed; it may still run',
    ]);
  });

  it('close() while a job waits for the connection to come back to be sent ends at once: the job is never sent, its handle fails saying why', async () => {
    const { proxy, backend, bg, inRedis } = await setup(false);
    proxy.mode = 'refuse';
    proxy.cut();
    await vi.waitFor(() => expect(backend.queue.getBackend().client.then((client) => client.status)).resolves.not.toBe('ready'), { timeout: 5_000, interval: 5 });
    const handle = bg.add(counted, randomUUID());
    const outcome = handle.result().catch((e: unknown) => e);
    // Bounded here so that a hang fails this test rather than the suite's timeout.
    expect(await closedWithin3s(backend.close())).toBe('closed');
    const error = await outcome;
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: handle.id });
    expect((error as Error).message).toMatch(/could not be enqueued: the durable backend was closed while Redis could not be reached$/);
    proxy.mode = 'pass';
    expect(await inRedis(handle.id)).toBe(false);
  });

  it('close() against a Redis that stopped answering ends within its timeoutMs: a job sent and unanswered fails saying it may have been enqueued', async () => {
    const { proxy, logger, backend, bg } = await setup(false);
    // A cancellation first: the backend then has a publisher of its own to close too.
    bg.with({ delayMs: 60_000 }).add(counted, randomUUID()).cancel();
    // Redis no longer sees what is sent: not the add, not even the connections' QUIT.
    proxy.mode = 'dropRequests';
    const handle = bg.add(counted, randomUUID());
    const outcome = handle.result().catch((e: unknown) => e);
    await saidUnanswered(logger, handle.id);
    expect(await closedWithin3s(backend.close({ timeoutMs: 300 }))).toBe('closed');
    expect(logger.at('warn').map((entry) => entry.message)).toContain("the durable backend's connections to Redis did not close within 300 ms (Redis did not answer); they are dropped");
    const error = await outcome;
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: handle.id });
    expect((error as Error).message).toMatch(/may or may not have been enqueued: Redis had not answered its add when the backend was closed; it may run$/);
    expect(backend.enqueueFailures).toBe(1);
  });

  it('close() names a wrong timeoutMs', async () => {
    const { backend } = await setup(false);
    await expect(backend.close({ timeoutMs: -1 })).rejects.toThrow(new RangeError('backend.close(options): options.timeoutMs must be an integer from 0 to 2147483647, got -1 (number)'));
  });

  it('close() while a job in doubt waits for Redis to be reached fails its handle, saying it may or may not have been enqueued', async () => {
    const { proxy, backend, bg } = await setup(true);
    proxy.mode = 'dropRequests';
    const handle = bg.add(counted, randomUUID());
    await vi.waitFor(() => expect(proxy.dropped).toContain(handle.id), { timeout: 5_000, interval: 5 });
    proxy.mode = 'refuse';
    proxy.cut();
    const outcome = handle.result().catch((e: unknown) => e);
    await backend.close();
    const error = await outcome;
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: handle.id });
    // Why, in either words: the look in Redis ended by the close, or close() failing what is still unanswered.
    expect((error as Error).message).toMatch(
      /^durable task "counted" \(#[0-9a-f-]+\) may or may not have been enqueued: (.* \(the backend was closed before Redis could be asked whether it has the job\)|Redis had not answered its add when the backend was closed); it may run$/,
    );
  });

  it("a queue whose set-up BullMQ could not finish (the connection broke under its version check) is made again: jobs reach Redis, and close() leaves no connection open", async () => {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    // The second INFO on a connection is BullMQ's version check (the first, ioredis's ready check).
    let cut = false;
    proxy.onRequest = (_chunk, sent) => {
      if (cut || (sent.match(/\r\ninfo\r\n/gi)?.length ?? 0) < 2) return 'pass';
      cut = true;
      return 'cut';
    };
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const connection = { ...proxy.connection, retryStrategy: () => 20, maxRetriesPerRequest: 0 };
    const backend = useBullMQ(producer, { connection, queueName: `set-up-${randomUUID()}`, logger, enqueueTimeoutMs: 5_000 });
    closers.push(() => shutdown({ container: producer }));
    const handle = producer.resolve(Background).with({ durable: true }).add(counted, 'after a failed set-up');
    const direct = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => direct.quit());
    await vi.waitFor(async () => expect(await direct.hexists(backend.queue.toKey(handle.id), 'timestamp')).toBe(1), { timeout: 5_000, interval: 20 });
    expect(cut).toBe(true);
    expect(logger.at('warn').map(({ message }) => message)).toContain("BullMQ could not set up the durable queue's connection to Redis (Reached the max retries per request limit (which is 0). Refer to \"maxRetriesPerRequest\" option for details.); the queue is made again");
    expect(await closedWithin3s(backend.close())).toBe('closed');
    await vi.waitFor(() => expect(proxy.connections).toBe(0), { timeout: 2_000, interval: 20 });
  });

  it("a flow producer whose set-up BullMQ could not finish is made again: a task with `after` reaches Redis", async () => {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    // Once armed, the first INFO that is not a connection's first (ioredis's ready check) is a
    // BullMQ version check: the flow producer's, on whichever connection it has.
    const info = /\r\ninfo\r\n/gi;
    let armed = false;
    proxy.onRequest = (chunk, sent) => {
      if (!armed || !chunk.match(info) || (sent.match(info)?.length ?? 0) < 2) return 'pass';
      armed = false;
      return 'cut';
    };
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const backend = useBullMQ(producer, { connection: { ...proxy.connection, retryStrategy: () => 20, maxRetriesPerRequest: 0 }, queueName: `flow-set-up-${randomUUID()}`, logger, enqueueTimeoutMs: 5_000 });
    closers.push(() => shutdown({ container: producer }), () => backend.close());
    const direct = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => direct.quit());
    const inRedis = async (id: string): Promise<boolean> => (await direct.hexists(backend.queue.toKey(id), 'timestamp')) === 1;
    const bg = producer.resolve(Background).with({ durable: true });
    const first = bg.add(counted, randomUUID());
    await vi.waitFor(async () => expect(await inRedis(first.id)).toBe(true), { timeout: 5_000, interval: 10 });
    armed = true;
    const second = bg.with({ after: [first] }).add(counted, randomUUID());
    await vi.waitFor(async () => expect(await inRedis(second.id)).toBe(true), { timeout: 5_000, interval: 10 });
    expect(armed).toBe(false);
    expect(second.status).not.toBe('failed');
  });

  /** A producer application whose connections go through a proxy (retrying every 20 ms), on a fresh queue. */
  async function producerBehindProxy(queuePrefix: string, enqueueTimeoutMs: number) {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const backend = useBullMQ(producer, { connection: { ...proxy.connection, retryStrategy: () => 20 }, queueName: `${queuePrefix}-${randomUUID()}`, logger, enqueueTimeoutMs });
    closers.push(() => backend.close({ timeoutMs: 100 }));
    return { proxy, logger, producer, backend };
  }

  it("the producer's application's close against a Redis that stopped answering ends a second past its deadline, its jobs not in Redis counted abandoned and logged", async () => {
    const { proxy, logger, producer, backend } = await producerBehindProxy('unsent', 10_000);
    await backend.queue.count();
    proxy.mode = 'dropRequests';
    const bg = producer.resolve(Background).with({ durable: true });
    for (const label of ['a', 'b', 'c']) bg.add(counted, label);
    const startedAt = performance.now();
    const report = await shutdown({ container: producer, timeoutMs: 200 });
    const took = performance.now() - startedAt;
    expect(took).toBeGreaterThanOrEqual(1_150);
    expect(took).toBeLessThan(200 + 1_000 + 400);
    expect(report.abandoned).toBe(3);
    expect(logger.at('error').map((entry) => entry.message)).toContainEqual(
      expect.stringMatching(/^the application closed with 3 durable job\(s\) added before it not yet in Redis \(a process that exits now may lose them\), and 0 cancellation\(s\) not yet sent \(their jobs may still run\), 1\d\d\d ms after its close began \(still being sent, or not answered by Redis\)$/),
    );
  });

  it("a cancellation Redis has not answered when the producer's application's close ends counts once in its abandoned, named, and logged as such", async () => {
    const { proxy, logger, producer, backend } = await producerBehindProxy('unsent-cancel', 10_000);
    const handle = producer.resolve(Background).with({ durable: true, delayMs: 60_000 }).add(counted, 'later');
    const direct = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => direct.quit());
    await vi.waitFor(async () => expect(await direct.hexists(backend.queue.toKey(handle.id), 'timestamp')).toBe(1), { timeout: 5_000, interval: 10 });
    // Redis stops answering: the cancellation (its removal and its message to the workers) cannot be sent.
    proxy.mode = 'dropRequests';
    expect(handle.cancel('no longer needed')).toBe(true);
    const report = await shutdown({ container: producer, timeoutMs: 200 });
    expect(report.abandoned).toBe(1);
    const said = logger.at('error').find((entry) => entry.message.startsWith('the application closed with'));
    expect(said?.message).toMatch(/^the application closed with 0 durable job\(s\) added before it not yet in Redis .*, and 1 cancellation\(s\) not yet sent \(their jobs may still run\)/);
    expect(said?.fields.cancelledTaskIds).toEqual([handle.id]);
  });

  it("jobs whose enqueue bound passes while the producer's application's close waits for them count in its abandoned: the process would exit without them", async () => {
    const { proxy, producer, backend } = await producerBehindProxy('unreachable', 300);
    await backend.queue.count();
    // Redis is gone as the close begins (the producer knows: it tried to reconnect): the jobs of the turn can never be sent.
    proxy.mode = 'refuse';
    proxy.cut();
    await vi.waitFor(() => expect(proxy.refused).toBeGreaterThan(0), { timeout: 5_000, interval: 5 });
    const bg = producer.resolve(Background).with({ durable: true });
    const handles = ['a', 'b', 'c'].map((label) => bg.add(counted, label));
    const report = await shutdown({ container: producer, timeoutMs: 2_000 });
    expect(handles.map((handle) => handle.status)).toEqual(['failed', 'failed', 'failed']);
    expect(report.abandoned).toBe(3);
    expect(backend.enqueueFailures).toBe(3);
  });

  it("a process that cancels jobs it did not add (handles of backend.handle(id)) sends the cancellations before its application's close resolves", async () => {
    const queueName = `cancels-only-${randomUUID()}`;
    const adder = freshApp({ logger: captureLogger() });
    const adding = useBullMQ(adder, { connection: redis.connection, queueName, logger: captureLogger() });
    closers.push(() => shutdown({ container: adder }), () => adding.close());
    const later = adder.resolve(Background).with({ durable: true, delayMs: 60_000 });
    const added = ['x', 'y', 'z'].map((label) => later.add(counted, label));
    const direct = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => direct.quit());
    const delayed = `bull:${queueName}:delayed`;
    await vi.waitFor(async () => expect(await direct.zcard(delayed)).toBe(3), { timeout: 5_000, interval: 10 });
    // Another process: it adds nothing, it only cancels, then exits as soon as its close resolves.
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const canceller = freshApp({ logger: captureLogger() });
    const cancelling = useBullMQ(canceller, { connection: { ...proxy.connection, retryStrategy: () => 20 }, queueName, logger: captureLogger() });
    closers.push(() => cancelling.close({ timeoutMs: 100 }));
    const handles = await Promise.all(added.map((handle) => cancelling.handle(handle.id)));
    for (const handle of handles) expect(handle?.cancel('not needed')).toBe(true);
    await shutdown({ container: canceller, timeoutMs: 2_000 });
    // The process exits now: nothing more of it reaches Redis.
    proxy.mode = 'refuse';
    proxy.cut();
    expect(await direct.zcard(delayed)).toBe(0);
  });

  it("the workers' application's close against a Redis that stopped answering ends within a second past its deadline: the connections' second is shared, not one a step", async () => {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const queueName = `frozen-${randomUUID()}`;
    const workerRoot = freshApp({ logger: captureLogger() });
    const logger = captureLogger();
    startWorkers({ container: workerRoot, tasks: [counted], connection: { ...proxy.connection, retryStrategy: () => 20 }, queueName, logger });
    const producer = freshApp({ logger: captureLogger() });
    const backend = useBullMQ(producer, { connection: redis.connection, queueName, logger: captureLogger() });
    closers.push(() => shutdown({ container: producer }), () => backend.close());
    // One job run: the workers close with their application from now on.
    await expect(producer.resolve(Background).with({ durable: true }).add(counted, 'before the freeze').result({ timeoutMs: 10_000 })).resolves.toBe('ran before the freeze');
    proxy.mode = 'dropRequests';
    const startedAt = performance.now();
    await shutdown({ container: workerRoot, timeoutMs: 300 });
    const took = performance.now() - startedAt;
    expect(took).toBeGreaterThanOrEqual(300);
    expect(took).toBeLessThan(300 + 1_000 + 400);
    // Said by the deadline the close was given, not by what was left of it and the put-back's second.
    expect(logger.at('warn')).toEqual([
      {
        level: 'warn',
        fields: { timeoutMs: 300, putBackMs: 1_000 },
        message: "the durable workers' connections to Redis had not closed 1000 ms past their application's close deadline of 300 ms (Redis did not answer); they are dropped",
      },
    ]);
    await vi.waitFor(() => expect(proxy.connections).toBe(0), { timeout: 2_000, interval: 20 });
  });

  it("the workers' application's close whose put-back Redis does not answer names the deadline it was given, not that deadline and the put-back's second added up", async () => {
    const proxy = await startProxy(redis.port);
    closers.push(() => proxy.close());
    const queueName = `put-back-frozen-${randomUUID()}`;
    const logger = captureLogger();
    const workerRoot = freshApp({ logger: captureLogger() });
    startWorkers({ container: workerRoot, tasks: [gated], connection: { ...proxy.connection, retryStrategy: () => 20 }, queueName, logger });
    const producer = freshApp({ logger: captureLogger() });
    const backend = useBullMQ(producer, { connection: redis.connection, queueName, logger: captureLogger() });
    const label = randomUUID();
    closers.push(
      async () => gateOf(label).resolve(),
      () => shutdown({ container: producer }),
      () => backend.close(),
    );
    const handle = producer.resolve(Background).with({ durable: true }).add(gated, label);
    // Its run begun (not only its job taken: the workers close with their application from their first run).
    await vi.waitFor(() => expect(entered.has(label)).toBe(true), { timeout: 5_000, interval: 5 });
    // Its run is abandoned at the 300 ms deadline; its put-back, sent to a Redis that stopped answering, never ends.
    proxy.mode = 'dropRequests';
    await shutdown({ container: workerRoot, timeoutMs: 300 });
    expect(logger.at('warn').filter(({ message }) => message.startsWith('durable workers closed'))).toEqual([
      {
        level: 'warn',
        fields: { jobs: [handle.id], timeoutMs: 300, putBackMs: 1_000 },
        message:
          "durable workers closed with 1 job(s) still active 1000 ms past their application's close deadline of 300 ms (the time given to put back the jobs whose runs it abandoned); " +
          'they run again on another worker once their locks expire',
      },
    ]);
  });

  it('workers.close() against a Redis that stopped answering ends: once no job is active, the connections are dropped after a second', async () => {
    for (const options of [{}, { timeoutMs: 200 }]) {
      const proxy = await startProxy(redis.port);
      closers.push(() => proxy.close());
      const logger = captureLogger();
      const workers = startWorkers({ container: freshApp({ logger }), tasks: [counted], connection: { ...proxy.connection, retryStrategy: () => 20 }, queueName: `stopped-${randomUUID()}`, logger });
      await workers.worker.waitUntilReady();
      proxy.mode = 'dropRequests';
      expect(await closedWithin3s(workers.close(options))).toBe('closed');
      expect(logger.at('warn').map(({ message }) => message)).toContain("the durable workers' connections to Redis did not close within 1000 ms once no job was active (Redis did not answer); they are dropped");
      await vi.waitFor(() => expect(proxy.connections).toBe(0), { timeout: 2_000, interval: 20 });
    }
  });
});
