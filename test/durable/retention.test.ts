/**
 * What a durable handle keeps while its job waits or runs: nothing of the `result({ timeoutMs })`
 * waits that expired (an outside probe: 80 000 polls of a delayed job's handle held 100 MB until
 * the job ended), against a real redis-server on 127.0.0.1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { defineTask } from '../../src/index.js';
import { collectGarbage, expiredWait, nextTurn, watchProcessErrors } from '../helpers.js';
import { openQueue } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

const later = defineTask({ name: 'later' }, async () => 'ran');

describe.skipIf(!hasRedis)('durable handles: what they keep', () => {
  const redis = redisForSuite();
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it('a result({ timeoutMs }) wait that expired is let go while the job waits, its error included', async () => {
    const { bg } = openQueue(redis.connection, closers, { prefix: 'retention', tasks: [later], workers: false });
    const handle = bg.with({ durable: true, delayMs: 600_000 }).add(later);
    const refs = [await expiredWait(handle), await expiredWait(handle), await expiredWait(handle)];
    // One that stays waits, and is told how the job ended.
    const waiting = handle.result({ timeoutMs: 60_000 }).catch((error: unknown) => error);
    await nextTurn();
    collectGarbage();
    expect(refs.map((ref) => ref.deref())).toEqual([undefined, undefined, undefined]);
    expect(handle.status).toBe('delayed');
    expect(handle.cancel('done polling')).toBe(true);
    await expect(waiting).resolves.toMatchObject({ code: 'ERR_TASK_CANCELLED' });
  });
});
