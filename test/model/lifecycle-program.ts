/**
 * Random programs against the public API, and the invariants checked after every step: the
 * model-based lifecycle suite (test/lifecycle-model.test.ts runs it). A program is a list of
 * steps — add tasks of every event-loop lane with every option, cancel from outside and from
 * inside (a task's body, its `finally`, an abort listener, `retryIf`, an observer of its events,
 * which may also add tasks, drain or dispose scopes), open the gates tasks wait
 * on, move time, drain, dispose scopes, wait for room, shut the application down — run on a
 * fresh application; after each step the world is checked against the promises the docs make.
 */
import fc from 'fast-check';
import { container } from 'tsyringe';
import { vi } from 'vitest';
import { appOf } from '../../src/di/container.js';
import { modelAbortable, modelFails, modelGated, modelOk } from '../fixtures/worker-tasks.js';
import {
  Background,
  BackgroundOptions,
  defineTask,
  observeTasks,
  shutdown,
  TaskAbandonedError,
  TaskCancelledError,
  TaskContext,
  TaskSkippedError,
  TaskTimeoutError,
  type BackgroundLogger,
  type CallOptions,
  type ShutdownReport,
  type TaskEvent,
  type TaskHandle,
  type TaskStatus,
} from '../../src/index.js';

/** A reference to an earlier handle: taken modulo the handles there are when the step runs. */
type Ref = number;

/** What a task's body does: ends by itself, or waits for its gate (and, if abortable, its signal). */
type Body = 'ok' | 'fail' | 'gate' | 'abortable';

export interface AddStep {
  readonly op: 'add';
  readonly scope: number;
  /**
   * `async`: a plain async function; `sync`: a plain sync one; `context`: a definition injecting
   * TaskContext; `worker`: a worker task (its body runs on a worker thread).
   */
  readonly lane: 'async' | 'sync' | 'context' | 'worker';
  readonly body: Body;
  readonly priority: 'low' | 'normal' | 'high';
  readonly retries: number;
  readonly timeoutMs: number | undefined;
  readonly delayMs: number | undefined;
  readonly after: Ref | undefined;
  readonly group: boolean;
  readonly cancelOnStart: Ref | undefined;
  readonly cancelInFinally: Ref | undefined;
  readonly cancelOnAbort: Ref | undefined;
  readonly cancelInRetryIf: Ref | undefined;
  readonly retryIfAnswer: boolean;
}

export type Step =
  | AddStep
  | { readonly op: 'every'; readonly scope: number; readonly every: number; readonly overlap: boolean; readonly body: 'ok' | 'gate' }
  | { readonly op: 'cancel'; readonly ref: Ref }
  | { readonly op: 'open'; readonly ref: Ref; readonly ok: boolean }
  | { readonly op: 'advance'; readonly ms: number }
  | { readonly op: 'drain'; readonly scope: number }
  | { readonly op: 'dispose'; readonly scope: number }
  | { readonly op: 'waitForRoom'; readonly scope: number }
  | { readonly op: 'shutdown'; readonly timeoutMs: number }
  /** Something an adapter closes with the application (the durable workers do, through the `closeWith` door): its close ends after `settleMs`, or when released. */
  | { readonly op: 'join'; readonly settleMs: number | undefined }
  | { readonly op: 'leave'; readonly ref: Ref }
  | { readonly op: 'release'; readonly ref: Ref };

/**
 * What an observer of the application's lifecycle events does on an event of type `on`: cancel
 * that task, cancel another (a handle the program made), add a task, or drain or dispose a scope
 * (`ref` picks which). A program has a few, each reacting a few times at most.
 */
export interface Reaction {
  readonly on: 'added' | 'started' | 'attemptFailed' | 'retrying' | 'succeeded' | 'failed' | 'cancelled' | 'timedOut' | 'abandoned';
  readonly action: 'cancelSelf' | 'cancelOther' | 'add' | 'drain' | 'dispose';
  readonly ref: Ref;
}

export interface World {
  readonly concurrency: number;
  readonly maxQueued: number;
  readonly drainTimeoutMs: number;
  /** The worker pool's, when the program adds worker tasks. */
  readonly maxThreads: number;
  /** What an observer does as tasks live, and die. */
  readonly reactions: readonly Reaction[];
}

export interface Program {
  readonly world: World;
  readonly steps: readonly Step[];
}

const scopes = 3;
const ref = fc.nat({ max: 40 });
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined, freq: 3 });

const addStep = (lanes: AddStep['lane'][]): fc.Arbitrary<AddStep> => fc.record({
  op: fc.constant('add' as const),
  scope: fc.nat({ max: scopes - 1 }),
  lane: fc.constantFrom(...lanes),
  body: fc.constantFrom('ok' as const, 'fail' as const, 'gate' as const, 'abortable' as const),
  priority: fc.constantFrom('low' as const, 'normal' as const, 'high' as const),
  retries: fc.nat({ max: 2 }),
  timeoutMs: maybe(fc.integer({ min: 1, max: 30 })),
  delayMs: maybe(fc.integer({ min: 0, max: 40 })),
  after: maybe(ref),
  group: fc.boolean(),
  cancelOnStart: maybe(ref),
  cancelInFinally: maybe(ref),
  cancelOnAbort: maybe(ref),
  cancelInRetryIf: maybe(ref),
  retryIfAnswer: fc.boolean(),
});

const step = (lanes: AddStep['lane'][]): fc.Arbitrary<Step> => fc.oneof(
  { weight: 8, arbitrary: addStep(lanes) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('every' as const), scope: fc.nat({ max: scopes - 1 }), every: fc.integer({ min: 1, max: 20 }), overlap: fc.boolean(), body: fc.constantFrom('ok' as const, 'gate' as const) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('cancel' as const), ref }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('open' as const), ref, ok: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 25 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drain' as const), scope: fc.nat({ max: scopes - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('dispose' as const), scope: fc.nat({ max: scopes - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('waitForRoom' as const), scope: fc.nat({ max: scopes - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('shutdown' as const), timeoutMs: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('join' as const), settleMs: maybe(fc.integer({ min: 0, max: 30 })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('leave' as const), ref }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), ref }) },
);

const reaction: fc.Arbitrary<Reaction> = fc.record({
  on: fc.constantFrom('added' as const, 'started' as const, 'attemptFailed' as const, 'retrying' as const, 'succeeded' as const, 'failed' as const, 'cancelled' as const, 'timedOut' as const, 'abandoned' as const),
  action: fc.constantFrom('cancelSelf' as const, 'cancelSelf' as const, 'cancelOther' as const, 'add' as const, 'drain' as const, 'dispose' as const),
  ref,
});

/** How many times in all a program's reactions act: an observer that adds on `succeeded` would otherwise add for ever. */
const reactionBudget = 8;

/** Random programs: a small application and up to `maxSteps` steps; worker tasks too with `workers`. */
export function programs(maxSteps = 40, { workers = false } = {}): fc.Arbitrary<Program> {
  const lanes: AddStep['lane'][] = workers ? ['async', 'sync', 'context', 'worker', 'worker', 'worker', 'worker'] : ['async', 'sync', 'context'];
  return fc.record({
    world: fc.record({
      concurrency: fc.integer({ min: 1, max: 3 }),
      maxQueued: fc.constantFrom(Infinity, 2, 4),
      drainTimeoutMs: fc.integer({ min: 5, max: 60 }),
      maxThreads: fc.integer({ min: 1, max: 2 }),
      reactions: fc.array(reaction, { maxLength: 2 }),
    }),
    steps: fc.array(step(lanes), { minLength: workers ? 5 : 1, maxLength: maxSteps }),
  });
}

const setupModule = new URL('../fixtures/worker-setup.ts', import.meta.url).href;

const finalStatuses = new Set<TaskStatus>(['succeeded', 'failed', 'cancelled', 'timedOut', 'skipped', 'abandoned']);
const liveStatuses: TaskStatus[] = ['queued', 'delayed', 'running', 'retrying'];
const allStatuses = new Set<TaskStatus>([...liveStatuses, ...finalStatuses]);

/** One handle the program made, and what was seen of it. */
interface Entry {
  readonly id: string;
  readonly kind: 'once' | 'periodic';
  readonly scope: number;
  readonly handle: TaskHandle;
  /** Whether it runs on the worker pool (its body is not seen from here). */
  readonly worker: boolean;
  lastStatus: TaskStatus;
  /** How its result() settled, each time it did: `ok`, or the error's name; and the status then. */
  readonly settled: { as: string; status: TaskStatus }[];
}

/** A task body's record: the gate of its current attempt, and whether it ever started. */
interface Body$ {
  entry: Entry | undefined;
  gate: { resolve: () => void; reject: (error: Error) => void } | undefined;
  starts: number;
}

/** Timers: the program's clock. Fake timers move by `advance`; real ones wait. */
export interface Clock {
  readonly fake: boolean;
  settle(): Promise<void>;
  advance(ms: number): Promise<void>;
}

export const fakeClock: Clock = {
  fake: true,
  async settle() {
    for (let i = 0; i < 3; i++) await vi.advanceTimersByTimeAsync(0);
  },
  async advance(ms) {
    await vi.advanceTimersByTimeAsync(ms);
  },
};

export const realClock: Clock = {
  fake: false,
  async settle() {
    for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  },
  async advance(ms) {
    await new Promise<void>((resolve) => setTimeout(resolve, ms));
  },
};

const silent: BackgroundLogger = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

/** Thrown when an invariant breaks: names the step and what was seen. */
export class Violation extends Error {
  override name = 'Violation';
}

/**
 * Runs one program and checks the invariants after every step; throws a {@link Violation} on the
 * first one broken. The application is shut down at the end and everything must have ended.
 */
export async function runProgram({ world, steps }: Program, clock: Clock, tally?: Tally): Promise<void> {
  const root = container.createChildContainer();
  root.register(BackgroundOptions, {
    useValue: {
      root: true,
      logger: silent,
      concurrency: world.concurrency,
      maxQueued: world.maxQueued,
      drainTimeoutMs: world.drainTimeoutMs,
      pool: { maxThreads: world.maxThreads, minThreads: 0, terminateAfterMs: 20, setupModule },
    },
  });
  const app = appOf(root);
  const children = Array.from({ length: scopes }, () => root.createChildContainer());
  const bgs = children.map((child) => child.resolve(Background));
  const entries: Entry[] = [];
  const violations: string[] = [];
  const disposing = new Set<number>();
  const waiters: { settled: boolean }[] = [];
  let stepNo = -1;
  interface ShutdownSeen {
    report: ShutdownReport | undefined;
    abandonedBefore: number;
    exact: boolean;
    readonly timeoutMs: number;
  }
  let shutdownReport = undefined as ShutdownSeen | undefined;
  /** Tasks ended `abandoned` in the whole application, periodic runs included. */
  const abandonedSoFar = (): number => bgs[0]!.stats({ application: true }).byStatus.abandoned;

  const violate = (message: string): void => {
    violations.push(`step ${stepNo} (${JSON.stringify(steps[stepNo])}): ${message}`);
  };
  const pick = (r: Ref | undefined, kind?: Entry['kind']): Entry | undefined => {
    const among = kind === undefined ? entries : entries.filter((entry) => entry.kind === kind);
    return r === undefined || among.length === 0 ? undefined : among[r % among.length];
  };
  /**
   * Each task's lifecycle events, checked as they come against the one order they may come in:
   * added, then attempts (started; then attemptFailed and retrying before the next), then one
   * final event, the handle's final status, and nothing after it.
   */
  const lives = new Map<string, { state: 'waiting' | 'running' | 'backoff' | 'ended'; attempt: number; final: string | undefined }>();
  const finals = new Set<string>(['succeeded', 'failed', 'timedOut', 'cancelled', 'skipped', 'abandoned']);
  const onEvent = (event: TaskEvent): void => {
    const life = lives.get(event.id);
    const where = `event ${event.type} (attempt ${event.attempt}) of #${event.id}`;
    if (event.scope === '') violate(`${where} names no scope`);
    if (life === undefined) {
      if (event.type !== 'added') violate(`${where} came before its added event`);
      else lives.set(event.id, { state: 'waiting', attempt: 0, final: undefined });
      return;
    }
    if (event.type === 'progress') {
      if (life.state !== 'running') violate(`${where} came while the task was ${life.state}`);
      return;
    }
    if (finals.has(event.type)) {
      if (life.state === 'ended') violate(`${where} came after its final event ${life.final}`);
      life.state = 'ended';
      life.final = event.type;
      return;
    }
    const expected = { waiting: 'started', running: 'attemptFailed', backoff: 'retrying', ended: undefined }[life.state];
    if (event.type !== expected) violate(`${where} came while the task was ${life.state}`);
    if (event.type === 'started') {
      if (event.attempt !== life.attempt + 1) violate(`${where} follows attempt ${life.attempt}`);
      life.attempt = event.attempt;
    } else if (event.attempt !== life.attempt) violate(`${where} is not about attempt ${life.attempt}`);
    life.state = event.type === 'started' ? 'running' : event.type === 'attemptFailed' ? 'backoff' : 'waiting';
  };
  const observation = observeTasks(onEvent, { container: root });
  let reactionsLeft = reactionBudget;
  /** The program's reactions to events, after the checks' observer has seen each. */
  const react = (event: TaskEvent): void => {
    for (const { on, action, ref: r } of world.reactions) {
      if (event.type !== on || reactionsLeft <= 0) continue;
      reactionsLeft--;
      const where = `an observer of ${on}`;
      switch (action) {
        case 'cancelSelf': {
          // From `added`, before add() has returned its handle: found by its id.
          const handle = bgs[0]!.get(event.id, { application: true });
          if (handle !== undefined) cancelFrom(where, { handle, kind: 'once', id: event.id });
          break;
        }
        case 'cancelOther':
          cancelFrom(where, pick(r));
          break;
        case 'add': {
          const scope = r % scopes;
          try {
            track(bgs[scope]!.add(async () => 'added by an observer'), 'once', scope);
          } catch (error) {
            const name = error instanceof Error ? error.name : String(error);
            if (name !== 'BackgroundDisposedError' && name !== 'QueueFullError') violate(`add() from ${where} threw ${String(error)}`);
          }
          break;
        }
        case 'drain': {
          const scope = r % scopes;
          const bg = bgs[scope]!;
          // An idle scope's drain() resolves at once (as documented): a reaction after this one
          // may add to the scope before the promise's reaction runs.
          const idle = bg.pending === 0;
          void bg.drain().then(() => {
            const open = entries.filter((entry) => entry.kind === 'once' && entry.scope === scope && !finalStatuses.has(entry.handle.status));
            if (!idle && (bg.pending !== 0 || open.length > 0)) violate(`drain() of scope ${scope} from ${where} resolved with pending ${bg.pending} and ${open.map((e) => `#${e.id} ${e.handle.status}`).join(', ')} unfinished`);
          });
          break;
        }
        case 'dispose': {
          const scope = r % scopes;
          disposing.add(scope);
          if (shutdownReport !== undefined && bgs[scope]!.pending > 0) shutdownReport.exact = false;
          void bgs[scope]!.dispose();
          break;
        }
      }
    }
  };
  const reactions = world.reactions.length === 0 ? undefined : observeTasks(react, { container: root });

  const isDone = (entry: Entry, status: TaskStatus): boolean => (entry.kind === 'periodic' ? status === 'cancelled' : finalStatuses.has(status));

  /** Cancels through the handle and checks what cancel() says against what the handle was. */
  const cancelFrom = (where: string, target: Pick<Entry, 'handle' | 'kind' | 'id'> | undefined): void => {
    if (target === undefined) return;
    const before = target.handle.status;
    const cancelled = target.handle.cancel(where);
    if (cancelled === isDone(target as Entry, before)) violate(`cancel() from ${where} returned ${cancelled} on #${target.id}, which was ${before}`);
    if (cancelled && target.handle.status !== 'cancelled') violate(`cancel() from ${where} returned true but #${target.id} is ${target.handle.status}`);
  };

  const track = (handle: TaskHandle, kind: Entry['kind'], scope: number, worker = false): Entry => {
    const entry: Entry = { id: handle.id, kind, scope, handle, worker, lastStatus: handle.status, settled: [] };
    entries.push(entry);
    if (kind === 'once') {
      handle.result().then(
        () => entry.settled.push({ as: 'ok', status: handle.status }),
        (error: unknown) => entry.settled.push({ as: error instanceof Error ? error.name : String(error), status: handle.status }),
      );
    }
    return entry;
  };

  /** The body of a task, as each lane runs it. */
  const makeBody = (add: AddStep, record: Body$) => {
    const begin = (): void => {
      record.starts++;
      const entry = record.entry;
      if (entry !== undefined) {
        if (entry.handle.status !== 'running') violate(`the body of #${entry.id} started while its handle is ${entry.handle.status}`);
        // Abandonment comes from a deadline's timer: a body abandoned before the end of the turn
        // it started in was started by the abandonment itself.
        const attempt = entry.handle.attempt;
        queueMicrotask(() => {
          if (entry.handle.status === 'abandoned' && entry.handle.attempt === attempt) violate(`#${entry.id} was started by the abandonment that ended it`);
        });
      }
      cancelFrom('a task body', pick(add.cancelOnStart));
    };
    const end = (): void => {
      cancelFrom('a finally block', pick(add.cancelInFinally));
    };
    const waitGate = (signal: AbortSignal | undefined): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        record.gate = { resolve, reject };
        signal?.addEventListener('abort', () => {
          cancelFrom('an abort listener', pick(add.cancelOnAbort));
          if (add.body === 'abortable') reject(signal.reason as Error);
        });
      });
    if (add.lane === 'sync') {
      return () => {
        begin();
        try {
          if (add.body === 'fail') throw new Error('sync failure');
          return 'sync';
        } finally {
          end();
        }
      };
    }
    const run = async (signal: AbortSignal | undefined): Promise<string> => {
      begin();
      try {
        if (add.body === 'fail') throw new Error('async failure');
        if (add.body === 'gate' || add.body === 'abortable') await waitGate(signal);
        return 'async';
      } finally {
        end();
      }
    };
    return run;
  };

  const doAdd = (add: AddStep): void => {
    const bg = bgs[add.scope]!;
    const record: Body$ = { entry: undefined, gate: undefined, starts: 0 };
    const body = makeBody(add, record);
    const after = pick(add.after, 'once');
    const options: CallOptions = {
      priority: add.priority,
      retries: add.retries,
      backoff: { baseMs: 3, jitter: 0 },
      ...(add.timeoutMs === undefined ? {} : { timeoutMs: add.timeoutMs }),
      ...(add.delayMs === undefined ? {} : { delayMs: add.delayMs }),
      ...(after === undefined ? {} : { after: [after.handle] }),
      retryIf: () => {
        cancelFrom('retryIf', pick(add.cancelInRetryIf));
        return add.retryIfAnswer;
      },
    };
    const adder = add.group ? bg.group().with(options) : bg.with(options);
    let handle: TaskHandle;
    try {
      if (add.lane === 'worker') {
        const cell = new Int32Array(new SharedArrayBuffer(8));
        const task = { ok: modelOk, fail: modelFails, gate: modelGated, abortable: modelAbortable }[add.body];
        handle = adder.add(task, cell);
        const open = (fails: boolean): void => {
          if (fails) Atomics.store(cell, 1, 1);
          Atomics.store(cell, 0, 1);
          Atomics.notify(cell, 0);
        };
        record.gate = { resolve: () => open(false), reject: () => open(true) };
      } else if (add.lane === 'context') {
        const task = defineTask({ name: 'withContext', inject: [TaskContext] }, async (ctx) => (body as (s: AbortSignal) => Promise<string>)(ctx.signal));
        handle = adder.add(task);
      } else if (add.lane === 'sync') {
        handle = adder.add(body as () => string);
      } else {
        handle = adder.add(async () => (body as (s: AbortSignal | undefined) => Promise<string>)(undefined));
      }
    } catch (error) {
      const name = error instanceof Error ? error.name : String(error);
      if (name !== 'BackgroundDisposedError' && name !== 'QueueFullError') violate(`add() threw ${String(error)}`);
      return;
    }
    record.entry = track(handle, 'once', add.scope, add.lane === 'worker');
    if (record.starts > 0) violate(`the body of #${handle.id} started inside add()`);
    gates.set(record.entry, record);
  };
  const gates = new Map<Entry, Body$>();

  /**
   * What closes with the application: each is called once as the close begins (at once when it
   * has begun: then with no more than what is left of the deadline), never once it has left, and
   * the close resolves only after every one it called has settled.
   */
  interface Participant {
    readonly step: number;
    /** Whether its close ends by itself (after its `settleMs`), or only when released. */
    readonly selfSettling: boolean;
    /** Joined once the close had begun: closed at once, the close waiting for it only if still draining. */
    readonly late: boolean;
    calls: number[];
    left: boolean;
    released: boolean;
    settled: boolean;
    release: () => void;
    leave: () => void;
  }
  const participants: Participant[] = [];
  const closeWith = (bgs[0] as unknown as Record<symbol, (participant: (timeoutMs: number) => Promise<void>) => () => void>)[Symbol.for('tsyringe-background.closeWith')]!;
  const join = (settleMs: number | undefined): void => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const release = (): void => {
      participant.released = true;
      open();
    };
    const participant: Participant = { step: stepNo, selfSettling: settleMs !== undefined, late: shutdownReport !== undefined, calls: [], left: false, released: false, settled: false, release, leave: () => undefined };
    participants.push(participant);
    participant.leave = closeWith.call(bgs[0], (timeoutMs) => {
      participant.calls.push(timeoutMs);
      if (settleMs !== undefined) setTimeout(release, settleMs);
      return gate.then(() => void (participant.settled = true));
    });
  };
  const checkParticipants = (): void => {
    const closeBegan = shutdownReport !== undefined;
    for (const participant of participants) {
      const which = `the participant joined at step ${participant.step}`;
      if (participant.calls.length > 1) violate(`${which} was called ${participant.calls.length} times`);
      if (closeBegan && !participant.left && participant.calls.length === 0) violate(`${which} was not called though the close began`);
      if (participant.calls.some((ms) => ms > (shutdownReport?.timeoutMs ?? Infinity))) violate(`${which} was called with ${participant.calls.join(', ')} ms, past the close's ${shutdownReport?.timeoutMs} ms`);
      if (!participant.late && shutdownReport?.report !== undefined && participant.calls.length === 1 && !participant.settled) violate(`shutdown() resolved before ${which} had closed`);
    }
  };

  const check = (): void => {
    checkParticipants();
    for (const entry of entries) {
      const status = entry.handle.status;
      if (!allStatuses.has(status)) violate(`#${entry.id} has an unknown status ${status}`);
      if (isDone(entry, entry.lastStatus) && status !== entry.lastStatus) violate(`#${entry.id} left its final status ${entry.lastStatus} for ${status}`);
      entry.lastStatus = status;
      if (entry.settled.length > 1) violate(`#${entry.id} settled ${entry.settled.length} times: ${JSON.stringify(entry.settled)}`);
      if (entry.kind === 'once') {
        const life = lives.get(entry.id);
        if (life === undefined) violate(`#${entry.id} was added without an added event`);
        else if (finalStatuses.has(status) ? life.final !== status : life.state === 'ended') violate(`#${entry.id} is ${status} but its events ended with ${life.final ?? 'none'}`);
      }
      const settled = entry.settled[0];
      if (settled !== undefined) {
        if (settled.status !== status) violate(`#${entry.id} settled while ${settled.status}, and is now ${status}`);
        const expected: Partial<Record<TaskStatus, string>> = {
          succeeded: 'ok',
          cancelled: TaskCancelledError.name,
          timedOut: TaskTimeoutError.name,
          skipped: TaskSkippedError.name,
          abandoned: TaskAbandonedError.name,
        };
        const want = expected[status];
        if (want !== undefined ? settled.as !== want : status !== 'failed' || settled.as === 'ok') violate(`#${entry.id} is ${status} but its result() settled as ${settled.as}`);
      }
    }
    const running = entries.filter((entry) => entry.kind === 'once' && !entry.worker && entry.handle.status === 'running').length;
    if (running > world.concurrency) violate(`${running} tasks are running under a concurrency of ${world.concurrency}`);
    if (app.lane.running < 0 || app.lane.running > world.concurrency) violate(`the lane counts ${app.lane.running} running under a concurrency of ${world.concurrency}`);
    if (app.lane.queued < 0) violate(`the lane counts ${app.lane.queued} queued`);
    if (app.hasPool) {
      const { admission } = app.pool;
      if (admission.running < 0 || admission.running > world.maxThreads) violate(`the pool's admission counts ${admission.running} running with maxThreads ${world.maxThreads}`);
      if (admission.queued < 0) violate(`the pool's admission counts ${admission.queued} queued`);
      const workers = entries.filter((entry) => entry.worker && entry.handle.status === 'running').length;
      if (workers > world.maxThreads) violate(`${workers} worker tasks are running with maxThreads ${world.maxThreads}`);
    }
    bgs.forEach((bg, scope) => {
      const live = bg.list({ status: liveStatuses }).length;
      if (bg.pending !== live) violate(`scope ${scope}: pending is ${bg.pending} but ${live} of its tasks are live`);
      const tracked = entries.filter((entry) => entry.kind === 'once' && entry.scope === scope && !finalStatuses.has(entry.handle.status)).length;
      if (bg.pending < tracked) violate(`scope ${scope}: pending is ${bg.pending} with ${tracked} of its handles unfinished`);
    });
  };

  for (stepNo = 0; stepNo < steps.length; stepNo++) {
    const s = steps[stepNo]!;
    switch (s.op) {
      case 'add':
        doAdd(s);
        break;
      case 'every': {
        try {
          const handle = bgs[s.scope]!.with({ every: s.every, overlap: s.overlap }).add(async () => {
            if (s.body === 'gate') await new Promise<void>((resolve) => setTimeout(resolve, 3));
          });
          track(handle, 'periodic', s.scope);
        } catch (error) {
          if (!(error instanceof Error && error.name === 'BackgroundDisposedError')) violate(`add() of a periodic task threw ${String(error)}`);
        }
        break;
      }
      case 'cancel':
        cancelFrom('outside', pick(s.ref));
        break;
      case 'open': {
        const entry = pick(s.ref, 'once');
        const record = entry === undefined ? undefined : gates.get(entry);
        const gate = record?.gate;
        if (record !== undefined && gate !== undefined) {
          record.gate = undefined;
          if (s.ok) gate.resolve();
          else gate.reject(new Error('gate failed'));
        }
        break;
      }
      case 'advance':
        await clock.advance(s.ms);
        break;
      case 'drain': {
        const bg = bgs[s.scope]!;
        void bg.drain().then(() => {
          const open = entries.filter((entry) => entry.kind === 'once' && entry.scope === s.scope && !finalStatuses.has(entry.handle.status));
          if (bg.pending !== 0 || open.length > 0) violate(`drain() of scope ${s.scope} resolved with pending ${bg.pending} and ${open.map((e) => `#${e.id} ${e.handle.status}`).join(', ')} unfinished`);
        });
        break;
      }
      case 'dispose': {
        const bg = bgs[s.scope]!;
        disposing.add(s.scope);
        // A scope's own deadline may then abandon tasks during the shutdown: not the report's.
        if (shutdownReport !== undefined && bg.pending > 0) shutdownReport.exact = false;
        void bg.dispose().then(() => {
          const open = entries.filter((entry) => entry.kind === 'once' && entry.scope === s.scope && !finalStatuses.has(entry.handle.status));
          if (open.length > 0) violate(`dispose() of scope ${s.scope} resolved with ${open.map((e) => `#${e.id} ${e.handle.status}`).join(', ')} unfinished`);
        });
        break;
      }
      case 'waitForRoom': {
        const waiter = { settled: false };
        waiters.push(waiter);
        void bgs[s.scope]!.waitForRoom().then(() => (waiter.settled = true));
        break;
      }
      case 'shutdown': {
        if (shutdownReport !== undefined) break;
        const abandonedBefore = abandonedSoFar();
        const exact = [...disposing].every((scope) => bgs[scope]!.pending === 0);
        const record: ShutdownSeen = { report: undefined, abandonedBefore, exact, timeoutMs: s.timeoutMs };
        shutdownReport = record;
        void shutdown({ container: root, timeoutMs: s.timeoutMs }).then((report) => (record.report = report));
        break;
      }
      case 'join':
        join(s.settleMs);
        break;
      case 'leave': {
        const participant = participants.length === 0 ? undefined : participants[s.ref % participants.length]!;
        if (participant !== undefined && participant.calls.length === 0) participant.left = true;
        participant?.leave();
        break;
      }
      case 'release':
        if (participants.length > 0) participants[s.ref % participants.length]!.release();
        break;
    }
    await clock.settle();
    check();
    if (violations.length > 0) throw new Violation(violations.join('\n'));
  }

  // The end: the application closes, and everything must have ended. With worker tasks, every
  // gate opens first and the close waits longer, so that worker tasks get to end by themselves
  // (a thread takes longer to start than a program lasts).
  stepNo = steps.length;
  const withWorkers = entries.some((entry) => entry.worker);
  if (withWorkers) {
    for (const record of gates.values()) record.gate?.resolve();
  }
  const closing = shutdown({ container: root, timeoutMs: withWorkers ? 3_000 : 20 });
  let closed = false;
  void closing.then(() => (closed = true));
  // The close waits for what closes with it: held ones are let go once it has begun.
  const held = participants.filter((participant) => participant.calls.length === 1 && !participant.released && !participant.selfSettling && !participant.late);
  await clock.settle();
  if (held.length > 0 && closed) violate(`shutdown() resolved while ${held.length} participant(s) it called had not closed`);
  for (const participant of participants) participant.release();
  for (let i = 0; i < 1_000 && !closed; i++) await clock.advance(5);
  if (!closed) violate('shutdown() did not resolve');
  for (const participant of participants) {
    if (!participant.left && participant.calls.length !== 1) violate(`the participant joined at step ${participant.step} was called ${participant.calls.length} times by the end`);
    if (participant.left && participant.calls.length > 0) violate(`the participant joined at step ${participant.step} was called after it left`);
  }
  await clock.settle();
  check();
  for (const entry of entries) {
    if (!isDone(entry, entry.handle.status)) violate(`#${entry.id} is still ${entry.handle.status} after the application closed`);
    if (entry.kind === 'once' && entry.settled.length !== 1) violate(`#${entry.id} settled ${entry.settled.length} times by the end`);
  }
  const report = shutdownReport?.report;
  if (shutdownReport !== undefined && report !== undefined && shutdownReport.exact) {
    const abandoned = abandonedSoFar() - shutdownReport.abandonedBefore;
    if (report.abandoned !== abandoned) violate(`shutdown() reported ${report.abandoned} abandoned, but ${abandoned} tasks were abandoned meanwhile`);
  }
  for (const [id, life] of lives) if (life.state !== 'ended') violate(`#${id} had no final event by the end (last: ${life.state})`);
  observation();
  reactions?.();
  if (waiters.some((waiter) => !waiter.settled)) violate(`${waiters.filter((w) => !w.settled).length} waitForRoom() never settled`);
  if (clock.fake) await clock.advance(10_000);
  if (violations.length > 0) throw new Violation(violations.join('\n'));
  if (tally !== undefined) {
    tally.programs++;
    tally.steps += steps.length;
    for (const entry of entries) {
      const key = `${entry.kind === 'periodic' ? 'periodic' : entry.worker ? 'worker' : 'event loop'} ${entry.handle.status}`;
      tally.outcomes[key] = (tally.outcomes[key] ?? 0) + 1;
    }
  }
}

/** What the programs run so far did: how many, how many steps, and how their tasks ended. */
export interface Tally {
  programs: number;
  steps: number;
  readonly outcomes: Record<string, number>;
}

export function newTally(): Tally {
  return { programs: 0, steps: 0, outcomes: {} };
}
