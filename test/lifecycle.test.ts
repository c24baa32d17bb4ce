import { container, injectable } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  BackgroundDisposedError,
  defineTask,
  disposeScope,
  TaskAbandonedError,
  TaskContext,
} from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

function setup(options = {}) {
  const logger = captureLogger();
  const scope = freshApp({ logger, ...options }).createChildContainer();
  return { scope, bg: scope.resolve(Background), logger };
}

/** A task that waits for its signal and reports why it was aborted. */
const waitForAbort = defineTask({ name: 'waitForAbort', inject: [TaskContext] }, async (ctx) => {
  return await new Promise<never>((_resolve, reject) => {
    ctx.signal.addEventListener('abort', () => {
      reject(ctx.signal.reason as Error);
    });
  });
});

describe('drain()', () => {
  it('resolves at once when nothing is queued or running', async () => {
    const { bg } = setup();
    await expect(bg.drain()).resolves.toBeUndefined();
  });

  it('waits for tasks added by tasks while draining', async () => {
    const { bg } = setup();
    const done: string[] = [];
    const gate = deferred();
    bg.add(async () => {
      await gate.promise;
      bg.add(async () => {
        await nextTurn();
        bg.add(() => {
          done.push('grandchild');
        });
        done.push('child');
      });
      done.push('parent');
    });
    let drained = false;
    const draining = bg.drain().then(() => (drained = true));
    await nextTurn();
    expect(drained).toBe(false);
    gate.resolve();
    await draining;
    expect(done).toEqual(['parent', 'child', 'grandchild']);
    expect(bg.pending).toBe(0);
  });

  it('does not stop intake', async () => {
    const { bg } = setup();
    await bg.drain();
    await expect(bg.add(async () => 'later').result()).resolves.toBe('later');
  });
});

describe('dispose()', () => {
  it('stops intake at once, then waits for queued and running tasks', async () => {
    const { bg } = setup({ concurrency: 1 });
    const gate = deferred();
    const order: string[] = [];
    bg.add(async () => {
      await gate.promise;
      order.push('running one');
    });
    bg.add(async () => {
      order.push('queued one');
    });
    const disposal = bg.dispose();
    expect(() => bg.add(async () => 0)).toThrow(BackgroundDisposedError);
    expect(() => bg.add(async function late() {})).toThrow(/Cannot add task "late": this Background is being disposed/);
    let finished = false;
    void disposal.then(() => (finished = true));
    await nextTurn();
    expect(finished).toBe(false);
    gate.resolve();
    await disposal;
    expect(order).toEqual(['running one', 'queued one']);
    expect(() => bg.add(async () => 0)).toThrow(/this Background is disposed/);
  });

  it('is idempotent: every call, through either door, returns the same promise', async () => {
    const { bg } = setup();
    const first = bg.dispose();
    expect(bg.dispose()).toBe(first);
    expect(bg[Symbol.asyncDispose]()).toBe(first);
    await first;
  });

  it('after the deadline aborts what is left, logs it as abandoned, and resolves', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { bg, logger } = setup({ drainTimeoutMs: 1_000, concurrency: 1 });
    const running = bg.add(waitForAbort);
    const queued = bg.add(async function neverStarts() {});
    await nextTurn();
    expect(running.status).toBe('running');
    let resolved = false;
    const disposal = bg.dispose().then(() => (resolved = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(resolved).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await disposal;
    expect(running.status).toBe('abandoned');
    expect(queued.status).toBe('abandoned');
    await expect(running.result()).rejects.toThrow(TaskAbandonedError);
    await expect(queued.result()).rejects.toThrow(/"neverStarts" \(#\d+\) was abandoned.*1000 ms/);
    const errors = logger.at('error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/2 task\(s\) unfinished after the drain deadline of 1000 ms \(1 running, 1 queued, 0 delayed or retrying\)/);
    expect(errors[0]!.fields).toMatchObject({
      abandoned: 2,
      tasks: [`waitForAbort#${running.id}`, `neverStarts#${queued.id}`].reverse(),
    });
    expect(logger.at('warn')).toHaveLength(0);
  });

  it('frees the concurrency slot of an abandoned task that never settles', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const app = freshApp({ concurrency: 1, drainTimeoutMs: 10, logger: captureLogger() });
    const stuck = app.createChildContainer().resolve(Background);
    stuck.add(() => new Promise<never>(() => undefined));
    await nextTurn();
    const disposal = stuck.dispose();
    await vi.advanceTimersByTimeAsync(10);
    await disposal;
    const other = app.createChildContainer().resolve(Background);
    await expect(other.add(async () => 'got the slot').result()).resolves.toBe('got the slot');
  });

  it('never rejects, even when tasks fail while draining', async () => {
    const { bg, logger } = setup();
    bg.add(async () => {
      await nextTurn();
      throw new Error('fails during drain');
    });
    await expect(bg.dispose()).resolves.toBeUndefined();
    expect(logger.at('error')).toHaveLength(1);
  });

  it('runs on `await using`, draining the scope when the block ends', async () => {
    const app = freshApp({ logger: captureLogger() });
    const done: number[] = [];
    {
      await using bg = app.createChildContainer().resolve(Background);
      for (let i = 0; i < 3; i++) {
        bg.add(async () => {
          await nextTurn();
          done.push(i);
        });
      }
    }
    expect(done).toEqual([0, 1, 2]);
  });

  it("runs on tsyringe's container.dispose()", async () => {
    const { scope, bg } = setup();
    const gate = deferred();
    let finished = false;
    bg.add(async () => {
      await gate.promise;
      finished = true;
    });
    const disposal = scope.dispose();
    expect(() => bg.add(async () => 0)).toThrow(BackgroundDisposedError);
    gate.resolve();
    await disposal;
    expect(finished).toBe(true);
  });
});

describe('disposeScope()', () => {
  @injectable()
  class Session {
    closed = false;
    dispose(): void {
      this.closed = true;
    }
  }

  it("drains the scope's Background before tsyringe disposes the scope's other instances", async () => {
    const scope = freshApp({ logger: captureLogger() }).createChildContainer();
    scope.register(Session, Session);
    const session = scope.resolve(Session);
    const bg = scope.resolve(Background);
    const gate = deferred();
    let sessionClosedDuringTask: boolean | undefined;
    bg.add(async () => {
      await gate.promise;
      sessionClosedDuringTask = session.closed;
    });
    const disposal = disposeScope(scope);
    await nextTurn();
    gate.resolve();
    await disposal;
    expect(sessionClosedDuringTask).toBe(false);
    expect(session.closed).toBe(true);
    expect(() => scope.resolve(Session)).toThrow(/disposed/);
  });

  it('disposes each instance once, even on a scope tsyringe has already disposed', async () => {
    const scope = freshApp({ logger: captureLogger() }).createChildContainer();
    let disposals = 0;
    @injectable()
    class Counted {
      dispose(): void {
        disposals++;
      }
    }
    scope.register(Counted, Counted);
    scope.resolve(Counted);
    scope.resolve(Background);
    await scope.dispose();
    await disposeScope(scope);
    expect(disposals).toBe(1);
  });

  it("disposes the scope's other instances as tsyringe would, without running tsyringe's dispose(): marked disposed, each other instance once, in parallel", async () => {
    const root = freshApp({ logger: captureLogger() });
    const alone = root.createChildContainer();
    const task = alone.resolve(Background).add(async () => 'drained');
    const aloneDispose = vi.spyOn(alone, 'dispose');
    await disposeScope(alone);
    expect(task.status).toBe('succeeded');
    expect(aloneDispose).not.toHaveBeenCalled();
    expect(() => alone.resolve(Background)).toThrow(/disposed/);

    const empty = root.createChildContainer();
    const emptyDispose = vi.spyOn(empty, 'dispose');
    await disposeScope(empty);
    expect(emptyDispose).not.toHaveBeenCalled();
    expect(() => empty.resolve(Session)).toThrow(/disposed/);

    // Two sessions whose disposals wait on gates: both have begun before either ends.
    const gates = [deferred(), deferred()];
    const begun: number[] = [];
    class Gated {
      static made = 0;
      readonly n = Gated.made++;
      dispose(): Promise<void> {
        begun.push(this.n);
        return gates[this.n]!.promise;
      }
    }
    const withSessions = root.createChildContainer();
    withSessions.register('a', { useClass: Gated });
    withSessions.register('b', { useClass: Gated });
    withSessions.resolve('a');
    withSessions.resolve('b');
    const bg = withSessions.resolve(Background);
    const bgDispose = vi.spyOn(bg, 'dispose');
    const sessionsDispose = vi.spyOn(withSessions, 'dispose');
    let ended = false;
    const disposal = disposeScope(withSessions).then(() => (ended = true));
    await vi.waitFor(() => expect(begun).toEqual([0, 1]));
    gates[0]!.resolve();
    await nextTurn();
    expect(ended).toBe(false);
    gates[1]!.resolve();
    await disposal;
    expect(sessionsDispose).not.toHaveBeenCalled();
    expect(bgDispose).toHaveBeenCalledTimes(1);
    expect(() => withSessions.resolve(Session)).toThrow(/disposed/);
  });

  it.each([
    ['throws', () => { throw new Error('session lost'); }],
    ['rejects', () => Promise.reject(new Error('session lost'))],
  ])("rejects (never throws) when an instance's dispose() %s, with or without a Background", async (_how, dispose) => {
    for (const withBackground of [false, true]) {
      const scope = freshApp({ logger: captureLogger() }).createChildContainer();
      scope.register('failing', {
        useClass: class Failing {
          dispose = dispose;
        },
      });
      scope.resolve('failing');
      if (withBackground) scope.resolve(Background);
      let disposal: Promise<void> | undefined;
      expect(() => (disposal = disposeScope(scope))).not.toThrow();
      await expect(disposal).rejects.toThrow('session lost');
    }
  });

  it('disposes a scope that never resolved a Background', async () => {
    const scope = container.createChildContainer();
    scope.register(Session, Session);
    const session = scope.resolve(Session);
    await disposeScope(scope);
    expect(session.closed).toBe(true);
  });
});
