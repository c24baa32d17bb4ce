/**
 * The durable backend (issue 14, first part) against a real redis-server on 127.0.0.1: the same
 * definitions with `durable: true`, enqueued by `add()` (synchronous, the handle's id the job's),
 * run by workers on another container (as another process would), each job in a child scope;
 * progress, retries with the task's backoff, failures, unknown names, JSON checks at add(), a
 * delayed job cancelled, and Redis unreachable.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as realSleep } from 'node:timers/promises';
import { runInNewContext } from 'node:vm';
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { injectable, Lifecycle, scoped } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startWorkers, useBullMQ } from '../../src/adapters/bullmq.js';
import { Background, defineTask, DurableTaskError, shutdown, TaskCancelledError, TaskContext, type TaskHandle } from '../../src/index.js';
import { shout } from '../fixtures/worker-tasks.js';
import { captureLogger, failureOf, deferred, freshApp, watchProcessErrors } from '../helpers.js';
import { openQueue, producerOn as anotherProducer } from './queue-apps.js';
import { freePort, hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

/** A per-job service: disposed with the job's scope. */
@scoped(Lifecycle.ContainerScoped)
@injectable()
class JobSession {
  static disposed = 0;
  readonly id = randomUUID();
  dispose(): void {
    JobSession.disposed++;
  }
}

let calls = new Map<string, number>();
const record = defineTask({ name: 'record', inject: [JobSession, TaskContext] }, async (session: JobSession, ctx, label: string, tries: number) => {
  const n = (calls.get(label) ?? 0) + 1;
  calls.set(label, n);
  ctx.progress(0.5, `half of ${label}`);
  if (n < tries) throw new Error(`${label}: attempt ${n} fails`);
  return { label, attempt: ctx.attempt, session: session.id.length };
});
/** Held until the test opens `gate` (the worker runs in this process). */
let gate = deferred();
const held = defineTask({ name: 'held', inject: [JobSession] }, async (session: JobSession, label: string) => {
  await gate.promise;
  return { label, session: session.id.length };
});
/** Its first attempt says it started, waits for `gate`, and fails; the second returns. */
let firstStarted = deferred();
const heldOnce = defineTask({ name: 'heldOnce', inject: [TaskContext] }, async (ctx, label: string) => {
  if (ctx.attempt > 1) return { label, attempt: ctx.attempt };
  firstStarted.resolve();
  await gate.promise;
  throw new Error(`${label}: the first attempt fails`);
});
/** Runs until its signal aborts; says what it saw. */
const aborted: string[] = [];
const abortable = defineTask({ name: 'abortable', inject: [TaskContext] }, async (ctx, label: string) => {
  await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  aborted.push(`${label}: ${(ctx.signal.reason as Error).name}`);
});
let ticks = 0;
const tick = defineTask({ name: 'tick' }, async () => void ticks++);
/** Fails once `gate` opens. */
const failsLater = defineTask({ name: 'failsLater' }, async () => {
  await gate.promise;
  throw new Error('it fails late');
});
const order: string[] = [];
const ordered = defineTask({ name: 'ordered' }, async (label: string) => void order.push(label));
const durableRecord = defineTask({ name: 'durableRecord', durable: true, retries: 2, backoff: { baseMs: 10, jitter: 0 } }, async (label: string) => `durably ${label}`);

describe.skipIf(!hasRedis)('durable tasks on BullMQ', () => {
  const redis = redisForSuite();

  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** A producer application and a worker application on one fresh queue. */
  function setup(options: { tasks?: Parameters<typeof startWorkers>[0]['tasks']; workers?: boolean } = {}) {
    return openQueue(redis.connection, closers, {
      prefix: 'test',
      tasks: options.tasks ?? [record, held, heldOnce, ordered, abortable, tick, durableRecord, shout],
      workers: options.workers,
      workerApp: { pool: { maxThreads: 1, setupModule: new URL('../fixtures/worker-setup.ts', import.meta.url) } },
    });
  }

  /** A producer whose Redis cannot be reached (a port nothing listens on), with an enqueue bound of 300 ms; closed after the test. */
  async function unreachable() {
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const backend = useBullMQ(producer, { connection: { host: '127.0.0.1', port: await freePort() }, queueName: `down-${randomUUID()}`, logger, enqueueTimeoutMs: 300 });
    closers.push(() => shutdown({ container: producer }), () => backend.close());
    return { logger, producer, backend };
  }

  /** Another producer process's backend on `queueName` (its own application), closed after the test. */
  const producerOn = (queueName: string) => anotherProducer(redis.connection, closers, queueName);

  it('enqueues at add() and returns the job as a handle: a worker runs it in a child scope of its container, disposed after', async () => {
    const { bg, backend } = setup();
    calls = new Map();
    gate = deferred();
    const disposedBefore = JobSession.disposed;
    const handle = bg.with({ durable: true }).add(held, 'one');
    expect(handle.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(handle.status).toBe('queued');
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
    expect(handle.attempt).toBe(1);
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'running', attempt: 1 });
    expect(JobSession.disposed).toBe(disposedBefore);
    gate.resolve();
    await expect(handle.result()).resolves.toEqual({ label: 'one', session: 36 });
    expect(handle.status).toBe('succeeded');
    expect(JobSession.disposed).toBe(disposedBefore + 1);
    await expect(backend.job(handle.id)).resolves.toMatchObject({ id: handle.id, name: 'held', status: 'succeeded', attempt: 1, result: { label: 'one' } });
    const progressing = bg.with({ durable: true }).add(record, 'two', 1);
    await progressing.result();
    expect(progressing.progress).toEqual({ fraction: 0.5, message: 'half of two' });
    await expect(backend.job(progressing.id)).resolves.toMatchObject({ progress: { fraction: 0.5, message: 'half of two' } });
  });

  /**
   * The lines of CLIENT LIST naming connections of `queueName` (BullMQ names them after the
   * queue): all of them, or those of its event stream's readers (`':qe'`).
   */
  async function connectionsOf(queueName: string, kind: '' | ':qe' = ''): Promise<string[]> {
    const admin = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    try {
      const name = `bull:${Buffer.from(queueName).toString('base64')}${kind}`;
      return String(await admin.client('LIST'))
        .split('\n')
        .filter((line) => line.includes(`name=${name}`));
    } finally {
      await admin.quit();
    }
  }

  it('a handle nobody watches costs no reading: no event stream is opened; watched after its job ended, it reads the outcome from Redis', async () => {
    const { bg, queueName, workers } = setup();
    calls = new Map();
    gate = deferred();
    let completed = 0;
    workers!.worker.on('completed', () => completed++);
    const handles = Array.from({ length: 20 }, (_, i) => bg.with({ durable: true }).add(record, `quiet-${i}`, 1));
    await vi.waitFor(() => expect(completed).toBe(20), { timeout: 10_000, interval: 10 });
    expect(await connectionsOf(queueName, ':qe')).toEqual([]);
    // Watched now: the first read says what this process knew; Redis tells the rest.
    const first = handles[0]!;
    expect(first.status).toBe('queued');
    await expect(first.result()).resolves.toMatchObject({ label: 'quiet-0', attempt: 1 });
    expect([first.status, first.attempt, first.progress]).toEqual(['succeeded', 1, { fraction: 0.5, message: 'half of quiet-0' }]);
    const results = (await Promise.all(handles.map((handle) => handle.result()))) as { label: string }[];
    expect(results.map((result) => result.label)).toEqual(handles.map((_, i) => `quiet-${i}`));
    expect(handles.map((handle) => handle.attempt)).toEqual(handles.map(() => 1));
    // Opened to follow them, open while a handle is followed, and closed once none has been for a while.
    const open = bg.with({ durable: true }).add(held, 'keeps the stream read');
    await vi.waitFor(() => expect(open.status).toBe('running'), { timeout: 5_000, interval: 5 });
    expect(await connectionsOf(queueName, ':qe')).toHaveLength(1);
    gate.resolve();
    await open.result();
    await vi.waitFor(async () => expect(await connectionsOf(queueName, ':qe')).toEqual([]), { timeout: 6_000, interval: 100 });
  });

  it('a handle first watched after its job was removed from Redis fails saying its outcome is unknown (ERR_DURABLE_GONE)', async () => {
    const { bg, backend } = setup();
    calls = new Map();
    const handle = bg.with({ durable: true }).add(record, 'gone', 1);
    await vi.waitFor(async () => expect((await backend.job(handle.id))?.status).toBe('succeeded'), { timeout: 5_000, interval: 10 });
    // As the queue's retention does, in time, to every ended job.
    await backend.queue.remove(handle.id);
    const failure = await failureOf(handle.result());
    expect(failure).toBeInstanceOf(DurableTaskError);
    expect(failure.code).toBe('ERR_DURABLE_GONE');
    expect(failure.message).toContain(`durable task "record" (#${handle.id}): its job is no longer in Redis, so its outcome is unknown here`);
    expect(handle.status).toBe('failed');
  });

  it('a handle first watched after another process cancelled its waiting job (and so removed it) reads cancelled, not an unknown outcome', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    // A second producer process on the same queue.
    const otherBackend = producerOn(queueName);
    const handle = bg.with({ durable: true }).add(record, 'cancelled elsewhere', 1);
    await vi.waitFor(async () => expect((await otherBackend.job(handle.id))?.status).toBe('queued'), { timeout: 5_000, interval: 10 });
    const theirs = (await otherBackend.handle(handle.id))!;
    theirs.cancel('not needed any more');
    await expect(theirs.result()).rejects.toBeInstanceOf(TaskCancelledError);
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    // Watched only now, by the process that added it.
    const failure = await failureOf(handle.result());
    expect(failure).toBeInstanceOf(TaskCancelledError);
    expect(handle.status).toBe('cancelled');
    // The reason the other process gave, as it recorded it.
    expect(failure.cause).toBe('not needed any more');
  });

  it('a job cancelled without a reason gives no cause in any handle of any process, as in process (followed, or made by id after), under its task\'s name', async () => {
    const { bg, queueName } = setup({ workers: false });
    const otherBackend = producerOn(queueName);
    const handle = bg.with({ durable: true, delayMs: 60_000 }).add(record, 'no reason given', 1);
    expect(handle.status).toBe('delayed');
    await vi.waitFor(async () => expect((await otherBackend.job(handle.id))?.status).toBe('delayed'), { timeout: 5_000, interval: 10 });
    // Followed in the other process: it sees the job removed.
    const followed = (await otherBackend.handle(handle.id))!;
    expect(followed.status).toBe('delayed');
    expect(handle.cancel()).toBe(true);
    const failures = [await failureOf(handle.result()), await failureOf(followed.result())];
    await vi.waitFor(async () => expect(await otherBackend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    // Made by id after: read from the record of cancellations.
    failures.push(await failureOf((await otherBackend.handle(handle.id))!.result()));
    for (const failure of failures) {
      expect(failure).toBeInstanceOf(TaskCancelledError);
      expect(failure.message).toBe(`Task "record" (#${handle.id}) was cancelled`);
      expect(failure.cause).toBeUndefined();
    }
  });

  it.each(['job', 'handle'] as const)('backend.%s(id) of a job that fails between its read and its state\'s reads it failed, with its reason', async (how) => {
    const { bg, backend } = setup({ tasks: [failsLater] });
    gate = deferred();
    const handle = bg.with({ durable: true }).add(failsLater);
    await vi.waitFor(async () => expect((await backend.job(handle.id))?.status).toBe('running'), { timeout: 5_000, interval: 10 });
    // The job is read while it runs; it fails before its state is read.
    const getJob = backend.queue.getJob.bind(backend.queue);
    let once = true;
    backend.queue.getJob = async (id: string) => {
      const job = await getJob(id);
      if (once) {
        once = false;
        gate.resolve();
        await vi.waitFor(async () => expect(await backend.queue.getJobState(id)).toBe('failed'), { timeout: 5_000, interval: 10 });
      }
      return job;
    };
    if (how === 'job') {
      await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'failed', failedReason: 'it fails late' });
    } else {
      const found = (await backend.handle(handle.id))!;
      await expect(found.result()).rejects.toThrow('it fails late');
      expect(found.status).toBe('failed');
    }
  });

  it('backend.close(options) and workers.close(options) refuse an unknown option, and a timeoutMs that is not a number, closing nothing', async () => {
    const { bg, backend, workers } = setup();
    for (const [at, close] of [
      ['backend.close(options)', (options: unknown) => backend.close(options as never)],
      ['workers.close(options)', (options: unknown) => workers!.close(options as never)],
    ] as const) {
      await expect(close({ timeout: 5_000 })).rejects.toThrow(new TypeError(`${at}: options.timeout is not a known option; known options: timeoutMs`));
      await expect(close({ timeoutMs: '5000' })).rejects.toThrow(new TypeError(`${at}: options.timeoutMs must be an integer from 0 to 2147483647, got "5000" (string)`));
      await expect(close({ timeoutMs: '5000' })).rejects.toBeInstanceOf(TypeError);
      await expect(close(null)).rejects.toThrow(new TypeError(`${at}: options must be an object, got null`));
    }
    // Both still open: a job added now runs.
    expect(await bg.with({ durable: true }).add(ordered, 'after the refusals').result()).toBeNull(); // undefined, through JSON
  });

  it('backend.job(id) and backend.handle(id) after backend.close() reject saying the backend was closed', async () => {
    const { backend } = setup({ workers: false });
    await backend.close();
    await expect(backend.job('any')).rejects.toThrow('backend.job(id): the durable backend was closed (backend.close()); read jobs with an open one');
    await expect(backend.handle('any')).rejects.toThrow('backend.handle(id): the durable backend was closed (backend.close()); read jobs with an open one');
  });

  it('backend.job(id) and backend.handle(id) with an id that is not a string reject with a TypeError naming the call, as bg.get() throws', async () => {
    const { backend } = setup({ workers: false });
    for (const [id, got] of [
      [1, '1 (number)'],
      [null, 'null'],
      [undefined, 'undefined (undefined)'],
      [{}, 'an object'],
      [['a'], 'an instance of Array'],
      [Symbol('s'), 'Symbol(s) (symbol)'],
    ] as const) {
      for (const method of ['job', 'handle'] as const) {
        const read = backend[method](id as never);
        await expect(read).rejects.toThrow(new TypeError(`backend.${method}(id): id must be a string (a handle's id), got ${got}`));
        await expect(read).rejects.toBeInstanceOf(TypeError);
      }
    }
  });

  it("backend.handle(id, task) gives the handle of that task's job, and rejects with a TypeError a job of another task, or a task that is not a definition", async () => {
    const { bg, backend } = setup();
    const added = bg.add(durableRecord, 'by id');
    await added.result();
    const found = await backend.handle(added.id, durableRecord);
    expect(found?.name).toBe('durableRecord');
    // Typed with the task's result (test/types.test-d.ts): here, it is the job's.
    expect(await found!.result()).toBe('durably by id');
    await expect(backend.handle(added.id, ordered)).rejects.toThrow(new TypeError(`backend.handle(${JSON.stringify(added.id)}, ordered): its job is one of task "durableRecord", not of "ordered"`));
    await expect(backend.handle(added.id, (async () => undefined) as never)).rejects.toThrow(new RegExp(`^backend\\.handle\\(${JSON.stringify(added.id)}, task\\): task must be a defineTask\\(\\) or workerTask\\(\\) definition, got`));
    // No job of that id: undefined, as without the task.
    await expect(backend.handle('no-such-job', durableRecord)).resolves.toBeUndefined();
  });

  it("sends a burst under a test's fake timers that take queueMicrotask and setImmediate (Jest's default), without the clock being advanced", async () => {
    const { bg, backend } = setup({ workers: false });
    const durable = bg.with({ durable: true });
    // The connection is up: jobs go straight to the queue's client.
    const first = durable.add(record, 'before the fakes', 1);
    await vi.waitFor(async () => expect(await backend.job(first.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'queueMicrotask', 'Date'] });
    try {
      // More than one turn's slice (500): the rest goes at the next turns.
      const handles = Array.from({ length: 600 }, (_, i) => durable.add(record, `under the fakes ${i}`, 1));
      const inRedis = async (): Promise<boolean> => (await Promise.all([handles[0]!, handles[599]!].map((handle) => backend.job(handle.id)))).every(Boolean);
      const giveUpAt = performance.now() + 5_000;
      while (!(await inRedis()) && performance.now() < giveUpAt) await realSleep(20);
      expect(await inRedis()).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('add() after backend.close(), its application still open: never sent, its handle fails at once with ERR_DURABLE_ENQUEUE saying so', async () => {
    const { bg, backend, logger, queueName } = setup({ workers: false });
    await backend.close();
    const handle = bg.with({ durable: true }).add(record, 'after the close', 1);
    expect(handle.status).toBe('failed');
    const message = `durable task "record" (#${handle.id}) could not be enqueued: the durable backend was closed (backend.close()) before it could be sent`;
    await expect(handle.result()).rejects.toMatchObject({ name: 'DurableTaskError', code: 'ERR_DURABLE_ENQUEUE', message });
    expect(logger.at('error').map(({ message, fields }) => [message, fields.taskId])).toEqual([['durable task "record" could not be enqueued; it will not run', handle.id]]);
    await expect(producerOn(queueName).job(handle.id)).resolves.toBeUndefined();
  });

  it('backend.handle(id) of a job another process cancelled while it waited (and so removed) reads cancelled, under its task\'s name; of a job never added, undefined', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const otherBackend = producerOn(queueName);
    const handle = bg.with({ durable: true, delayMs: 60_000 }).add(record, 'cancelled, then asked for by id', 1);
    await vi.waitFor(async () => expect((await otherBackend.job(handle.id))?.status).toBe('delayed'), { timeout: 5_000, interval: 10 });
    (await otherBackend.handle(handle.id))!.cancel('not needed any more');
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    // A process that knows only the id (this one restarted, say).
    const thirdBackend = producerOn(queueName);
    const found = await thirdBackend.handle(handle.id);
    expect(found?.status).toBe('cancelled');
    expect(found?.name).toBe('record');
    await expect(found!.result()).rejects.toThrow(new TaskCancelledError('record', handle.id, 'not needed any more'));
    expect(found!.cancel('again')).toBe(false);
    expect(await thirdBackend.handle(randomUUID())).toBeUndefined();
  });

  it.each([
    ['an object', { why: 'duplicate', by: 'admin' }, '{"why":"duplicate","by":"admin"}'],
    ['an Error', new Error('superseded'), 'superseded'],
    ['a very long string', 'x'.repeat(5_000), `${'x'.repeat(1_000)}… (4000 more characters)`],
  ])('a cancellation reason given as %s reaches other processes as text', async (_what, reason, text) => {
    const { bg, queueName } = setup({ workers: false });
    const handle = bg.with({ durable: true, delayMs: 60_000 }).add(record, 'cancelled with a reason', 1);
    const otherBackend = producerOn(queueName);
    await vi.waitFor(async () => expect((await otherBackend.job(handle.id))?.status).toBe('delayed'), { timeout: 5_000, interval: 10 });
    handle.cancel(reason);
    await expect(handle.result()).rejects.toMatchObject({ cause: reason });
    await vi.waitFor(async () => expect(await otherBackend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    const found = await producerOn(queueName).handle(handle.id);
    await expect(found!.result()).rejects.toMatchObject({ name: 'TaskCancelledError', cause: text });
  });

  it('handles watched in the turn of their add() are followed from their first event: none is read back from Redis', async () => {
    const { bg, backend } = setup();
    calls = new Map();
    // Warm: the queue's connection is ready; no handle was watched, so the stream is not read.
    const warm = bg.with({ durable: true }).add(record, 'warm', 1);
    await vi.waitFor(async () => expect((await backend.job(warm.id))?.status).toBe('succeeded'), { timeout: 5_000, interval: 10 });
    const client = (await backend.queue.getBackend().client) as unknown as { multi: () => unknown };
    const multi = client.multi;
    let readBacks = 0;
    client.multi = function (this: unknown) {
      readBacks++;
      return multi.call(this);
    };
    try {
      const handles = Array.from({ length: 50 }, (_, i) => bg.with({ durable: true }).add(record, `watched-${i}`, 1 + (i % 2)));
      const results = handles.map((handle) => handle.result().catch((error: unknown) => error));
      expect(handles.map((handle) => handle.status)).toEqual(handles.map(() => 'queued'));
      const settled = await Promise.all(results);
      expect(settled.map((result) => (result instanceof Error ? 'failed' : 'succeeded'))).toEqual(handles.map((_, i) => (i % 2 === 0 ? 'succeeded' : 'failed')));
      expect(handles.map((handle) => handle.attempt)).toEqual(handles.map(() => 1));
      expect(readBacks).toBe(0);
    } finally {
      client.multi = multi;
    }
  });

  it('a handle watched while its job runs catches up from Redis, then follows it: each attempt counted once, however late the reader reads', async () => {
    const { bg, backend } = setup();
    gate = deferred();
    firstStarted = deferred();
    // Another handle followed: the event stream is being read.
    const other = bg.with({ durable: true }).add(held, 'keeps the stream read');
    await vi.waitFor(() => expect(other.status).toBe('running'), { timeout: 5_000, interval: 5 });
    // The reader reads the start of the watched job's first attempt, and passes it on only after
    // the handle was read from Redis (as a reader that lags behind does).
    const prototype = QueueEvents.prototype as unknown as { emit: (event: string, ...args: unknown[]) => boolean };
    const emit = prototype.emit;
    const late: (() => void)[] = [];
    let target = '';
    prototype.emit = function (this: unknown, event, ...args) {
      if (event === 'active' && (args[0] as { jobId?: string } | undefined)?.jobId === target) {
        late.push(() => emit.call(this, event, ...args));
        return true;
      }
      return emit.call(this, event, ...args);
    };
    let handle: TaskHandle;
    try {
      handle = bg.with({ durable: true, retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(heldOnce, 'late');
      target = handle.id;
      await firstStarted.promise;
      await vi.waitFor(() => expect(late).toHaveLength(1), { timeout: 5_000, interval: 5 });
      // Watched now: the first read says what this process knew; Redis tells the rest.
      expect(handle.status).toBe('queued');
      await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
      expect(handle.attempt).toBe(1);
    } finally {
      prototype.emit = emit;
    }
    for (const deliver of late) deliver();
    expect([handle.status, handle.attempt]).toEqual(['running', 1]);
    gate.resolve();
    await expect(handle.result()).resolves.toEqual({ label: 'late', attempt: 2 });
    expect([handle.status, handle.attempt]).toEqual(['succeeded', 2]);
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'succeeded', attempt: 2 });
    await expect(other.result()).resolves.toMatchObject({ label: 'keeps the stream read' });
  });

  it('handles watched at random moments of their jobs\' lives end as their jobs did, each attempt counted once', async () => {
    const { bg, backend } = setup();
    calls = new Map();
    const n = 300;
    const retrying = bg.with({ durable: true, retries: 1, backoff: { baseMs: 2, jitter: 0 } });
    // Half the jobs fail their first attempt; each handle is watched (its status read, or its
    // result asked for) in the turn of its add() (a third: read back from Redis while their jobs
    // start), or up to 100 ms later.
    const handles = Array.from({ length: n }, (_, i) => retrying.add(record, `random-${i}`, 1 + (i % 2)));
    const watched = handles.map((handle, i) => {
      const watch = (): void => void (i % 3 === 0 ? handle.status : handle.result().catch(() => undefined));
      if (i % 3 === 1) {
        watch();
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => setTimeout(() => resolve(watch()), Math.random() * 100));
    });
    await Promise.all(watched);
    const results = (await Promise.all(handles.map((handle) => handle.result()))) as { label: string; attempt: number }[];
    expect(results.map((result) => result.label)).toEqual(handles.map((_, i) => `random-${i}`));
    expect(results.map((result) => result.attempt)).toEqual(handles.map((_, i) => 1 + (i % 2)));
    expect(handles.map((handle) => [handle.status, handle.attempt])).toEqual(handles.map((_, i) => ['succeeded', 1 + (i % 2)]));
    const jobs = await Promise.all(handles.map((handle) => backend.job(handle.id)));
    expect(jobs.map((job) => job?.attempt)).toEqual(handles.map((_, i) => 1 + (i % 2)));
  });

  it("a job's own scope: its tasks on that scope's Background drain before the job completes; a task with no dependency to resolve gets none", async () => {
    const childGate = deferred();
    let childStarted = false;
    let childDone = false;
    /** Adds an in-process task on the job scope's Background and returns at once. */
    const fanOut = defineTask({ name: 'fanOut', inject: [Background] }, (jobBg: Background, label: string) => {
      jobBg.add(async () => {
        childStarted = true;
        await childGate.promise;
        childDone = true;
      });
      return label;
    });
    const { bg, backend, workerRoot } = setup({ tasks: [fanOut, tick] });
    const childScopes = vi.spyOn(workerRoot, 'createChildContainer');
    const handle = bg.with({ durable: true }).add(fanOut, 'fanned');
    await vi.waitFor(() => expect(childStarted).toBe(true), { timeout: 5_000, interval: 5 });
    // The function has returned; the job is not over while its scope drains.
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'running' });
    expect(handle.status).not.toBe('succeeded');
    childGate.resolve();
    await expect(handle.result()).resolves.toBe('fanned');
    expect(childDone).toBe(true);
    expect(childScopes).toHaveBeenCalledTimes(1);
    // Jobs of a task without dependencies run on the workers' own Background: no scope each.
    await Promise.all([bg.with({ durable: true }).add(tick).result(), bg.with({ durable: true }).add(tick).result()]);
    expect(childScopes).toHaveBeenCalledTimes(1);
  });

  it("a worker's attempt of a job is live in its application while it runs, and on record in Redis only: the worker's records keep its own tasks", async () => {
    const { bg, backend, workerRoot } = setup();
    gate = deferred();
    const local = workerRoot.createChildContainer().resolve(Background);
    const handle = bg.with({ durable: true }).add(held, 'watched');
    await vi.waitFor(() => expect(local.list({ application: true, status: 'running' }).map((run) => run.name)).toEqual(['held']), { timeout: 5_000, interval: 5 });
    gate.resolve();
    await handle.result();
    // The worker's own, in-process task is on its records; the job's attempt is not.
    await local.add(tick).result();
    await vi.waitFor(() => expect(local.list({ application: true }).map((run) => run.name)).toEqual(['tick']), { timeout: 5_000, interval: 5 });
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'succeeded', result: { label: 'watched' } });
  });

  it("retries with the task's own retries and backoff; a definition can be durable itself", async () => {
    const { bg, backend } = setup();
    calls = new Map();
    const handle = bg.with({ durable: true, retries: 2, backoff: { baseMs: 5, jitter: 0 } }).add(record, 'flaky', 3);
    // ctx.attempt in the worker is the job's attempt, as the handle counts it.
    await expect(handle.result()).resolves.toMatchObject({ label: 'flaky', attempt: 3 });
    expect(handle.attempt).toBe(3);
    expect(calls.get('flaky')).toBe(3);
    await expect(bg.add(durableRecord, 'defined').result()).resolves.toBe('durably defined');
    // A job carries what its worker needs and no more: a backoff and attempts only when it may retry.
    const once = bg.with({ durable: true }).add(record, 'once', 1);
    await once.result();
    const [retried, single] = await Promise.all([Job.fromId(backend.queue, handle.id), Job.fromId(backend.queue, once.id)]);
    expect(retried?.data).toMatchObject({ args: ['flaky', 3], backoff: { baseMs: 5, jitter: 0 } });
    expect(retried?.opts).toMatchObject({ attempts: 3, backoff: { type: 'tsyringe-background' } });
    expect(single?.data).toEqual({ args: ['once', 1] });
    expect(single?.opts.backoff).toBeUndefined();
    expect(single?.opts.delay).toBeUndefined();
  });

  it('fails the handle with the error the job failed with once its attempts are used up', async () => {
    const { bg, backend } = setup();
    calls = new Map();
    const handle = bg.with({ durable: true, retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(record, 'doomed', 99);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DurableTaskError);
    expect(error).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: handle.id, message: 'doomed: attempt 2 fails' });
    expect(handle.status).toBe('failed');
    expect(calls.get('doomed')).toBe(2);
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'failed', attempt: 2, failedReason: 'doomed: attempt 2 fails' });
  });

  it('runs a worker task on the worker process pool, its dependencies from that thread', async () => {
    const { bg } = setup();
    const handle = bg.with({ durable: true }).add(shout, 'ada');
    await expect(handle.result()).resolves.toEqual({ text: 'HELLO, ADA!', attempt: 1 });
    expect(handle.progress).toEqual({ fraction: 1, message: 'shouted' });
  });

  it('runs waiting jobs highest priority first, as in process, normal ones included', async () => {
    const { bg, queueName, workerRoot, backend } = setup({ workers: false });
    order.length = 0;
    const handles = (['low', 'normal', 'critical', 'high'] as const).map((priority) => bg.with({ durable: true, priority }).add(ordered, priority));
    await vi.waitFor(async () => expect(await backend.queue.count()).toBe(4), { timeout: 5_000, interval: 10 });
    const workers = startWorkers({ container: workerRoot, tasks: [ordered], connection: redis.connection, queueName, concurrency: 1 });
    closers.push(() => workers.close());
    await Promise.all(handles.map((handle) => handle.result()));
    expect(order).toEqual(['critical', 'high', 'normal', 'low']);
  });

  it("hands BullMQ workerOptions' inherited fields too, as every options object is read (a spread dropped them)", async () => {
    const { queueName, workerRoot } = setup({ workers: false });
    const base = { limiter: { max: 1, duration: 60_000 }, settings: Object.create({ custom: 'kept' }) as object };
    const workers = startWorkers({ container: workerRoot, tasks: [ordered], connection: redis.connection, queueName, workerOptions: Object.create(base) as object });
    closers.push(() => workers.close());
    expect(workers.worker.opts.limiter).toEqual({ max: 1, duration: 60_000 });
    expect(workers.worker.opts.settings).toMatchObject({ custom: 'kept' });
  });

  it('fails a job whose name the worker does not know at once, without retries, saying so', async () => {
    const { bg } = setup({ tasks: [shout] });
    const handle = bg.with({ durable: true, retries: 3 }).add(record, 'unknown', 1);
    const error = await handle.result().catch((e: unknown) => e);
    expect((error as Error).message).toBe('no durable task named "record" is known to this worker (it runs "shout"); pass its definition to startWorkers({ tasks })');
    expect(handle.attempt).toBe(1);
  });

  it('waits a delayed job out as delayed; cancelling it removes it before any worker runs it', async () => {
    const { bg, backend } = setup();
    calls = new Map();
    const handle = bg.with({ durable: true, delayMs: 60_000 }).add(record, 'later', 1);
    expect(handle.status).toBe('delayed');
    await vi.waitFor(async () => expect((await backend.job(handle.id))?.status).toBe('delayed'), { timeout: 5_000, interval: 10 });
    expect(handle.cancel('changed my mind')).toBe(true);
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    expect(calls.get('later')).toBeUndefined();
  });

  it('cancelling a job in the turn that added it removes it from Redis once it arrives there', async () => {
    const { bg, backend } = setup({ workers: false });
    const cancelled = bg.with({ durable: true }).add(record, 'at once', 1);
    expect(cancelled.cancel('changed my mind at once')).toBe(true);
    // Sent after the cancelled one on the same connection: once it is in Redis, so was the other.
    const next = bg.with({ durable: true }).add(record, 'next', 1);
    await vi.waitFor(async () => expect(await backend.job(next.id)).toMatchObject({ status: 'queued' }), { timeout: 5_000, interval: 10 });
    await vi.waitFor(async () => expect(await backend.job(cancelled.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    await expect(cancelled.result()).rejects.toBeInstanceOf(TaskCancelledError);
  });

  it('cancels many jobs without piling up listeners (no MaxListenersExceededWarning)', async () => {
    const { bg, backend } = setup({ workers: false });
    const durable = bg.with({ durable: true });
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const handles = Array.from({ length: 15 }, (_, i) => durable.add(record, `c${i}`, 1));
      await vi.waitFor(async () => expect(await backend.job(handles.at(-1)!.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
      for (const handle of handles) expect(handle.cancel('not needed')).toBe(true);
      await vi.waitFor(async () => expect(await Promise.all(handles.map((handle) => backend.job(handle.id)))).toEqual(handles.map(() => undefined)), { timeout: 5_000, interval: 20 });
      // Node emits its warning on the next turn at the latest.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('cancelling a job of a burst before its slice went to Redis removes it there too', async () => {
    const { bg, backend } = setup({ workers: false });
    const durable = bg.with({ durable: true });
    const warm = durable.add(record, 'warm', 1);
    await vi.waitFor(async () => expect(await backend.job(warm.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    // A burst goes to Redis 500 jobs a turn: the last ones are still in this process.
    const burst = Array.from({ length: 1_200 }, (_, i) => durable.add(record, `b${i}`, 1));
    const last = burst.at(-1)!;
    expect(last.cancel('changed my mind')).toBe(true);
    await vi.waitFor(async () => expect(await backend.job(burst.at(-2)!.id)).toMatchObject({ status: 'queued' }), { timeout: 10_000, interval: 10 });
    await vi.waitFor(async () => expect(await backend.job(last.id)).toBeUndefined(), { timeout: 5_000, interval: 10 });
    expect(last.status).toBe('cancelled');
  });

  it('a worker that is asked to cancel a job before it takes it cancels the job when it does: the task never runs', async () => {
    const { bg, backend, queueName } = setup();
    calls = new Map();
    const admin = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => admin.quit());
    const channel = `bull:${queueName}:tsyringe-background:cancel`;
    // The worker listens for cancellations.
    await vi.waitFor(async () => expect(((await admin.pubsub('NUMSUB', channel)) as [string, number])[1]).toBe(1), { timeout: 5_000, interval: 10 });
    const handle = bg.with({ durable: true, delayMs: 200 }).add(record, 'cancelled early', 1);
    await vi.waitFor(async () => expect((await backend.job(handle.id))?.status).toBe('delayed'), { timeout: 5_000, interval: 10 });
    // As a producer's cancellation that comes before the worker has the job (they travel on two connections).
    await admin.publish(channel, JSON.stringify({ id: handle.id, reason: 'changed my mind' }));
    const failure = await failureOf(handle.result());
    // Cancelled by another process: the handle reads it as backend.job(id) does, the cause the reason that process gave.
    expect(failure).toBeInstanceOf(TaskCancelledError);
    expect(failure.message).toBe(`Task "record" (#${handle.id}) was cancelled`);
    expect(failure.cause).toBe('changed my mind');
    expect(handle.status).toBe('cancelled');
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'cancelled' });
    expect(calls.get('cancelled early')).toBeUndefined();
  });

  it('a job waiting again after a failed attempt reads retrying, in backend.job(id) as on its handle', async () => {
    const { bg, backend, queueName, workerRoot } = setup({ workers: false });
    const blockerStarted = deferred();
    const blockerGate = deferred();
    const blocker = defineTask({ name: 'blocker' }, async () => {
      blockerStarted.resolve();
      await blockerGate.promise;
    });
    // One slot: while the blocker holds it, the job's second attempt waits.
    const workers = startWorkers({ container: workerRoot, tasks: [heldOnce, blocker], connection: redis.connection, queueName, concurrency: 1 });
    closers.push(() => workers.close());
    gate = deferred();
    firstStarted = deferred();
    const handle = bg.with({ durable: true, retries: 1, backoff: { baseMs: 0, jitter: 0 } }).add(heldOnce, 'again');
    expect(handle.status).toBe('queued');
    await firstStarted.promise;
    const block = bg.with({ durable: true, priority: 'critical' }).add(blocker);
    await vi.waitFor(async () => expect((await backend.job(block.id))?.status).toBe('queued'), { timeout: 5_000, interval: 10 });
    // The first attempt fails; without a backoff the job waits again, behind the blocker.
    gate.resolve();
    await blockerStarted.promise;
    await vi.waitFor(async () => expect((await backend.job(handle.id))?.status).toBe('retrying'), { timeout: 5_000, interval: 10 });
    await vi.waitFor(() => expect(handle.status).toBe('retrying'), { timeout: 5_000, interval: 5 });
    expect(handle.attempt).toBe(1);
    blockerGate.resolve();
    await expect(handle.result()).resolves.toEqual({ label: 'again', attempt: 2 });
  });

  it("cancels a running job from the producer's process: the worker's task sees its signal abort, and the job is not retried", async () => {
    const { bg, backend } = setup();
    aborted.length = 0;
    const handle = bg.with({ durable: true, retries: 3 }).add(abortable, 'stop me');
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
    expect(handle.cancel('enough')).toBe(true);
    expect(handle.status).toBe('cancelled');
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect(handle.cancel()).toBe(false);
    await vi.waitFor(() => expect(aborted).toEqual(['stop me: TaskCancelledError']), { timeout: 5_000, interval: 10 });
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toMatchObject({ status: 'cancelled', attempt: 1 }), { timeout: 5_000, interval: 10 });
  });

  it.each([
    ['a URL', () => ({ url: `redis://${redis.connection.host}:${redis.connection.port}` })],
    ['lazyConnect: true', () => ({ ...redis.connection, lazyConnect: true })],
    ['a client of the caller\'s with lazyConnect', () => new Redis({ ...redis.connection, lazyConnect: true, maxRetriesPerRequest: null })],
  ] as const)('cancels a running job with the connection given as %s: the clients of its own the backend makes honour it', async (_, connectionOf) => {
    const connection = connectionOf();
    if (connection instanceof Redis) closers.push(async () => connection.disconnect());
    const { bg, backend } = openQueue(connection, closers, { tasks: [abortable], prefix: 'conn' });
    aborted.length = 0;
    const handle = bg.with({ durable: true }).add(abortable, 'stop me');
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 5_000, interval: 5 });
    handle.cancel('enough');
    await vi.waitFor(() => expect(aborted).toEqual(['stop me: TaskCancelledError']), { timeout: 5_000, interval: 10 });
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toMatchObject({ status: 'cancelled' }), { timeout: 5_000, interval: 10 });
  });

  it("says why Redis could not be reached: a job's enqueue failure names the connection's last error (a wrong password)", async () => {
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const backend = useBullMQ(producer, { connection: { ...redis.connection, username: `nobody-${randomUUID()}`, password: 'wrong' }, queueName: `auth-${randomUUID()}`, logger, enqueueTimeoutMs: 500 });
    closers.push(() => shutdown({ container: producer }), () => backend.close({ timeoutMs: 100 }));
    const handle = producer.resolve(Background).with({ durable: true }).add(record, 'refused', 1);
    const error = await handle.result().catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/could not be enqueued: Redis could not be reached within 500 ms \(it was never sent\); the connection's last error: WRONGPASS/);
    expect(logger.at('warn').map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^the durable queue lost its connection to Redis \(WRONGPASS .*\); it reconnects$/));
  });

  it('a worker whose Redis user may not subscribe to the cancellation channel says so at error, naming the channel', async () => {
    const admin = new Redis(redis.connection);
    const user = `nochannel-${randomUUID()}`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>secret', '~*', '+@all', 'resetchannels');
    closers.push(async () => {
      await admin.call('ACL', 'DELUSER', user);
      admin.disconnect();
    });
    const logger = captureLogger();
    const app = freshApp({ logger });
    const queueName = `acl-${randomUUID()}`;
    const workers = startWorkers({ container: app, tasks: [record], connection: { ...redis.connection, username: user, password: 'secret' }, queueName, logger });
    closers.push(() => workers.close(), () => shutdown({ container: app }));
    await vi.waitFor(() => expect(logger.at('error').map((entry) => entry.message)).toContainEqual(
      `a durable worker cannot listen for cancellations (NOPERM this user has no permissions to access one of the channels used as arguments): its Redis user may not subscribe to the channel bull:${queueName}:tsyringe-background:cancel (ACL: give it &bull:${queueName}:tsyringe-background:cancel); cancel() of a running job cannot reach this worker`,
    ), { timeout: 5_000, interval: 10 });
  });

  it('refuses a connection that is a URL string, and a client for workers whose maxRetriesPerRequest is not null, naming the option, before any connection is made', () => {
    const app = freshApp({ logger: captureLogger() });
    const url = `redis://${redis.connection.host}:${redis.connection.port}`;
    for (const call of [() => useBullMQ(app, { connection: url as never }), () => startWorkers({ container: app, tasks: [record], connection: url as never })]) {
      expect(call).toThrow(TypeError);
      expect(call).toThrow(/^(useBullMQ|startWorkers)\(options\): options\.connection must be ioredis's options \(\{ host, port \}, \{ url \}, …\) or an ioredis client \(a URL goes as \{ url: "redis:\/\/…" \}\), got a string$/);
    }
    const client = new Redis({ ...redis.connection, lazyConnect: true });
    try {
      expect(() => startWorkers({ container: app, tasks: [record], connection: client })).toThrow(
        new TypeError(
          "startWorkers(options): options.connection is an ioredis client whose maxRetriesPerRequest is 20 (number); BullMQ's workers need null (new Redis({ maxRetriesPerRequest: null, … })), or give the client's options instead of the client",
        ),
      );
      expect(client.status).toBe('wait'); // nothing made, nothing connected
    } finally {
      client.disconnect();
    }
  });

  it("refuses this process's second schedule of a task with other arguments (it would replace the first, whose handle would read 'delayed'); the same one again gets the same handle", async () => {
    const { bg } = setup({ workers: false });
    const durable = bg.with({ durable: true, every: 60_000, overlap: true });
    const tenantA = durable.add(ordered, 'tenant-a');
    expect(() => durable.add(ordered, 'tenant-b')).toThrow(
      new TypeError(
        'bg.add("ordered"): durable task "ordered" is scheduled by this process already, with other arguments (["tenant-a"] before, ["tenant-b"] now); a durable schedule is one per task name ' +
          'in the whole cluster (a BullMQ job scheduler named after the task), so this one would replace it: cancel() the first one first, or define a task for each schedule',
      ),
    );
    // The message says what differs: the times, the options, or several.
    expect(() => bg.with({ durable: true, every: 30_000, overlap: true }).add(ordered, 'tenant-a')).toThrow(/with other times \(every 60000 ms before, every 30000 ms now\); /);
    expect(() => bg.with({ durable: true, every: 60_000, overlap: true, retries: 2 }).add(ordered, 'tenant-a')).toThrow(/with other options; /);
    expect(() => bg.with({ durable: true, cron: '0 3 * * *', tz: 'Europe/Berlin', overlap: true }).add(ordered, 'x'.repeat(100))).toThrow(
      /with other arguments \(\["tenant-a"\] before, \["x{78}… now\) and times \(every 60000 ms before, cron "0 3 \* \* \*" in Europe\/Berlin now\); /,
    );
    expect(durable.add(ordered, 'tenant-a')).toBe(tenantA);
    // Once cancelled, another may take the name.
    expect(tenantA.cancel()).toBe(true);
    const tenantB = durable.add(ordered, 'tenant-b');
    expect(tenantB).not.toBe(tenantA);
    expect(tenantB.status).toBe('delayed');
    tenantB.cancel();
  });

  it('runs a durable periodic task once per tick for the whole cluster: one job scheduler per task name, whoever adds it; cancel() removes it', async () => {
    const { bg, backend, queueName } = setup();
    ticks = 0;
    const schedule = bg.with({ durable: true, every: 150, overlap: true }).add(tick);
    expect(schedule).toMatchObject({ id: 'tick', name: 'tick', status: 'delayed' });
    // A second producer process (another application on the same queue) adds the same schedule.
    const other = freshApp({ logger: captureLogger() });
    const otherBackend = useBullMQ(other, { connection: redis.connection, queueName });
    closers.push(() => shutdown({ container: other }), () => otherBackend.close());
    other.resolve(Background).with({ durable: true, every: 150, overlap: true }).add(tick);
    await vi.waitFor(() => expect(ticks).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 20 });
    expect(await backend.queue.getJobSchedulersCount()).toBe(1);
    // Another process reaches the schedule by its id, the task's name; and removes it.
    const found = await otherBackend.handle('tick');
    expect(found).toMatchObject({ id: 'tick', name: 'tick', status: 'delayed' });
    expect(found!.cancel('done elsewhere')).toBe(true);
    expect(found!.status).toBe('cancelled');
    await vi.waitFor(async () => expect(await backend.queue.getJobSchedulersCount()).toBe(0), { timeout: 5_000, interval: 10 });
    await expect(otherBackend.handle('tick')).resolves.toBeUndefined();
    // The removal reaches no other handle: this process's reads what it knows.
    expect(schedule.status).toBe('delayed');
    expect(schedule.cancel('done')).toBe(true);
    expect(schedule.status).toBe('cancelled');
  });

  it('keeps a cron schedule with its time zone (the adding process\'s when none is given), and refuses at add() a durable schedule whose runs could overlap unnoticed', async () => {
    const { bg, backend } = setup({ workers: false });
    bg.with({ durable: true, cron: '0 9 * * *', tz: 'Europe/Paris', overlap: true }).add(tick);
    await vi.waitFor(async () => expect(await backend.queue.getJobScheduler('tick')).toMatchObject({ pattern: '0 9 * * *', tz: 'Europe/Paris' }), { timeout: 5_000, interval: 10 });
    // Without one, the zone of the process that adds it, saved with it (not each worker's own).
    bg.with({ durable: true, cron: '0 10 * * *', overlap: true }).add(ordered, 'zoned');
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    await vi.waitFor(async () => expect(await backend.queue.getJobScheduler('ordered')).toMatchObject({ pattern: '0 10 * * *', tz: zone }), { timeout: 5_000, interval: 10 });
    expect(() => bg.with({ durable: true, every: 1_000 }).add(tick)).toThrow(
      "bg.add(\"tick\"): a durable periodic task's runs are separate jobs, which may overlap when one outlasts the interval; say that you accept it with overlap: true",
    );
  });

  it.each([
    ['a function', () => 1, 'args[0] is a function'],
    ['a Date', new Date(0), 'args[0] is an instance of Date'],
    ['a Map', new Map(), 'args[0] is an instance of Map'],
    ['NaN deep inside', { a: [1, { b: Number.NaN }] }, 'args[0].a[1].b is NaN'],
    ['undefined in a list', [undefined], 'args[0][0] is undefined (it would arrive as null)'],
    ['a bigint', 1n, 'args[0] is a bigint'],
    ['a circular reference', (() => { const order: Record<string, unknown> = { lines: [{}] }; (order.lines as object[])[0] = { order }; return order; })(), 'args[0].lines[0].order is a circular reference'],
    ['a hole in a list', Object.assign([1], { 2: 3 }), 'args[0][1] is undefined (it would arrive as null)'],
    ['a symbol deep inside', { a: { b: Symbol('x') } }, 'args[0].a.b is a symbol'],
    ['a symbol-keyed property', { a: { [Symbol('tag')]: 1, b: 2 } }, 'args[0].a is an object with a symbol-keyed property (Symbol(tag)), left out'],
    ['a named property of a list', { lines: Object.assign([1, 2], { total: 3 }) }, 'args[0].lines.total is a named property of a list'],
    // JSON sends only enumerable properties: refused as a symbol-keyed one is, rather than dropped.
    ['a non-enumerable property', { a: Object.defineProperty({ b: 1 }, 'secret', { value: 2 }) }, 'args[0].a is an object with a non-enumerable property (secret), left out'],
    ['a non-enumerable getter', [Object.defineProperty({}, 'total', { get: () => 3 })], 'args[0][0] is an object with a non-enumerable property (total), left out'],
    // A list's extras too (items and length are all JSON reads of it).
    ['a symbol-keyed property of a list', [Object.assign([1], { [Symbol('tag')]: 1 })], 'args[0][0] is an object with a symbol-keyed property (Symbol(tag)), left out'],
    ['a non-enumerable property of a list', { lines: Object.defineProperty([1, 2], 'total', { value: 3 }) }, 'args[0].lines is an object with a non-enumerable property (total), left out'],
    // A getter that throws, named with its path (it escaped as the user's raw error).
    ['a getter that throws', { order: { get total(): number { throw new Error('no total'); } } }, 'args[0].order.total is not readable: its getter threw (no total)'],
  ])('refuses at add(), naming the task and the path, an argument that does not survive JSON: %s', async (_what, value, message) => {
    const { bg, backend } = setup({ workers: false });
    expect(() => bg.with({ durable: true }).add(record, value as unknown as string, 1)).toThrow(
      new TypeError(`bg.add("record"): ${message}, which does not survive JSON; a durable task's arguments must be plain data`),
    );
    expect(await backend.queue.count()).toBe(0);
  });

  it('serializes the arguments when the job is sent: a change after add() travels, one that no longer survives JSON fails the handle with ERR_DURABLE_ENQUEUE, logged and counted', async () => {
    const { bg, backend, logger } = setup({ workers: false });
    const changed = { n: 1 as unknown };
    const broken = { n: 1 as unknown };
    const sent = bg.with({ durable: true }).add(record, changed as never, 1);
    const lost = bg.with({ durable: true }).add(record, broken as never, 1);
    // Still in add()'s turn: nothing is sent yet.
    changed.n = 2;
    broken.n = 10n;
    await vi.waitFor(async () => expect(await backend.job(sent.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    expect(((await backend.queue.getJob(sent.id))!.data as { args: unknown[] }).args[0]).toEqual({ n: 2 });
    const error = await failureOf(lost.result());
    expect(error).toBeInstanceOf(DurableTaskError);
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: lost.id });
    expect(error.message).toMatch(new RegExp(`^durable task "record" \\(#${lost.id}\\) could not be enqueued: Do not know how to serialize a BigInt`));
    expect(await backend.queue.getJob(lost.id)).toBeUndefined();
    expect(backend.enqueueFailures).toBe(1);
    expect(logger.at('error').map((entry) => entry.message)).toContain('durable task "record" could not be enqueued; it will not run');
  });

  it('takes plain objects and arrays made in another realm (node:vm) as plain data: they survive JSON as they are', async () => {
    const { bg, backend } = setup({ workers: false });
    const order = runInNewContext('({ lines: [{ amount: 1 }, [2, 3]], note: null })') as unknown;
    const handle = bg.with({ durable: true }).add(record, order as string, 1);
    await vi.waitFor(async () => expect(await backend.job(handle.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    const job = await backend.queue.getJob(handle.id);
    expect((job!.data as { args: unknown[] }).args[0]).toEqual({ lines: [{ amount: 1 }, [2, 3]], note: null });
  });

  it('refuses at add() what cannot be durable: a plain function, after an in-process task; and durable: true without a backend', () => {
    const { bg } = setup({ workers: false });
    // @ts-expect-error only a definition can be durable: the types refuse a plain function too
    expect(() => bg.with({ durable: true }).add(async () => 1)).toThrow('bg.add("anonymous"): a durable task must be a defineTask() or workerTask() definition, got a plain function: a worker finds it by its name');
    const first = bg.add(async () => 1);
    expect(() => bg.with({ durable: true, after: [first] }).add(record, 'x', 1)).toThrow(/^bg\.add\("record"\): options\.after\[0\] is in-process task "anonymous" .*, and a durable task waits only for durable tasks of its queue/);
    const plain = freshApp({ logger: captureLogger() });
    closers.push(() => shutdown({ container: plain }));
    expect(() => plain.createChildContainer().resolve(Background).with({ durable: true }).add(record, 'x', 1)).toThrow(
      'bg.add("record"): durable: true needs a durable backend, and this application has none; register one on its root container (useBullMQ() from tsyringe-background/bullmq)',
    );
  });

  it('fails the handle with ERR_DURABLE_ENQUEUE, logged and counted, when Redis cannot be reached in time', async () => {
    const { logger, producer, backend } = await unreachable();
    const handle = producer.resolve(Background).with({ durable: true }).add(record, 'lost', 1);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: handle.id });
    expect((error as Error).message).toMatch(/^durable task "record" \(#[0-9a-f-]+\) could not be enqueued: Redis could not be reached within 300 ms \(it was never sent\); the connection's last error: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
    expect(handle.status).toBe('failed');
    expect(backend.enqueueFailures).toBe(1);
    expect(logger.at('error').map((entry) => entry.message)).toContain('durable task "record" could not be enqueued; it will not run');
  });

  it('gives each job its own enqueue deadline, counted from its add(), though one timer serves them all', async () => {
    const { producer, backend } = await unreachable();
    const bg = producer.resolve(Background).with({ durable: true });
    const failedAfter = (handle: ReturnType<typeof bg.add>, addedAt: number) =>
      handle.result().then(
        () => Number.NaN,
        () => performance.now() - addedAt,
      );
    const firstAt = performance.now();
    const first = bg.add(record, 'first', 1);
    const firstFailed = failedAfter(first, firstAt);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const secondAt = performance.now();
    const second = bg.add(record, 'second', 1);
    const secondFailed = failedAfter(second, secondAt);
    // Timing is the point here: the first job's deadline fails it alone; failed with it, the second
    // would fail ≈ 150 ms after its own add(), not 300.
    expect(await firstFailed).toBeGreaterThanOrEqual(299);
    expect(await secondFailed).toBeGreaterThanOrEqual(299);
    expect(backend.enqueueFailures).toBe(2);
  });

  it('measures the enqueue bound on time gone by: the wall clock set back an hour holds no job past it, set forward fails none early', async () => {
    const { producer, backend } = await unreachable();
    const bg = producer.resolve(Background).with({ durable: true });
    const since = performance.now();
    const first = bg.add(record, 'first', 1);
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 }); // an NTP step back
    try {
      // Failed at its bound, not an hour later.
      await expect(first.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_ENQUEUE' });
      expect(performance.now() - since).toBeGreaterThanOrEqual(299);
      const second = bg.add(record, 'second', 1);
      const secondAt = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const third = bg.add(record, 'third', 1);
      vi.setSystemTime(Date.now() + 7_200_000); // and forward: the third job's bound is still 300 ms away
      await expect(second.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_ENQUEUE' });
      expect(performance.now() - secondAt).toBeGreaterThanOrEqual(299);
      expect(third.status).toBe('queued');
      await expect(third.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_ENQUEUE' });
    } finally {
      vi.useRealTimers();
    }
    expect(backend.enqueueFailures).toBe(3);
  });

  it('close() while the event stream is being opened for a watched handle opens none after it: no connection is left open', async () => {
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const queueName = `early-${randomUUID()}`;
    const backend = useBullMQ(producer, { connection: redis.connection, queueName, logger });
    closers.push(() => shutdown({ container: producer }));
    // The answer to the backend's first look at the stream (before it opens it) waits for the test.
    const client = (await backend.queue.getBackend().client) as unknown as { runCommand: (name: string, args: unknown[]) => Promise<unknown> };
    const runCommand = client.runCommand;
    const gate = deferred();
    let asked = false;
    client.runCommand = (name, args) => {
      const reply = runCommand(name, args);
      if (name !== 'xrevrange') return reply;
      asked = true;
      return gate.promise.then(() => reply);
    };
    const handle = producer.resolve(Background).with({ durable: true }).add(record, 'early', 1);
    // Watched: the stream is opened to follow it.
    const outcome = handle.result();
    await vi.waitFor(() => expect(asked).toBe(true), { timeout: 5_000, interval: 5 });
    const closing = backend.close();
    gate.resolve();
    await closing;
    const failure = await failureOf(outcome);
    expect(failure).toBeInstanceOf(DurableTaskError);
    expect(failure.code).toBe('ERR_DURABLE_FAILED');
    expect(failure.message).toBe(`durable task "record" (#${handle.id}): the durable backend of this process was closed before its job ended (the job itself runs as usual)`);
    // The backend gives up on opening the stream, and says so.
    await vi.waitFor(() => expect(logger.at('debug').map((entry) => entry.message)).toContain('the durable handles being followed were not read from Redis: the backend was closed'), { timeout: 5_000, interval: 5 });
    // Every connection of this queue's backend is gone from the server.
    expect(await connectionsOf(queueName)).toEqual([]);
  });

  it('sends a job whose deadline passed while this process was held, Redis having answered the adds before it meanwhile: it is not stuck, and does not fail', async () => {
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const backend = useBullMQ(producer, { connection: redis.connection, queueName: `burst-${randomUUID()}`, logger, enqueueTimeoutMs: 1_000 });
    closers.push(() => shutdown({ container: producer }), () => backend.close());
    const bg = producer.resolve(Background).with({ durable: true });
    const warm = bg.add(record, 'warm', 1);
    await vi.waitFor(async () => expect(await backend.job(warm.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    // 2 000 jobs go 500 a turn; the event loop is held past their deadline before the second
    // turn's 500 go (this callback was queued before the burst's next slice), while Redis answers
    // the first 500. (A job waiting its turn fails only once Redis has answered none of the adds
    // ahead of it for the bound: test/durable/faults.test.ts.)
    const burst = Array.from({ length: 2_000 }, (_, i) => bg.add(record, `b${i}`, 1));
    setImmediate(() => {
      const until = Date.now() + 1_100;
      while (Date.now() < until);
    });
    const last = burst.at(-1)!;
    await vi.waitFor(async () => expect(await backend.job(last.id)).toBeDefined(), { timeout: 10_000, interval: 20 });
    expect(backend.enqueueFailures).toBe(0);
    expect(logger.at('error')).toEqual([]);
  });

  it('fails a watched job whose deadline passed while it waited for the event stream to be opened, saying so, and never sends it', async () => {
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const queueName = `reader-${randomUUID()}`;
    const backend = useBullMQ(producer, { connection: redis.connection, queueName, logger, enqueueTimeoutMs: 300 });
    closers.push(() => shutdown({ container: producer }), () => backend.close());
    const bg = producer.resolve(Background).with({ durable: true });
    const warm = bg.add(record, 'warm', 1);
    await vi.waitFor(async () => expect(await backend.job(warm.id)).toBeDefined(), { timeout: 5_000, interval: 10 });
    // The reader's first look at the stream is answered only once the test says so.
    const client = (await backend.queue.getBackend().client) as unknown as { runCommand: (name: string, args: unknown[]) => Promise<unknown> };
    const runCommand = client.runCommand;
    const look = deferred();
    client.runCommand = (name, args) => (name === 'xrevrange' ? look.promise.then(() => runCommand(name, args)) : runCommand(name, args));
    closers.push(async () => void (client.runCommand = runCommand));
    const watched = bg.add(record, 'watched', 1);
    const outcome = failureOf(watched.result());
    const failure = await outcome;
    expect(failure).toBeInstanceOf(DurableTaskError);
    expect(failure.code).toBe('ERR_DURABLE_ENQUEUE');
    expect(failure.message).toBe(
      `durable task "record" (#${watched.id}) could not be enqueued: it was still waiting after 300 ms for the queue's event stream to be opened (its handle is watched, and its job is sent once its events can be read)`,
    );
    look.resolve();
    // Sent after the reader opened, on the same connection: the watched job would be in Redis before it.
    const marker = bg.add(record, 'marker', 1);
    await vi.waitFor(async () => expect(await backend.job(marker.id)).toBeDefined(), { timeout: 5_000, interval: 20 });
    expect(await backend.job(watched.id)).toBeUndefined();
  });
});

describe('the durable backend refuses bad options where they are given, naming the option and the value', () => {
  const useBullMQKeys = 'known options: enqueueTimeoutMs, connection, queueName, prefix, logger';
  const startWorkersKeys = 'known options: tasks, container, concurrency, workerOptions, connection, queueName, prefix, logger';
  it.each([
    ['useBullMQ', () => useBullMQ(42 as never), TypeError, 'useBullMQ(root): root must be a tsyringe container, got 42 (number)'],
    ['useBullMQ', () => useBullMQ(freshApp(), { enqueueTimeoutMs: 0 }), RangeError, 'useBullMQ(root, options): options.enqueueTimeoutMs must be an integer from 1 to 2147483647, got 0 (number)'],
    ['useBullMQ', () => useBullMQ(freshApp(), { enqueueTimeoutMs: '5000' as never }), TypeError, 'useBullMQ(root, options): options.enqueueTimeoutMs must be an integer from 1 to 2147483647, got "5000" (string)'],
    ['useBullMQ', () => useBullMQ(freshApp(), { queueName: '' }), TypeError, 'useBullMQ(options): options.queueName must be a non-empty string, got "" (string)'],
    ['useBullMQ', () => useBullMQ(freshApp(), { queueName: 'billing:eu' }), TypeError, 'useBullMQ(options): options.queueName must not contain ":", which separates the parts of BullMQ\'s keys in Redis, got "billing:eu" (string)'],
    ['useBullMQ', () => useBullMQ(freshApp(), { queuName: 'billing' } as never), TypeError, `useBullMQ(options): options.queuName is not a known option; ${useBullMQKeys}`],
    ['useBullMQ', () => useBullMQ(freshApp(), { concurrency: 2 } as never), TypeError, `useBullMQ(options): options.concurrency is not a known option; ${useBullMQKeys}`],
    ['startWorkers', () => startWorkers({ tasks: [] }), TypeError, 'startWorkers(options): options.tasks must be a non-empty array of defineTask() or workerTask() definitions, got an empty array'],
    ['startWorkers', () => startWorkers({ tasks: Object.assign([record], { 2: record }) }), TypeError, 'startWorkers(options): options.tasks[1] must be a defineTask() or workerTask() definition, got undefined (undefined)'],
    ['startWorkers', () => startWorkers({ tasks: [record, (() => 1) as never] }), TypeError, 'startWorkers(options): options.tasks[1] must be a defineTask() or workerTask() definition, got function (anonymous)'],
    ['startWorkers', () => startWorkers({ tasks: [record, record] }), TypeError, 'startWorkers(options): options.tasks has two definitions named "record"; a job finds its task by name'],
    ['startWorkers', () => startWorkers({ tasks: [record], concurrency: 0 }), RangeError, 'startWorkers(options): options.concurrency must be a positive integer, got 0 (number)'],
    ['startWorkers', () => startWorkers({ tasks: [record], concurrency: '2' as never }), TypeError, 'startWorkers(options): options.concurrency must be a positive integer, got "2" (string)'],
    ['startWorkers', () => startWorkers({ tasks: [record], container: 42 as never }), TypeError, 'startWorkers(options): options.container must be a tsyringe container, got 42 (number)'],
    ['startWorkers', () => startWorkers({ tasks: [record], logger: {} as never }), TypeError, 'startWorkers(options): options.logger must be a logger with error, warn, info and debug methods, got an object'],
    ['startWorkers', () => startWorkers({ tasks: [record], queueName: 'a:b' }), TypeError, 'startWorkers(options): options.queueName must not contain ":", which separates the parts of BullMQ\'s keys in Redis, got "a:b" (string)'],
    ['startWorkers', () => startWorkers({ tasks: [record], concurency: 5 } as never), TypeError, `startWorkers(options): options.concurency is not a known option; ${startWorkersKeys}`],
    ['startWorkers', () => startWorkers({ tasks: [record], lockDuration: 5_000 } as never), TypeError, `startWorkers(options): options.lockDuration is not a known option; ${startWorkersKeys}`],
    // What the library sets itself: given inside workerOptions, the prefix split jobs from cancellations.
    ['startWorkers', () => startWorkers({ tasks: [record], workerOptions: { prefix: 'eu' } as never }), TypeError, 'startWorkers(options): options.workerOptions.prefix is not taken there; give it as options.prefix'],
    ['startWorkers', () => startWorkers({ tasks: [record], workerOptions: { concurrency: 2 } as never }), TypeError, 'startWorkers(options): options.workerOptions.concurrency is not taken there; give it as options.concurrency'],
    ['startWorkers', () => startWorkers({ tasks: [record], workerOptions: new Map() as never }), TypeError, "startWorkers(options): options.workerOptions must be an object (BullMQ's WorkerOptions), got an instance of Map"],
    ['startWorkers', () => startWorkers({ tasks: [{ name: 'fake', fn: () => 1 }] as never }), TypeError, 'startWorkers(options): options.tasks[0] must be a defineTask() or workerTask() definition, got an object'],
    // defineTask() refuses the name; a definition made by shape is refused here (its jobs would be taken for the library's own).
    [
      'startWorkers',
      () => startWorkers({ tasks: [record, Object.freeze({ name: 'tsyringe-background:after', fn: () => 1, inject: [] })] as never }),
      TypeError,
      'startWorkers(options): options.tasks[1] is named "tsyringe-background:after"; a name beginning with "tsyringe-background:" is reserved for the library\'s own jobs',
    ],
    ['startWorkers', () => startWorkers({ tasks: [record], logger: { error() {} } as never }), TypeError, 'startWorkers(options): options.logger must be a logger with error, warn, info and debug methods, got an object'],
    ['useBullMQ', () => useBullMQ(freshApp(), new Map([['queueName', 'billing']]) as never), TypeError, 'useBullMQ(options): options must be an object, got an instance of Map'],
  ])('%s, case %#', (_where, call, ErrorType, message) => {
    expect(call).toThrow(message);
    expect(call).toThrow(ErrorType);
  });

});

describe.skipIf(!hasRedis)('the durable backend without a logger of its own', () => {
  const redis = redisForSuite();

  it("logs to the application's registered logger: the producer's jobs that could not be enqueued, the workers' jobs of an unknown task", async () => {
    const logger = captureLogger();
    const app = freshApp({ logger });
    // Nothing listens there: every job fails to be enqueued within its bound.
    const unreachable = useBullMQ(app, { connection: { host: '127.0.0.1', port: await freePort(), maxRetriesPerRequest: 0 }, queueName: `nowhere-${randomUUID()}`, enqueueTimeoutMs: 200 });
    const handle = app.createChildContainer().resolve(Background).with({ durable: true }).add(record, 'lost', 1);
    await expect(handle.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_ENQUEUE' });
    await vi.waitFor(() => expect(logger.at('error').map(({ fields }) => fields.taskId)).toContain(handle.id), { timeout: 5_000, interval: 10 });
    await unreachable.close({ timeoutMs: 100 });
    // A worker of another application on a real queue, given a job of a task it does not know.
    const workerLogger = captureLogger();
    const workerApp = freshApp({ logger: workerLogger });
    const queueName = `unknown-${randomUUID()}`;
    const queue = new Queue(queueName, { connection: redis.connection });
    const added = await queue.add('unknownHere', { args: [] });
    const workers = startWorkers({ container: workerApp, tasks: [record], connection: redis.connection, queueName });
    try {
      await vi.waitFor(() => expect(workerLogger.at('error').map(({ fields }) => fields.taskId)).toContain(added.id), { timeout: 5_000, interval: 10 });
    } finally {
      await workers.close();
      await queue.close();
      await shutdown({ container: workerApp });
      await shutdown({ container: app });
    }
  });
});

describe.skipIf(!hasRedis)('useBullMQ() on a container that has a durable backend', () => {
  const redis = redisForSuite();
  it("reads the options of backend.close() and workers.close() once, and startWorkers()'s workerOptions from their own copy", async () => {
    const app = freshApp();
    const backend = useBullMQ(app, { connection: redis.connection, queueName: `once-${randomUUID()}` });
    let reads = 0;
    const workers = startWorkers({ container: app, tasks: [record], connection: redis.connection, queueName: `once-${randomUUID()}`, workerOptions: Object.create({ lockDuration: 5_000 }) as object });
    try {
      expect(workers.worker.opts.lockDuration).toBe(5_000);
      expect(() => startWorkers({ container: app, tasks: [record], connection: redis.connection, workerOptions: { get connection(): never { throw new Error('no connection'); } } as never })).toThrow(
        new TypeError('startWorkers(options): options.workerOptions.connection cannot be read: its getter threw (no connection)'),
      );
    } finally {
      await workers.close({
        get timeoutMs() {
          reads++;
          return 1_000;
        },
      });
      await backend.close({
        get timeoutMs() {
          reads++;
          return 1_000;
        },
      });
      await shutdown({ container: app });
    }
    expect(reads).toBe(2);
  });

  it('useBullMQ() refuses a container that has a durable backend already (the scopes made after would go to the second queue, the first left open)', async () => {
    const app = freshApp();
    const first = useBullMQ(app, { connection: redis.connection, queueName: `twice-${randomUUID()}` });
    try {
      expect(() => useBullMQ(app, { connection: redis.connection, queueName: 'another' })).toThrow(
        new TypeError('useBullMQ(root): this container has a durable backend already (useBullMQ() was called on it before); use that one, or close it and register the new one on another container'),
      );
    } finally {
      await first.close();
    }
  });
});
