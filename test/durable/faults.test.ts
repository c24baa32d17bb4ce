/**
 * The durable backend's fault tests (issue 14, item 4), against a real redis-server and real
 * worker processes (test/fixtures/durable-worker.mjs on the built package), never a mock: 3 worker
 * processes × 10 000 jobs. Effects are counted outside the processes that make them (INCR in
 * Redis), so that a job run twice, or never, shows.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { Background, defineTask, shutdown } from '../../src/index.js';
import { captureLogger, freshApp, watchProcessErrors } from '../helpers.js';
import { hasRedis, startRedis, type RedisServer } from './redis.js';
import { killWorkerProcesses, startWorkerProcess } from './worker-process.js';

watchProcessErrors();

// The producer's side of the fixture's task: only its name travels; the workers run their own.
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
