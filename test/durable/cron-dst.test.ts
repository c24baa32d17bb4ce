/**
 * Durable cron schedules across daylight-saving changes: BullMQ's job schedulers ask the library's
 * repeat strategy (src/adapters/bullmq-jobs.ts, `cronRepeatStrategy`) for each next time, so that
 * they run when periodic tasks in process do (docs/task-control.md, "Daylight-saving changes").
 * First the strategy alone, against what BullMQ's own (cron-parser's) answered; then against a
 * real redis-server, this process's clock moved to the night of a change (Date only: BullMQ
 * stamps its jobs with it; timers run in real time).
 */
import { defaultRepeatStrategy } from 'bullmq';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cronRepeatStrategy } from '../../src/adapters/bullmq-jobs.js';
import { defineTask } from '../../src/index.js';
import { watchProcessErrors } from '../helpers.js';
import { openQueue } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

const at = (iso: string): number => Date.parse(iso);

describe("the library's repeat strategy for BullMQ", () => {
  const strategy = cronRepeatStrategy();
  const next = (pattern: string, tz: string, from: string): string | undefined => {
    const millis = strategy(at(from), { pattern, tz }) as number | undefined;
    return millis === undefined ? undefined : new Date(millis).toISOString();
  };

  it.each([
    {
      why: "a skipped time runs at the end of the gap (BullMQ's: 30 minutes late)",
      pattern: '30 2 * * *', tz: 'Europe/Berlin', from: '2026-03-29T00:00:00.000Z',
      ours: '2026-03-29T01:00:00.000Z', bullmq: '2026-03-29T01:30:00.000Z',
    },
    {
      why: "asked from the second pass of a repeated hour, a time of a fixed hour has run already (BullMQ's: again, 20 minutes on)",
      pattern: '0,30 1 * * *', tz: 'America/New_York', from: '2026-11-01T06:10:00.000Z',
      ours: '2026-11-02T06:00:00.000Z', bullmq: '2026-11-01T06:30:00.000Z',
    },
    {
      why: "Lord Howe's half-hour jump: the skipped 02:00 runs at 02:30 (BullMQ's: dropped)",
      pattern: '0 * * * *', tz: 'Australia/Lord_Howe', from: '2026-10-03T14:30:00.000Z',
      ours: '2026-10-03T15:30:00.000Z', bullmq: '2026-10-03T16:00:00.000Z',
    },
    {
      why: "Lord Howe's fall-back: the hour after 01:00 is 02:00 +10:30 (BullMQ's: no next time, the schedule stops)",
      pattern: '0 * * * *', tz: 'Australia/Lord_Howe', from: '2026-04-04T14:00:00.000Z',
      ours: '2026-04-04T15:30:00.000Z', bullmq: undefined,
    },
  ])('$pattern in $tz: $why', ({ pattern, tz, from, ours, bullmq }) => {
    expect(next(pattern, tz, from)).toBe(ours);
    // What BullMQ alone answers, so that the case keeps meaning something if cron-parser changes.
    const theirs = defaultRepeatStrategy(at(from), { pattern, tz });
    expect(theirs === undefined ? undefined : new Date(theirs).toISOString()).toBe(bullmq);
  });

  it("leaves to BullMQ's a schedule the library does not make (startDate, endDate, immediately)", () => {
    const from = at('2026-03-29T00:00:00.000Z');
    for (const opts of [
      { pattern: '30 2 * * *', tz: 'Europe/Berlin', startDate: from },
      { pattern: '30 2 * * *', tz: 'Europe/Berlin', endDate: at('2027-01-01T00:00:00.000Z') },
    ]) {
      expect(strategy(from, opts)).toBe(defaultRepeatStrategy(from, opts));
    }
    // BullMQ's answer to `immediately`: now.
    const before = Date.now();
    expect(strategy(from, { pattern: '30 2 * * *', tz: 'Europe/Berlin', immediately: true })).toBeGreaterThanOrEqual(before);
  });
});

describe.skipIf(!hasRedis)('durable cron schedules across daylight-saving changes, on a real Redis', () => {
  const redis = redisForSuite();
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    vi.useRealTimers();
    for (const close of closers.splice(0).reverse()) await close();
  });

  const runs: number[] = [];
  const hourly = defineTask({ name: 'hourly' }, async () => void runs.push(Date.now()));

  it("the producer saves a schedule's first time by the library's rules: '30 2 * * *' in Berlin at 03:00 on the spring-forward day (BullMQ's: 03:30)", async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: at('2026-03-29T00:30:00.000Z'), shouldAdvanceTime: true });
    const { bg, backend } = openQueue(redis.connection, closers, { prefix: 'cron-dst', tasks: [hourly], workers: false });
    bg.with({ durable: true, cron: '30 2 * * *', tz: 'Europe/Berlin', overlap: true }).add(hourly);
    await vi.waitFor(async () => expect((await backend.queue.getJobScheduler('hourly'))?.next).toBe(at('2026-03-29T01:00:00.000Z')), { timeout: 5_000, interval: 20 });
  });

  it("an hourly schedule on Lord Howe's fall-back night runs once an hour: the producer and the worker both ask the library", async () => {
    // One second before 01:00 (+11): the hour after it is 02:00 (+10:30), 90 minutes later.
    vi.useFakeTimers({ toFake: ['Date'], now: at('2026-04-04T13:59:59.000Z'), shouldAdvanceTime: true });
    runs.length = 0;
    const { bg, backend } = openQueue(redis.connection, closers, { prefix: 'cron-dst', tasks: [hourly] });
    bg.with({ durable: true, cron: '0 * * * *', tz: 'Australia/Lord_Howe', overlap: true }).add(hourly);
    // Saved by the producer, through the library's strategy: the run of 01:00 (+11).
    await vi.waitFor(async () => expect((await backend.queue.getJobScheduler('hourly'))?.next).toBe(at('2026-04-04T14:00:00.000Z')), { timeout: 5_000, interval: 20 });
    // The worker takes that run and asks for the next: 02:00 (+10:30). BullMQ's own made no next
    // run from there, or one in the past, run at once again and again.
    await vi.waitFor(async () => expect((await backend.queue.getJobScheduler('hourly'))?.next).toBe(at('2026-04-04T15:30:00.000Z')), { timeout: 5_000, interval: 20 });
    await vi.waitFor(() => expect(runs).toHaveLength(1), { timeout: 5_000, interval: 20 });
    expect(await backend.queue.getJobCounts('delayed', 'wait', 'active')).toEqual({ delayed: 1, wait: 0, active: 0 });
    expect(runs).toHaveLength(1);
  });
});
