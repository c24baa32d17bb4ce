/**
 * Runs the examples of docs/task-control.md (in test/docs-examples/) and checks what they
 * return, so that the docs cannot drift from the code. Each example makes and closes its own
 * application; they use gates and a few ms of real time, except cron, which runs on a fake clock.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main as boundedQueue } from './docs-examples/bounded-queue.js';
import { main as cancellation } from './docs-examples/cancellation.js';
import { main as context } from './docs-examples/context.js';
import { main as cron } from './docs-examples/cron.js';
import { main as delayed } from './docs-examples/delayed.js';
import { main as groupsAndAfter } from './docs-examples/groups-and-after.js';
import { main as optionLevels } from './docs-examples/option-levels.js';
import { main as periodic } from './docs-examples/periodic.js';
import { main as priorities } from './docs-examples/priorities.js';
import { main as progressAndStatus } from './docs-examples/progress-and-status.js';
import { main as retries } from './docs-examples/retries.js';
import { main as timeouts } from './docs-examples/timeouts.js';
import { main as workerContext } from './docs-examples/worker-context.js';
import { watchProcessErrors } from './helpers.js';

watchProcessErrors();
afterEach(() => {
  vi.useRealTimers();
});

describe('docs/task-control.md examples', () => {
  it('context.ts: TaskContext gives id, name, attempt, progress and a logger with the task fields', async () => {
    const { handleId, context: ctx, progress, logged } = await context();
    expect(ctx).toEqual({ id: handleId, name: 'importRows', attempt: 1 });
    expect(progress).toEqual({ fraction: 1, message: '4 of 4 rows' });
    expect(logged).toEqual([{ message: 'import started', task: 'importRows', taskId: handleId, attempt: 1, rows: 4 }]);
  });

  it('worker-context.ts: progress crosses back from a worker, and its signal crosses in', async () => {
    await expect(workerContext()).resolves.toEqual({ progressSeen: true, cancelled: true, statusAtOnce: 'cancelled', workerSawAbort: true });
  });

  it('priorities.ts: higher priority starts first, equal priorities in order', async () => {
    const { levels, started } = await priorities();
    expect(levels).toEqual({ critical: 100, high: 75, normal: 50, low: 10 });
    expect(started).toEqual([
      'critical: password reset',
      'high: welcome mail',
      '60: cache warm-up',
      'normal: CRM sync 1',
      'normal: CRM sync 2',
      'low: audit row',
    ]);
  });

  it('retries.ts: backoff, retryIf, a warning per failed attempt, one error at the end', async () => {
    await expect(retries()).resolves.toEqual({
      delivered: 'sent to ada@example.com on attempt 3',
      delivery: { status: 'succeeded', attempt: 3 },
      bounce: { status: 'failed', attempt: 1, error: '550 no such domain: bob@example.invalid' },
      logs: [
        'warn: task "sendMail" failed (attempt 1 of 4); retrying in 5 ms',
        'warn: task "sendMail" failed (attempt 2 of 4); retrying in 10 ms',
        'error: task "sendMail" failed',
      ],
    });
  });

  it('timeouts.ts: a default and a definition timeout; timedOut, signal aborted, slot freed', async () => {
    const result = await timeouts();
    expect(result.hung.status).toBe('timedOut');
    expect(result.hung.error).toMatch(/^TaskTimeoutError: Task "neverEnds" \(#\d+\) timed out after 10 ms \(attempt 1\)$/);
    expect(result.lookup).toMatchObject({ status: 'timedOut', signalReason: 'TaskTimeoutError' });
    expect(result.lookup.error).toMatch(/^Task "lookUpCompany" \(#\d+\) timed out after 20 ms \(attempt 1\)$/);
    expect(result.next).toBe('started as soon as the slots were freed');
    expect(result.logs).toEqual(['error: task "neverEnds" timed out', 'error: task "lookUpCompany" timed out']);
  });

  it('cancellation.ts: queued and delayed never start; running ends cancelled at once and frees its slot', async () => {
    const result = await cancellation();
    expect(result).toMatchObject({
      cancelledRunning: true,
      statusAtOnce: 'cancelled',
      cancelAgain: false,
      cause: 'the user closed the tab',
      signalReason: 'TaskCancelledError',
      statuses: ['cancelled', 'cancelled'],
      ran: [],
      next: 'the freed slot ran this',
      logs: ['debug: task "queuedJob" was cancelled', 'debug: task "delayedJob" was cancelled', 'debug: task "download" was cancelled'],
    });
    expect(result.error).toMatch(/^TaskCancelledError: Task "download" \(#\d+\) was cancelled$/);
  });

  it('progress-and-status.ts: status, progress, result({ timeoutMs }), get/list/stats and records', async () => {
    const result = await progressAndStatus();
    expect(result.whileRunning).toEqual({
      statuses: ['running', 'queued'],
      progress: { fraction: 0.5, message: 'half way' },
      running: ['importRows'],
      stats: { total: 2, queued: 1, running: 1, byStatus: expect.objectContaining({ queued: 1, running: 1, succeeded: 0 }) as unknown },
    });
    expect(result.waited).toMatch(/^Task "importRows" \(#\d+\) had not finished after waiting 5 ms for its result \(it is running\)$/);
    expect(result.finished).toMatchObject({
      result: 500,
      progress: { fraction: 1, message: 'done' },
      found: true,
      listed: ['buildReport: succeeded', 'importRows: succeeded'],
      stats: { total: 2, queued: 0, running: 0, byStatus: expect.objectContaining({ succeeded: 2 }) as unknown },
    });
    expect(result.afterThird).toEqual({ found: false, listed: 2 });
    expect(result.later).toEqual({ listed: 0, succeeded: 3 });
  });

  it('delayed.ts: delayMs and runAt; at disposal, due within the deadline run, due after it are abandoned at once', async () => {
    const result = await delayed();
    expect(result).toMatchObject({
      statusesBefore: ['delayed', 'delayed'],
      started: ['digest', 'reminder', 'soon'],
      soon: 'succeeded',
      lateStatusAtOnce: 'abandoned',
      logs: [
        "error: scope disposed with 1 task(s) due after the drain deadline of 50 ms (0 running, 0 queued, 1 delayed or retrying); they were aborted and abandoned; work that must outlive its request belongs on the application's Background (inject ApplicationBackground)",
      ],
    });
    expect(result.lateError).toMatch(/^Task "late" \(#\d+\) was abandoned: its scope was disposed and the task was due after the drain deadline of 50 ms$/);
  });

  it('periodic.ts: every N ms, failures logged, no overlap, stopped by cancel() and by disposal', async () => {
    await expect(periodic()).resolves.toEqual({
      statusBeforeFirstTick: 'delayed',
      heartbeatRuns: 3,
      stopped: 'TaskCancelledError',
      runsWhileBlocked: 1,
      slowStatus: 'cancelled',
      scoped: 'cancelled',
      stopReason: 'its scope was disposed',
      logs: ['error: task "heartbeat" failed'],
    });
  });

  it('cron.ts: runs at the times of a cron expression in a time zone', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now: new Date('2026-12-01T07:59:58.500Z') });
    const everySecond = cron();
    await vi.advanceTimersByTimeAsync(1_600);
    await expect(everySecond).resolves.toEqual(['2026-12-01T07:59:59.000Z', '2026-12-01T08:00:00.000Z']);
    // 9:00 in Paris is 08:00 UTC in December (CET, UTC+1).
    const nineInParis = cron('0 0 9 * * *', 'Europe/Paris', 2);
    await vi.advanceTimersByTimeAsync(2 * 24 * 3_600_000);
    await expect(nineInParis).resolves.toEqual(['2026-12-02T08:00:00.000Z', '2026-12-03T08:00:00.000Z']);
  });

  it('bounded-queue.ts: QueueFullError past maxQueued, and waitForRoom() for a producer that waits', async () => {
    await expect(boundedQueue()).resolves.toEqual({
      refused:
        'ERR_QUEUE_FULL: Cannot add task "importBatch": the queue is full (maxQueued 2: 2 queued, 1 running); retry later or await bg.waitForRoom()',
      done: [1, 2, 3, 4, 5, 6],
    });
  });

  it('groups-and-after.ts: all(), allSettled(), after, and a skipped dependent', async () => {
    const result = await groupsAndAfter();
    expect(result).toMatchObject({
      results: [1, 4, 9],
      firstFailure: 'bad row 7',
      settled: ['rejected', 'fulfilled'],
      handles: 2,
      order: ['extract', 'load'],
      published: 'skipped',
      cause: 'bad row 7',
    });
    expect(result.skip).toMatch(/^ERR_TASK_SKIPPED: Task "publish" \(#\d+\) was skipped: it was to run after task "transform" \(#\d+\), which failed$/);
  });

  it('option-levels.ts: defaults < definition < with(), field by field; errors name the option', async () => {
    await expect(optionLevels()).resolves.toEqual({
      status: 'failed',
      attempts: 3,
      logs: [
        'warn: task "syncAccount" failed (attempt 1 of 3); retrying in 5 ms',
        'warn: task "syncAccount" failed (attempt 2 of 3); retrying in 15 ms',
        'error: task "syncAccount" failed (attempt 3)',
      ],
      errors: [
        'RangeError: bg.with(options): options.retries must be an integer from 0 to 1000, got -1 (number)',
        'TypeError: bg.with(options): options.delayMs cannot be given with options.every; a periodic task starts at its first tick',
        'RangeError: defineTask("report"): options.timeoutMs must be an integer from 1 to 2147483647, got 0 (number)',
        'RangeError: BackgroundOptions: options.defaults.retries must be an integer from 0 to 1000, got 1.5 (number)',
      ],
    });
  });
});
