/**
 * The worker pool with real threads, driven without any container: task runs handed to it
 * through its admission window, a fake owner, and gates the worker tasks block on. A task handed
 * to Piscina is not running until a thread takes it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Pool } from '../../src/engine/pool.js';
import { TaskRun, type RunOwner } from '../../src/engine/task-run.js';
import { TaskTimeoutError } from '../../src/model/errors.js';
import { defaultOptions } from '../../src/model/options.js';
import { defaultTaskOptions, resolveTaskOptions, type TaskOptions } from '../../src/model/task-options.js';
import { captureLogger, holdCell, watchProcessErrors } from '../helpers.js';

const module = new URL('../fixtures/worker-tasks.ts', import.meta.url).href;
const setupModule = new URL('../fixtures/worker-setup.ts', import.meta.url).href;

const owner: RunOwner = { logger: captureLogger(), warnBlockingMs: 0, settled() {} };
const pools: Pool[] = [];

/** A pool of one thread whose admission window lets two tasks through, as a widened window does. */
function onePoolThreadTwoAdmitted(): Pool {
  const pool = new Pool({ ...defaultOptions.pool, maxThreads: 1, minThreads: 0, setupModule }, owner.logger);
  pool.admission.limit = 2;
  pools.push(pool);
  return pool;
}

function holdsRun(pool: Pool, cell: Int32Array, label: string, given: TaskOptions = {}): TaskRun {
  const options = resolveTaskOptions(given, defaultTaskOptions, { path: 'test', source: 'the test' });
  const run = new TaskRun({ name: 'holds', options }, pool.call({ module, name: 'holds', args: [cell, label] }, [], false), owner, pool.admission);
  run.enqueue();
  return run;
}

watchProcessErrors();
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close(5_000)));
});

describe('a worker task waiting for a thread', () => {
  it('is queued, while it holds its place in the admission window, until its thread takes it', async () => {
    const pool = onePoolThreadTwoAdmitted();
    const first = holdCell();
    const second = holdCell();
    const a = holdsRun(pool, first.cell, 'a');
    const b = holdsRun(pool, second.cell, 'b');
    await first.entered();
    // Both were admitted; only one thread exists, and `a` holds it.
    expect(pool.admission.running).toBe(2);
    expect(a.status).toBe('running');
    expect(b.status).toBe('queued');
    first.open();
    await expect(a.result()).resolves.toBe('a');
    await second.entered();
    expect(b.status).toBe('running');
    second.open();
    await expect(b.result()).resolves.toBe('b');
  });

  it('does not time out while it waits: its timeoutMs counts from when its thread takes it', async () => {
    const pool = onePoolThreadTwoAdmitted();
    const first = holdCell();
    const second = holdCell();
    const a = holdsRun(pool, first.cell, 'a');
    const b = holdsRun(pool, second.cell, 'b', { timeoutMs: 30 });
    await first.entered();
    // Three times b's timeout passes while it waits behind a (real time is what is tested).
    await new Promise((resolve) => setTimeout(resolve, 90));
    expect(b.status).toBe('queued');
    const releasedAt = Date.now();
    first.open();
    await a.result();
    const outcome = await b.result().then(
      () => 'succeeded',
      (error: unknown) => error,
    );
    const timedOutAt = Date.now();
    expect(outcome).toBeInstanceOf(TaskTimeoutError);
    expect(b.status).toBe('timedOut');
    // b reached its thread no sooner than a was released, and had its whole 30 ms from there.
    expect(timedOutAt - releasedAt).toBeGreaterThanOrEqual(30);
    second.open();
  });
});
