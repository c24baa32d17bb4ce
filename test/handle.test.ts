import { describe, expect, it } from 'vitest';
import { Background, defineTask, TaskCancelledError, TaskContext } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

const { unhandled } = watchProcessErrors();

function setup(options = {}) {
  const logger = captureLogger();
  const scope = freshApp({ logger, ...options }).createChildContainer();
  return { bg: scope.resolve(Background), logger };
}

describe('TaskHandle', () => {
  it('has a unique string id (increasing in this process), a name and a status that follows the task', async () => {
    const { bg } = setup();
    const gate = deferred();
    const a = bg.add(async function first() {
      await gate.promise;
    });
    const b = bg.add(async () => 'x');
    expect(a.id).toMatch(/^[1-9]\d*$/);
    expect(Number(b.id)).toBeGreaterThan(Number(a.id));
    expect([a.name, b.name]).toEqual(['first', 'anonymous']);
    expect(a.status).toBe('queued');
    await nextTurn();
    expect(a.status).toBe('running');
    gate.resolve();
    await bg.drain();
    expect(a.status).toBe('succeeded');
  });

  it('cancel() keeps a queued task from ever starting and rejects its result', async () => {
    const { bg, logger } = setup({ concurrency: 1 });
    const gate = deferred();
    const started: string[] = [];
    const blocker = bg.add(async () => {
      started.push('blocker');
      await gate.promise;
    });
    const victim = bg.add(async () => {
      started.push('victim');
    });
    await nextTurn();
    expect(victim.status).toBe('queued');
    expect(victim.cancel('not needed')).toBe(true);
    expect(victim.status).toBe('cancelled');
    expect(victim.cancel()).toBe(false);
    gate.resolve();
    await bg.drain();
    expect(started).toEqual(['blocker']);
    expect(blocker.status).toBe('succeeded');
    const error = await victim.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskCancelledError);
    expect((error as TaskCancelledError).cause).toBe('not needed');
    expect(logger.at('error')).toHaveLength(0);
  });

  it('cancel() of a running task aborts its signal, and it ends cancelled at once', async () => {
    const { bg, logger } = setup();
    const sawAbort = deferred<unknown>();
    const watcher = defineTask({ name: 'watcher', inject: [TaskContext] }, async (ctx) => {
      await new Promise<void>((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => {
          sawAbort.resolve(ctx.signal.reason);
          reject(ctx.signal.reason as Error);
        });
      });
    });
    const handle = bg.add(watcher);
    await nextTurn();
    expect(handle.status).toBe('running');
    expect(handle.cancel('user asked')).toBe(true);
    const reason = await sawAbort.promise;
    expect(reason).toBeInstanceOf(TaskCancelledError);
    expect(handle.status).toBe('cancelled');
    await bg.drain();
    await expect(handle.result()).rejects.toThrow(TaskCancelledError);
    expect(logger.at('error')).toHaveLength(0);
  });

  it('a running task that ignores cancel() still ends cancelled at once, and frees its slot', async () => {
    const { bg } = setup({ concurrency: 1 });
    const gate = deferred();
    const handle = bg.add(async () => {
      await gate.promise;
      return 'done anyway';
    });
    const next = bg.add(async () => 'next');
    await nextTurn();
    expect(handle.status).toBe('running');
    handle.cancel();
    expect(handle.status).toBe('cancelled');
    await expect(next.result()).resolves.toBe('next');
    gate.resolve();
    await expect(handle.result()).rejects.toThrow(TaskCancelledError);
    expect(handle.status).toBe('cancelled');
  });

  it('creates the result promise lazily: ignored failing handles never cause an unhandled rejection', async () => {
    const { bg, logger } = setup();
    bg.add(async () => {
      throw new Error('ignored failure');
    });
    bg.add(() => {
      throw new Error('ignored sync failure');
    });
    await bg.drain();
    await nextTurn();
    expect(logger.at('error')).toHaveLength(2);
    expect(unhandled).toEqual([]);
  });

  it('result() returns the same promise on every call, before and after settling', async () => {
    const { bg } = setup();
    const before = bg.add(async () => 1);
    const early = before.result();
    expect(before.result()).toBe(early);
    await bg.drain();
    const after = bg.add(async () => 2);
    await bg.drain();
    const late = after.result();
    expect(after.result()).toBe(late);
    await expect(late).resolves.toBe(2);
  });
});
