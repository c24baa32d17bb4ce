/**
 * The lane on its own, the way p-queue tests its priority queue: fake jobs that record when they
 * take a slot and start, and the test calls `release()` itself.
 *
 * Time: the lane reads its clock from the `performance` object of `node:perf_hooks`.
 * `vi.useFakeTimers({ toFake: ['performance'] })` does not reach it: it installs a new
 * `globalThis.performance` and leaves the perf_hooks object (which the lane imported) alone.
 * `vi.spyOn(performance, 'now')` on that shared object does: {@link controlClock} makes the clock
 * a variable that only the test and the fake jobs move. `setImmediate` is faked with
 * `vi.useFakeTimers({ toFake: ['setImmediate', 'clearImmediate'] })`, and the lanes here take
 * their turns from the global one (Node's own, which fake timers do not reach, is the lane's
 * default), so a test runs the lane's immediates one at a time; microtasks stay real.
 *
 * The model-based test at the end runs random programs (`FC_SEED` and `FC_RUNS` change the seed
 * and the number of programs) and checks every scheduling decision against a model.
 */
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Job, Lane } from '../../src/engine/lane.js';

/** The lane's turns on the global `setImmediate`, read at each call, which the test's fake timers replace (Node's own is the lane's default). */
const globalTurn = (callback: () => void): void => void setImmediate(callback);

/** The real `setImmediate`, taken before any test fakes it. */
const realSetImmediate = setImmediate;

/** Resolves from a real immediate: every pending microtask (and the microtasks they queue) has run. */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}

/** The lane's immediates (its sync-job turns and its resumptions) run only when the test says. */
function fakeImmediates(): void {
  vi.useFakeTimers({ toFake: ['setImmediate', 'clearImmediate'] });
}

/** The lane's clock, in ms: it moves only when the test or a fake job moves it. */
let clock = 0;

function controlClock(): void {
  clock = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => clock);
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** A fake task record: records its start, then does what `onStart` says. */
class TestJob implements Job {
  next: Job | undefined = undefined;
  status = 'queued';
  holding = false;

  constructor(
    readonly name: string,
    readonly priority: number,
    readonly sync: boolean,
    private readonly onStart: (job: TestJob) => void,
  ) {}

  start(): void {
    this.status = 'running';
    this.onStart(this);
  }
}

interface JobOptions {
  priority?: number;
  sync?: boolean;
  onStart?: (job: TestJob) => void;
}

/** A lane, the names of the jobs it started in order, and `add()` to submit a fake job. */
function setup(limit: number) {
  const lane = new Lane(limit, globalTurn);
  const started: string[] = [];
  const add = (name: string, { priority = 0, sync = false, onStart }: JobOptions = {}): TestJob => {
    const job = new TestJob(name, priority, sync, (self) => {
      started.push(self.name);
      onStart?.(self);
    });
    lane.submit(job);
    return job;
  };
  const counts = () => ({ running: lane.running, queued: lane.queued });
  return { lane, started, add, counts };
}

describe('order and limit', () => {
  it('starts the highest priority first, and in submission order within a priority', async () => {
    const { lane, started, add, counts } = setup(1);
    add('low-1', { priority: -1 });
    add('normal-1');
    add('high-1', { priority: 1 });
    add('normal-2');
    add('high-2', { priority: 1 });
    add('low-2', { priority: -1 });
    await drainMicrotasks();
    expect(started).toEqual(['high-1']);
    lane.release();
    expect(started).toEqual(['high-1', 'high-2']);
    // Later submissions go by priority too: an urgent one overtakes everything waiting.
    add('urgent', { priority: 5 });
    add('high-3', { priority: 1 });
    add('normal-3', { priority: 0 });
    lane.release();
    expect(started).toEqual(['high-1', 'high-2', 'urgent']);
    for (let i = 0; i < 6; i++) lane.release();
    expect(started).toEqual(['high-1', 'high-2', 'urgent', 'high-3', 'normal-1', 'normal-2', 'normal-3', 'low-1', 'low-2']);
    expect(counts()).toEqual({ running: 1, queued: 0 });
    lane.release();
    expect(counts()).toEqual({ running: 0, queued: 0 });
  });

  it('never runs more than `limit` at once, and counts running and queued jobs exactly at each step', async () => {
    const { lane, started, add, counts } = setup(2);
    let active = 0;
    let peak = 0;
    const onStart = () => {
      peak = Math.max(peak, ++active);
    };
    const release = () => {
      active--;
      lane.release();
    };
    for (let i = 0; i < 5; i++) add(`job-${i}`, { onStart });
    expect(counts()).toEqual({ running: 0, queued: 5 });
    await drainMicrotasks();
    expect(started).toEqual(['job-0', 'job-1']);
    expect(counts()).toEqual({ running: 2, queued: 3 });
    // A release starts the next job at once, in the same call.
    release();
    expect(started).toEqual(['job-0', 'job-1', 'job-2']);
    expect(counts()).toEqual({ running: 2, queued: 2 });
    release();
    release();
    expect(started).toEqual(['job-0', 'job-1', 'job-2', 'job-3', 'job-4']);
    expect(counts()).toEqual({ running: 2, queued: 0 });
    release();
    expect(counts()).toEqual({ running: 1, queued: 0 });
    add('job-5', { onStart });
    expect(counts()).toEqual({ running: 1, queued: 1 });
    await drainMicrotasks();
    expect(counts()).toEqual({ running: 2, queued: 0 });
    release();
    release();
    expect(counts()).toEqual({ running: 0, queued: 0 });
    expect(peak).toBe(2);
    expect(started).toHaveLength(6);
  });

  it('starts nothing inside submit(): an async job starts from a microtask, not from an immediate', async () => {
    fakeImmediates();
    const { lane, started, add, counts } = setup(4);
    let startedWhileSubmitting = -1;
    add('parent', {
      onStart: () => {
        // A job submitted by a running job, with slots free, still does not start inside submit().
        const before = started.length;
        add('child');
        startedWhileSubmitting = started.length - before;
      },
    });
    expect(started).toEqual([]);
    expect(counts()).toEqual({ running: 0, queued: 1 });
    await Promise.resolve();
    expect(started).toEqual(['parent', 'child']);
    expect(startedWhileSubmitting).toBe(0);
    expect(counts()).toEqual({ running: 2, queued: 0 });
    // No immediate was involved.
    expect(vi.getTimerCount()).toBe(0);
    lane.release();
    lane.release();
  });

  it('starts waiting jobs when the limit is raised; when it is lowered, running jobs finish and none start until below it', async () => {
    const { lane, started, add, counts } = setup(1);
    for (let i = 0; i < 6; i++) add(`job-${i}`);
    await drainMicrotasks();
    expect(started).toEqual(['job-0']);
    lane.limit = 3;
    expect(lane.limit).toBe(3);
    await drainMicrotasks();
    expect(started).toEqual(['job-0', 'job-1', 'job-2']);
    expect(counts()).toEqual({ running: 3, queued: 3 });
    lane.limit = 1;
    await drainMicrotasks();
    expect(counts()).toEqual({ running: 3, queued: 3 });
    lane.release();
    lane.release();
    await drainMicrotasks();
    expect(started).toEqual(['job-0', 'job-1', 'job-2']);
    expect(counts()).toEqual({ running: 1, queued: 3 });
    lane.release();
    expect(started).toEqual(['job-0', 'job-1', 'job-2', 'job-3']);
    expect(counts()).toEqual({ running: 1, queued: 2 });
    // Raised again while jobs wait: both free slots fill.
    lane.limit = 3;
    await drainMicrotasks();
    expect(started).toEqual(['job-0', 'job-1', 'job-2', 'job-3', 'job-4', 'job-5']);
    expect(counts()).toEqual({ running: 3, queued: 0 });
  });
});

describe('skipping and withdrawing', () => {
  it('skips jobs whose status changed while they waited; their turn goes to the next job', async () => {
    const { lane, started, add, counts } = setup(1);
    add('a');
    const b = add('b');
    const c = add('c');
    add('d');
    await drainMicrotasks();
    expect(started).toEqual(['a']);
    // A task run that ends while queued changes its status and withdraws, in either order.
    b.status = 'cancelled';
    lane.withdraw(b);
    lane.withdraw(c);
    c.status = 'cancelled';
    expect(counts()).toEqual({ running: 1, queued: 1 });
    lane.release();
    expect(started).toEqual(['a', 'd']);
    expect(counts()).toEqual({ running: 1, queued: 0 });
    lane.release();
    await drainMicrotasks();
    expect(started).toEqual(['a', 'd']);
    expect(counts()).toEqual({ running: 0, queued: 0 });
  });

  it('withdraw() of a queued job drops `queued` at once, leaves `running` alone, and the job never starts', async () => {
    const { lane, started, add, counts } = setup(2);
    add('a');
    add('b');
    const c = add('c', { priority: 1 });
    add('d');
    // Withdrawn before the lane ever looked at it.
    lane.withdraw(c);
    c.status = 'cancelled';
    expect(counts()).toEqual({ running: 0, queued: 3 });
    await drainMicrotasks();
    expect(started).toEqual(['a', 'b']);
    expect(counts()).toEqual({ running: 2, queued: 1 });
    lane.release();
    lane.release();
    expect(started).toEqual(['a', 'b', 'd']);
    expect(counts()).toEqual({ running: 1, queued: 0 });
  });

  it('withdraw() of a sync job that holds a slot waiting for its immediate: the slot goes to the next job and the sync job never starts', async () => {
    fakeImmediates();
    const { lane, started, add, counts } = setup(1);
    const sync = add('sync', { sync: true });
    add('async');
    await drainMicrotasks();
    expect(sync.holding).toBe(true);
    expect(started).toEqual([]);
    expect(counts()).toEqual({ running: 1, queued: 1 });
    expect(vi.getTimerCount()).toBe(1);
    // Withdrawn while its status still says 'queued' (the status changes right after).
    lane.withdraw(sync);
    sync.status = 'cancelled';
    expect(sync.holding).toBe(false);
    expect(started).toEqual(['async']);
    expect(counts()).toEqual({ running: 1, queued: 0 });
    vi.runOnlyPendingTimers();
    await drainMicrotasks();
    expect(started).toEqual(['async']);
    expect(counts()).toEqual({ running: 1, queued: 0 });
  });

  it('calls `watcher` each time a job leaves the queue (it takes a slot or is withdrawn), after the counts change', async () => {
    fakeImmediates();
    const { lane, add } = setup(1);
    const seen: { queued: number; running: number }[] = [];
    lane.watcher = () => seen.push({ queued: lane.queued, running: lane.running });
    add('a');
    add('b');
    const c = add('c');
    expect(seen).toEqual([]);
    await drainMicrotasks();
    expect(seen).toEqual([{ queued: 2, running: 1 }]);
    lane.withdraw(c);
    c.status = 'cancelled';
    expect(seen).toEqual([
      { queued: 2, running: 1 },
      { queued: 1, running: 1 },
    ]);
    lane.release();
    expect(seen).toHaveLength(3);
    expect(seen[2]).toEqual({ queued: 0, running: 1 });
    // c has left already: its skip is not another call.
    lane.release();
    await drainMicrotasks();
    expect(seen).toHaveLength(3);
    // A sync job leaves the queue when it takes its slot, not when it starts or is withdrawn.
    const sync = add('sync', { sync: true });
    await drainMicrotasks();
    expect(seen).toHaveLength(4);
    expect(seen[3]).toEqual({ queued: 0, running: 1 });
    lane.withdraw(sync);
    vi.runOnlyPendingTimers();
    expect(seen).toHaveLength(4);
    expect(lane.running).toBe(0);
  });
});

describe('sync jobs', () => {
  it('take their slot in priority order but start from setImmediate, not from a microtask', async () => {
    fakeImmediates();
    const { started, add, counts } = setup(10);
    const first = add('sync-high', { sync: true, priority: 1 });
    add('async-low', { priority: -1 });
    const second = add('sync-normal', { sync: true });
    await drainMicrotasks();
    await drainMicrotasks();
    expect(started).toEqual(['async-low']);
    expect([first.holding, second.holding]).toEqual([true, true]);
    expect(counts()).toEqual({ running: 3, queued: 0 });
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersToNextTimer();
    expect(started).toEqual(['async-low', 'sync-high', 'sync-normal']);
    expect([first.holding, second.holding]).toEqual([false, false]);
  });

  it('start one after another, a few ms worth per turn: each immediate runs them until more than 4 ms have passed', async () => {
    fakeImmediates();
    controlClock();
    const { lane, started, add } = setup(12);
    for (let i = 0; i < 12; i++) {
      add(`sync-${i}`, {
        sync: true,
        onStart: () => {
          clock += 1;
          lane.release();
        },
      });
    }
    await drainMicrotasks();
    expect(started).toEqual([]);
    const perTurn: number[] = [];
    while (vi.getTimerCount() > 0) {
      vi.advanceTimersToNextTimer();
      await drainMicrotasks();
      perTurn.push(started.length);
    }
    // At 1 ms each: the job that takes a turn past its 4 ms is its last.
    expect(perTurn).toEqual([5, 10, 12]);
    expect(started).toEqual(Array.from({ length: 12 }, (_, i) => `sync-${i}`));
    expect(lane.running).toBe(0);
  });

  it('that settle at once hand their slot to the next sync job, which starts in the same turn', async () => {
    fakeImmediates();
    controlClock();
    const { lane, started, add } = setup(1);
    for (let i = 0; i < 3; i++) add(`sync-${i}`, { sync: true, onStart: () => lane.release() });
    await drainMicrotasks();
    expect(started).toEqual([]);
    vi.advanceTimersToNextTimer();
    expect(started).toEqual(['sync-0', 'sync-1', 'sync-2']);
    expect(lane.running).toBe(0);
  });
});

describe('stop()', () => {
  it('starts nothing more, for good: not on release, a raised limit, a submit or a sync turn; counts go on', async () => {
    fakeImmediates();
    const { lane, started, add, counts } = setup(2);
    add('a');
    const sync = add('sync', { sync: true });
    const waiting = [add('b'), add('c')];
    await drainMicrotasks();
    expect(started).toEqual(['a']);
    expect(sync.holding).toBe(true);
    expect(counts()).toEqual({ running: 2, queued: 2 });
    lane.stop();
    // The sync job's turn comes: it does not start.
    vi.runOnlyPendingTimers();
    lane.release();
    lane.limit = 5;
    waiting.push(add('d'));
    await drainMicrotasks();
    vi.runOnlyPendingTimers();
    expect(started).toEqual(['a']);
    expect(counts()).toEqual({ running: 1, queued: 3 });
    // What is left is abandoned, as a closing application does: status first, then withdraw.
    sync.status = 'abandoned';
    lane.withdraw(sync);
    for (const job of waiting) {
      job.status = 'abandoned';
      lane.withdraw(job);
    }
    expect(counts()).toEqual({ running: 0, queued: 0 });
    await drainMicrotasks();
    vi.runOnlyPendingTimers();
    expect(started).toEqual(['a']);
  });
});

describe('back-to-back starts hand the event loop back', () => {
  /**
   * `count` async jobs that each take `msEach` on the controlled clock and settle at once: from
   * their start() itself, or from a microtask after it.
   */
  function instantJobs(count: number, msEach: number, settle: 'sync' | 'microtask') {
    const lane = new Lane(1, globalTurn);
    const seen = { started: 0 };
    const release = () => lane.release();
    for (let i = 0; i < count; i++) {
      lane.submit(
        new TestJob(`job-${i}`, 0, false, () => {
          seen.started++;
          clock += msEach;
          if (settle === 'sync') release();
          else queueMicrotask(release);
        }),
      );
    }
    return { lane, seen };
  }

  /** Runs the lane's immediates one at a time; returns how many jobs had started after each. */
  async function startsPerTurn(seen: { started: number }): Promise<number[]> {
    await drainMicrotasks();
    const counts = [seen.started];
    while (vi.getTimerCount() > 0) {
      vi.advanceTimersToNextTimer();
      await drainMicrotasks();
      counts.push(seen.started);
    }
    return counts;
  }

  it.each(['sync', 'microtask'] as const)(
    'resumes from setImmediate every 1024 starts once 4 ms have passed (jobs that settle from %s)',
    async (settle) => {
      fakeImmediates();
      controlClock();
      const { seen } = instantJobs(5000, 0.01, settle);
      expect(await startsPerTurn(seen)).toEqual([1024, 2048, 3072, 4096, 5000]);
    },
  );

  it('starts nothing between handing the loop back and resuming, whatever is submitted, released or raised meanwhile', async () => {
    fakeImmediates();
    controlClock();
    // Settling from a microtask: the 1024th job releases its slot after the lane has yielded.
    const { lane, seen } = instantJobs(1100, 0.01, 'microtask');
    await drainMicrotasks();
    expect(seen.started).toBe(1024);
    expect(lane.running).toBe(0);
    const late = new TestJob('late', 1, false, () => seen.started++);
    lane.submit(late);
    lane.limit = 3;
    await drainMicrotasks();
    expect(seen.started).toBe(1024);
    expect(late.status).toBe('queued');
    vi.advanceTimersToNextTimer();
    await drainMicrotasks();
    expect(late.status).toBe('running');
    expect(seen.started).toBe(1101);
  });

  it('does not hand the loop back at 1024 starts while less than 4 ms have passed', async () => {
    fakeImmediates();
    controlClock();
    // 1 µs each: 1024 starts take 1.024 ms; the first look at the clock past 4 ms is at 4096.
    const { seen } = instantJobs(5000, 0.001, 'sync');
    expect(await startsPerTurn(seen)).toEqual([4096, 5000]);
  });

  /**
   * Real timers and the real event loop; only the clock the lane reads is controlled, so whether
   * it yields is decided, not measured. Two timeouts of the same delay, due at the same moment,
   * run in one pass of Node's timer list, with the microtasks of the first drained before the
   * second runs: the first submits 5000 instant jobs, the second sees how many had started when
   * the lane gave the loop back (all 5000 if it never did). They are due at the same moment
   * unless a millisecond ticked between the two setTimeout() calls; then the second runs in a
   * later pass, after an immediate of the first has cleared `samePass`, and the attempt does not
   * count. The verdict is an ordering, not a timing window.
   */
  async function timerDuringBurst(): Promise<number | undefined> {
    let seen = { started: 0 };
    let samePass = false;
    let timerRan = false;
    let seenByTimer: number | undefined;
    setTimeout(() => {
      samePass = true;
      setImmediate(() => {
        samePass = false;
      });
      seen = instantJobs(5000, 0.01, 'sync').seen;
    }, 0);
    setTimeout(() => {
      timerRan = true;
      if (samePass) seenByTimer = seen.started;
    }, 0);
    while (!timerRan || seen.started < 5000) await drainMicrotasks();
    return seenByTimer;
  }

  it('lets a real timer run before 5000 instant jobs have all started', async () => {
    // Fake timers cannot show this: they run every immediate due before any timeout.
    controlClock();
    let seenByTimer: number | undefined;
    for (let attempt = 0; attempt < 20 && seenByTimer === undefined; attempt++) seenByTimer = await timerDuringBurst();
    expect(seenByTimer).toBe(1024);
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based: random programs, every scheduling decision checked against a model.

const seed = Number(process.env.FC_SEED ?? 42);
const numRuns = Number(process.env.FC_RUNS ?? 200);

/** What a job does once started: wait for the test, settle at once, settle from a microtask, or submit another job. */
type Behaviour = 'hold' | 'release' | 'releaseLater' | 'submit';

interface JobSpec {
  priority: number;
  sync: boolean;
  behaviour: Behaviour;
  /** Ms its start() takes on the controlled clock. */
  cost: number;
}

type Op =
  | ({ kind: 'submit' } & JobSpec)
  | { kind: 'burst'; count: number; priority: number }
  | { kind: 'release'; pick: number }
  | { kind: 'withdraw'; pick: number; statusFirst: boolean }
  | { kind: 'limit'; limit: number }
  | { kind: 'clock'; ms: number }
  | { kind: 'tick' }
  | { kind: 'microtasks' }
  | { kind: 'immediate' }
  | { kind: 'settle' };

/** Where a job is, in the model. `holding`: a sync job with a slot, waiting for its immediate. */
type State = 'waiting' | 'holding' | 'running' | 'released' | 'withdrawn';

class ModelJob implements Job {
  next: Job | undefined = undefined;
  status = 'queued';
  state: State = 'waiting';
  starts = 0;
  #holding = false;

  constructor(
    readonly id: number,
    readonly priority: number,
    readonly sync: boolean,
    readonly behaviour: Behaviour,
    readonly cost: number,
    private readonly harness: Harness,
  ) {}

  /** The lane sets it when a sync job takes its slot: that is when the model sees it admitted. */
  get holding(): boolean {
    return this.#holding;
  }

  set holding(value: boolean) {
    this.#holding = value;
    if (value) this.harness.admitted(this);
  }

  get selfReleasing(): boolean {
    return this.behaviour === 'release' || this.behaviour === 'releaseLater';
  }

  start(): void {
    this.harness.started(this);
  }

  /** For messages. */
  get label(): string {
    return `job ${this.id} (priority ${this.priority}${this.sync ? ', sync' : ''})`;
  }
}

class Harness {
  readonly lane: Lane;
  /** The jobs of the program (the prewarm's are dropped once checked). */
  readonly jobs: ModelJob[] = [];
  #nextId = 0;
  readonly violations: string[] = [];
  /** Per priority, the jobs in submission order; those no longer waiting are skipped lazily. */
  readonly #levels = new Map<number, { jobs: ModelJob[]; head: number }>();
  /** The keys of `#levels`, highest first. */
  #priorities: number[] = [];
  /** Sync jobs in the order they took their slot; those no longer holding are skipped lazily. */
  readonly #holders: ModelJob[] = [];
  #holdersHead = 0;
  queued = 0;
  running = 0;
  watcherCalls = 0;
  expectedWatcherCalls = 0;
  #inSubmit = false;
  #inImmediate = false;
  /** The step being run, for messages. */
  step = 'setup';
  /** Once `lane.stop()` has been called: nothing may take a slot or start any more. */
  stopped = false;

  constructor(limit: number) {
    this.lane = new Lane(limit, globalTurn);
    this.lane.watcher = () => {
      this.watcherCalls++;
    };
  }

  violate(message: string): void {
    this.violations.push(`${this.step}: ${message}`);
  }

  submit(spec: JobSpec): ModelJob {
    const job = new ModelJob(this.#nextId++, spec.priority, spec.sync, spec.behaviour, spec.cost, this);
    this.jobs.push(job);
    let level = this.#levels.get(job.priority);
    if (level === undefined) {
      this.#levels.set(job.priority, (level = { jobs: [], head: 0 }));
      this.#priorities = [...this.#levels.keys()].sort((a, b) => b - a);
    }
    level.jobs.push(job);
    this.queued++;
    const outer = this.#inSubmit;
    this.#inSubmit = true;
    try {
      this.lane.submit(job);
    } finally {
      this.#inSubmit = outer;
    }
    return job;
  }

  /** The job that must take the next slot: highest priority, earliest submitted, still waiting. */
  #best(): ModelJob | undefined {
    for (const priority of this.#priorities) {
      const level = this.#levels.get(priority)!;
      while (level.head < level.jobs.length && level.jobs[level.head]!.state !== 'waiting') level.head++;
      if (level.head < level.jobs.length) return level.jobs[level.head];
    }
    return undefined;
  }

  /**
   * A job took a slot: an async one as it starts, a sync one as it starts holding. Lowering the
   * limit leaves running jobs running, so `running <= limit` need not hold at every moment; what
   * must hold is that no job takes a slot while `running >= limit`.
   */
  admitted(job: ModelJob): void {
    if (this.#inSubmit) this.violate(`${job.label} took a slot inside submit()`);
    if (this.stopped) this.violate(`${job.label} took a slot after stop()`);
    if (job.state !== 'waiting') {
      this.violate(`${job.label} took a slot while ${job.state}`);
      return;
    }
    if (this.running >= this.lane.limit) this.violate(`${job.label} took a slot with ${this.running} running, limit ${this.lane.limit}`);
    const best = this.#best();
    if (best !== job) this.violate(`${job.label} took a slot before ${best?.label ?? 'nothing'}`);
    job.state = job.sync ? 'holding' : 'running';
    this.queued--;
    this.running++;
    this.expectedWatcherCalls++;
    if (job.sync) this.#holders.push(job);
  }

  started(job: ModelJob): void {
    if (++job.starts > 1) {
      this.violate(`${job.label} started twice`);
      return;
    }
    if (job.sync) {
      if (this.stopped) this.violate(`${job.label} started after stop()`);
      if (!this.#inImmediate) this.violate(`${job.label} started outside an immediate`);
      if (job.holding) this.violate(`${job.label} started still marked holding`);
      if (job.state !== 'holding') {
        this.violate(`${job.label} started while ${job.state}`);
        return;
      }
      while (this.#holdersHead < this.#holders.length && this.#holders[this.#holdersHead]!.state !== 'holding') this.#holdersHead++;
      const first = this.#holders[this.#holdersHead];
      if (first !== job) this.violate(`${job.label} started before ${first?.label ?? 'nothing'}, which took its slot earlier`);
      job.state = 'running';
    } else {
      this.admitted(job);
      if (job.state !== 'running') return;
    }
    job.status = 'running';
    clock += job.cost;
    switch (job.behaviour) {
      case 'hold':
        break;
      case 'release':
        this.release(job);
        break;
      case 'releaseLater':
        queueMicrotask(() => this.release(job));
        break;
      case 'submit':
        this.submit({ priority: job.priority + 1, sync: false, behaviour: 'hold', cost: 0 });
        break;
    }
  }

  release(job: ModelJob): void {
    job.state = 'released';
    this.running--;
    this.lane.release();
  }

  /**
   * As a task run that ends while queued (cancelled, abandoned, skipped) does: its status changes
   * and it is withdrawn, in either order (`statusFirst`).
   */
  withdraw(job: ModelJob, statusFirst: boolean): void {
    if (statusFirst) job.status = 'cancelled';
    if (job.state === 'holding') {
      this.running--;
    } else {
      this.queued--;
      this.expectedWatcherCalls++;
    }
    job.state = 'withdrawn';
    this.lane.withdraw(job);
    if (!statusFirst) job.status = 'cancelled';
  }

  runImmediate(): void {
    this.#inImmediate = true;
    try {
      vi.advanceTimersToNextTimer();
    } finally {
      this.#inImmediate = false;
    }
  }

  stop(): void {
    this.stopped = true;
    this.lane.stop();
  }

  /** Lets microtasks and the lane's immediates run until nothing is pending, then checks for lost wake-ups. */
  async settle(): Promise<void> {
    for (let turns = 0; ; turns++) {
      await drainMicrotasks();
      if (vi.getTimerCount() === 0) break;
      if (turns > 10_000) {
        this.violate('the lane never settles');
        break;
      }
      this.runImmediate();
    }
    if (this.stopped) return;
    for (const job of this.jobs) if (job.state === 'holding') this.violate(`${job.label} holds a slot but never started`);
    if (this.queued > 0 && this.running < this.lane.limit) {
      this.violate(`lost wake-up: ${this.queued} queued, ${this.running} running, limit ${this.lane.limit}, nothing pending`);
    }
  }

  check(): void {
    if (this.lane.running !== this.running) this.violate(`lane.running is ${this.lane.running}, expected ${this.running}`);
    if (this.lane.queued !== this.queued) this.violate(`lane.queued is ${this.lane.queued}, expected ${this.queued}`);
    if (this.watcherCalls !== this.expectedWatcherCalls) this.violate(`watcher called ${this.watcherCalls} times, expected ${this.expectedWatcherCalls}`);
    if (this.violations.length > 0) throw new Error(this.violations.join('\n'));
  }

  async apply(op: Op): Promise<void> {
    switch (op.kind) {
      case 'submit':
        this.submit(op);
        break;
      case 'burst':
        for (let i = 0; i < op.count; i++) this.submit({ priority: op.priority, sync: false, behaviour: 'release', cost: 0 });
        break;
      case 'release': {
        const candidates = this.jobs.filter((job) => job.state === 'running' && !job.selfReleasing);
        if (candidates.length > 0) this.release(candidates[op.pick % candidates.length]!);
        break;
      }
      case 'withdraw': {
        const candidates = this.jobs.filter((job) => job.state === 'waiting' || job.state === 'holding');
        if (candidates.length > 0) this.withdraw(candidates[op.pick % candidates.length]!, op.statusFirst);
        break;
      }
      case 'limit':
        this.lane.limit = op.limit;
        break;
      case 'clock':
        clock += op.ms;
        break;
      case 'tick':
        await Promise.resolve();
        break;
      case 'microtasks':
        await drainMicrotasks();
        break;
      case 'immediate':
        await drainMicrotasks();
        if (vi.getTimerCount() > 0) this.runImmediate();
        break;
      case 'settle':
        await this.settle();
        break;
    }
  }
}

const priorityArb = fc.constantFrom(-1, 0, 0, 1, 2);
const jobSpecArb: fc.Arbitrary<JobSpec> = fc.record({
  priority: priorityArb,
  sync: fc.boolean(),
  behaviour: fc.constantFrom<Behaviour>('hold', 'hold', 'release', 'releaseLater', 'submit'),
  cost: fc.constantFrom(0, 0, 3),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: jobSpecArb.map((spec): Op => ({ kind: 'submit', ...spec })) },
  { weight: 1, arbitrary: fc.record({ count: fc.integer({ min: 2, max: 40 }), priority: priorityArb }).map((b): Op => ({ kind: 'burst', ...b })) },
  { weight: 4, arbitrary: fc.nat({ max: 1000 }).map((pick): Op => ({ kind: 'release', pick })) },
  { weight: 3, arbitrary: fc.record({ pick: fc.nat({ max: 1000 }), statusFirst: fc.boolean() }).map((w): Op => ({ kind: 'withdraw', ...w })) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 4 }).map((limit): Op => ({ kind: 'limit', limit })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 }).map((ms): Op => ({ kind: 'clock', ms })) },
  { weight: 2, arbitrary: fc.constant<Op>({ kind: 'tick' }) },
  { weight: 2, arbitrary: fc.constant<Op>({ kind: 'microtasks' }) },
  { weight: 2, arbitrary: fc.constant<Op>({ kind: 'immediate' }) },
  { weight: 1, arbitrary: fc.constant<Op>({ kind: 'settle' }) },
);
const programArb = fc.record({
  limit: fc.integer({ min: 1, max: 4 }),
  /** Instant jobs run first, so that some programs cross the lane's 1024th start (where it may yield). */
  prewarm: fc.oneof(fc.constant(0), fc.integer({ min: 980, max: 1023 })),
  /** The clock when the program begins: past 4 ms, the lane's 1024th start yields. */
  startClock: fc.constantFrom(0, 5),
  /** In some programs the lane is stopped before this op (or at the end, past the last one). */
  stopAt: fc.option(fc.nat({ max: 60 }), { freq: 4 }),
  ops: fc.array(opArb, { maxLength: 60, size: 'max' }),
});

describe('model', () => {
  it('every slot goes to the highest-priority, earliest job waiting, within the limit, once; counts exact; no lost wake-up', async () => {
    fakeImmediates();
    controlClock();
    await fc.assert(
      fc.asyncProperty(programArb, async ({ limit, prewarm, startClock, stopAt, ops }) => {
        vi.clearAllTimers();
        clock = startClock;
        const harness = new Harness(limit);
        for (let i = 0; i < prewarm; i++) harness.submit({ priority: 0, sync: false, behaviour: 'release', cost: 0 });
        harness.step = `prewarm (${prewarm} instant jobs)`;
        await harness.settle();
        harness.check();
        expect(harness.jobs.every((job) => job.state === 'released' && job.starts === 1)).toBe(true);
        harness.jobs.length = 0;
        for (const [i, op] of ops.entries()) {
          harness.step = `op ${i} ${JSON.stringify(op)}`;
          if (i === stopAt) harness.stop();
          await harness.apply(op);
          harness.check();
        }
        if (stopAt !== null && stopAt >= ops.length) {
          harness.step = 'stop at the end';
          harness.stop();
        }
        // The end: with at least one slot, every job still waiting must run (unless the lane
        // is stopped: then every job left is withdrawn, as a closing application abandons them).
        harness.step = 'drain';
        harness.lane.limit = Math.max(harness.lane.limit, 1);
        for (;;) {
          await harness.settle();
          harness.check();
          const running = harness.jobs.filter((job) => job.state === 'running');
          if (running.length === 0) break;
          for (const job of running) harness.release(job);
        }
        if (harness.stopped) {
          for (const job of harness.jobs) if (job.state === 'waiting' || job.state === 'holding') harness.withdraw(job, true);
          await harness.settle();
          harness.check();
        }
        expect({ running: harness.lane.running, queued: harness.lane.queued }).toEqual({ running: 0, queued: 0 });
        for (const job of harness.jobs) {
          expect(job.state === 'released' || job.state === 'withdrawn', `${job.label} ends ${job.state}`).toBe(true);
          expect(job.starts, `${job.label} (${job.state}) starts`).toBe(job.state === 'released' ? 1 : 0);
        }
      }),
      { seed, numRuns },
    );
  }, 30_000 + numRuns * 50);
});
