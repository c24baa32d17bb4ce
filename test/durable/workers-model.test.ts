/**
 * The model-based suite of durable workers' close under connection faults: random programs of
 * jobs added (on a direct connection), jobs of random length, and faults on the workers' side (a
 * proxy on 127.0.0.1 in front of a real redis-server drops what the workers send, or what Redis
 * answers, refuses connections, or cuts them), ending with `workers.close()`, with or without a
 * `timeoutMs`, in whatever state the program left the connection. Checked: close() ends within
 * its bound (the wait for active jobs, plus the connections' second and their drop), the workers
 * leave no connection open (none reconnects for ever), no rejection is left unhandled, and every
 * job the workers ran, they ran to its end. Programs wait at random for a job to be running, so
 * that close() often meets active jobs (counted in the tally). `FC_SEED` and `FC_RUNS` change the seed and the number
 * of programs.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { startWorkers, useBullMQ } from '../../src/adapters/bullmq.js';
import { Background, defineTask, shutdown } from '../../src/index.js';
import { captureLogger, freshApp, watchProcessErrors } from '../helpers.js';
import { startProxy, type ProxyMode } from './proxy.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

const seed = Number(process.env.FC_SEED ?? 20261206);
const runs = Number(process.env.FC_RUNS ?? 8);

/** Jobs started and ended, by label, in this process's workers. */
const started = new Map<string, number>();
const ended = new Map<string, number>();
/** Called as each job starts: how a `busy` step learns of it without polling. */
const onStart = new Set<() => void>();
const job = defineTask({ name: 'model-job' }, async (label: string, ms: number) => {
  started.set(label, (started.get(label) ?? 0) + 1);
  for (const notify of onStart) notify();
  await new Promise((resolve) => setTimeout(resolve, ms));
  ended.set(label, (ended.get(label) ?? 0) + 1);
});

type Step =
  | { readonly kind: 'add'; readonly count: number; readonly ms: number }
  | { readonly kind: 'mode'; readonly mode: ProxyMode }
  | { readonly kind: 'cut' }
  | { readonly kind: 'wait'; readonly ms: number }
  /** Waits (300 ms at most) until a job added so far is running: close() then often meets active jobs. */
  | { readonly kind: 'busy' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('add' as const), count: fc.integer({ min: 1, max: 5 }), ms: fc.integer({ min: 0, max: 60 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('mode' as const), mode: fc.constantFrom<ProxyMode>('pass', 'dropRequests', 'dropReplies', 'refuse') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 120 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('busy' as const) }) },
);
const programs = fc.record({
  steps: fc.array(step, { minLength: 3, maxLength: 12 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  timeoutMs: fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined }),
});

describe.skipIf(!hasRedis)('durable workers closed under random connection faults', () => {
  const redis = redisForSuite();
  const tally = { programs: 0, added: 0, started: 0, activeAtClose: 0, closedUnderFault: 0 };

  async function run({ steps, concurrency, timeoutMs }: { steps: Step[]; concurrency: number; timeoutMs: number | undefined }): Promise<void> {
    tally.programs++;
    const queueName = `workers-model-${randomUUID()}`;
    const proxy = await startProxy(redis.port);
    const producer = freshApp({ logger: captureLogger() });
    const backend = useBullMQ(producer, { connection: redis.connection, queueName, logger: captureLogger() });
    const bg = producer.resolve(Background).with({ durable: true });
    const logger = captureLogger();
    const workers = startWorkers({
      container: freshApp({ logger }),
      tasks: [job],
      connection: { ...proxy.connection, retryStrategy: () => 20 },
      queueName,
      concurrency,
      logger,
    });
    const labels: string[] = [];
    try {
      await workers.worker.waitUntilReady();
      let longest = 0;
      for (const action of steps) {
        if (action.kind === 'add') {
          for (let i = 0; i < action.count; i++) {
            const label = randomUUID();
            labels.push(label);
            bg.add(job, label, action.ms);
          }
          longest = Math.max(longest, action.ms);
          tally.added += action.count;
        } else if (action.kind === 'mode') {
          proxy.mode = action.mode;
        } else if (action.kind === 'cut') {
          proxy.cut();
        } else if (action.kind === 'busy') {
          const running = (): boolean => labels.some((label) => (started.get(label) ?? 0) > (ended.get(label) ?? 0));
          let notify = (): void => undefined;
          let timer: NodeJS.Timeout | undefined;
          if (!running()) {
            await new Promise<void>((resolve) => {
              notify = () => running() && resolve();
              onStart.add(notify);
              timer = setTimeout(resolve, 300); // no job may start under the fault
            });
          }
          onStart.delete(notify);
          clearTimeout(timer);
        } else {
          await new Promise((resolve) => setTimeout(resolve, action.ms));
        }
      }
      if (proxy.mode !== 'pass') tally.closedUnderFault++;
      tally.activeAtClose += labels.filter((label) => (started.get(label) ?? 0) > (ended.get(label) ?? 0)).length;
      // The jobs' own time (without timeoutMs, close() waits for them), the connections' second
      // and their drop's second, and room for a busy machine.
      const bound = (timeoutMs ?? longest) + 1_000 + 1_000 + 3_000;
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        workers.close(timeoutMs === undefined ? {} : { timeoutMs }).then(() => 'closed'),
        new Promise((resolve) => (timer = setTimeout(resolve, bound, `still closing after ${bound} ms`))),
      ]);
      clearTimeout(timer);
      expect(outcome).toBe('closed');
      await vi.waitFor(() => expect(proxy.connections).toBe(0), { timeout: 3_000, interval: 20 });
      // Without a deadline, close() waited for every job it had started to end.
      if (timeoutMs === undefined) for (const label of labels) expect(ended.get(label) ?? 0).toBe(started.get(label) ?? 0);
      tally.started += labels.filter((label) => started.has(label)).length;
    } finally {
      proxy.mode = 'pass';
      // Bounded too: a close() that hung above must fail the program, not hold the suite.
      await Promise.race([workers.close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 3_000).unref())]);
      await backend.close();
      await shutdown({ container: producer });
      await proxy.close();
      // Jobs given up on at a deadline end by themselves; their late ends are not another program's.
      await vi.waitFor(() => expect(labels.every((label) => (ended.get(label) ?? 0) === (started.get(label) ?? 0))).toBe(true), { timeout: 3_000, interval: 20 });
    }
  }

  it('close() ends within its bound, leaves no connection open and no rejection unhandled', async () => {
    await fc.assert(fc.asyncProperty(programs, run), { seed, numRuns: runs, endOnFailure: true });
    // What the programs covered: a suite that passes by doing nothing shows here.
    console.log(`durable workers model: ${JSON.stringify(tally)}`);
    expect(tally.started).toBeGreaterThan(0);
    expect(tally.closedUnderFault).toBeGreaterThan(0);
  }, 180_000);
});
