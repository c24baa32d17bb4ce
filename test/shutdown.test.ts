import { afterEach, describe, expect, it, vi } from 'vitest';
import { Lifecycle, type DependencyContainer } from 'tsyringe';
import { Background, BackgroundDisposedError, BackgroundOptions, defineTask, disposeScope, shutdown, TaskAbandonedError, TaskContext } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

const stubborn = defineTask({ name: 'stubborn', inject: [TaskContext] }, async (ctx) => {
  await new Promise<void>((_resolve, reject) => {
    ctx.signal.addEventListener('abort', () => {
      reject(ctx.signal.reason as Error);
    });
  });
});


/**
 * Starts the close of `app` (a deadline of 5 s, which no test reaches) and lets two turns pass:
 * what it waits for has had its chance to end. `closed()` says whether it has resolved.
 */
async function closeStarted(app: DependencyContainer): Promise<{ closing: Promise<unknown>; closed: () => boolean }> {
  let closed = false;
  const closing = shutdown({ container: app, timeoutMs: 5_000 }).then(() => (closed = true));
  await nextTurn();
  await nextTurn();
  return { closing, closed: () => closed };
}
describe('shutdown()', () => {
  it('drains every scope with work, stops intake everywhere, then resolves with a report', async () => {
    const app = freshApp({ logger: captureLogger() });
    const scopes = [app.createChildContainer(), app.createChildContainer(), app.createChildContainer()];
    const [a, b, idle] = scopes.map((scope) => scope.resolve(Background)) as [Background, Background, Background];
    const gates = [deferred(), deferred()];
    const finished: string[] = [];
    a.add(async () => {
      await gates[0]!.promise;
      finished.push('a');
    });
    b.add(async () => {
      await gates[1]!.promise;
      finished.push('b');
    });
    let closed = false;
    const first = shutdown({ container: app });
    expect(shutdown({ container: scopes[0]! })).toBe(first);
    const closing = first.then((report) => {
      closed = true;
      return report;
    });
    for (const bg of [a, b, idle, app.resolve(Background), app.createChildContainer().resolve(Background)]) {
      expect(() => bg.add(async () => 0)).toThrow(BackgroundDisposedError);
    }
    gates[0]!.resolve();
    await nextTurn();
    expect(closed).toBe(false);
    gates[1]!.resolve();
    const report = await closing;
    expect(finished).toEqual(['a', 'b']);
    expect(report.abandoned).toBe(0);
  });

  it('gives every scope one deadline, then abandons and logs what is left in each', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const logger = captureLogger();
    const app = freshApp({ logger, drainTimeoutMs: 60_000 });
    const handles = [1, 2, 3].map(() => app.createChildContainer().resolve(Background).add(stubborn));
    const quick = app.createChildContainer().resolve(Background);
    const quickHandle = quick.add(async () => 'quick');
    await nextTurn();
    let report: { abandoned: number } | undefined;
    const closing = shutdown({ container: app, timeoutMs: 500 }).then((r) => (report = r));
    await vi.advanceTimersByTimeAsync(499);
    expect(report).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect(report!.abandoned).toBe(3);
    for (const handle of handles) {
      expect(handle.status).toBe('abandoned');
      await expect(handle.result()).rejects.toThrow(TaskAbandonedError);
    }
    await expect(quickHandle.result()).resolves.toBe('quick');
    expect(logger.at('error')).toHaveLength(3);
    expect(logger.at('error')[0]!.message).toMatch(/after the drain deadline of 500 ms/);
  });

  it("is what disposing the application root's container does", async () => {
    const app = freshApp({ logger: captureLogger() });
    app.resolve(Background);
    const scope = app.createChildContainer().resolve(Background);
    const gate = deferred();
    let finished = false;
    scope.add(async () => {
      await gate.promise;
      finished = true;
    });
    const disposal = app.dispose();
    expect(() => scope.add(async () => 0)).toThrow(BackgroundDisposedError);
    gate.resolve();
    await disposal;
    expect(finished).toBe(true);
  });

  it('rejects a bad deadline with a RangeError naming it', () => {
    expect(() => shutdown({ container: freshApp(), timeoutMs: -1 })).toThrow(RangeError);
    expect(() => shutdown({ container: freshApp(), timeoutMs: -1 })).toThrow(/options.timeoutMs must be an integer from 0 to 2147483647, got -1 \(number\)/);
  });

  it("defaults its deadline to the application root's drainTimeoutMs, and says the application closed", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const logger = captureLogger();
    const app = freshApp({ logger, drainTimeoutMs: 300 });
    const child = app.createChildContainer();
    child.register(BackgroundOptions, { useValue: { drainTimeoutMs: 60_000 } });
    const handle = child.resolve(Background).add(stubborn);
    await nextTurn();
    let done = false;
    const closing = shutdown({ container: child }).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(299);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect(handle.status).toBe('abandoned');
    expect(logger.at('error')[0]!.message).toMatch(/^application closed with 1 task\(s\) unfinished after the drain deadline of 300 ms/);
    expect(() => child.resolve(Background).add(async () => 0)).toThrow(/this Background is disposed/);
  });
});

describe('what closes with the application (the closeWith door durable workers use)', () => {
  const closeWith = Symbol.for('tsyringe-background.closeWith');
  type Participant = (timeoutMs: number) => Promise<{ unfinished?: number; requeued?: number } | void>;
  const door = (bg: Background): ((participant: Participant) => () => void) =>
    (bg as unknown as Record<symbol, (participant: Participant) => () => void>)[closeWith]!.bind(bg);

  it('is called as the close begins, with its deadline, and the close waits for it; one taken off is not called', async () => {
    const app = freshApp({ logger: captureLogger() });
    const bg = app.resolve(Background);
    const gate = deferred();
    const calls: number[] = [];
    door(bg)(async (timeoutMs) => {
      calls.push(timeoutMs);
      await gate.promise;
    });
    const leave = door(bg)(async () => void calls.push(-1));
    leave();
    let closed = false;
    const closing = shutdown({ container: app, timeoutMs: 1_234 }).then(() => (closed = true));
    expect(calls).toEqual([1_234]);
    await nextTurn();
    expect(closed).toBe(false);
    gate.resolve();
    await closing;
    expect(calls).toEqual([1_234]);
  });

  it("what they could not finish is added to the report's abandoned, and the runs of durable jobs they put back to its requeued", async () => {
    const app = freshApp({ logger: captureLogger() });
    const bg = app.resolve(Background);
    door(bg)(async () => ({ unfinished: 2 }));
    door(bg)(async () => ({ requeued: 1 }));
    door(bg)(async () => undefined);
    door(bg)(async () => ({ unfinished: 1, requeued: 3 }));
    await expect(shutdown({ container: app, timeoutMs: 1_000 })).resolves.toMatchObject({ abandoned: 3, requeued: 4 });
  });

  it('a failing one is logged and the close still resolves with its report; one joined after the close began is called at once with what is left', async () => {
    const logger = captureLogger();
    const app = freshApp({ logger });
    const bg = app.resolve(Background);
    door(bg)(() => Promise.reject(new Error('closing it broke')));
    door(bg)(() => {
      throw new Error('it threw');
    });
    const closing = shutdown({ container: app, timeoutMs: 5_000 });
    const late: number[] = [];
    door(bg)(async (timeoutMs) => void late.push(timeoutMs));
    expect(late).toHaveLength(1);
    expect(late[0]).toBeGreaterThan(4_000);
    expect(late[0]).toBeLessThanOrEqual(5_000);
    await expect(closing).resolves.toMatchObject({ abandoned: 0 });
    expect(logger.at('error').map((entry) => [entry.message, (entry.fields.err as Error).message])).toEqual([
      ['closing what closes with the application failed', 'it threw'],
      ['closing what closes with the application failed', 'closing it broke'],
    ]);
  });
});

describe("scopes' disposals going on at the close", () => {
  class Session {
    static gate = deferred();
    static disposed = 0;
    async dispose(): Promise<void> {
      await Session.gate.promise;
      Session.disposed++;
    }
  }

  /** An application with a scope holding a Session (disposed with it, through Session.gate). */
  function sessionScope({ background = true } = {}) {
    const logger = captureLogger();
    const app = freshApp({ logger });
    if (background) app.resolve(Background);
    const scope = app.createChildContainer();
    scope.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
    scope.resolve(Session);
    return { app, scope, logger };
  }

  it.each([
    ['with a task', true],
    ['in an application where no Background was ever resolved (a server that has served only requests with no task)', false],
  ] as const)("waits, within its deadline, for a scope's other instances being disposed (disposeScope() of a request's scope with a session), %s", async (_, background) => {
    Session.gate = deferred();
    Session.disposed = 0;
    const { app, scope } = sessionScope({ background });
    if (background) scope.resolve(Background).add(async () => undefined);
    const disposal = disposeScope(scope);
    const { closing, closed } = await closeStarted(app);
    expect(closed()).toBe(false);
    Session.gate.resolve();
    await closing;
    expect(Session.disposed).toBe(1);
    await disposal;
  });

  it("waits for every instance's disposal: one rejecting early, or throwing at once, does not end the wait for the others; the disposal rejects with the first error once all are done", async () => {
    for (const failing of ['rejects', 'throws'] as const) {
      const gate = deferred();
      let slowDone = false;
      class Failing {
        dispose(): Promise<void> | void {
          if (failing === 'throws') throw new Error('dispose threw');
          return Promise.reject(new Error('dispose rejected'));
        }
      }
      class Slow {
        async dispose(): Promise<void> {
          await gate.promise;
          slowDone = true;
        }
      }
      const app = freshApp({ logger: captureLogger() });
      app.resolve(Background);
      const scope = app.createChildContainer();
      for (const kind of [Failing, Slow]) scope.register(kind, { useClass: kind }, { lifecycle: Lifecycle.ContainerScoped });
      scope.resolve(Failing);
      scope.resolve(Slow);
      const disposal = disposeScope(scope);
      let disposalSettled = false;
      void disposal.catch(() => undefined).finally(() => (disposalSettled = true));
      const { closing, closed } = await closeStarted(app);
      expect({ failing, closed: closed(), disposalSettled }).toEqual({ failing, closed: false, disposalSettled: false });
      gate.resolve();
      await closing;
      expect(slowDone).toBe(true);
      await expect(disposal).rejects.toThrow(failing === 'throws' ? 'dispose threw' : 'dispose rejected');
    }
  });

  /** A scope of `app` holding a session of its own kind, whose dispose() waits for `gate`; `done` lists the sessions disposed. */
  function gatedScope(parent: ReturnType<typeof freshApp>, label: string, gate: Promise<unknown>, done: string[]) {
    class GatedSession {
      async dispose(): Promise<void> {
        await gate;
        done.push(label);
      }
    }
    const scope = parent.createChildContainer();
    scope.register(GatedSession, { useClass: GatedSession }, { lifecycle: Lifecycle.ContainerScoped });
    scope.resolve(GatedSession);
    return scope;
  }

  it('waits also for a scope disposed while it waits for another (a handler ending during the close), until none is left', async () => {
    const app = freshApp({ logger: captureLogger() });
    const [gateA, gateB] = [deferred(), deferred()];
    const done: string[] = [];
    const a = gatedScope(app, 'A', gateA.promise, done);
    const b = gatedScope(app, 'B', gateB.promise, done);
    const disposals = [disposeScope(a)];
    const { closing, closed } = await closeStarted(app);
    disposals.push(disposeScope(b));
    gateA.resolve();
    await disposals[0];
    await nextTurn();
    expect({ done, closed: closed() }).toEqual({ done: ['A'], closed: false });
    gateB.resolve();
    await closing;
    expect(done).toEqual(['A', 'B']);
    await Promise.all(disposals);
  });

  it("waits for a nested scope's disposal after its parent's (a request gone, its handler's own scope disposed after)", async () => {
    const app = freshApp({ logger: captureLogger() });
    const gate = deferred();
    const done: string[] = [];
    const request = app.createChildContainer();
    const nested = gatedScope(request, 'nested', gate.promise, done);
    await disposeScope(request);
    const disposal = disposeScope(nested);
    const { closing, closed } = await closeStarted(app);
    expect(closed()).toBe(false);
    gate.resolve();
    await closing;
    expect(done).toEqual(['nested']);
    await disposal;
  });

  it("a scope whose tasks the close abandons at its deadline disposes its other instances then: one still at it is logged at warn", async () => {
    Session.gate = deferred();
    const { app, scope, logger } = sessionScope();
    scope.resolve(Background).add(() => new Promise(() => undefined));
    const disposal = disposeScope(scope);
    await shutdown({ container: app, timeoutMs: 50 });
    expect(logger.at('warn').map((entry) => entry.message)).toEqual([expect.stringMatching(/^application closing with 1 scope disposal\(s\) still going on at its deadline/)]);
    Session.gate.resolve();
    await disposal;
  });

  it('one still going on at the deadline is logged at warn, and the close resolves', async () => {
    Session.gate = deferred();
    const { app, scope, logger } = sessionScope();
    const disposal = disposeScope(scope);
    await expect(shutdown({ container: app, timeoutMs: 50 })).resolves.toMatchObject({ abandoned: 0 });
    expect(logger.at('warn').map((entry) => entry.message)).toEqual([
      'application closing with 1 scope disposal(s) still going on at its deadline (a dispose() of a scope\'s instance that had not finished): a process that exits now cuts them short',
    ]);
    Session.gate.resolve();
    await disposal;
  });
});
