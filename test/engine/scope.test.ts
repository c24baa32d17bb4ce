import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Lane } from '../../src/engine/lane.js';
import type { Periodic } from '../../src/engine/periodic.js';
import { Scope, type ScopeHost } from '../../src/engine/scope.js';
import { Call, TaskRun } from '../../src/engine/task-run.js';
import { TaskAbandonedError, TaskCancelledError } from '../../src/model/errors.js';
import { finalStatuses, type TaskStatus } from '../../src/model/handle.js';
import type { BackgroundLogger } from '../../src/model/logger.js';
import { defaultOptions, resolveOptions } from '../../src/model/options.js';
import type { ResolvedTaskOptions } from '../../src/model/task-options.js';
import { captureLogger, deferred, watchProcessErrors, type Deferred } from '../helpers.js';

watchProcessErrors();

/** What the scope reported to its host, in order, with its `pending` and the time at each report. */
interface Report {
  readonly kind: 'busy' | 'idle' | 'added' | 'ended' | 'scheduled' | 'unscheduled';
  readonly name: string;
  readonly run: TaskRun | undefined;
  /** The run's status when it was reported ended. */
  readonly status: TaskStatus | undefined;
  readonly pending: number;
  readonly at: number;
  /** Whether the scope reported was this host's. */
  readonly ownScope: boolean;
}

/** A host that records every report. */
class FakeHost implements ScopeHost {
  readonly reports: Report[] = [];
  scope: Scope | undefined;
  idles = 0;

  busy(scope: Scope): void {
    this.#report('busy', '', undefined, scope);
  }
  idle(scope: Scope): void {
    this.idles++;
    this.#report('idle', '', undefined, scope);
  }
  added(run: TaskRun): void {
    this.#report('added', run.name, run, run.owner);
  }
  ended(run: TaskRun): void {
    this.#report('ended', run.name, run, run.owner);
  }
  scheduled(periodic: Periodic): void {
    this.#report('scheduled', periodic.name, undefined, this.scope);
  }
  unscheduled(periodic: Periodic): void {
    this.#report('unscheduled', periodic.name, undefined, this.scope);
  }

  /** The reports as short strings: `busy`, `added:a`, `ended:a:succeeded`, `idle`… */
  get log(): string[] {
    return this.reports.map((r) => [r.kind, r.kind === 'busy' || r.kind === 'idle' ? undefined : r.name, r.status].filter((s) => s !== undefined).join(':'));
  }

  #report(kind: Report['kind'], name: string, run: TaskRun | undefined, scope: unknown): void {
    this.reports.push({
      kind,
      name,
      run,
      status: kind === 'ended' ? run?.status : undefined,
      pending: this.scope?.pending ?? -1,
      at: Date.now(),
      ownScope: scope === this.scope,
    });
  }
}

const drainTimeoutMs = 100;
/** Every scope made by a test, disposed after it so that the shared deadline timer is left idle. */
const scopes: Scope[] = [];

function setup({ limit = Infinity, logger = captureLogger(), warnBlockingMs = 0 }: { limit?: number; logger?: BackgroundLogger; warnBlockingMs?: number } = {}) {
  const host = new FakeHost();
  const scope = new Scope(resolveOptions({ drainTimeoutMs, logger, warnBlockingMs }), host);
  host.scope = scope;
  scopes.push(scope);
  const lane = new Lane(limit);
  /** Adds a task running `fn`; `dueAt` (epoch ms) delays it; `after` makes it wait for those. */
  const add = (
    name: string,
    fn: () => unknown,
    { dueAt = 0, options = defaultOptions.defaults, after }: { dueAt?: number; options?: ResolvedTaskOptions; after?: TaskRun[] } = {},
  ): TaskRun => {
    const run = new TaskRun({ name, options, dueAt }, new Call(fn, []), scope, lane);
    scope.add(run, after);
    return run;
  };
  /** Adds an async task that ends when its gate is opened: resolved, it succeeds; rejected, it fails. */
  const gated = (name: string, opts: { dueAt?: number; options?: ResolvedTaskOptions } = {}) => {
    const gate = deferred();
    const body = { started: false };
    const run = add(
      name,
      async () => {
        body.started = true;
        await gate.promise;
      },
      opts,
    );
    return { run, gate, body };
  };
  return { scope, host, lane, logger, add, gated };
}

/** Lets microtasks and a few turns of immediates run (sync tasks start from `setImmediate`). */
async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Whether `promise` has settled, after the microtasks queued now have run. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise<void>((resolve) => process.nextTick(resolve));
  return settled;
}

/** The error entries: where a scope's disposal or the application's close logs what it abandoned. */
const errorsOf = (logger: BackgroundLogger) => (logger as ReturnType<typeof captureLogger>).at('error');

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});

afterEach(async () => {
  // Disposal abandons what a test left; past the deadline, the shared deadline timer has fired
  // and holds no entry, so the next test (on a new fake clock) starts from a clean queue.
  for (const scope of scopes.splice(0)) void scope.dispose();
  vi.advanceTimersByTime(10 * drainTimeoutMs);
  await flush();
  const left = vi.getTimerCount();
  vi.useRealTimers();
  expect(left, 'timers left behind').toBe(0);
});

describe('Scope: counting and reporting', () => {
  it('counts pending tasks: up at add(), down as each reaches its outcome, whatever it is', async () => {
    const { scope, gated } = setup();
    expect(scope.pending).toBe(0);
    const a = gated('a');
    const b = gated('b');
    const c = gated('c');
    expect(scope.pending).toBe(3);
    await flush();
    expect([a, b, c].map((t) => t.run.status)).toEqual(['running', 'running', 'running']);
    expect(scope.pending).toBe(3);
    b.gate.resolve();
    await flush();
    expect(scope.pending).toBe(2);
    a.run.cancel();
    expect(scope.pending).toBe(1);
    c.gate.reject(new Error('c failed'));
    await flush();
    expect(scope.pending).toBe(0);
    expect([a, b, c].map((t) => t.run.status)).toEqual(['cancelled', 'succeeded', 'failed']);
  });

  it('reports busy at the first live task, added and ended (with the final status) per task, idle after the last; again for a second burst', async () => {
    const { host, gated } = setup();
    const a = gated('a');
    const b = gated('b');
    expect(host.log).toEqual(['busy', 'added:a', 'added:b']);
    a.gate.resolve();
    await flush();
    expect(host.log).toEqual(['busy', 'added:a', 'added:b', 'ended:a:succeeded']);
    b.gate.reject(new Error('b failed'));
    await flush();
    expect(host.log).toEqual(['busy', 'added:a', 'added:b', 'ended:a:succeeded', 'ended:b:failed', 'idle']);
    const c = gated('c');
    c.run.cancel();
    expect(host.log.slice(6)).toEqual(['busy', 'added:c', 'ended:c:cancelled', 'idle']);
    expect(host.reports.every((r) => r.ownScope)).toBe(true);
    // busy is reported once pending is 1, idle once it is 0; ended before the count goes down.
    expect(host.reports.map((r) => `${r.kind}@${r.pending}`)).toEqual([
      'busy@1', 'added@1', 'added@2', 'ended@2', 'ended@1', 'idle@0', 'busy@1', 'added@1', 'ended@1', 'idle@0',
    ]);
  });

  it('counts tasks added and tasks ended in each final status', async () => {
    const { scope, host, add, gated } = setup();
    const ok = gated('ok');
    const failing = gated('failing');
    const cancelled = gated('cancelled');
    const timingOut = gated('timingOut', { options: { ...defaultOptions.defaults, timeoutMs: 50 } });
    const skipped = add('skipped', async () => undefined, { after: [failing.run] });
    const abandoned = gated('abandoned');
    await flush();
    ok.gate.resolve();
    failing.gate.reject(new Error('failed'));
    cancelled.run.cancel();
    vi.advanceTimersByTime(50);
    await flush();
    expect(scope.counts).toEqual({ total: 6, succeeded: 1, failed: 1, cancelled: 1, timedOut: 1, skipped: 1, abandoned: 0 });
    void scope.dispose();
    vi.advanceTimersByTime(drainTimeoutMs);
    expect(scope.counts).toEqual({ total: 6, succeeded: 1, failed: 1, cancelled: 1, timedOut: 1, skipped: 1, abandoned: 1 });
    expect([ok, failing, cancelled, timingOut, abandoned].map((t) => t.run.status)).toEqual(['succeeded', 'failed', 'cancelled', 'timedOut', 'abandoned']);
    expect(skipped.status).toBe('skipped');
    expect(scope.pending).toBe(0);
    expect(host.log.filter((entry) => entry.startsWith('added'))).toHaveLength(6);
    expect(host.log.filter((entry) => entry.startsWith('ended'))).toHaveLength(6);
  });

  it('live() lists the live tasks newest first and drops each as it ends (middle, head, tail)', async () => {
    const { scope, gated } = setup();
    const names = () => [...scope.live()].map((run) => run.name);
    expect(names()).toEqual([]);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => gated(name));
    expect(names()).toEqual(['d', 'c', 'b', 'a']);
    await flush();
    b!.gate.resolve();
    await flush();
    expect(names()).toEqual(['d', 'c', 'a']);
    d!.run.cancel();
    expect(names()).toEqual(['c', 'a']);
    a!.gate.resolve();
    await flush();
    expect(names()).toEqual(['c']);
    c!.run.cancel();
    expect(names()).toEqual([]);
    gated('e');
    expect(names()).toEqual(['e']);
    // Ended runs are unlinked, so they hold no other task.
    expect([a, b, c, d].map((t) => [t!.run.prevLive, t!.run.nextLive])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
      [undefined, undefined],
      [undefined, undefined],
    ]);
  });
});

describe('Scope: drain()', () => {
  it('resolves at once when idle: in the same turn, with no timer', async () => {
    const { scope, gated } = setup();
    const drained: string[] = [];
    void scope.drain().then(() => drained.push('first'));
    await Promise.resolve();
    expect(drained).toEqual(['first']);
    expect(vi.getTimerCount()).toBe(0);
    // Idle again after a burst: at once again.
    const a = gated('a');
    a.run.cancel();
    void scope.drain().then(() => drained.push('after a burst'));
    await Promise.resolve();
    expect(drained).toEqual(['first', 'after a burst']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('waits for every task, tasks added while draining (by tasks or from outside) included, and keeps intake open', async () => {
    const { scope, add, gated } = setup();
    const gateA = deferred();
    const gateB = deferred();
    let b: TaskRun | undefined;
    const a = add('a', async () => {
      await gateA.promise;
      b = add('b', async () => {
        await gateB.promise;
      });
    });
    const drained: string[] = [];
    const first = scope.drain();
    void first.then(() => drained.push('first'));
    void scope.drain().then(() => drained.push('second'));
    await flush();
    const c = gated('c');
    gateA.resolve();
    await flush();
    expect(a.status).toBe('succeeded');
    expect(b?.status).toBe('running');
    expect(drained).toEqual([]);
    c.gate.resolve();
    await flush();
    expect(drained).toEqual([]);
    expect(scope.state).toBe('open');
    gateB.resolve();
    await flush();
    expect(drained).toEqual(['first', 'second']);
    expect(scope.pending).toBe(0);
    expect(scope.state).toBe('open');
    // Intake is still open: a new task runs, and a new drain waits for it.
    const d = gated('d');
    expect(scope.pending).toBe(1);
    const next = scope.drain();
    expect(next).not.toBe(first);
    expect(await isSettled(next)).toBe(false);
    d.gate.resolve();
    await flush();
    expect(await isSettled(next)).toBe(true);
    expect(scope.state).toBe('open');
  });
});

describe('Scope: close()', () => {
  it("moves 'open' to 'draining' and stops the scope's periodic tasks, leaving running tasks alone", async () => {
    const { scope, host, add, gated } = setup();
    const spawned: TaskRun[] = [];
    const tickFailed = vi.fn();
    const periodic = scope.schedule(
      { name: 'tick', cadence: { every: 1_000 }, overlap: false },
      {
        spawn: (p) => {
          const run = add(p.name, async () => undefined);
          spawned.push(run);
          return run;
        },
        tickFailed,
      },
    );
    expect(host.log).toEqual(['scheduled:tick']);
    vi.advanceTimersByTime(1_000);
    await flush();
    expect(spawned.map((run) => run.status)).toEqual(['succeeded']);
    const work = gated('work');
    await flush();

    scope.close();
    expect(scope.state).toBe('draining');
    expect(periodic.status).toBe('cancelled');
    expect(periodic.nextAt).toBeUndefined();
    await expect(periodic.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect(host.log.filter((entry) => entry.startsWith('unscheduled'))).toEqual(['unscheduled:tick']);
    vi.advanceTimersByTime(5_000);
    expect(spawned).toHaveLength(1);
    expect(work.run.status).toBe('running');
    expect(work.run.signal.aborted).toBe(false);

    scope.close();
    expect(scope.state).toBe('draining');
    expect(host.log.filter((entry) => entry.startsWith('unscheduled'))).toHaveLength(1);
    work.gate.resolve();
    await flush();
    expect(work.run.status).toBe('succeeded');
    expect(tickFailed).not.toHaveBeenCalled();
  });
});

describe('Scope: dispose()', () => {
  it("of an idle scope: 'closed' at once, resolves, no timer, no log; idempotent", async () => {
    const { scope, logger } = setup();
    const disposal = scope.dispose();
    expect(scope.state).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
    expect(await isSettled(disposal)).toBe(true);
    expect(scope.dispose()).toBe(disposal);
    scope.close();
    expect(scope.state).toBe('closed');
    expect((logger as ReturnType<typeof captureLogger>).entries).toEqual([]);
  });

  it('of a busy scope: resolves when the last task ends before the deadline, which then never fires', async () => {
    const { scope, host, logger, lane, gated } = setup({ limit: 1 });
    const a = gated('a');
    const b = gated('b');
    await flush();
    expect([a.run.status, b.run.status]).toEqual(['running', 'queued']);
    const abandon = vi.spyOn(scope, 'abandon');
    const disposal = scope.dispose();
    expect(scope.dispose()).toBe(disposal);
    expect(scope.state).toBe('draining');
    vi.advanceTimersByTime(drainTimeoutMs - 1);
    a.gate.resolve();
    await flush();
    expect(b.run.status).toBe('running');
    expect(await isSettled(disposal)).toBe(false);
    expect(scope.state).toBe('draining');
    b.gate.resolve();
    await flush();
    expect(await isSettled(disposal)).toBe(true);
    expect(scope.state).toBe('closed');
    expect(host.log.slice(-3)).toEqual(['ended:a:succeeded', 'ended:b:succeeded', 'idle']);
    // The deadline was cancelled: past its time, nothing is abandoned, nothing logged, and the
    // shared timer (left to expire rather than re-armed) is gone.
    vi.advanceTimersByTime(10 * drainTimeoutMs);
    expect(abandon).not.toHaveBeenCalled();
    expect(scope.counts.abandoned).toBe(0);
    expect(errorsOf(logger)).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
    expect([lane.running, lane.queued]).toEqual([0, 0]);
  });

  it('of a busy scope past the deadline: abandons every live task, logs them once, and resolves', async () => {
    const { scope, host, logger, lane, gated, add } = setup({ limit: 1 });
    const a = gated('a');
    const b = gated('b');
    const d = add('d', async () => undefined, { after: [a.run] });
    await flush();
    expect([a.run.status, b.run.status, d.status]).toEqual(['running', 'queued', 'delayed']);
    const signal = a.run.signal;
    const results = [a.run, b.run, d].map((run) => run.result());
    const disposal = scope.dispose();
    vi.advanceTimersByTime(drainTimeoutMs - 1);
    expect(scope.state).toBe('draining');
    expect(scope.pending).toBe(3);
    expect(errorsOf(logger)).toEqual([]);

    vi.advanceTimersByTime(1);
    expect([a.run.status, b.run.status, d.status]).toEqual(['abandoned', 'abandoned', 'abandoned']);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(TaskAbandonedError);
    for (const result of results) await expect(result).rejects.toBeInstanceOf(TaskAbandonedError);
    expect(b.body.started).toBe(false);
    expect(scope.pending).toBe(0);
    expect(scope.state).toBe('closed');
    expect(await isSettled(disposal)).toBe(true);
    expect(host.log.at(-1)).toBe('idle');
    expect(host.log.slice(-4, -1).sort()).toEqual(['ended:a:abandoned', 'ended:b:abandoned', 'ended:d:abandoned']);
    expect(scope.counts.abandoned).toBe(3);

    const errors = errorsOf(logger);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.fields).toEqual({
      abandoned: 3,
      running: 1,
      queued: 1,
      delayed: 1,
      drainTimeoutMs,
      tasks: [`d#${d.id}`, `b#${b.run.id}`, `a#${a.run.id}`],
    });
    expect(errors[0]!.message).toBe(
      "scope disposed with 3 task(s) unfinished after the drain deadline of 100 ms (1 running, 1 queued, 1 delayed or retrying); they were aborted and abandoned; work that must outlive its request belongs on the application's Background (inject ApplicationBackground)",
    );

    // A late outcome changes nothing, and the lane's slot was given back.
    a.gate.resolve();
    await flush();
    expect(a.run.status).toBe('abandoned');
    expect(b.body.started).toBe(false);
    expect(scope.counts.abandoned).toBe(3);
    expect(host.log.filter((entry) => entry.startsWith('ended'))).toHaveLength(3);
    expect([lane.running, lane.queued]).toEqual([0, 0]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('counts a task waiting to retry as delayed in the log entry', async () => {
    const { scope, logger, add } = setup();
    const options: ResolvedTaskOptions = { ...defaultOptions.defaults, retries: 1, backoff: { baseMs: 1_000, maxMs: 1_000, factor: 1, jitter: 0 } };
    const retrying = add(
      'retrying',
      async () => {
        throw new Error('first attempt fails');
      },
      { options },
    );
    await flush();
    expect(retrying.status).toBe('retrying');
    void scope.dispose();
    expect(retrying.status).toBe('retrying');
    vi.advanceTimersByTime(drainTimeoutMs);
    expect(retrying.status).toBe('abandoned');
    const sweeps = errorsOf(logger).filter((entry) => entry.message.startsWith('scope disposed'));
    expect(sweeps.map((entry) => entry.fields)).toEqual([
      { abandoned: 1, running: 0, queued: 0, delayed: 1, drainTimeoutMs, tasks: [`retrying#${retrying.id}`] },
    ]);
  });

  it('names at most 20 abandoned tasks in its one log entry, the newest first', async () => {
    const { scope, logger, gated } = setup();
    const tasks = Array.from({ length: 25 }, (_, i) => gated(`t${i}`));
    await flush();
    void scope.dispose();
    vi.advanceTimersByTime(drainTimeoutMs);
    const errors = errorsOf(logger);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.fields).toMatchObject({ abandoned: 25, running: 25, queued: 0, delayed: 0 });
    expect(errors[0]!.fields.tasks).toEqual(
      tasks
        .slice(5)
        .reverse()
        .map((t) => `${t.run.name}#${t.run.id}`),
    );
    expect(scope.counts.abandoned).toBe(25);
  });

  it('abandons at once the delayed tasks due after the deadline and waits for those due before it', async () => {
    const { scope, host, logger, gated } = setup();
    const t0 = Date.now();
    const late = gated('late', { dueAt: t0 + 10_000 });
    const early = gated('early', { dueAt: t0 + 50 });
    const lateResult = late.run.result();
    expect([late.run.status, early.run.status]).toEqual(['delayed', 'delayed']);
    const disposal = scope.dispose();
    expect(late.run.status).toBe('abandoned');
    await expect(lateResult).rejects.toBeInstanceOf(TaskAbandonedError);
    expect(early.run.status).toBe('delayed');
    expect(scope.state).toBe('draining');
    expect(host.log.slice(-1)).toEqual(['ended:late:abandoned']);
    const errors = errorsOf(logger);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.fields).toEqual({ abandoned: 1, running: 0, queued: 0, delayed: 1, drainTimeoutMs, tasks: [`late#${late.run.id}`] });
    expect(errors[0]!.message).toBe(
      "scope disposed with 1 task(s) due after the drain deadline of 100 ms (0 running, 0 queued, 1 delayed or retrying); they were aborted and abandoned; work that must outlive its request belongs on the application's Background (inject ApplicationBackground)",
    );

    vi.advanceTimersByTime(50);
    await flush();
    expect(early.run.status).toBe('running');
    early.gate.resolve();
    await flush();
    expect(early.run.status).toBe('succeeded');
    expect(scope.state).toBe('closed');
    expect(await isSettled(disposal)).toBe(true);
    vi.advanceTimersByTime(10 * drainTimeoutMs);
    expect(errorsOf(logger)).toHaveLength(1);
    expect(early.body.started).toBe(true);
    expect(late.body.started).toBe(false);
  });

  it('a sync task holding its slot at the deadline does not hand it to an older task being abandoned too (issue 11)', async () => {
    const { scope, add, lane } = setup({ limit: 1 });
    const started: string[] = [];
    const older = add('older', async () => void started.push('older'), { dueAt: Date.now() + 1 });
    const holder = add('holder', () => void started.push('holder'));
    // Microtasks only: the sync task takes the slot and waits for its setImmediate turn.
    for (let i = 0; i < 3; i++) await Promise.resolve();
    expect(lane.running).toBe(1);
    void scope.dispose();
    // Past the older task's time (it queues behind the holder) and past the deadline, in one go.
    vi.advanceTimersByTime(drainTimeoutMs);
    expect([older.status, holder.status]).toEqual(['abandoned', 'abandoned']);
    await flush();
    expect(started).toEqual([]);
    expect(lane.running).toBe(0);
  });

  it('abandonDelayedPast keeps a task due exactly at the deadline and abandons one due a millisecond after', () => {
    const { scope, logger, gated } = setup();
    const deadline = Date.now() + 1_000;
    const atDeadline = gated('atDeadline', { dueAt: deadline });
    const after = gated('after', { dueAt: deadline + 1 });
    const running = gated('running');
    expect(scope.abandonDelayedPast(deadline, 1_000, 'application')).toBe(1);
    expect([atDeadline.run.status, after.run.status, running.run.status]).toEqual(['delayed', 'abandoned', 'queued']);
    expect(scope.pending).toBe(2);
    expect(errorsOf(logger)[0]!.message).toBe(
      'application closed with 1 task(s) due after the drain deadline of 1000 ms (0 running, 0 queued, 1 delayed or retrying); they were aborted and abandoned',
    );
    expect(scope.abandonDelayedPast(deadline, 1_000, 'application')).toBe(0);
    expect(errorsOf(logger)).toHaveLength(1);
  });

  it("of a scope with only tasks due after the deadline: abandons them, 'closed' at once, no deadline timer", async () => {
    const { scope, gated } = setup();
    const late = gated('late', { dueAt: Date.now() + 60_000 });
    const disposal = scope.dispose();
    expect(late.run.status).toBe('abandoned');
    expect(scope.state).toBe('closed');
    expect(await isSettled(disposal)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('survives a logger that throws while logging the abandonment', async () => {
    const thrown = new Error('logger down');
    const logger: BackgroundLogger = {
      ...captureLogger(),
      error: () => {
        throw thrown;
      },
    };
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const { scope, gated } = setup({ logger });
      const late = gated('late', { dueAt: Date.now() + 60_000 });
      const running = gated('running');
      await flush();
      let disposal: Promise<void> | undefined;
      expect(() => (disposal = scope.dispose())).not.toThrow();
      expect(late.run.status).toBe('abandoned');
      expect(() => vi.advanceTimersByTime(drainTimeoutMs)).not.toThrow();
      expect(running.run.status).toBe('abandoned');
      await expect(disposal).resolves.toBeUndefined();
      expect(scope.state).toBe('closed');
      expect(consoleError).toHaveBeenCalledTimes(2);
      expect(consoleError).toHaveBeenLastCalledWith(
        '[tsyringe-background] the logger threw while logging:',
        expect.stringContaining('scope disposed with 1 task(s) unfinished after the drain deadline'),
        expect.objectContaining({ abandoned: 1 }),
        thrown,
      );
    } finally {
      consoleError.mockRestore();
    }
  });
});

/*
 * Model-based test: random programs of adds, gate openings, cancellations, drains, disposal,
 * fake time and immediates, with the scope's invariants checked after every step.
 *
 * Only the program cancels, between steps (task bodies, the host and promise callbacks never
 * do): cancels from inside a task's life are the public lifecycle model's (test/lifecycle-
 * model.test.ts). Due times never coincide with the deadline (the clock moves in even steps
 * from an even start, delays are odd, the deadline is even): a task due at the deadline's own
 * millisecond may legitimately start before the sweep in that millisecond, which the invariant
 * "no body starts once the deadline's sweep has begun" cannot tell apart from a sweep that
 * starts what it abandons. Before issue 11's fix (a sweep holds the lanes), delayed tasks with a
 * limited lane made the model fail in a few dozen runs: a sync task holding its slot, abandoned,
 * handed it to an older task the same sweep was about to abandon.
 */

const fcSeed = Number(process.env.FC_SEED ?? 20_250_611);
const fcRuns = Number(process.env.FC_RUNS ?? 200);
/** With FC_SEED, replays the counterexample a failure printed (its `path`). */
const fcPath = process.env.FC_PATH;
/** Even, like every step of the clock: see above. */
const modelStart = 1_000_000;

interface TaskSpec {
  /** Ends when the program opens its gate; otherwise ends by itself after `selfMs`. */
  readonly gated: boolean;
  /** A plain function (started from `setImmediate`), rather than an async one. */
  readonly sync: boolean;
  /** Odd: see above. */
  readonly delay: number | undefined;
  readonly selfMs: number;
  readonly fails: boolean;
}

interface Tracked {
  readonly i: number;
  readonly run: TaskRun;
  readonly spec: TaskSpec;
  readonly gate: Deferred | undefined;
  /** How the gate was opened: with success, or with this error. */
  opened: { ok: true } | { ok: false; error: Error } | undefined;
  /** The error a self-ending task fails with. */
  readonly error: Error;
  /** Each time its body started: the run's status, and whether the deadline's sweep had begun. */
  readonly starts: { status: TaskStatus; afterSweep: boolean }[];
  outcome: { ok: true } | { ok: false; error: unknown } | undefined;
  /** Whether the program's cancel() of it returned true. */
  cancelled: boolean;
}

interface DrainCall {
  readonly pendingAtCall: number;
  readonly idlesAtCall: number;
  settled: { pending: number; idles: number } | undefined;
}

interface World {
  readonly scope: Scope;
  readonly host: FakeHost;
  readonly lane: Lane;
  readonly limit: number;
  readonly logger: ReturnType<typeof captureLogger>;
  readonly tasks: Tracked[];
  readonly drains: DrainCall[];
  disposal: { promise: Promise<void>; at: number; settled: { pending: number; state: string } | undefined } | undefined;
}

type Cmd = fc.AsyncCommand<World, World>;

/** Runs every microtask queued, and those they queue, but no timer and no immediate. */
function microtasks(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve));
}

function newWorld(limit: number): World {
  const logger = captureLogger();
  const host = new FakeHost();
  const scope = new Scope(resolveOptions({ drainTimeoutMs, logger, warnBlockingMs: 0 }), host);
  host.scope = scope;
  return { scope, host, lane: new Lane(limit), limit, logger, tasks: [], drains: [], disposal: undefined };
}

function bodyOf(spec: TaskSpec, gate: Deferred | undefined, error: Error, started: () => void): () => unknown {
  let body: () => unknown;
  if (gate !== undefined) {
    body = () => gate.promise;
  } else if (spec.selfMs === 0) {
    body = () => {
      if (spec.fails) throw error;
      return 'done';
    };
  } else {
    body = () =>
      new Promise((resolve, reject) => {
        setTimeout(() => {
          if (spec.fails) reject(error);
          else resolve('done');
        }, spec.selfMs);
      });
  }
  if (spec.sync) {
    return () => {
      started();
      return body();
    };
  }
  return async () => {
    started();
    return await body();
  };
}

class AddTask implements Cmd {
  constructor(readonly spec: TaskSpec) {}
  check(w: Readonly<World>): boolean {
    return w.disposal === undefined;
  }
  async run(_m: World, w: World): Promise<void> {
    const i = w.tasks.length;
    const gate = this.spec.gated ? deferred() : undefined;
    // A gate opened with an error before its task started is never awaited.
    gate?.promise.catch(() => undefined);
    const starts: Tracked['starts'] = [];
    const holder: { run?: TaskRun } = {};
    const error = new Error(`task ${i} failed`);
    const fn = bodyOf(this.spec, gate, error, () => starts.push({ status: holder.run!.status, afterSweep: sweepBegun(w) }));
    const dueAt = this.spec.delay === undefined ? 0 : Date.now() + this.spec.delay;
    const run = (holder.run = new TaskRun({ name: `t${i}`, options: defaultOptions.defaults, dueAt }, new Call(fn, []), w.scope, w.lane));
    const tracked: Tracked = { i, run, spec: this.spec, gate, opened: undefined, error, starts, outcome: undefined, cancelled: false };
    w.tasks.push(tracked);
    run.result().then(
      () => (tracked.outcome = { ok: true }),
      (e: unknown) => (tracked.outcome = { ok: false, error: e }),
    );
    w.scope.add(run);
    await step(w);
  }
  toString(): string {
    const s = this.spec;
    const ends = s.gated ? 'gated' : `self ${s.selfMs}ms ${s.fails ? 'fails' : 'ok'}`;
    return `add(${s.sync ? 'sync' : 'async'} ${ends}${s.delay === undefined ? '' : ` delay ${s.delay}`})`;
  }
}

class OpenGate implements Cmd {
  constructor(
    readonly index: number,
    readonly ok: boolean,
  ) {}
  check(w: Readonly<World>): boolean {
    return w.tasks.some((t) => t.gate !== undefined && t.opened === undefined);
  }
  async run(_m: World, w: World): Promise<void> {
    const closed = w.tasks.filter((t) => t.gate !== undefined && t.opened === undefined);
    const t = closed[this.index % closed.length]!;
    if (this.ok) {
      t.opened = { ok: true };
      t.gate!.resolve();
    } else {
      const error = new Error(`gate of task ${t.i} failed`);
      t.opened = { ok: false, error };
      t.gate!.reject(error);
    }
    await step(w);
  }
  toString(): string {
    return `open(#${this.index} of the closed gates, ${this.ok ? 'ok' : 'fail'})`;
  }
}

class Cancel implements Cmd {
  constructor(readonly index: number) {}
  check(w: Readonly<World>): boolean {
    return w.tasks.length > 0;
  }
  async run(_m: World, w: World): Promise<void> {
    const t = w.tasks[this.index % w.tasks.length]!;
    const wasLive = !finalStatuses.has(t.run.status);
    const cancelled = t.run.cancel('by the program');
    expect(cancelled, `cancel() of t${t.i} returns whether it was live`).toBe(wasLive);
    if (cancelled) {
      t.cancelled = true;
      expect(t.run.status).toBe('cancelled');
    }
    await step(w);
  }
  toString(): string {
    return `cancel(task #${this.index} mod tasks added)`;
  }
}

class Drain implements Cmd {
  check(): boolean {
    return true;
  }
  async run(_m: World, w: World): Promise<void> {
    const call: DrainCall = { pendingAtCall: w.scope.pending, idlesAtCall: w.host.idles, settled: undefined };
    w.drains.push(call);
    void w.scope.drain().then(() => {
      call.settled = { pending: w.scope.pending, idles: w.host.idles };
    });
    await step(w);
  }
  toString(): string {
    return 'drain()';
  }
}

class Dispose implements Cmd {
  /** Disposal waits for this many tasks to have been added, so that most programs add some. */
  constructor(readonly afterTasks = 0) {}
  check(w: Readonly<World>): boolean {
    return w.tasks.length >= this.afterTasks || w.disposal !== undefined;
  }
  async run(_m: World, w: World): Promise<void> {
    const promise = w.scope.dispose();
    if (w.disposal === undefined) {
      const disposal: NonNullable<World['disposal']> = { promise, at: Date.now(), settled: undefined };
      w.disposal = disposal;
      void promise.then(() => {
        disposal.settled = { pending: w.scope.pending, state: w.scope.state };
      });
      // Delayed tasks due after the deadline are abandoned at once; none is left delayed.
      const deadline = disposal.at + drainTimeoutMs;
      for (const t of w.tasks) if (t.run.status === 'delayed') expect(t.run.dueAt, `t${t.i} delayed past the deadline`).toBeLessThanOrEqual(deadline);
    } else {
      expect(promise, 'dispose() is idempotent').toBe(w.disposal.promise);
    }
    await step(w);
  }
  toString(): string {
    return 'dispose()';
  }
}

class Advance implements Cmd {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  async run(_m: World, w: World): Promise<void> {
    await advance(w, this.ms);
  }
  toString(): string {
    return `advance(${this.ms}ms)`;
  }
}

class Immediates implements Cmd {
  check(): boolean {
    return true;
  }
  async run(_m: World, w: World): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await step(w);
  }
  toString(): string {
    return 'immediates()';
  }
}

/** Whether the deadline has fired and abandoned some task. */
function sweepBegun(w: World): boolean {
  const disposal = w.disposal;
  if (disposal === undefined || Date.now() < disposal.at + drainTimeoutMs) return false;
  return w.host.reports.some((r) => r.kind === 'ended' && r.status === 'abandoned' && r.at === disposal.at + drainTimeoutMs);
}

/** Ends a step: runs the microtasks it queued, then checks every invariant. */
async function step(w: World): Promise<void> {
  await microtasks();
  checkInvariants(w);
}

/** Moves fake time a millisecond at a time, running microtasks after each, checking after each. */
async function advance(w: World, ms: number): Promise<void> {
  for (let i = 0; i < ms; i++) {
    vi.advanceTimersByTime(1);
    await step(w);
  }
}

/** Fails with `message` unless `condition` holds (cheaper than `expect`, which runs per step). */
function ok(condition: boolean, message: () => string): void {
  if (!condition) throw new Error(message());
}

const show = (value: unknown): string => JSON.stringify(value);
const namesOf = (runs: Iterable<TaskRun>): string => [...runs].map((run) => run.name).join(',');

function checkInvariants(w: World): void {
  const { scope, host, lane, tasks } = w;
  const live = tasks.filter((t) => !finalStatuses.has(t.run.status));
  const ended = tasks.filter((t) => finalStatuses.has(t.run.status));

  // pending is the number of runs not in a final status, and live() lists them, newest first.
  ok(scope.pending === live.length && scope.pending >= 0, () => `pending ${scope.pending}, live tasks ${live.length}`);
  const listed = [...scope.live()];
  ok(
    listed.length === live.length && listed.every((run, i) => run === live[live.length - 1 - i]!.run),
    () => `live() lists ${namesOf(listed)}, expected ${namesOf(live.map((t) => t.run).reverse())}`,
  );

  // Replay the host's reports: busy exactly when pending went 0 → 1, idle exactly when 1 → 0,
  // added once per task in order, ended once per ended task with the status it still has.
  let pending = 0;
  let busy = false;
  let addedCount = 0;
  const endedReports = new Map<TaskRun, Report[]>();
  const reports = host.reports;
  for (let i = 0; i < reports.length; i++) {
    const r = reports[i]!;
    const where = (): string => `report ${i} (${r.kind} ${r.name}, pending ${r.pending}) after ${host.log.slice(Math.max(0, i - 6), i).join(' ')}`;
    ok(r.ownScope, where);
    switch (r.kind) {
      case 'busy':
        ok(!busy && pending === 0 && r.pending === 1 && reports[i + 1]?.kind === 'added', where);
        busy = true;
        break;
      case 'added':
        pending++;
        ok(busy && r.pending === pending && (pending !== 1 || reports[i - 1]?.kind === 'busy'), where);
        ok(r.run === tasks[addedCount++]?.run, () => `${where()}: added out of order`);
        break;
      case 'ended': {
        ok(busy && r.pending === pending, where);
        pending--;
        ok(pending !== 0 || reports[i + 1]?.kind === 'idle', () => `${where()}: no idle after the last end`);
        const seen = endedReports.get(r.run!);
        if (seen === undefined) endedReports.set(r.run!, [r]);
        else seen.push(r);
        break;
      }
      case 'idle':
        ok(busy && pending === 0 && r.pending === 0 && reports[i - 1]?.kind === 'ended', where);
        busy = false;
        break;
      default:
        ok(false, where);
    }
  }
  ok(pending === scope.pending && busy === scope.pending > 0, () => `reports replay to pending ${pending}, scope has ${scope.pending}`);
  ok(addedCount === tasks.length, () => `${addedCount} added reports for ${tasks.length} tasks`);

  const deadline = w.disposal === undefined ? undefined : w.disposal.at + drainTimeoutMs;
  for (const t of tasks) {
    const name = `t${t.i} (${t.run.status})`;
    const ends = endedReports.get(t.run) ?? [];
    // A body starts at most once (no retries here), only as its run starts, and never once the
    // deadline's sweep has begun abandoning tasks.
    ok(t.starts.length <= 1 && t.starts.every((s) => s.status === 'running' && !s.afterSweep), () => `${name}: body started: ${show(t.starts)}`);
    if (!finalStatuses.has(t.run.status)) {
      ok(ends.length === 0 && t.outcome === undefined && !t.cancelled, () => `${name}: live, yet ended/settled/cancelled`);
      continue;
    }
    // One outcome: reported once, with the status the run still has, and its result agrees.
    ok(ends.length === 1, () => `${name}: ${ends.length} ended reports (${ends.map((e) => e.status).join(', ')})`);
    ok(ends[0]!.status === t.run.status, () => `${name}: reported ended as ${ends[0]!.status}`);
    ok(t.cancelled === (t.run.status === 'cancelled'), () => `${name}: cancel() returned ${t.cancelled}`);
    const outcome = t.outcome;
    ok(outcome !== undefined, () => `${name}: result() not settled`);
    const error = outcome!.ok ? undefined : outcome!.error;
    switch (t.run.status) {
      case 'succeeded':
        ok(outcome!.ok && t.starts.length === 1, () => `${name}: result ${show(outcome)}, started ${t.starts.length} times`);
        ok(t.gate !== undefined ? t.opened?.ok === true : !t.spec.fails, () => `${name}: succeeded, yet its gate failed or it throws`);
        break;
      case 'failed': {
        const thrown = t.gate !== undefined ? (t.opened?.ok === false ? t.opened.error : undefined) : t.spec.fails ? t.error : undefined;
        ok(error !== undefined && error === thrown && t.starts.length === 1, () => `${name}: failed with ${String(error)}, expected ${String(thrown)}`);
        break;
      }
      case 'cancelled':
        ok(error instanceof TaskCancelledError, () => `${name}: result rejected with ${String(error)}`);
        break;
      case 'abandoned': {
        ok(error instanceof TaskAbandonedError, () => `${name}: result rejected with ${String(error)}`);
        // Abandoned at disposal (due after the deadline) or at the deadline, never otherwise.
        const at = ends[0]!.at;
        ok(deadline !== undefined, () => `${name}: abandoned without a disposal`);
        ok(
          at === w.disposal!.at ? t.run.dueAt > deadline! : at === deadline,
          () => `${name}: abandoned at ${at - modelStart} (due ${t.run.dueAt - modelStart}), disposed at ${w.disposal!.at - modelStart}, deadline ${deadline! - modelStart}`,
        );
        break;
      }
      default:
        ok(false, () => `${name}: a final status this program cannot produce`);
    }
  }

  // Counts: every task added, and the final statuses sum to the tasks ended.
  const { total, ...byStatus } = scope.counts;
  ok(total === tasks.length, () => `counts.total ${total}, tasks added ${tasks.length}`);
  let sum = 0;
  for (const [status, n] of Object.entries(byStatus)) {
    sum += n;
    const actual = ended.filter((t) => t.run.status === status).length;
    ok(n === actual, () => `counts.${status} ${n}, tasks ${status} ${actual}`);
  }
  ok(sum === ended.length, () => `final-status counts sum to ${sum}, tasks ended ${ended.length}`);

  // The lane: a slot per running (or slot-holding sync) task, never one lost or given twice,
  // and no task left waiting while a slot is free.
  const holding = tasks.filter((t) => t.run.status === 'running' || (t.run.status === 'queued' && t.run.holding)).length;
  const waiting = tasks.filter((t) => t.run.status === 'queued' && !t.run.holding).length;
  ok(lane.running === holding && lane.queued === waiting, () => `lane running ${lane.running} queued ${lane.queued}; tasks holding ${holding} waiting ${waiting}`);
  ok(lane.running <= w.limit && (lane.running === w.limit || lane.queued === 0), () => `lane running ${lane.running} of ${w.limit} with ${lane.queued} queued`);

  // Each drain resolves exactly when pending first reaches 0 after it was called (at once if 0).
  w.drains.forEach((d, i) => {
    const idleAt = d.idlesAtCall + (d.pendingAtCall > 0 ? 1 : 0);
    if (d.settled !== undefined) {
      ok(d.settled.pending === 0 && d.settled.idles === idleAt, () => `drain ${i} (called at pending ${d.pendingAtCall}) resolved at ${show(d.settled)}, expected idle report ${idleAt}`);
    } else {
      ok(d.pendingAtCall > 0 && host.idles === d.idlesAtCall, () => `drain ${i} (called at pending ${d.pendingAtCall}) unresolved after ${host.idles - d.idlesAtCall} idle report(s)`);
    }
  });

  // Lifecycle: open until disposal; then draining until pending is 0, then closed, and the
  // disposal resolves then; nothing is left once the deadline has passed.
  if (w.disposal === undefined) {
    ok(scope.state === 'open', () => `state ${scope.state} before dispose()`);
  } else {
    const settled = w.disposal.settled;
    ok(scope.state === (scope.pending === 0 ? 'closed' : 'draining'), () => `state ${scope.state} after dispose() with pending ${scope.pending}`);
    ok(
      scope.pending === 0 ? settled?.pending === 0 && settled.state === 'closed' : settled === undefined,
      () => `disposal resolved: ${show(settled)} with pending ${scope.pending}`,
    );
    ok(Date.now() < deadline! || scope.pending === 0, () => `${scope.pending} task(s) live ${Date.now() - deadline!} ms past the deadline`);
  }

  // The abandonment log: one error entry per sweep that abandoned something, naming each task
  // counted. The other error entries are tasks' failures (each names its task); nothing warns.
  const warns = w.logger.at('warn');
  ok(warns.length === 0, () => `${warns.length} warn entries: ${show(warns.map((entry) => entry.message))}`);
  const errors = w.logger.at('error');
  for (const entry of errors) {
    const task = entry.fields.task;
    if (task !== undefined) ok(typeof task === 'string' && entry.message === `task "${task}" failed`, () => `error entry ${show(entry)}`);
  }
  const sweeps = errors.filter((entry) => entry.fields.task === undefined);
  const logged = sweeps.reduce((n, entry) => n + (entry.fields.abandoned as number), 0);
  ok(sweeps.length <= 2 && logged === scope.counts.abandoned, () => `${sweeps.length} abandonment entries naming ${logged} abandoned; counts.abandoned ${scope.counts.abandoned}`);
  for (const entry of sweeps) {
    ok((entry.fields.tasks as string[]).length === Math.min(entry.fields.abandoned as number, 20), () => `abandonment entry ${show(entry.fields)}`);
  }
}

const taskSpec: fc.Arbitrary<TaskSpec> = fc.record({
  gated: fc.boolean(),
  sync: fc.boolean(),
  delay: fc.option(
    fc.integer({ min: 0, max: 100 }).map((n) => 2 * n + 1),
    { nil: undefined, freq: 3 },
  ),
  selfMs: fc.integer({ min: 0, max: 30 }),
  fails: fc.boolean(),
});

const commandArbs: fc.Arbitrary<Cmd>[] = [
  taskSpec.map((spec) => new AddTask(spec)),
  taskSpec.map((spec) => new AddTask(spec)),
  taskSpec.map((spec) => new AddTask(spec)),
  taskSpec.map((spec) => new AddTask(spec)),
  fc.tuple(fc.nat(), fc.boolean()).map(([index, ok]) => new OpenGate(index, ok)),
  fc.tuple(fc.nat(), fc.boolean()).map(([index, ok]) => new OpenGate(index, ok)),
  fc.nat().map((index) => new Cancel(index)),
  fc.constant(new Drain()),
  fc.integer({ min: 0, max: 16 }).map((n) => new Dispose(n)),
  fc.integer({ min: 1, max: 30 }).map((n) => new Advance(2 * n)),
  fc.integer({ min: 1, max: 30 }).map((n) => new Advance(2 * n)),
  fc.constant(new Immediates()),
  fc.constant(new Immediates()),
];

describe('Scope: model', () => {
  it('keeps its invariants over random programs of adds, gates, cancels, drains, disposal and time', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(1, 2, 3, Infinity, Infinity), fc.commands(commandArbs, { maxCommands: 60, size: 'max' }), async (limit, cmds) => {
        vi.setSystemTime(modelStart);
        const w = newWorld(limit);
        try {
          await fc.asyncModelRun(() => ({ model: w, real: w }), cmds);
          // The end of every program: dispose, pass the deadline, and everything has ended.
          await new Dispose().run(w, w);
          await advance(w, drainTimeoutMs);
          await new Immediates().run(w, w);
          expect(w.scope.pending).toBe(0);
          expect(w.scope.state).toBe('closed');
          expect(w.drains.every((d) => d.settled !== undefined), 'every drain resolved').toBe(true);
          // Late outcomes (the timers of abandoned tasks) change nothing; no timer is left.
          await advance(w, 2 * drainTimeoutMs);
          for (const t of w.tasks) {
            if (t.gate === undefined || t.opened !== undefined) continue;
            t.opened = { ok: true };
            t.gate.resolve();
          }
          await new Immediates().run(w, w);
          expect(vi.getTimerCount(), 'timers left').toBe(0);
        } finally {
          // Whatever failed, leave the shared deadline timer with no entry for the next run.
          void w.scope.dispose().catch(() => undefined);
          vi.advanceTimersByTime(10 * drainTimeoutMs);
          await flush();
        }
      }),
      { seed: fcSeed, numRuns: fcRuns, ...(fcPath === undefined ? {} : { path: fcPath }) },
    );
  });
});
