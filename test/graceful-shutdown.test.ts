/**
 * Shutdown under fire: lifecycle races inside one process (disposal during in-flight work,
 * disposal from every door at once, adding after or during disposal, deadlines that expire with
 * work running, tsyringe disposing the scope's other instances alongside), then a real process
 * — the example server — receiving SIGTERM while requests are in flight.
 */
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { injectable, Lifecycle } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  BackgroundDisposedError,
  BackgroundOptions,
  defineTask,
  disposeScope,
  shutdown,
  TaskAbandonedError,
  TaskContext,
  type TaskHandle,
} from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';
import { startScript, stopScripts } from './script.js';

function setup(options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const app = freshApp({ logger, ...options });
  const scope = app.createChildContainer();
  return { app, scope, logger, bg: scope.resolve(Background) };
}

/** Fake clocks for timers and dates; microtasks and setImmediate stay real. */
function fakeTime() {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
}

/** A task that ignores its signal and ends only when `gate` opens (with a value or an error). */
const stubborn = defineTask({ name: 'stubborn' }, async (gate: Promise<string>) => gate);
/** A task that ends as soon as its signal aborts, rejecting with the reason. */
const honours = defineTask({ name: 'honours', inject: [TaskContext] }, async (ctx) => {
  await new Promise<never>((_resolve, reject) => {
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error));
  });
});

watchProcessErrors();
afterEach(() => {
  vi.useRealTimers();
});

/** Whether `promise` has settled, without waiting for it. */
function watch(promise: Promise<unknown>): { readonly settled: boolean } {
  const state = { settled: false };
  void promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

describe('lifecycle races', () => {
  it('disposal during in-flight work waits for running, queued, delayed and retrying tasks, and refuses new ones at every door', async () => {
    fakeTime();
    const { bg, logger } = setup({ concurrency: 1 });
    const gate = deferred<string>();
    const running = bg.add(stubborn, gate.promise);
    const queued = bg.add(async () => 'queued');
    const delayed = bg.with({ delayMs: 500 }).add(async () => 'delayed');
    let attempts = 0;
    const retrying = bg.with({ retries: 1, backoff: { baseMs: 300, jitter: 0 } }).add(async () => {
      if (++attempts === 1) throw new Error('first attempt fails');
      return 'retried';
    });
    await nextTurn();
    expect([running.status, queued.status, delayed.status, retrying.status]).toEqual(['running', 'queued', 'delayed', 'queued']);

    const disposal = watch(bg.dispose());
    const before = bg.stats();
    const doors: [string, () => unknown][] = [
      ['add', () => bg.add(async () => 0)],
      ['a view', () => bg.with({ priority: 'high' }).add(async () => 0)],
      ['a group', () => bg.group().add(async () => 0)],
      ['a periodic task', () => bg.with({ every: 1_000 }).add(async () => 0)],
      ['a delayed task', () => bg.with({ delayMs: 1 }).add(async () => 0)],
    ];
    for (const [door, add] of doors) {
      expect(add, door).toThrow(BackgroundDisposedError);
      expect(add, door).toThrow(/this Background is being disposed and accepts no new tasks: it belonged to scope #\d+, whose disposal began at /);
    }
    expect(bg.stats()).toEqual(before);

    await vi.advanceTimersByTimeAsync(1_000); // the delayed task and the retry come due
    expect(disposal.settled).toBe(false);
    expect(running.status).toBe('running');
    gate.resolve('running');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(disposal.settled).toBe(true);
    await expect(Promise.all([running, queued, delayed, retrying].map((h) => h.result()))).resolves.toEqual(['running', 'queued', 'delayed', 'retried']);
    expect(bg.stats()).toMatchObject({ total: 4, byStatus: { succeeded: 4, failed: 0, abandoned: 0 } });
    expect(logger.at('warn').map((e) => e.message)).toEqual([expect.stringMatching(/failed \(attempt 1 of 2\); retrying in 300 ms$/)]);
    expect(logger.at('error')).toEqual([]);
    expect(() => bg.add(async () => 0)).toThrow(/this Background is disposed and accepts no new tasks: it belonged to scope #\d+, whose disposal began at /);
    try {
      bg.add(async () => 0);
    } catch (error) {
      expect(error).toMatchObject({ code: 'ERR_BACKGROUND_DISPOSED', name: 'BackgroundDisposedError' });
    }
  });

  it('disposal from every door at once, twice: one drain, one outcome per task, nothing logged', async () => {
    const { scope, bg, logger } = setup();
    const gate = deferred<string>();
    const handle = bg.add(stubborn, gate.promise);
    await nextTurn();
    const first = bg.dispose();
    const doors = [first, bg.dispose(), bg[Symbol.asyncDispose](), Promise.resolve(scope.dispose()), disposeScope(scope), bg.dispose()];
    expect(new Set([doors[0], doors[1], doors[2], doors[5]]).size).toBe(1);
    const all = watch(Promise.all(doors));
    await nextTurn();
    expect(all.settled).toBe(false);
    gate.resolve('done');
    await Promise.all(doors);
    expect(handle.status).toBe('succeeded');
    expect(bg.stats()).toMatchObject({ total: 1, byStatus: { succeeded: 1, abandoned: 0 } });
    expect(logger.entries).toEqual([]);
    await expect(bg.dispose()).resolves.toBeUndefined();
  });

  it("a scope's deadline and the application's shutdown racing: each task abandoned once, one report", async () => {
    fakeTime();
    const { app, logger } = setup({ drainTimeoutMs: 60_000, concurrency: 2 });
    const scope = app.createChildContainer();
    scope.register(BackgroundOptions, { useValue: { drainTimeoutMs: 1_000 } });
    const bg = scope.resolve(Background);
    const never = deferred<string>();
    const handles = [bg.add(stubborn, never.promise), bg.add(honours), bg.add(async () => 'queued behind')];
    await nextTurn();
    const disposal = watch(bg.dispose());
    const closing = shutdown({ container: app, timeoutMs: 500 });
    await vi.advanceTimersByTimeAsync(500);
    await expect(closing).resolves.toMatchObject({ abandoned: 3 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(disposal.settled).toBe(true);
    expect(handles.map((h) => h.status)).toEqual(['abandoned', 'abandoned', 'abandoned']);
    for (const handle of handles) await expect(handle.result()).rejects.toThrow(/was abandoned: the application was closed/);
    expect(bg.stats()).toMatchObject({ total: 3, byStatus: { abandoned: 3, failed: 0, succeeded: 0 } });
    expect(logger.at('error')).toHaveLength(1);
    expect(logger.at('error')[0]!.message).toMatch(/^application closed with 3 task\(s\) unfinished after the drain deadline of 500 ms \(2 running, 1 queued/);
    expect(logger.at('warn')).toEqual([]);
  });

  it('a deadline that expires with work running abandons what is left once; late settlements change nothing and slots are freed', async () => {
    fakeTime();
    const { app, bg, logger } = setup({ drainTimeoutMs: 100, concurrency: 2 });
    const late = deferred<string>();
    const lateFailure = deferred<string>();
    const handles = [bg.add(stubborn, late.promise), bg.add(stubborn, lateFailure.promise), bg.add(honours), bg.add(async () => 'never starts')];
    await nextTurn();
    const disposal = bg.dispose();
    await vi.advanceTimersByTimeAsync(100);
    await disposal;
    expect(handles.map((h) => h.status)).toEqual(['abandoned', 'abandoned', 'abandoned', 'abandoned']);
    const abandonment = logger.at('error');
    expect(abandonment).toHaveLength(1);
    expect(abandonment[0]!.fields).toMatchObject({ abandoned: 4, running: 2, queued: 2 });
    // The abandoned tasks now settle, one with a value and one with an error: nothing changes.
    late.resolve('too late');
    lateFailure.reject(new Error('too late to fail'));
    await nextTurn();
    expect(handles.map((h) => h.status)).toEqual(['abandoned', 'abandoned', 'abandoned', 'abandoned']);
    await expect(handles[0]!.result()).rejects.toThrow(TaskAbandonedError);
    expect(logger.entries).toHaveLength(1);
    expect(bg.stats()).toMatchObject({ total: 4, running: 0, queued: 0, byStatus: { abandoned: 4, failed: 0, succeeded: 0 } });
    // Both application-wide slots are free again.
    const next = app.createChildContainer().resolve(Background);
    await expect(Promise.all([next.add(async () => 1).result(), next.add(async () => 2).result()])).resolves.toEqual([1, 2]);
  });

  it('cancelling the last task during the drain ends the disposal at once, with nothing abandoned', async () => {
    fakeTime();
    const { bg, logger } = setup({ drainTimeoutMs: 60_000 });
    const handle = bg.add(stubborn, new Promise<string>(() => undefined));
    await nextTurn();
    const disposal = watch(bg.dispose());
    await nextTurn();
    expect(disposal.settled).toBe(false);
    expect(handle.cancel('shutting down')).toBe(true);
    await nextTurn();
    expect(disposal.settled).toBe(true);
    expect(handle.status).toBe('cancelled');
    expect(logger.at('warn')).toEqual([]);
    expect(logger.at('error')).toEqual([]);
  });

  // Observed and documented: a task that adds to its own scope while that scope is being
  // disposed gets BackgroundDisposedError from add(). Uncaught, it fails the task like any
  // error (logged once, at error, with the BackgroundDisposedError); the drain still ends. A task
  // that expects this can catch it and hand the work elsewhere, to the application's own
  // Background say, which the scope's disposal does not wait for.
  it('a task that adds to its own scope during the drain gets BackgroundDisposedError: uncaught it fails that task; caught it can hand the work on', async () => {
    const { app, bg, logger } = setup();
    const appBg = app.resolve(Background);
    const gate = deferred();
    let handedOn: TaskHandle | undefined;
    const naive = bg.add(async function addsFollowUp() {
      await gate.promise;
      bg.add(async function followUp() {});
    });
    const careful = bg.add(async function handsFollowUpOn() {
      await gate.promise;
      try {
        bg.add(async function followUp() {});
      } catch (error) {
        if (!(error instanceof BackgroundDisposedError)) throw error;
        handedOn = appBg.add(async function followUp() {
          return 'done elsewhere';
        });
      }
    });
    const disposal = bg.dispose();
    gate.resolve();
    await disposal;
    expect(naive.status).toBe('failed');
    expect(careful.status).toBe('succeeded');
    const error = await naive.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackgroundDisposedError);
    expect((error as Error).message).toMatch(/^Cannot add task "followUp": this Background is being disposed and accepts no new tasks: it belonged to scope #\d+, whose disposal began at \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ ms ago\)\. /);
    expect(logger.at('error')).toHaveLength(1);
    expect(logger.at('error')[0]!).toMatchObject({ message: 'task "addsFollowUp" failed', fields: { taskId: naive.id, err: error } });
    expect(bg.stats()).toMatchObject({ total: 2, byStatus: { succeeded: 1, failed: 1 } });
    await expect(handedOn!.result()).resolves.toBe('done elsewhere');
  });

  describe("tsyringe disposing the scope's other instances at the same time", () => {
    @injectable()
    class Session {
      readonly events: string[] = [];
      closed = false;
      async dispose(): Promise<void> {
        this.events.push('session closing');
        await nextTurn();
        this.closed = true;
        this.events.push('session closed');
      }
      query(): string {
        if (this.closed) throw new Error('session is closed');
        this.events.push('task queried');
        return 'row';
      }
    }
    const useSession = defineTask({ name: 'useSession', inject: [Session] }, async (session, gate: Promise<void>) => {
      await gate;
      return session.query();
    });

    function scoped() {
      const { scope, bg, logger } = setup();
      scope.register(Session, Session, { lifecycle: Lifecycle.ContainerScoped }); // the task's and the test's
      const session = scope.resolve(Session);
      const gate = deferred();
      const handle = bg.add(useSession, gate.promise);
      return { scope, bg, logger, session, gate, handle };
    }

    // Observed and documented: container.dispose() disposes the Background and the session in
    // parallel (tsyringe), so a task still running finds its session closed. It resolves only
    // once both are done.
    it('container.dispose(): the session closes under the running task, which fails and is logged; dispose() waits for both', async () => {
      const { scope, logger, session, gate, handle } = scoped();
      const disposal = Promise.resolve(scope.dispose()).then(() => session.events.push('container disposed'));
      await nextTurn();
      await nextTurn();
      gate.resolve();
      await disposal;
      expect(session.events).toEqual(['session closing', 'session closed', 'container disposed']);
      expect(handle.status).toBe('failed');
      await expect(handle.result()).rejects.toThrow('session is closed');
      expect(logger.at('error')).toHaveLength(1);
    });

    it('disposeScope(): the task finishes with its session, which closes after the drain', async () => {
      const { scope, logger, session, gate, handle } = scoped();
      const disposal = disposeScope(scope).then(() => session.events.push('container disposed'));
      await nextTurn();
      await nextTurn();
      expect(session.events).toEqual([]);
      gate.resolve();
      await disposal;
      expect(session.events).toEqual(['task queried', 'session closing', 'session closed', 'container disposed']);
      await expect(handle.result()).resolves.toBe('row');
      expect(logger.entries).toEqual([]);
    });
  });
});

// --- A real process: the example server, SIGTERM under load ---------------------------------

/** The compiled example; `npm test` builds it first. */
const serverJs = fileURLToPath(new URL('../examples/dist/server.js', import.meta.url));
afterEach(() => {
  stopScripts('SIGKILL');
});

interface Outcome {
  status: number | undefined;
  body: string;
  error?: string;
}

/** One POST over a connection of its own (no keep-alive), to 127.0.0.1 only. */
function post(port: number, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ status: res.statusCode, body }));
      res.once('error', (error) => resolve({ status: res.statusCode, body, error: error.message }));
    });
    req.once('error', (error) => resolve({ status: undefined, body: '', error: error.message }));
    req.end();
  });
}

describe('the example server (a child process) receiving SIGTERM under load', () => {
  it('stops taking sign-ups, drains every accepted one and exits 0, accounting for every task', { timeout: 20_000 }, async () => {
    const server = startScript(serverJs, ['--serve']);
    const { child } = server;
    // Once it prints its `try:` line, its signal handlers are installed.
    const port = Number((await server.waitFor(/^listening on http:\/\/127\.0\.0\.1:(\d+)$[\s\S]*^try: /m))[1]);

    // Clients that sign up one user after another until the server stops taking them. After
    // `signalAfter` accepted sign-ups, SIGTERM, sent while every other client has a request in flight.
    const clients = 6;
    const signalAfter = 20;
    const accepted: Outcome[] = [];
    const refused: Outcome[] = [];
    let inFlight = 0;
    let inFlightAtSignal = -1;
    let sent = 0;
    const client = async (): Promise<void> => {
      for (;;) {
        inFlight++;
        const outcome = await post(port, `/signup?email=user${++sent}@example.com`);
        inFlight--;
        if (outcome.status !== 202) {
          refused.push(outcome);
          return;
        }
        accepted.push(outcome);
        if (accepted.length === signalAfter) {
          inFlightAtSignal = inFlight;
          child.kill('SIGTERM');
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    const { stdout, stderr, ...exit } = await server.exited;

    expect(inFlightAtSignal).toBeGreaterThan(0);
    expect(accepted.length).toBeGreaterThanOrEqual(signalAfter);
    // Every client's last request was turned away: 503 from add()'s BackgroundDisposedError, or
    // a closed connection once the server stopped listening; never a 500.
    expect(refused).toHaveLength(clients);
    for (const outcome of refused) {
      if (outcome.status === undefined) expect(outcome.error).toMatch(/ECONNREFUSED|ECONNRESET|socket hang up/);
      else expect(outcome).toMatchObject({ status: 503, body: expect.stringMatching(/^BackgroundDisposedError: /) as unknown });
    }

    // The summary accounts for every accepted sign-up and every task it queued.
    const line = (pattern: RegExp): number[] => {
      const match = pattern.exec(stdout);
      if (match === null) throw new Error(`no line matching ${pattern} in the output:\n${stdout}\n${stderr}`);
      return match.slice(1).map(Number);
    };
    const [requests] = line(/^requests: (\d+)\b/m);
    const [added, ran, abandoned] = line(/^tasks: added (\d+), ran (\d+)\b.*\babandoned (\d+)$/m);
    const [, reportAbandoned, totalAbandoned] = line(/^shutdown: drained in (\d+) ms, abandoned (\d+) \((\d+) since the start, of \d+ tasks\)$/m);
    const queued = accepted.map((outcome) => (JSON.parse(outcome.body) as { queued?: unknown }).queued);
    const taskCount = queued.every(Array.isArray) ? queued.reduce((sum: number, names) => sum + (names as unknown[]).length, 0) : undefined;
    console.log(
      `SIGTERM after ${signalAfter} sign-ups with ${inFlightAtSignal} request(s) in flight: ${accepted.length} accepted, ` +
        `${refused.map((o) => o.status ?? o.error).join(', ')} refused; summary: ${requests} requests, ${added} tasks added, ${ran} ran, ${abandoned} abandoned`,
    );
    expect(requests).toBe(accepted.length);
    if (taskCount !== undefined) expect(added).toBe(taskCount);
    expect(added).toBeGreaterThanOrEqual(accepted.length);
    expect(ran).toBe(added);
    expect(abandoned).toBe(0);
    expect(reportAbandoned).toBe(0);
    expect(totalAbandoned).toBe(0);
    expect(stderr).not.toMatch(/request failed|Unhandled|uncaught|\[(?:warn|error)\] .*abandoned/i);
    expect(exit, `${stdout}\n${stderr}`).toEqual({ code: 0, signal: null });
  });
});
