/**
 * The model-based suite of a durable job's way to Redis: random programs of `add()` calls,
 * cancellations and connection faults (a proxy on 127.0.0.1 in front of a real redis-server drops
 * what clients send, or what Redis answers, refuses connections, or cuts them), with the
 * producer's deadline passing at random moments. Checked against Redis itself, after every step:
 * a handle that failed never has its job in Redis (it said the job would not run); at the end,
 * once Redis is reachable again, every handle has settled with the truth: its job is in Redis
 * exactly when its handle neither failed nor was cancelled. The same programs end a second time
 * with `close()` in whatever state they left the connection: it ends within its bound, no client
 * is left reconnecting, nothing is left unhandled, and what each handle said stays true. `FC_SEED`
 * and `FC_RUNS` (`FC_CLOSE_RUNS` for the second) change the seed and the number of programs.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { useBullMQ, type DurableBackend } from '../../src/adapters/bullmq.js';
import { Background, defineTask, shutdown, type TaskHandle } from '../../src/index.js';
import { captureLogger, freshApp, watchProcessErrors } from '../helpers.js';
import { startProxy, type ProxyMode } from './proxy.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

const seed = Number(process.env.FC_SEED ?? 20261205);
const runs = Number(process.env.FC_RUNS ?? 15);

/** Never run here (no worker): the jobs stay in Redis, where the checks look for them. */
const parked = defineTask({ name: 'parked' }, async (label: string) => label);

type Step =
  | { readonly kind: 'add'; readonly count: number; readonly watched: boolean }
  | { readonly kind: 'cancel'; readonly pick: number }
  | { readonly kind: 'mode'; readonly mode: ProxyMode }
  | { readonly kind: 'cut' }
  | { readonly kind: 'wait'; readonly ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), count: fc.integer({ min: 1, max: 4 }), watched: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('mode' as const), mode: fc.constantFrom<ProxyMode>('pass', 'dropRequests', 'dropReplies', 'refuse') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 250 }) }) },
);
/** A program, and how many reconnections ioredis makes before it gives up on a command (`undefined`: its default, 20). */
const programs = fc.record({ steps: fc.array(step, { minLength: 5, maxLength: 20 }), giveUpAfter: fc.constantFrom<number | undefined>(0, 1, undefined) });

/** What the program did to a handle. */
interface Tracked {
  readonly handle: TaskHandle;
  readonly watched: boolean;
  cancelled: boolean;
  /** Its outcome, for a watched handle: `ok`, or the error's code. */
  outcome?: string;
  /** Its error's message, when it failed. */
  message?: string | undefined;
}

describe.skipIf(!hasRedis)('a durable job on its way to Redis, under random connection faults', () => {
  const redis = redisForSuite();
  let direct: Redis;
  const tally = { closed: 0, programs: 0, steps: 0, added: 0, failed: 0, cancelled: 0, inRedis: 0 };
  beforeAll(() => {
    direct = new Redis({ ...redis.connection, maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await direct.quit();
    // What the programs covered: a suite that passes by doing nothing shows here.
    console.log(`durable enqueue model: ${JSON.stringify(tally)}`);
  });

  async function run({ steps, giveUpAfter }: { steps: Step[]; giveUpAfter: number | undefined }, closeUnderFault = false): Promise<void> {
    const proxy = await startProxy(redis.port);
    const logger = captureLogger();
    const producer = freshApp({ logger });
    const connection = { ...proxy.connection, retryStrategy: () => 20, ...(giveUpAfter === undefined ? {} : { maxRetriesPerRequest: giveUpAfter }) };
    const backend: DurableBackend = useBullMQ(producer, { connection, queueName: `model-${randomUUID()}`, logger, enqueueTimeoutMs: 150 });
    const bg = producer.resolve(Background).with({ durable: true });
    const tracked: Tracked[] = [];
    const inRedis = async (id: string): Promise<boolean> => (await direct.hexists(backend.queue.toKey(id), 'timestamp')) === 1;
    /** A handle that failed said its job would not run: Redis must never have it. */
    const checkFailed = async (): Promise<void> => {
      for (const entry of tracked) {
        if (!entry.watched || entry.cancelled || entry.handle.status !== 'failed') continue;
        expect({ id: entry.handle.id, outcome: entry.outcome, inRedis: await inRedis(entry.handle.id) }).toEqual({ id: entry.handle.id, outcome: 'ERR_DURABLE_ENQUEUE', inRedis: false });
      }
    };
    /**
     * close() in whatever state the program left the connection: it ends within its bound, every
     * watched handle has ended by then, and once Redis is reachable again (checked on a direct
     * connection) what each handle said is true: a job that "will not run" is not in Redis, one
     * that succeeded is, one cancelled is gone unless its removal was said (logged) to be
     * impossible; only a handle failed "in doubt" may go either way.
     */
    const closeAndCheck = async (): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<'hung'>((resolve) => (timer = setTimeout(resolve, 300 + 3_000, 'hung')));
      const ended = await Promise.race([backend.close({ timeoutMs: 300 }).then(() => 'closed' as const), bound]);
      clearTimeout(timer);
      expect(ended).toBe('closed');
      await new Promise((resolve) => setImmediate(resolve));
      proxy.mode = 'pass';
      const unremoved = new Set(logger.at('error').flatMap(({ fields, message }) => (message.includes('was cancelled, but its job could not be removed') ? [fields.taskId as string] : [])));
      for (const entry of tracked) {
        if (entry.watched && !entry.cancelled) expect({ id: entry.handle.id, ended: entry.outcome !== undefined }).toEqual({ id: entry.handle.id, ended: true });
        const present = await inRedis(entry.handle.id);
        const said = entry.cancelled ? 'cancelled' : entry.watched ? entry.outcome : undefined;
        const error = entry.message ?? '';
        if (said === 'ok') expect({ id: entry.handle.id, present }).toEqual({ id: entry.handle.id, present: true });
        if (said === 'cancelled' && !unremoved.has(entry.handle.id)) expect({ id: entry.handle.id, cancelledButPresent: present }).toEqual({ id: entry.handle.id, cancelledButPresent: false });
        if (said === 'ERR_DURABLE_ENQUEUE' && !error.includes('may or may not')) expect({ id: entry.handle.id, present }).toEqual({ id: entry.handle.id, present: false });
      }
      tally.closed++;
    };
    try {
      tally.programs++;
      for (const action of steps) {
        tally.steps++;
        if (action.kind === 'add') {
          for (let i = 0; i < action.count; i++) {
            const entry: Tracked = { handle: bg.add(parked, `job-${tracked.length}`), watched: action.watched, cancelled: false };
            if (action.watched) {
              entry.handle.result().then(
                () => (entry.outcome = 'ok'),
                (error: { code?: string; message?: string }) => {
                  entry.outcome = error.code ?? 'no code';
                  entry.message = error.message;
                },
              );
            }
            tracked.push(entry);
            tally.added++;
          }
        } else if (action.kind === 'cancel' && tracked.length > 0) {
          const entry = tracked[action.pick % tracked.length]!;
          entry.cancelled ||= entry.handle.cancel('the program cancels it');
        } else if (action.kind === 'mode') {
          proxy.mode = action.mode;
        } else if (action.kind === 'cut') {
          proxy.cut();
        } else if (action.kind === 'wait') {
          await new Promise((resolve) => setTimeout(resolve, action.ms));
        }
        await checkFailed();
      }
      if (closeUnderFault) {
        await closeAndCheck();
        return;
      }
      // Redis reachable again, on fresh connections: every handle settles with the truth.
      proxy.mode = 'pass';
      proxy.cut();
      const settled = async (entry: Tracked): Promise<boolean> => {
        const present = await inRedis(entry.handle.id);
        if (entry.cancelled) return !present;
        const failed = entry.handle.status === 'failed';
        return failed ? !present : present;
      };
      await vi.waitFor(
        async () => {
          const open = [];
          for (const entry of tracked) if (!(await settled(entry))) open.push(`${entry.handle.id} ${entry.handle.status}${entry.cancelled ? ' cancelled' : ''}`);
          expect(open).toEqual([]);
        },
        { timeout: 15_000, interval: 50 },
      );
      await checkFailed();
      const failed = tracked.filter((entry) => !entry.cancelled && entry.handle.status === 'failed').length;
      expect(backend.enqueueFailures).toBe(failed);
      tally.failed += failed;
      tally.cancelled += tracked.filter((entry) => entry.cancelled).length;
      tally.inRedis += tracked.length - failed - tracked.filter((entry) => entry.cancelled).length;
    } finally {
      await backend.close();
      await shutdown({ container: producer });
      await proxy.close();
    }
  }

  it('never says "will not run" of a job Redis has, and ends every handle as Redis says', async () => {
    await fc.assert(fc.asyncProperty(programs, (program) => run(program)), { seed, numRuns: runs, endOnFailure: true, ...(process.env.FC_PATH === undefined ? {} : { path: process.env.FC_PATH }) });
    expect(tally.failed).toBeGreaterThan(0);
    expect(tally.inRedis).toBeGreaterThan(0);
  }, 180_000);

  it('closes within its bound under any fault, and what each handle said stays true', async () => {
    await fc.assert(fc.asyncProperty(programs, (program) => run(program, true)), { seed, numRuns: Number(process.env.FC_CLOSE_RUNS ?? runs), endOnFailure: true });
    expect(tally.closed).toBeGreaterThan(0);
  }, 180_000);
});
