/**
 * What a durable handle keeps while its job waits or runs: nothing of the `result({ timeoutMs })`
 * waits that expired (an outside probe: 80 000 polls of a delayed job's handle held 100 MB until
 * the job ended), against a real redis-server on 127.0.0.1.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defineTask } from '../../src/index.js';
import { collectGarbage, expiredWait, nextTurn, watchProcessErrors } from '../helpers.js';
import { openQueue } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

watchProcessErrors();

const later = defineTask({ name: 'later' }, async () => 'ran');

describe.skipIf(!hasRedis)('durable handles and cancellations: what they keep', () => {
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

  it('a task cancelled while its job is on its way to Redis keeps nothing of the context it was cancelled in, once its removal is done', async () => {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const requests = new AsyncLocalStorage<{ id: number; body: string }>();
    const { bg, backend } = openQueue(redis.connection, closers, { prefix: 'retention', tasks: [later], workers: false });
    // The queue's connection up first: the jobs below are handed to it at once, answered later.
    const first = bg.with({ durable: true }).add(later);
    for (let i = 0; i < 100 && (await backend.job(first.id)) === undefined; i++) await nextTurn();
    first.cancel();
    const stores: WeakRef<{ id: number }>[] = [];
    const handles = [first];
    const added = Array.from({ length: 2_000 }, () => bg.with({ durable: true }).add(later));
    handles.push(...added);
    // A turn later the jobs have been handed to BullMQ, not answered yet: each removal waits for its job.
    await nextTurn();
    added.forEach((handle, i) => {
      const store = { id: i, body: 'x'.repeat(1_000) };
      stores.push(new WeakRef(store));
      requests.run(store, () => handle.cancel('the client went away'));
    });
    await Promise.all(handles.map((handle) => handle.result().catch(() => undefined)));
    // Every job removed (or never sent): nothing of them in Redis.
    await vi.waitFor(async () => expect(await backend.queue.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(0), { timeout: 5_000, interval: 20 });
    // Once the cancellations' last steps (each one's record in Redis) have ended, no store is kept.
    await vi.waitFor(
      () => {
        collectGarbage();
        expect(stores.flatMap((ref) => ref.deref()?.id ?? [])).toEqual([]);
      },
      { timeout: 5_000, interval: 50 },
    );
  });

  it("what the backend makes for the first add() that needs it (the event stream a watched handle reads, the publisher of cancellations, the send timer) keeps nothing of that add()'s context", async () => {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const requests = new AsyncLocalStorage<{ id: string; body: string }>();
    const { bg } = openQueue(redis.connection, closers, { prefix: 'retention', tasks: [later] });
    // Made in a function of its own, so that no variable of the test holds the store.
    const inARequest = async (): Promise<{ ran: unknown; ref: WeakRef<object> }> => {
      const store = { id: 'request-1', body: 'x'.repeat(10_000) };
      // (No expect() in the request: the test runner keeps the promises of its assertions.)
      const ran = await requests.run(store, async () => {
        // Watched at once: the producer opens its event stream for it.
        const result = await bg.with({ durable: true }).add(later).result();
        // Cancelled while it waits: the producer makes its publisher of cancellations.
        const waiting = bg.with({ durable: true, delayMs: 600_000 }).add(later);
        while (waiting.status !== 'delayed') await nextTurn();
        waiting.cancel('the client went away');
        await waiting.result().catch(() => undefined);
        return result;
      });
      return { ran, ref: new WeakRef(store) };
    };
    const { ran, ref } = await inARequest();
    expect(ran).toBe('ran');
    // The event stream, the publisher and their timers are still there (handles may be followed again).
    for (let i = 0; i < 20 && ref.deref() !== undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      collectGarbage();
    }
    expect(ref.deref()).toBeUndefined();
  });
});
