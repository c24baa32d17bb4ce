/**
 * The durable backend's fault tests (issue 14, item 4), against a real redis-server and real
 * worker processes (test/fixtures/durable-worker.mjs on the built package), never a mock: Redis
 * restarted mid-run, and 3 worker processes × 10 000 jobs. Effects are counted outside the
 * processes that make them (lines in a file, or INCR in Redis), so that a job run twice, or
 * never, shows.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { Background, defineTask, shutdown, type TaskHandle } from '../../src/index.js';
import { captureLogger, freshApp, watchProcessErrors } from '../helpers.js';
import { startPersistentRedis, type PersistentRedis } from './persistent-redis.js';
import { hasRedis, startRedis, type RedisServer } from './redis.js';
import { killWorkerProcesses, startWorkerProcess } from './worker-process.js';

watchProcessErrors();

// The producer's side of the fixture's tasks: only their names travel; the workers run their own.
const hold = defineTask({ name: 'hold' }, async (label: string): Promise<{ label: string; pid: number }> => {
  throw new Error(`hold(${label}) runs in the worker processes only`);
});
const count = defineTask({ name: 'count' }, async (label: string): Promise<void> => {
  throw new Error(`count(${label}) runs in the worker processes only`);
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tb-durable-faults-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  killWorkerProcesses();
  for (const close of closers.splice(0).reverse()) await close();
});

/** The effects the hold task appended, per label: the pids and attempts it started with, the pids it finished in. */
function effectsIn(file: string): Map<string, { starts: { pid: number; attempt: number }[]; done: number[] }> {
  const byLabel = new Map<string, { starts: { pid: number; attempt: number }[]; done: number[] }>();
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n').filter(Boolean)) {
    const [what, label, pid, attempt] = line.split(' ') as [string, string, string, string | undefined];
    const effects = byLabel.get(label) ?? { starts: [], done: [] };
    byLabel.set(label, effects);
    if (what === 'start') effects.starts.push({ pid: Number(pid), attempt: Number(attempt) });
    else effects.done.push(Number(pid));
  }
  return byLabel;
}

/** A producer application with the durable backend on `queueName`. */
function producer(connection: { host: string; port: number }, queueName: string, enqueueTimeoutMs?: number) {
  const logger = captureLogger();
  const app = freshApp({ logger });
  const backend: DurableBackend = useBullMQ(app, { connection, queueName, logger, ...(enqueueTimeoutMs === undefined ? {} : { enqueueTimeoutMs }) });
  closers.push(
    () => shutdown({ container: app }),
    () => backend.close(),
  );
  return { bg: app.resolve(Background).with({ durable: true }), backend, logger };
}

/** Resolves once Redis has every job: `backend.job(id)` sees it (its add was acknowledged). */
async function acknowledged(backend: DurableBackend, handles: readonly TaskHandle[]): Promise<void> {
  await vi.waitFor(
    async () => {
      const jobs = await Promise.all(handles.map((handle) => backend.job(handle.id)));
      expect(jobs.filter((job) => job === undefined)).toHaveLength(0);
    },
    { timeout: 10_000, interval: 20 },
  );
}

describe.skipIf(!hasRedis)('durable faults: Redis restarted mid-run', () => {
  let redis: PersistentRedis;
  beforeAll(async () => {
    redis = await startPersistentRedis();
  });
  afterAll(() => redis.remove());

  it('producers and workers reconnect; every acknowledged job completes exactly once; handles added while Redis is down enqueue once it is back, or fail with ERR_DURABLE_ENQUEUE and never run', { timeout: 60_000 }, async () => {
    const queueName = `restart-${randomUUID()}`;
    const effects = join(dir, `${queueName}.effects`);
    const patient = producer(redis.connection, queueName, 30_000);
    const hasty = producer(redis.connection, queueName, 300);
    const worker = await startWorkerProcess({ port: redis.port, queueName, effects, concurrency: 4 });
    const labels = Array.from({ length: 20 }, (_, i) => `job-${i}`);
    const handles = labels.map((label) => patient.bg.add(hold, label));
    await acknowledged(patient.backend, handles);
    // Mid-processing: 4 jobs running (held), 16 waiting.
    await worker.matches(/^started (job-\d+) 1$/, 4);

    await redis.stop();
    // The running jobs end while Redis is down: their completion waits for it.
    worker.send('release *');
    const patientWhileDown = ['down-1', 'down-2'].map((label) => patient.bg.add(hold, label));
    const hastyWhileDown = ['lost-1', 'lost-2'].map((label) => hasty.bg.add(hold, label));
    for (const handle of hastyWhileDown) {
      await expect(handle.result()).rejects.toMatchObject({ code: 'ERR_DURABLE_ENQUEUE', jobId: handle.id });
    }
    expect(hasty.backend.enqueueFailures).toBe(2);
    await redis.start();

    const results = await Promise.all([...handles, ...patientWhileDown].map((handle) => handle.result({ timeoutMs: 30_000 })));
    expect(results.map((result) => (result as { label: string }).label)).toEqual([...labels, 'down-1', 'down-2']);
    // A round trip on the hasty producer's connection: anything it had kept to send while Redis
    // was down has been sent and answered before (one connection answers in order). Its failed
    // jobs must not exist: they would run.
    await hasty.backend.queue.count();
    for (const handle of hastyWhileDown) await expect(hasty.backend.job(handle.id)).resolves.toBeUndefined();

    worker.send('close');
    await worker.line(/^closed$/);
    const byLabel = effectsIn(effects);
    for (const label of [...labels, 'down-1', 'down-2']) {
      expect({ label, ...byLabel.get(label) }).toEqual({ label, starts: [{ pid: worker.pid, attempt: 1 }], done: [worker.pid] });
    }
    expect(byLabel.has('lost-1') || byLabel.has('lost-2')).toBe(false);
  });
});

describe.skipIf(!hasRedis)('durable faults: 3 worker processes, 10 000 jobs', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis.stop());

  it('runs every job exactly once: 10 000 handles resolve, each job counted once in Redis, none twice', { timeout: 60_000 }, async () => {
    const queueName = `many-${randomUUID()}`;
    const config = { port: redis.port, queueName, effects: join(dir, `${queueName}.effects`), concurrency: 50 };
    const workers = await Promise.all([1, 2, 3].map(() => startWorkerProcess(config)));
    const { bg, backend } = producer(redis.connection, queueName);
    const n = 10_000;
    const began = performance.now();
    const handles = Array.from({ length: n }, (_, i) => bg.add(count, String(i)));
    const added = performance.now();
    await Promise.all(handles.map((handle) => handle.result({ timeoutMs: 45_000 })));
    const ended = performance.now();

    const client = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
    closers.push(() => client.quit());
    const counts: (string | null)[] = [];
    for (let i = 0; i < n; i += 1_000) counts.push(...(await client.mget(Array.from({ length: Math.min(1_000, n - i) }, (_, j) => `${queueName}:done:${i + j}`))));
    const tally = new Map<string | null, number>();
    for (const each of counts) tally.set(each, (tally.get(each) ?? 0) + 1);
    expect(Object.fromEntries(tally)).toEqual({ 1: n });
    let keys = 0;
    let cursor = '0';
    do {
      const [next, found] = await client.scan(cursor, 'MATCH', `${queueName}:done:*`, 'COUNT', 1_000);
      cursor = next;
      keys += found.length;
    } while (cursor !== '0');
    expect(keys).toBe(n);
    expect(await backend.queue.getJobCounts('completed', 'failed', 'active', 'wait', 'prioritized')).toEqual({ completed: n, failed: 0, active: 0, wait: 0, prioritized: 0 });
    expect(handles.filter((handle) => handle.status !== 'succeeded')).toEqual([]);
    // Handles whose events BullMQ trimmed before this busy process read them were settled from Redis: they never saw their job start.
    const unseenStarts = handles.filter((handle) => handle.attempt === 0).length;

    for (const worker of workers) worker.send('close');
    for (const worker of workers) expect(await worker.exited).toEqual({ code: 0, signal: null });
    console.log(
      `10 000 durable jobs on 3 worker processes × 50: add() ${Math.round(added - began)} ms, all handles resolved ${Math.round(ended - began)} ms after the first add(); ` +
        `${unseenStarts} handles settled from Redis after their events were trimmed`,
    );
  });
});
