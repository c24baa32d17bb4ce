/**
 * `after` on the durable backend (issue 14, item 3), against a real redis-server: the dependent's
 * job is a BullMQ flow parent, the jobs it waits for its children by id. It runs only once they
 * have succeeded, whichever application added them; it ends skipped when one fails, is cancelled
 * or was never there; what cannot map is a TypeError at add() with nothing enqueued. And
 * `ctx.attempt` in a worker is the job's attempt.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { DependencyContainer } from 'tsyringe';
import { Job, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startWorkers, useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { Background, defineTask, DurableTaskError, observeTasks, shutdown, TaskCancelledError, TaskContext, TaskSkippedError, type TaskEvent, type TaskHandle } from '../../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors, type Deferred } from '../helpers.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

/** What the tasks did, in order. */
const effects: string[] = [];
/** Gates the `step` task waits on, by label (opened by the test). */
const gates = new Map<string, Deferred>();
const step = defineTask({ name: 'step' }, async (label: string) => {
  effects.push(`${label} started`);
  await gates.get(label)?.promise;
  effects.push(`${label} done`);
  return label;
});
const failing = defineTask({ name: 'failing' }, async (label: string) => {
  effects.push(`${label} failed`);
  throw new Error(`${label} breaks`);
});
const counting = defineTask({ name: 'counting', inject: [TaskContext] }, async (ctx, label: string, failUntil: number) => {
  effects.push(`${label} attempt ${ctx.attempt}`);
  ctx.logger.info({}, `${label} ran`);
  if (ctx.attempt < failUntil) throw new Error(`${label}: attempt ${ctx.attempt} fails`);
  return ctx.attempt;
});
const tasks = [step, failing, counting];

const bound = { timeout: 10_000, interval: 10 };

/**
 * A producer in a process of its own (the sources through tsx): adds one durable `step` task,
 * after the job `afterId` if given; prints the job's id once it is in Redis, and dies (SIGKILL:
 * nothing of it is closed).
 */
const producerProcess = `
await import('reflect-metadata');
const [root, port, queueName, label, afterId] = process.argv.slice(1);
const { container } = await import('tsyringe');
const { useBullMQ } = await import(new URL('src/adapters/bullmq.ts', root).href);
const { Background, defineTask } = await import(new URL('src/index.ts', root).href);
const step = defineTask({ name: 'step' }, async (label) => label);
const backend = useBullMQ(container, { connection: { host: '127.0.0.1', port: Number(port) }, queueName });
const after = afterId ? [await backend.handle(afterId)] : [];
const handle = container.resolve(Background).with({ durable: true, after }).add(step, label);
while ((await backend.job(handle.id)) === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
process.stdout.write(handle.id + '\\n', () => process.kill(process.pid, 'SIGKILL'));
`;

/** Runs {@link producerProcess}; resolves with the id it printed. */
async function addInAnotherProcess(port: number, queueName: string, label: string, afterId = ''): Promise<string> {
  const root = new URL('../../', import.meta.url).href;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', producerProcess, root, String(port), queueName, label, afterId], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
  const id = /^[0-9a-f-]{36}$/m.exec(out)?.[0];
  if (signal !== 'SIGKILL' || id === undefined) throw new Error(`the producer process ended (${signal}) without printing an id:\n${out}\n${err}`);
  return id;
}

describe.skipIf(!hasRedis)('durable tasks after others: BullMQ flows', () => {
  const redis = redisForSuite();

  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    // A failed test leaves no task held: the workers' close() waits for their tasks.
    for (const held of gates.values()) held.resolve();
    gates.clear();
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** A producer application on `queueName`: its backend, and a Background of a child scope. */
  function producer(queueName: string): { bg: Background; backend: DurableBackend; app: DependencyContainer } {
    const app = freshApp({ logger: captureLogger() });
    const backend = useBullMQ(app, { connection: redis.connection, queueName, logger: captureLogger() });
    closers.push(
      () => shutdown({ container: app }),
      () => backend.close(),
    );
    return { bg: app.createChildContainer().resolve(Background), backend, app };
  }

  /** Workers in an application of their own (as another process would be). */
  function workers(queueName: string, logger = captureLogger()): { app: DependencyContainer } {
    const app = freshApp({ logger });
    const started = startWorkers({ container: app, tasks, connection: redis.connection, queueName, concurrency: 4 });
    closers.push(
      () => started.close(),
      () => shutdown({ container: app }),
    );
    return { app };
  }

  function setup(options: { workers?: boolean } = {}) {
    const queueName = `flows-${randomUUID()}`;
    const made = producer(queueName);
    if (options.workers !== false) workers(queueName);
    effects.length = 0;
    return { ...made, queueName };
  }

  const gate = (label: string): Deferred => {
    const d = deferred();
    gates.set(label, d);
    return d;
  };

  it('runs a durable task only once every task it waits for has succeeded, added before it, running or done', async () => {
    const { bg, backend } = setup();
    const first = gate('first');
    const a = bg.with({ durable: true }).add(step, 'first');
    const b = bg.with({ durable: true }).add(step, 'second');
    const c = bg.with({ durable: true, after: [a, b] }).add(step, 'third');
    expect(c.status).toBe('delayed');
    await b.result();
    await vi.waitFor(() => expect(effects).toContain('first started'), bound);
    await vi.waitFor(async () => expect(await backend.job(c.id)).toMatchObject({ status: 'delayed', attempt: 0 }), bound);
    expect(c.status).toBe('delayed');
    first.resolve();
    await expect(c.result()).resolves.toBe('third');
    expect(effects.indexOf('third started')).toBeGreaterThan(effects.indexOf('first done'));
    expect(effects.indexOf('third started')).toBeGreaterThan(effects.indexOf('second done'));
    expect(c).toMatchObject({ status: 'succeeded', attempt: 1 });
    // After a task already done: its handle says so, and the task runs at once.
    const d = bg.with({ durable: true, after: [c] }).add(step, 'fourth');
    await expect(d.result()).resolves.toBe('fourth');
    expect(effects.slice(-2)).toEqual(['fourth started', 'fourth done']);
  });

  it('chains: each task of a chain waits for the one before, in Redis', async () => {
    const { bg } = setup();
    const held = gate('one');
    let previous: TaskHandle = bg.with({ durable: true }).add(step, 'one');
    const chain = [previous];
    for (const label of ['two', 'three', 'four']) chain.push((previous = bg.with({ durable: true, after: [previous] }).add(step, label)));
    await vi.waitFor(() => expect(effects).toEqual(['one started']), bound);
    held.resolve();
    await expect(previous.result()).resolves.toBe('four');
    expect(effects).toEqual(['one started', 'one done', 'two started', 'two done', 'three started', 'three done', 'four started', 'four done']);
  });

  it('skips the dependent when a task it waits for fails after its retries: TaskSkippedError, its cause the failure; backend.job() reads skipped', async () => {
    const { bg, backend } = setup();
    const held = gate('slow');
    const slow = bg.with({ durable: true }).add(step, 'slow');
    const broken = bg.with({ durable: true, retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(failing, 'broken');
    const dependent = bg.with({ durable: true, after: [slow, broken] }).add(step, 'dependent');
    const error = await dependent.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskSkippedError);
    expect(error).toMatchObject({
      code: 'ERR_TASK_SKIPPED',
      message: `Task "step" (#${dependent.id}) was skipped: it was to run after task "failing" (#${broken.id}), which failed`,
    });
    expect((error as Error).cause).toBeInstanceOf(DurableTaskError);
    expect((error as Error).cause).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: broken.id, message: 'broken breaks' });
    expect(dependent).toMatchObject({ status: 'skipped', attempt: 0 });
    await expect(backend.job(dependent.id)).resolves.toMatchObject({
      status: 'skipped',
      attempt: 0,
      failedReason: `Task "step" (#${dependent.id}) was skipped: it was to run after task "failing" (#${broken.id}), which failed: broken breaks`,
    });
    expect(effects.filter((e) => e === 'broken failed')).toHaveLength(2);
    // The other task it waited for is a task of its own: it still runs.
    held.resolve();
    await expect(slow.result()).resolves.toBe('slow');
    expect(effects).not.toContain('dependent started');
  });

  it("ends skipped in every handle and in backend.job() a dependent whose skip BullMQ decided in Redis, cancelled then (a cancellation too late), never reading running", async () => {
    // The jobs are moved by hand (a BullMQ worker without a processor), so that each step is where the test puts it.
    const { bg, backend, queueName } = setup({ workers: false });
    const other = producer(queueName).backend;
    const [one, two] = ['one', 'two'].map((label) => bg.with({ durable: true }).add(failing, label));
    const [first, second] = [one!, two!].map((head, i) => bg.with({ durable: true, after: [head] }).add(step, `after ${i}`));
    expect(second!.status).toBe('delayed');
    await vi.waitFor(async () => expect((await backend.job(second!.id))?.status).toBe('delayed'), bound);
    const { token, take, taken, failDoomed } = byHand(queueName);
    // The guards pass (they run first); then both heads fail for good: BullMQ decides each dependent's skip, and makes it waiting.
    for (const head of [one!, two!]) await (await take(head.id)).moveToFailed(new UnrecoverableError(`${head.id} breaks`), token, false);
    for (const job of taken.values()) if (job.name === 'tsyringe-background:after') await job.moveToCompleted(null, token, false);
    // Both taken, as a worker takes them only to fail them (their tasks never start): neither reads running.
    const doomed = await Promise.all([first!, second!].map(({ id }) => take(id)));
    await expect(backend.job(first!.id)).resolves.toMatchObject({ status: 'delayed', attempt: 0 });
    const elsewhere = (await other.handle(first!.id))!;
    expect(elsewhere.status).toBe('delayed');
    // Cancelled now, from a handle made by id and from the dependent's own followed handle: too late, their skips are decided.
    expect(elsewhere.cancel('stop')).toBe(true);
    expect(second!.cancel('stop')).toBe(true);
    for (const job of doomed) await failDoomed(job);
    for (const handle of [first!, elsewhere, second!]) {
      await expect(handle.result()).rejects.toBeInstanceOf(TaskSkippedError);
      expect(handle.status).toBe('skipped');
    }
    for (const { id } of [first!, second!]) {
      await expect(backend.job(id)).resolves.toMatchObject({ status: 'skipped', attempt: 0 });
      const fresh = (await producer(queueName).backend.handle(id))!;
      await expect(fresh.result()).rejects.toBeInstanceOf(TaskSkippedError);
      expect(fresh.status).toBe('skipped');
    }
    expect(effects).toEqual([]);
  });

  /** A BullMQ worker without a processor, which moves the jobs by hand: `take(id)` takes the job of that id (and those before it, all in `taken`). */
  function byHand(queueName: string): { token: string; take: (id: string) => Promise<Job>; taken: ReadonlyMap<string, Job>; failDoomed: (job: Job) => Promise<unknown> } {
    const hand = new Worker(queueName, null, { connection: redis.connection, autorun: false });
    closers.push(() => hand.close());
    const token = randomUUID();
    const taken = new Map<string, Job>();
    const take = async (id: string): Promise<Job> => {
      await vi.waitFor(async () => {
        const job = taken.has(id) ? undefined : await hand.getNextJob(token, { block: false });
        if (job !== undefined) taken.set(job.id!, job);
        expect(taken.has(id)).toBe(true);
      }, bound);
      return taken.get(id)!;
    };
    /** Fails a dependent BullMQ made active only to fail it (its deferred failure), as a worker does. */
    const failDoomed = (job: Job): Promise<unknown> => job.moveToFailed(new UnrecoverableError(job.deferredFailure ?? job.failedReason), token, false);
    return { token, take, taken, failDoomed };
  }

  /**
   * A head (`headTask`) and a task after it, added; the dependent's guard passed by hand and the
   * head taken by hand (running): what a race with the head's failure starts from.
   */
  async function headTakenBefore(bg: ReturnType<typeof setup>['bg'], { token, take }: ReturnType<typeof byHand>, headTask: typeof step | typeof failing) {
    const head = bg.with({ durable: true }).add(headTask, 'head');
    const dependent = bg.with({ durable: true, after: [head] }).add(step, 'dependent');
    await (await take(`${dependent.id}.after`)).moveToCompleted(null, token, false);
    return { head, dependent, running: await take(head.id) };
  }

  /** What BullMQ's stalled check fails a job with once its worker died (maxStalledCount reached). */
  const stalled = 'job stalled more than allowable limit';

  it("skips the dependent of a task cancelled as it ran that BullMQ then failed as stalled (its worker dead): which was cancelled, with the reason, in every handle; a guard failed so is never named", async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take, failDoomed } = byHand(queueName);
    const [p1, p2] = ['p1', 'p2'].map((label) => bg.with({ durable: true }).add(step, label));
    const [d1, d2] = [p1!, p2!].map((head, i) => bg.with({ durable: true, after: [head] }).add(step, `d${i + 1}`));
    // The guards first (the first passes; the second is left active, to die with its worker), then the two tasks, running.
    await (await take(`${d1!.id}.after`)).moveToCompleted(null, token, false);
    const guard2 = await take(`${d2!.id}.after`);
    const running = await Promise.all([p1!, p2!].map(({ id }) => take(id)));
    await vi.waitFor(() => expect(p2!.status).toBe('running'), bound);
    // Cancelled with nobody to hear it: their jobs are marked.
    p1!.cancel('stop p1');
    p2!.cancel('stop p2');
    await vi.waitFor(async () => {
      for (const { id } of running) expect(((await backend.queue.getJob(id!))?.data as { cancelled?: string }).cancelled).toBeDefined();
    }, bound);
    // Their worker died: BullMQ fails them as stalled (d2's guard too, after them: d2 is failed for its guard), and the dependents for them.
    for (const job of running) await job.moveToFailed(new UnrecoverableError(stalled), token, false);
    await guard2.moveToFailed(new UnrecoverableError(stalled), token, false);
    for (const { id } of [d1!, d2!]) {
      const doomed = await take(id);
      await failDoomed(doomed);
    }
    const elsewhere = producer(queueName).backend;
    for (const [dependent, head, reason] of [[d1!, p1!, 'stop p1'], [d2!, p2!, 'stop p2']] as const) {
      const message = `Task "step" (#${dependent.id}) was skipped: it was to run after task "step" (#${head.id}), which was cancelled`;
      for (const handle of [dependent, (await elsewhere.handle(dependent.id))!]) {
        const error = (await handle.result().catch((e: unknown) => e)) as Error;
        expect(error.message).toBe(message);
        expect(error.cause).toBeInstanceOf(TaskCancelledError);
        expect(error.cause).toMatchObject({ message: `Task "step" (#${head.id}) was cancelled`, cause: reason });
      }
      await expect(backend.job(dependent.id)).resolves.toMatchObject({ status: 'skipped', failedReason: `${message}: ${reason}` });
    }
    expect(effects).toEqual([]);
  });

  it('reads a job that failed on its own as its cancellation was written as failed, in every reader that did not cancel it (the mark counts only for a job BullMQ failed as stalled)', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take } = byHand(queueName);
    const job = bg.with({ durable: true }).add(step, 'fails on its own');
    const running = await take(job.id);
    await vi.waitFor(() => expect(job.status).toBe('running'), bound);
    // Another process cancels it; no worker hears it (this one runs by hand): the job is marked.
    (await producer(queueName).backend.handle(job.id))!.cancel('too late');
    await vi.waitFor(async () => expect(((await backend.queue.getJob(job.id))?.data as { cancelled?: string }).cancelled).toBe('too late'), bound);
    // Its task had failed meanwhile: its worker fails it so.
    await running.moveToFailed(new UnrecoverableError('own failure'), token, false);
    for (const handle of [job, (await producer(queueName).backend.handle(job.id))!]) {
      await expect(handle.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_FAILED', message: 'own failure' });
      expect(handle.status).toBe('failed');
    }
    await expect(backend.job(job.id)).resolves.toMatchObject({ status: 'failed', failedReason: 'own failure' });
  });

  /**
   * Makes a job taken by hand stall more than BullMQ allows, as its stalled check does once its
   * worker died: its lock gone, the check run twice (it marks, then moves), with `maxStalledCount` 0.
   */
  async function stallPastLimit(queueName: string, id: string): Promise<void> {
    const checker = new Worker(queueName, null, { connection: redis.connection, autorun: false, maxStalledCount: 0 });
    closers.push(() => checker.close());
    const client = new Redis(redis.connection);
    closers.push(() => client.quit());
    const check = (checker as unknown as { moveStalledJobsToWait(): Promise<void> }).moveStalledJobsToWait.bind(checker);
    await client.del(`bull:${queueName}:${id}:lock`);
    await check();
    await client.del(`bull:${queueName}:stalled-check`);
    await check();
    expect(await client.hget(`bull:${queueName}:${id}`, 'defa')).toBe(stalled);
  }

  it('reads a task stalled more than BullMQ allows as it is while it waits to be failed (not skipped), and a cancellation then waits for Redis: failed as stalled in every handle', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { take } = byHand(queueName);
    const job = bg.with({ durable: true }).add(step, 'stalls');
    await take(job.id);
    await vi.waitFor(() => expect(job.status).toBe('running'), bound);
    await stallPastLimit(queueName, job.id);
    // Its failure decided (BullMQ's deferred failure), not a dependent's skip: it ran, and waits to be
    // failed, queued (the take that stalled made no attempt), as backend.job(id) says.
    await vi.waitFor(() => expect([job.status, job.attempt]).toEqual(['queued', 0]), bound);
    await expect(backend.job(job.id)).resolves.toMatchObject({ status: 'queued' });
    const elsewhere = (await producer(queueName).backend.handle(job.id))!;
    expect(elsewhere.status).toBe('queued');
    // Cancelled now, from its followed handle (its stall heard) and from one made by id: too late, its failure is decided.
    expect(job.cancel('too late')).toBe(true);
    expect(job.status).toBe('queued');
    expect(elsewhere.cancel('too late')).toBe(true);
    // Taken again, as a worker takes it only to fail it.
    const again = byHand(queueName);
    const doomed = await again.take(job.id);
    await again.failDoomed(doomed);
    for (const handle of [job, elsewhere, (await producer(queueName).backend.handle(job.id))!]) {
      await expect(handle.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_FAILED', message: stalled });
      expect(handle.status).toBe('failed');
    }
    await expect(backend.job(job.id)).resolves.toMatchObject({ status: 'failed', failedReason: stalled });
    expect(effects).toEqual([]);
  });

  it("keeps the first cancellation's mark on a running job whose worker is dead: a later cancellation's reason never replaces it", async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take } = byHand(queueName);
    const job = bg.with({ durable: true }).add(step, 'marked twice');
    const running = await take(job.id);
    await vi.waitFor(() => expect(job.status).toBe('running'), bound);
    const dataOf = async (): Promise<string | undefined> => ((await backend.queue.getJob(job.id))?.data as { cancelled?: string }).cancelled;
    job.cancel('first');
    await vi.waitFor(async () => expect(await dataOf()).toBe('first'), bound);
    // A second cancellation, from another process: its look at the job, and its mark's write, awaited.
    const other = producer(queueName).backend;
    const evals = vi.spyOn(Redis.prototype, 'eval');
    const writes = (): unknown[] => evals.mock.calls.flatMap((args, i) => (JSON.stringify(args).includes('\\"cancelled\\":') ? [evals.mock.results[i]?.value as unknown] : []));
    (await other.handle(job.id))!.cancel('second');
    await vi.waitFor(async () => expect(writes().length > 0 || (await dataOf()) === 'second').toBe(true), bound);
    await Promise.all(writes());
    vi.restoreAllMocks();
    expect(await dataOf()).toBe('first');
    // Its worker dead, BullMQ fails it as stalled: cancelled, with the first reason, in every reader.
    await running.moveToFailed(new UnrecoverableError(stalled), token, false);
    await expect(backend.job(job.id)).resolves.toMatchObject({ status: 'cancelled' });
    const fresh = (await producer(queueName).backend.handle(job.id))!;
    await expect(fresh.result()).rejects.toMatchObject({ code: 'ERR_TASK_CANCELLED', cause: 'first' });
  });

  it('never removes a dependent whose skip BullMQ decided between the look at its job and its removal: skipped in every reader, and so is the next link', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take, failDoomed } = byHand(queueName);
    const head = bg.with({ durable: true }).add(failing, 'head');
    const dependent = bg.with({ durable: true, after: [head] }).add(step, 'dependent');
    const next = bg.with({ durable: true, after: [dependent] }).add(step, 'next');
    for (const { id } of [dependent, next]) await (await take(`${id}.after`)).moveToCompleted(null, token, false);
    const running = await take(head.id);
    // The gate: once the cancellation has looked at the dependent's job (waiting for its children), the head
    // fails for good and the dependent is failed for it, before the cancellation goes on.
    const { queue } = backend;
    const [getJobState, getJob] = [queue.getJobState.bind(queue), queue.getJob.bind(queue)];
    let looked = false;
    let raced = false;
    vi.spyOn(queue, 'getJobState').mockImplementation(async (id: string) => {
      const state = await getJobState(id);
      if (id === dependent.id && state === 'waiting-children') looked = true;
      return state;
    });
    vi.spyOn(queue, 'getJob').mockImplementation(async (id: string) => {
      const job = await getJob(id);
      if (id === dependent.id && looked && !raced) {
        raced = true;
        await running.moveToFailed(new UnrecoverableError('head breaks'), token, false);
        const doomed = await take(dependent.id);
        await failDoomed(doomed);
      }
      return job;
    });
    expect(dependent.cancel('too late')).toBe(true);
    await vi.waitFor(() => expect(raced).toBe(true), bound);
    const message = `Task "step" (#${dependent.id}) was skipped: it was to run after task "failing" (#${head.id}), which failed`;
    await expect(dependent.result()).rejects.toThrow(message);
    expect(dependent.status).toBe('skipped');
    vi.restoreAllMocks();
    await expect(backend.job(dependent.id)).resolves.toMatchObject({ status: 'skipped', failedReason: `${message}: head breaks` });
    const elsewhere = producer(queueName).backend;
    const fresh = (await elsewhere.handle(dependent.id))!;
    await expect(fresh.result()).rejects.toThrow(message);
    expect(fresh.status).toBe('skipped');
    // The next link is skipped for it, as a skipped one (no child saying it was cancelled was added).
    const doomed = await take(next.id);
    await failDoomed(doomed);
    await expect((await elsewhere.handle(next.id))!.result()).rejects.toThrow(`Task "step" (#${next.id}) was skipped: it was to run after task "step" (#${dependent.id}), which was skipped`);
    expect(effects).toEqual([]);
  });

  it('reads a dependent whose skip BullMQ decided as it was read by id (its job read waiting, its state after) as delayed, never running: a cancellation from that handle comes too late, and every reader says skipped', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take, failDoomed } = byHand(queueName);
    const heads = ['one', 'two'].map((label) => bg.with({ durable: true }).add(failing, label));
    const dependents = heads.map((head, i) => bg.with({ durable: true, after: [head] }).add(step, `after ${i}`));
    for (const { id } of dependents) await (await take(`${id}.after`)).moveToCompleted(null, token, false);
    const running = await Promise.all(heads.map(({ id }) => take(id)));
    // The gate: once another process has read a dependent's job (waiting for its children), its head fails for
    // good and a worker takes it to fail it (BullMQ makes it active), before its state is read.
    const elsewhere = producer(queueName).backend;
    const { queue } = elsewhere;
    const getJob = queue.getJob.bind(queue);
    const doomed = new Map<string, Job>();
    vi.spyOn(queue, 'getJob').mockImplementation(async (id: string) => {
      const job = await getJob(id);
      const i = dependents.findIndex((dependent) => dependent.id === id);
      if (i >= 0 && !doomed.has(id)) {
        await running[i]!.moveToFailed(new UnrecoverableError(`${heads[i]!.id} breaks`), token, false);
        doomed.set(id, await take(id));
      }
      return job;
    });
    const [first, second] = dependents as [TaskHandle, TaskHandle];
    const byId = (await elsewhere.handle(first.id))!;
    expect(byId.status).toBe('delayed');
    expect(byId.attempt).toBe(0);
    await expect(elsewhere.job(second.id)).resolves.toMatchObject({ status: 'delayed', attempt: 0 });
    expect(doomed.size).toBe(2);
    vi.restoreAllMocks();
    // Cancelled from the handle made by id: too late, the skip is decided (it does not end cancelled at once).
    expect(byId.cancel('too late')).toBe(true);
    expect(byId.status).toBe('delayed');
    for (const job of doomed.values()) await failDoomed(job);
    for (const handle of [first, byId, second, (await producer(queueName).backend.handle(first.id))!]) {
      await expect(handle.result()).rejects.toBeInstanceOf(TaskSkippedError);
      expect(handle.status).toBe('skipped');
    }
    for (const { id } of dependents) await expect(backend.job(id)).resolves.toMatchObject({ status: 'skipped', attempt: 0 });
    expect(effects).toEqual([]);
  });

  it("tells a dependent's skip from its start in its own handle when its job had been failed already as the handle read that it moved on: never running, and a cancellation then comes too late", async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const hand = byHand(queueName);
    const { token, take, failDoomed } = hand;
    const { head, dependent, running } = await headTakenBefore(bg, hand, failing);
    // Followed: read back from Redis (waiting for its children), then its events tell it the rest.
    const { queue } = backend;
    const getJobState = queue.getJobState.bind(queue);
    let readBack = false;
    vi.spyOn(queue, 'getJobState').mockImplementation(async (id: string) => {
      const state = await getJobState(id);
      if (id === dependent.id && state === 'waiting-children') readBack = true;
      return state;
    });
    expect(dependent.status).toBe('delayed');
    await vi.waitFor(() => expect(readBack).toBe(true), bound);
    // The gate: when the handle reads whether its job, which BullMQ moved on, is to be failed, a worker has taken
    // the job and failed it already (BullMQ then clears its deferred failure).
    const key = backend.queue.toKey(dependent.id);
    const client = (await backend.queue.getBackend().client) as unknown as { runCommand: (name: string, args: unknown[]) => Promise<unknown> };
    const runCommand = client.runCommand;
    closers.push(async () => void (client.runCommand = runCommand));
    let failed = false;
    client.runCommand = (name, args) => {
      if (failed || args[0] !== key || !args.includes('defa')) return runCommand(name, args);
      failed = true;
      return take(dependent.id)
        .then(failDoomed)
        .then(() => runCommand(name, args));
    };
    // What the handle reads as its end is being read (why it was skipped: the head's job), and a cancellation then.
    const seen: string[] = [];
    const fromId = Job.fromId.bind(Job);
    vi.spyOn(Job, 'fromId').mockImplementation(async (queue, id, ...rest) => {
      if (id === head.id && seen.length === 0) seen.push(`${dependent.status}, cancel() ${dependent.cancel('too late')}`);
      return fromId(queue, id, ...rest);
    });
    await running.moveToFailed(new UnrecoverableError('head breaks'), token, false);
    await expect(dependent.result()).rejects.toBeInstanceOf(TaskSkippedError);
    expect(failed).toBe(true);
    expect(seen).toEqual(['delayed, cancel() true']);
    expect(dependent.status).toBe('skipped');
    expect(dependent.attempt).toBe(0);
    vi.restoreAllMocks();
    await expect(backend.job(dependent.id)).resolves.toMatchObject({ status: 'skipped', attempt: 0 });
    expect(effects).toEqual([]);
  });

  it("reads a dependent whose skip BullMQ decided as its handle, watched late, was read back (its job read waiting, its state after) as delayed, attempt 0, never running", async () => {
    const { bg, queueName } = setup({ workers: false });
    const hand = byHand(queueName);
    const { token, take, failDoomed } = hand;
    const { head, dependent, running } = await headTakenBefore(bg, hand, failing);
    // The gate: once the handle's job has been read back (waiting for its children), the head fails for good and a
    // worker takes the dependent to fail it (BullMQ makes it active), before its state is read.
    const { queue } = (dependent as unknown as { backend: DurableBackend }).backend;
    const getJobState = queue.getJobState.bind(queue);
    let doomed: Job | undefined;
    vi.spyOn(queue, 'getJobState').mockImplementation(async (id: string) => {
      if (id === dependent.id && doomed === undefined) {
        await running.moveToFailed(new UnrecoverableError('head breaks'), token, false);
        doomed = await take(dependent.id);
      }
      return getJobState(id);
    });
    // What the handle reads as its end is being read (why it was skipped: the head's job).
    const seen: string[] = [];
    const fromId = Job.fromId.bind(Job);
    vi.spyOn(Job, 'fromId').mockImplementation(async (from, id, ...rest) => {
      if (id === head.id && seen.length === 0) seen.push(`${dependent.status}, attempt ${dependent.attempt}`);
      return fromId(from, id, ...rest);
    });
    // Watched only now: read back from Redis.
    expect(dependent.status).toBe('delayed');
    await vi.waitFor(() => expect(doomed).toBeDefined(), bound);
    await failDoomed(doomed!);
    await expect(dependent.result()).rejects.toBeInstanceOf(TaskSkippedError);
    expect(seen).toEqual(['delayed, attempt 0']);
    expect(dependent.status).toBe('skipped');
    expect(effects).toEqual([]);
  });

  it('never removes a dependent skipped at its add() in another process whose guard has not failed it yet: a cancellation by id comes too late, and every reader says skipped', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take } = byHand(queueName);
    const head = bg.with({ durable: true }).add(failing, 'head');
    await (await take(head.id)).moveToFailed(new UnrecoverableError('head breaks'), token, false);
    await head.result().catch(() => undefined);
    const dependent = bg.with({ durable: true, after: [head] }).add(step, 'dependent');
    expect(dependent.status).toBe('skipped');
    await vi.waitFor(async () => expect((await backend.job(dependent.id))?.status).toBe('delayed'), bound);
    // Cancelled from another process before any worker ran its guard: its removal is looked at, and refused.
    const elsewhere = producer(queueName).backend;
    const client = (await elsewhere.queue.getBackend().client) as unknown as { runCommand: (name: string, args: unknown[]) => Promise<unknown> };
    const runCommand = client.runCommand;
    closers.push(async () => void (client.runCommand = runCommand));
    const removal = deferred();
    client.runCommand = (name, args) => {
      const reply = runCommand(name, args);
      if (name === 'eval') void reply.then(() => removal.resolve(), () => removal.resolve());
      return reply;
    };
    const byId = (await elsewhere.handle(dependent.id))!;
    expect(byId.cancel('too late')).toBe(true);
    await removal.promise;
    await expect(backend.job(dependent.id)).resolves.toMatchObject({ status: 'delayed' });
    // Its guard fails it, as it would have without the cancellation.
    workers(queueName);
    const message = `Task "step" (#${dependent.id}) was skipped: it was to run after task "failing" (#${head.id}), which failed`;
    for (const handle of [dependent, byId, (await producer(queueName).backend.handle(dependent.id))!]) {
      await expect(handle.result()).rejects.toThrow(message);
      expect(handle.status).toBe('skipped');
    }
    await expect(backend.job(dependent.id)).resolves.toMatchObject({ status: 'skipped', failedReason: `${message}: head breaks` });
    expect(effects).toEqual([]);
  });

  it('names a prerequisite whose job is no longer in Redis from the cancellation record: which was cancelled, with its reason, in a process that read nothing before', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const hand = byHand(queueName);
    const { token, take, failDoomed } = hand;
    const { head, dependent, running } = await headTakenBefore(bg, hand, step);
    await vi.waitFor(() => expect(head.status).toBe('running'), bound);
    head.cancel('stop');
    await vi.waitFor(async () => expect(((await backend.queue.getJob(head.id))?.data as { cancelled?: string }).cancelled).toBe('stop'), bound);
    // Stopped by its worker, which fails it so; the dependent is failed for it; then the head's job is removed (by hand, a script).
    await running.moveToFailed(new UnrecoverableError('cancelled: stop'), token, false);
    const doomed = await take(dependent.id);
    await failDoomed(doomed);
    expect(await backend.queue.remove(head.id)).toBe(1);
    const message = `Task "step" (#${dependent.id}) was skipped: it was to run after task "step" (#${head.id}), which was cancelled`;
    const elsewhere = producer(queueName).backend;
    const error = (await (await elsewhere.handle(dependent.id))!.result().catch((e: unknown) => e)) as Error;
    expect(error.message).toBe(message);
    expect(error.cause).toMatchObject({ name: 'TaskCancelledError', message: `Task "step" (#${head.id}) was cancelled`, cause: 'stop' });
    await expect(producer(queueName).backend.job(dependent.id)).resolves.toMatchObject({ status: 'skipped', failedReason: `${message}: stop` });
  });

  it('reads a link added elsewhere after a task skipped at its add() whose guard had not failed it yet as after a skipped one: the chain\'s first error its cause', async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const { token, take, failDoomed } = byHand(queueName);
    const broken = bg.with({ durable: true }).add(failing, 'broken');
    await (await take(broken.id)).moveToFailed(new UnrecoverableError('broken breaks'), token, false);
    await expect(broken.result()).rejects.toThrow('broken breaks');
    // Skipped at once here; its job is sent with a guard that fails it, not run yet.
    const first = bg.with({ durable: true, after: [broken] }).add(step, 'first');
    expect(first.status).toBe('skipped');
    await vi.waitFor(async () => expect(await backend.job(first.id)).toBeDefined(), bound);
    // Another application has a handle of it (not watched: it does not know what comes next).
    const there = producer(queueName);
    const firstThere = (await there.backend.handle(first.id))!;
    // Its guard fails it, then it fails for it; the other application then adds a link after it, by that handle:
    // the link's guard, run by a worker, finds it failed.
    await (await take(`${first.id}.after`)).moveToFailed(new UnrecoverableError('its prerequisite failed'), token, false);
    const doomed = await take(first.id);
    await failDoomed(doomed);
    const linked = there.bg.with({ durable: true, after: [firstThere] }).add(step, 'linked');
    expect(linked.status).toBe('delayed');
    await vi.waitFor(async () => expect(await backend.job(linked.id)).toBeDefined(), bound);
    workers(queueName);
    const message = `Task "step" (#${linked.id}) was skipped: it was to run after task "step" (#${first.id}), which was skipped`;
    for (const reader of [there.backend, backend, producer(queueName).backend]) {
      const read = (await (await reader.handle(linked.id))!.result().catch((e: unknown) => e)) as Error;
      expect(read.message).toBe(message);
      expect(read.cause).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: broken.id, message: 'broken breaks' });
    }
    const own = (await linked.result().catch((e: unknown) => e)) as Error;
    expect(own.message).toBe(message);
    expect(own.cause).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: broken.id, message: 'broken breaks' });
    expect(effects).toEqual([]);
  });

  it('skips the dependent of a task that had failed already when it was added: at once here, and in Redis in the same words', async () => {
    const { bg, backend, queueName } = setup();
    const broken = bg.with({ durable: true }).add(failing, 'early');
    await broken.result().catch(() => undefined);
    const dependent = bg.with({ durable: true, after: [broken] }).add(step, 'late');
    expect(dependent.status).toBe('skipped');
    const message = `Task "step" (#${dependent.id}) was skipped: it was to run after task "failing" (#${broken.id}), which failed`;
    await expect(dependent.result()).rejects.toThrow(message);
    await vi.waitFor(async () => expect(await backend.job(dependent.id)).toMatchObject({ status: 'skipped', failedReason: `${message}: early breaks` }), bound);
    const elsewhere = (await producer(queueName).backend.handle(dependent.id))!;
    expect(elsewhere.status).toBe('skipped');
    await expect(elsewhere.result()).rejects.toThrow(message);
    expect(effects).toEqual(['early failed']);
    // After the skipped one, skipped at once in turn: its cause is the error that began the chain, not nested.
    const first = await dependent.result().catch((e: unknown) => e);
    const next = await bg.with({ durable: true, after: [dependent] }).add(step, 'later still').result().catch((e: unknown) => e);
    expect((next as Error).message).toMatch(/which was skipped$/);
    expect((next as Error).cause).toBe((first as Error).cause);
    // A link added in another application after it, read in a third: its cause is the chain's first error too, whichever reads it.
    const there = producer(queueName);
    const linked = there.bg.with({ durable: true, after: [(await there.backend.handle(dependent.id))!] }).add(step, 'linked elsewhere');
    await vi.waitFor(async () => expect((await backend.job(linked.id))?.status).toBe('skipped'), bound);
    for (const reader of [there.backend, backend, producer(queueName).backend]) {
      const read = (await (await reader.handle(linked.id))!.result().catch((e: unknown) => e)) as Error;
      expect(read.message).toBe(`Task "step" (#${linked.id}) was skipped: it was to run after task "step" (#${dependent.id}), which was skipped`);
      expect(read.cause).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: broken.id, message: 'early breaks' });
    }
  });

  it('reads a chain of skips in Redis as in process: each link after a skipped one says so, and the chain\'s first error is the cause', async () => {
    const { bg, backend, queueName } = setup();
    const head = bg.with({ durable: true }).add(failing, 'head');
    const links: TaskHandle<unknown>[] = [head];
    for (const label of ['one', 'two', 'three']) links.push(bg.with({ durable: true, after: [links.at(-1)!] }).add(step, label));
    const [, one, two, three] = links;
    const errors = await Promise.all(links.map(async (link) => (await link.result().catch((e: unknown) => e)) as Error));
    expect(errors[1]!.message).toBe(`Task "step" (#${one!.id}) was skipped: it was to run after task "failing" (#${head.id}), which failed`);
    expect(errors[2]!.message).toBe(`Task "step" (#${two!.id}) was skipped: it was to run after task "step" (#${one!.id}), which was skipped`);
    expect(errors[3]!.message).toBe(`Task "step" (#${three!.id}) was skipped: it was to run after task "step" (#${two!.id}), which was skipped`);
    for (const error of errors.slice(1)) expect(error.cause).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: head.id, message: 'head breaks' });
    // backend.job() says what the handle says, and of a skipped link what its own handle said.
    await expect(backend.job(three!.id)).resolves.toMatchObject({ status: 'skipped', failedReason: `${errors[3]!.message}: ${errors[2]!.message}` });
    // Another process, which read none of the chain, reads it the same.
    const elsewhere = (await producer(queueName).backend.handle(three!.id))!;
    const read = (await elsewhere.result().catch((e: unknown) => e)) as Error;
    expect(read.message).toBe(errors[3]!.message);
    expect(read.cause).toMatchObject({ code: 'ERR_DURABLE_FAILED', jobId: head.id, message: 'head breaks' });
    expect(effects).toEqual(['head failed']);
  });

  it("skips, as after a cancelled task, a dependent whose guard runs only after its prerequisite's cancellation removed it (no worker ran meanwhile)", async () => {
    const { bg, backend, queueName } = setup({ workers: false });
    const waiting = bg.with({ durable: true, delayMs: 60_000 }).add(step, 'delayed');
    const afterWaiting = bg.with({ durable: true, after: [waiting] }).add(step, 'after delayed');
    await vi.waitFor(async () => expect((await backend.job(afterWaiting.id))?.status).toBe('delayed'), bound);
    waiting.cancel('not needed');
    await vi.waitFor(async () => expect(await backend.job(waiting.id)).toBeUndefined(), bound);
    // The guard of the dependent runs now, the prerequisite gone: the cancellation says why.
    workers(queueName);
    const error = await afterWaiting.result().catch((e: unknown) => e);
    expect((error as Error).message).toBe(`Task "step" (#${afterWaiting.id}) was skipped: it was to run after task "step" (#${waiting.id}), which was cancelled`);
    await vi.waitFor(async () => expect((await backend.job(afterWaiting.id))?.failedReason).toMatch(/which was cancelled: not needed$/), bound);
  });

  it('skips the dependent of a task cancelled while it waits (its job removed) or while it runs (its job failed)', async () => {
    const { bg, backend } = setup();
    const waiting = bg.with({ durable: true, delayMs: 60_000 }).add(step, 'delayed');
    const afterWaiting = bg.with({ durable: true, after: [waiting] }).add(step, 'after delayed');
    await vi.waitFor(async () => expect((await backend.job(afterWaiting.id))?.status).toBe('delayed'), bound);
    waiting.cancel('not needed');
    const error = await afterWaiting.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskSkippedError);
    expect((error as Error).message).toBe(`Task "step" (#${afterWaiting.id}) was skipped: it was to run after task "step" (#${waiting.id}), which was cancelled`);
    await vi.waitFor(async () => expect(await backend.job(waiting.id)).toBeUndefined(), bound);
    await expect(backend.job(afterWaiting.id)).resolves.toMatchObject({
      status: 'skipped',
      failedReason: `Task "step" (#${afterWaiting.id}) was skipped: it was to run after task "step" (#${waiting.id}), which was cancelled: not needed`,
    });
    // Its cause the cancelled task's error, as its handle reads it: the reason given is that error's cause.
    expect((error as Error).cause).toBeInstanceOf(TaskCancelledError);
    expect((error as Error).cause).toMatchObject({ message: `Task "step" (#${waiting.id}) was cancelled`, cause: 'not needed' });

    gate('running');
    const running = bg.with({ durable: true }).add(step, 'running');
    const afterRunning = bg.with({ durable: true, after: [running] }).add(step, 'after running');
    await vi.waitFor(() => expect(effects).toContain('running started'), bound);
    running.cancel('stop');
    const stopped = await afterRunning.result().catch((e: unknown) => e);
    expect((stopped as Error).message).toBe(`Task "step" (#${afterRunning.id}) was skipped: it was to run after task "step" (#${running.id}), which was cancelled`);
    // Read the same way as the waiting one's: the running job's failedReason (`cancelled: ` and the reason given) without its prefix.
    await expect(backend.job(afterRunning.id)).resolves.toMatchObject({
      status: 'skipped',
      failedReason: `Task "step" (#${afterRunning.id}) was skipped: it was to run after task "step" (#${running.id}), which was cancelled: stop`,
    });
    expect((stopped as Error).cause).toBeInstanceOf(TaskCancelledError);
    expect((stopped as Error).cause).toMatchObject({ message: `Task "step" (#${running.id}) was cancelled`, cause: 'stop' });
    expect(effects).not.toContain('after delayed started');
    expect(effects).not.toContain('after running started');
  });

  it('skips the dependent of a task whose job is not in Redis (removed before the dependent was added)', async () => {
    const { bg, backend } = setup();
    const gone = bg.with({ durable: true, delayMs: 60_000 }).add(step, 'gone');
    await vi.waitFor(async () => expect(await backend.job(gone.id)).toBeDefined(), bound);
    // Removed by someone else (the dashboard, a script): this process does not know.
    await backend.queue.remove(gone.id);
    const dependent = bg.with({ durable: true, after: [gone] }).add(step, 'orphan');
    await expect(dependent.result()).rejects.toThrow(
      `Task "step" (#${dependent.id}) was skipped: it was to run after task "step" (#${gone.id}), which was not in the queue (cancelled or removed, or its record expired)`,
    );
    await expect(backend.job(dependent.id)).resolves.toMatchObject({ status: 'skipped', attempt: 0 });
    expect(effects).toEqual([]);
  });

  it('cancels a waiting dependent: its job is removed, and the tasks it waited for still run', async () => {
    const { bg, backend } = setup();
    const held = gate('kept');
    const kept = bg.with({ durable: true }).add(step, 'kept');
    const dependent = bg.with({ durable: true, after: [kept] }).add(step, 'dropped');
    await vi.waitFor(async () => expect((await backend.job(dependent.id))?.status).toBe('delayed'), bound);
    expect(dependent.cancel()).toBe(true);
    await vi.waitFor(async () => expect(await backend.job(dependent.id)).toBeUndefined(), bound);
    held.resolve();
    await expect(kept.result()).resolves.toBe('kept');
    await expect(backend.job(kept.id)).resolves.toMatchObject({ status: 'succeeded' });
    expect(effects).not.toContain('dropped started');
  });

  it('skips a dependent at once when a task it waits for was cancelled before its job was sent: which was cancelled, here and in Redis', async () => {
    const { bg, backend, queueName } = setup();
    const dropped = bg.with({ durable: true }).add(step, 'dropped');
    dropped.cancel('changed my mind');
    const dependent = bg.with({ durable: true, after: [dropped] }).add(step, 'dependent');
    expect(dependent.status).toBe('skipped');
    const error = await dependent.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskSkippedError);
    expect((error as Error).message).toBe(`Task "step" (#${dependent.id}) was skipped: it was to run after task "step" (#${dropped.id}), which was cancelled`);
    expect((error as Error).cause).toMatchObject({ name: 'TaskCancelledError', message: `Task "step" (#${dropped.id}) was cancelled` });
    await vi.waitFor(
      async () =>
        expect(await backend.job(dependent.id)).toMatchObject({
          status: 'skipped',
          failedReason: `${(error as Error).message}: changed my mind`,
        }),
      bound,
    );
    // Read in another application: the reason given is the cause of the cancelled task's error, as here.
    const elsewhere = (await (await producer(queueName).backend.handle(dependent.id))!.result().catch((e: unknown) => e)) as Error;
    expect(elsewhere.message).toBe((error as Error).message);
    expect(elsewhere.cause).toMatchObject({ name: 'TaskCancelledError', message: `Task "step" (#${dropped.id}) was cancelled`, cause: 'changed my mind' });
    // The cancelled task's job was never sent.
    await expect(backend.job(dropped.id)).resolves.toBeUndefined();
    expect(effects).toEqual([]);
  });

  it('lets a new dependent wait for a task whose former dependent was cancelled: it runs once the task succeeds (waiting, or running)', async () => {
    const { bg } = setup();
    for (const phase of ['waiting', 'running']) {
      const held = gate(phase);
      const task = bg.with({ durable: true, ...(phase === 'waiting' ? { delayMs: 100 } : {}) }).add(step, phase);
      const first = bg.with({ durable: true, after: [task] }).add(step, `first after ${phase}`);
      if (phase === 'running') await vi.waitFor(() => expect(effects).toContain('running started'), bound);
      else await vi.waitFor(async () => expect(first.status).toBe('delayed'), bound);
      expect(first.cancel()).toBe(true);
      // At once, while the cancelled dependent's job is still being removed.
      const second = bg.with({ durable: true, after: [task] }).add(step, `second after ${phase}`);
      // The task ends only once the cancellation is through: else the cancelled dependent may have
      // been taken by a worker first (told then to stop, as documented), which this test is not about.
      await first.result().catch(() => undefined);
      held.resolve();
      await expect(second.result()).resolves.toBe(`second after ${phase}`);
      expect(effects).not.toContain(`first after ${phase} started`);
    }
  });

  it("lets a new dependent wait for a task whose former dependent has ended: left out when that one succeeded, freed from it when it was skipped", async () => {
    const { bg, backend } = setup();
    const done = bg.with({ durable: true }).add(step, 'done');
    const ran = bg.with({ durable: true, after: [done] }).add(step, 'ran');
    await ran.result();
    // `done`'s handle was never watched: the dependent's success says it succeeded.
    const next = bg.with({ durable: true, after: [done] }).add(step, 'next');
    await expect(next.result()).resolves.toBe('next');

    // Skipped because another task it waited for failed: the first task still waits, attached to it in Redis.
    const slow = gate('slow');
    const pending = bg.with({ durable: true }).add(step, 'slow');
    const broken = bg.with({ durable: true }).add(failing, 'broken');
    const skipped = bg.with({ durable: true, after: [pending, broken] }).add(step, 'skipped');
    await expect(skipped.result()).rejects.toBeInstanceOf(TaskSkippedError);
    const again = bg.with({ durable: true, after: [pending] }).add(step, 'again');
    await vi.waitFor(async () => expect((await backend.job(again.id))?.status).toBe('delayed'), bound);
    slow.resolve();
    await expect(again.result()).resolves.toBe('again');
    expect(effects).not.toContain('skipped started');
  });

  it('decides a dependent of a task whose cancellation was asked for, outcome not yet known here, once it is: skipped if it was cancelled, run if it had succeeded', async () => {
    const { bg, backend } = setup();
    const held = gate('first');
    const first = bg.with({ durable: true }).add(step, 'first');
    const cancelled = bg.with({ durable: true, after: [first] }).add(step, 'cancelled');
    bg.with({ durable: true, after: [cancelled] }).add(step, 'its dependent');
    await vi.waitFor(async () => expect((await backend.job(cancelled.id))?.status).toBe('delayed'), bound);
    // Nobody watched `cancelled`: cancel() asks, and its handle waits for Redis's word.
    expect(cancelled.cancel()).toBe(true);
    const late = bg.with({ durable: true, after: [cancelled] }).add(step, 'late');
    await expect(late.result()).rejects.toThrow(`Task "step" (#${late.id}) was skipped: it was to run after task "step" (#${cancelled.id}), which was cancelled`);
    await vi.waitFor(async () => expect(await backend.job(late.id)).toMatchObject({ status: 'skipped' }), bound);
    held.resolve();
    await first.result();

    // The same, for a task that had succeeded before the cancellation reached it.
    const done = bg.with({ durable: true }).add(step, 'done');
    await vi.waitFor(async () => expect((await backend.job(done.id))?.status).toBe('succeeded'), bound);
    expect(done.cancel()).toBe(true);
    const next = bg.with({ durable: true, after: [done] }).add(step, 'next');
    await expect(next.result()).resolves.toBe('next');
    expect(done.status).toBe('succeeded');
    expect(effects).not.toContain('cancelled started');
    expect(effects).not.toContain('late started');
  });

  it('reads a skipped task as skipped from the first status of a handle made by id in another application', async () => {
    const queueName = `flows-${randomUUID()}`;
    effects.length = 0;
    const one = producer(queueName);
    workers(queueName);
    const broken = one.bg.with({ durable: true }).add(failing, 'broken');
    const dependent = one.bg.with({ durable: true, after: [broken] }).add(step, 'dependent');
    await expect(dependent.result()).rejects.toBeInstanceOf(TaskSkippedError);
    for (let i = 0; i < 3; i++) {
      const reader = producer(queueName);
      const handle = (await reader.backend.handle(dependent.id))!;
      expect(handle.status).toBe('skipped');
      await expect(handle.result()).rejects.toBeInstanceOf(TaskSkippedError);
    }
  });

  it('waits across applications: one adds the task, another the dependent (by backend.handle(id)), workers in a third; the first may be gone', async () => {
    const queueName = `flows-${randomUUID()}`;
    effects.length = 0;
    const one = producer(queueName);
    const two = producer(queueName);
    const held = gate('from one');
    const first = one.bg.with({ durable: true }).add(step, 'from one');
    workers(queueName);
    await vi.waitFor(() => expect(effects).toContain('from one started'), bound);
    const followed = await two.backend.handle(first.id);
    expect(followed).toMatchObject({ id: first.id, name: 'step', status: 'running', attempt: 1 });
    const dependent = two.bg.with({ durable: true, after: [followed!] }).add(step, 'from two');
    // The first producer goes away: the dependency is in Redis, not in its memory.
    await one.backend.close();
    await vi.waitFor(async () => expect((await two.backend.job(dependent.id))?.status).toBe('delayed'), bound);
    held.resolve();
    await expect(dependent.result()).resolves.toBe('from two');
    await expect(followed!.result()).resolves.toBe('from one');
    expect(effects).toEqual(['from one started', 'from one done', 'from two started', 'from two done']);
    await expect(two.backend.handle('no-such-job')).resolves.toBeUndefined();
    // A handle of a job that ended already is settled as it ended.
    const done = (await producer(queueName).backend.handle(dependent.id))!;
    expect(done).toMatchObject({ id: dependent.id, name: 'step', status: 'succeeded', attempt: 1 });
    await expect(done.result()).resolves.toBe('from two');
  });

  it('waits across processes: one process adds the task, another the dependent, both die; workers in this one run them in order', async () => {
    const queueName = `flows-${randomUUID()}`;
    effects.length = 0;
    const first = await addInAnotherProcess(redis.port, queueName, 'from process one');
    const second = await addInAnotherProcess(redis.port, queueName, 'from process two', first);
    const { backend } = producer(queueName);
    const dependent = (await backend.handle(second))!;
    expect(dependent).toMatchObject({ status: 'delayed', name: 'step' });
    const held = gate('from process one');
    workers(queueName);
    await vi.waitFor(() => expect(effects).toEqual(['from process one started']), bound);
    await expect(backend.job(second)).resolves.toMatchObject({ status: 'delayed' });
    held.resolve();
    await expect(dependent.result()).resolves.toBe('from process two');
    expect(effects).toEqual(['from process one started', 'from process one done', 'from process two started', 'from process two done']);
  }, 30_000);

  it('skips, saying why, a dependent added in another application for a task that another durable task waits for already', async () => {
    const queueName = `flows-${randomUUID()}`;
    effects.length = 0;
    const one = producer(queueName);
    const two = producer(queueName);
    gate('shared');
    const shared = one.bg.with({ durable: true }).add(step, 'shared');
    one.bg.with({ durable: true, after: [shared] }).add(step, 'first dependent');
    workers(queueName);
    await vi.waitFor(() => expect(effects).toContain('shared started'), bound);
    const followed = (await two.backend.handle(shared.id))!;
    const second = two.bg.with({ durable: true, after: [followed] }).add(step, 'second dependent');
    await expect(second.result()).rejects.toThrow(/which is waited for by another durable task already \(.+\), and BullMQ gives a job one parent$/);
    gates.get('shared')!.resolve();
  });

  it('refuses at add(), with nothing enqueued, what does not map: in-process handles, schedules, another queue, a second dependent', async () => {
    const { bg, backend } = setup({ workers: false });
    const inProcess = bg.add(async () => 1);
    expect(() => bg.with({ durable: true, after: [inProcess] }).add(step, 'x')).toThrow(
      new TypeError(
        `bg.add("step"): options.after[0] is in-process task "anonymous" (#${inProcess.id}), and a durable task waits only for durable tasks of its queue (the wait lives in Redis, ` +
          `where no worker sees this process's tasks); make "anonymous" durable too, or add "step" once that handle's result() has resolved`,
      ),
    );
    const durable = bg.with({ durable: true }).add(step, 'first');
    expect(() => bg.with({ after: [durable] }).add(step, 'in process')).toThrow(
      new TypeError(
        `bg.add("step"): options.after[0] is durable task "step" (#${durable.id}), and an in-process task waits only for in-process tasks; ` +
          'make "step" durable too (its wait then lives in Redis), or add it once the handle\'s result() has resolved',
      ),
    );
    const schedule = bg.with({ durable: true, every: 60_000, overlap: true }).add(step, 'tick');
    expect(() => bg.with({ durable: true, after: [schedule] }).add(step, 'x')).toThrow(
      new TypeError('bg.add("step"): options.after[1] is the schedule of durable task "step", which never finishes; give the handle of a one-off task'.replace('after[1]', 'after[0]')),
    );
    const other = producer(`flows-${randomUUID()}`);
    const elsewhere = other.bg.with({ durable: true }).add(step, 'elsewhere');
    expect(() => bg.with({ durable: true, after: [elsewhere] }).add(step, 'x')).toThrow(/^bg\.add\("step"\): options\.after\[0\] is durable task "step" \(#[0-9a-f-]+\) of another queue \("flows-/);
    const dependent = bg.with({ durable: true, after: [durable] }).add(step, 'dependent');
    expect(() => bg.with({ durable: true, after: [durable] }).add(step, 'second')).toThrow(
      new TypeError(
        `bg.add("step"): options.after[0] is durable task "step" (#${durable.id}), which durable task "step" (#${dependent.id}) waits for already: ` +
          'BullMQ gives a job one parent, so one durable task at most can wait for it; run "step" after "step", or after a task of its own',
      ),
    );
    await vi.waitFor(async () => expect(await backend.job(dependent.id)).toMatchObject({ status: 'delayed' }), bound);
    // The first task, its dependent, the dependent's guard and the schedule's job; nothing of the refused ones.
    const jobs = await backend.queue.getJobs();
    expect(jobs.map((job) => (job.name === 'step' ? (job.data as { args: string[] }).args[0] : job.name)).sort()).toEqual(['dependent', 'first', 'tick', 'tsyringe-background:after']);
    schedule.cancel();
  });

  it("gives a worker's task the job's attempt: ctx.attempt, the handle, backend.job(), the run's events and logs count alike", async () => {
    const queueName = `flows-${randomUUID()}`;
    effects.length = 0;
    const { bg, backend } = producer(queueName);
    const logger = captureLogger();
    const { app } = workers(queueName, logger);
    const events: TaskEvent[] = [];
    const observation = observeTasks((event) => void (event.name === 'counting' && events.push(event)), { container: app });
    closers.push(async () => observation());
    const handle = bg.with({ durable: true, retries: 3, backoff: { baseMs: 1, jitter: 0 } }).add(counting, 'retried', 3);
    await expect(handle.result()).resolves.toBe(3);
    expect(effects).toEqual(['retried attempt 1', 'retried attempt 2', 'retried attempt 3']);
    expect(handle.attempt).toBe(3);
    await expect(backend.job(handle.id)).resolves.toMatchObject({ status: 'succeeded', attempt: 3 });
    expect(events.filter((e) => e.type === 'started').map((e) => e.attempt)).toEqual([1, 2, 3]);
    expect(events.filter((e) => e.type === 'failed').map((e) => e.attempt)).toEqual([1, 2]);
    expect(events.filter((e) => e.type === 'succeeded').map((e) => e.attempt)).toEqual([3]);
    expect(logger.entries.filter((e) => e.message === 'retried ran').map((e) => e.fields.attempt)).toEqual([1, 2, 3]);
    // Attempts the job's queue runs again are logged as retries (warn), not as the task's failure.
    expect(logger.entries.filter((e) => e.level === 'warn' && e.fields.task === 'counting').map((e) => [e.fields.attempt, e.fields.attempts])).toEqual([[1, 4], [2, 4]]);
    expect(logger.entries.filter((e) => e.level === 'error' && e.fields.task === 'counting')).toEqual([]);
  });
});
