/**
 * shutdown()'s report tells the whole truth (issue 12): besides what this close abandoned, the
 * application's totals by final status since it started, request scopes' abandoned work
 * included, so that an exit code can reflect every lost task.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it, vi } from 'vitest';
import { appOf } from '../src/di/container.js';
import { ApplicationBackground, Background, shutdown } from '../src/index.js';
import { holds, modelOk, readsFifo, readsFifoBlind, spins, spinsWithContext } from './fixtures/worker-tasks.js';
import { captureLogger, freshApp, holdCell, nextTurn, watchProcessErrors } from './helpers.js';

watchProcessErrors();

it("counts what request scopes abandoned in totals, and what this close abandoned in abandoned; the books balance", async () => {
  const root = freshApp({ logger: captureLogger(), concurrency: 2, drainTimeoutMs: 10 });
  const never = () => new Promise<never>(() => undefined);
  // Three request scopes each leave two tasks behind at their deadline.
  for (let r = 0; r < 3; r++) {
    const request = root.createChildContainer().resolve(Background);
    request.add(async function stuck() {
      await never();
    });
    request.add(async () => 'done');
    request.add(async function waits() {
      await never();
    });
    await request.dispose();
  }
  const app = root.resolve(Background);
  app.add(async () => 'fine');
  app.add(async () => {
    throw new Error('fails');
  });
  app.add(async function lastOne() {
    await never();
  });
  await nextTurn();
  const report = await shutdown({ container: root, timeoutMs: 10 });
  expect(report.abandoned).toBe(1);
  const { total, ...byStatus } = report.totals;
  expect(total).toBe(12);
  expect(byStatus.abandoned).toBe(1 + 3 * 2);
  expect(Object.values(byStatus).reduce((sum, n) => sum + n, 0)).toBe(total);
  expect(byStatus).toMatchObject({ succeeded: 4, failed: 1 });
  expect(Object.isFrozen(report.totals)).toBe(true);
});

it('does not wait for nothing: after request scopes abandoned worker tasks (TaskContext injected or not), shutdown() ends without waiting out its deadline', async () => {
  const logger = captureLogger();
  const root = freshApp({ logger, drainTimeoutMs: 20, pool: { maxThreads: 2, terminateAfterMs: 60_000, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) } });
  const started = new Int32Array(new SharedArrayBuffer(4));
  // The first request's tasks run (and, injecting TaskContext with a long grace period, keep
  // their threads after they are abandoned); the second's wait for a thread when abandoned.
  for (const task of [spinsWithContext, spins]) {
    const request = root.createChildContainer().resolve(Background);
    for (let i = 0; i < 2; i++) request.add(task, started);
    if (task === spinsWithContext) await vi.waitFor(() => expect(Atomics.load(started, 0)).toBe(1), { timeout: 10_000, interval: 10 });
    await request.dispose();
  }
  // A deadline far beyond the test's own timeout: only a close that does not wait for it passes.
  const report = await shutdown({ container: root, timeoutMs: 600_000 });
  expect(report.abandoned).toBe(0);
  expect(report.totals).toMatchObject({ total: 4, abandoned: 4 });
  expect(logger.at('debug').map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^closing the worker pool terminated \d+ thread\(s\) still running tasks that had ended$/));
}, 20_000);

it('counts a worker task waiting for a thread as queued, in its status, stats() and the abandonment error; the report accounts for every task', async () => {
  const logger = captureLogger();
  const root = freshApp({ logger, drainTimeoutMs: 0, pool: { maxThreads: 1, minThreads: 0, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) } });
  const holder = holdCell();
  const first = root.resolve(ApplicationBackground).add(holds, holder.cell, 'first');
  await holder.entered();
  // The admission window lets a second task through to Piscina, as it does once it widens;
  // with one thread, held by the first task, that task waits in Piscina's queue.
  appOf(root).pool.admission.limit = 2;
  const request = root.createChildContainer().resolve(Background);
  const waiting = [1, 2, 3].map((n) => request.add(holds, holdCell().cell, `request ${n}`));
  await nextTurn();
  expect(appOf(root).pool.admission.running).toBe(2);
  expect(first.status).toBe('running');
  expect(waiting.map((handle) => handle.status)).toEqual(['queued', 'queued', 'queued']);
  expect(request.list({ status: 'running' })).toEqual([]);
  expect(request.stats()).toMatchObject({ queued: 3, running: 0 });
  expect(request.stats({ application: true })).toMatchObject({ queued: 3, running: 1 });

  await request.dispose();
  const [abandonment] = logger.at('error');
  expect(abandonment?.message).toMatch(/^scope disposed with 3 task\(s\) unfinished after the drain deadline of 0 ms \(0 running, 3 queued, 0 delayed or retrying\)/);
  expect(abandonment?.fields).toMatchObject({ abandoned: 3, running: 0, queued: 3 });
  holder.open();
  const report = await shutdown({ container: root, timeoutMs: 5_000 });
  expect(report.abandoned).toBe(0);
  expect(report.totals).toMatchObject({ total: 4, succeeded: 1, abandoned: 3 });
}, 20_000);

it.each([
  ['in its grace period (it sees its signal)', readsFifo],
  ['terminated at once by the abandon (it cannot see its signal)', readsFifoBlind],
] as const)("logs a pool close that overruns its deadline, and resolves anyway: a thread stuck in a native call cannot be terminated, %s", async (_, task) => {
  const fifo = join(mkdtempSync(join(tmpdir(), 'tsyringe-background-')), 'stuck');
  execFileSync('mkfifo', [fifo]);
  const logger = captureLogger();
  const pool = { maxThreads: 1, minThreads: 0, terminateAfterMs: 60_000, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) };
  const root = freshApp({ logger, pool });
  const started = new Int32Array(new SharedArrayBuffer(4));
  root.resolve(ApplicationBackground).add(task, started, fifo);
  await vi.waitFor(() => expect(Atomics.load(started, 0)).toBe(1), { timeout: 10_000, interval: 10 });
  const report = await shutdown({ container: root, timeoutMs: 50 });
  expect(report.abandoned).toBe(1);
  expect(logger.at('warn').map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^closing the worker pool took longer than the \d+ ms left of the close's deadline; it goes on in the background$/));
  // Lets the thread out of its open(), so that it can be terminated.
  await writeFile(fifo, 'done');
}, 20_000);

it("a close that abandoned work at its deadline still gives an idle pool's threads time to be terminated: no overrun is logged", async () => {
  const logger = captureLogger();
  const root = freshApp({ logger, pool: { maxThreads: 1, minThreads: 0, terminateAfterMs: 60_000, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) } });
  const bg = root.resolve(ApplicationBackground);
  // A thread, idle now.
  await expect(bg.add(modelOk, new Int32Array(2)).result()).resolves.toBe('ok (2)');
  bg.add(function neverEnds() {
    return new Promise(() => undefined);
  });
  const report = await shutdown({ container: root, timeoutMs: 50 });
  expect(report.abandoned).toBe(1);
  expect(logger.at('warn').filter((entry) => entry.message.startsWith('closing the worker pool'))).toEqual([]);
}, 20_000);
