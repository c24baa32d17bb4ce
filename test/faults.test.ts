/**
 * Faults: bad input fails at the call site and leaves no trace; a task that fails in any way
 * (throws, rejects with anything, never settles, settles too late, blocks the loop, kills or
 * exhausts its worker thread, loops forever) ends with exactly one recorded outcome, the work
 * around it goes on, and nothing becomes an unhandled rejection.
 */
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { inject, injectable, type DependencyContainer } from 'tsyringe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  BackgroundError,
  defineTask,
  QueueFullError,
  shutdown,
  TaskDependencyError,
  TaskNonErrorError,
  TaskTimeoutError,
  transfer,
  WorkerTaskError,
  type CallOptions,
  type BackgroundOptions,
  type TaskHandle,
  type TaskStatus,
} from '../src/index.js';
import { appOf } from '../src/di/container.js';
import { exits, gated, greet, hogsMemory, spins, sumBytes, throwsString } from './fixtures/worker-tasks.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

const Db = Symbol('Db');
const Greeting = Symbol('Greeting');
const finals = ['succeeded', 'failed', 'timedOut', 'cancelled', 'skipped', 'abandoned'] as const;
const setupModule = new URL('./fixtures/worker-setup.ts', import.meta.url);

const roots: DependencyContainer[] = [];
function setup(options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const root = freshApp({ logger, ...options, pool: { setupModule, ...options.pool } });
  roots.push(root);
  const scope = root.createChildContainer();
  scope.register(Greeting, { useValue: 'hello' });
  scope.register(Db, { useFactory: () => { throw new Error('database down'); } });
  return { root, scope, logger, bg: scope.resolve(Background) };
}

const { unhandled, uncaught } = watchProcessErrors();
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 100 })));
});

/** Everything `add()` could have changed: what is queued, recorded, scheduled, pooled, logged. */
function trace(bg: Background, root: DependencyContainer, logger: ReturnType<typeof captureLogger>) {
  const app = appOf(root);
  return {
    pending: bg.pending,
    stats: bg.stats(),
    application: bg.stats({ application: true }),
    listed: bg.list({ application: true }).map((handle) => handle.id),
    schedules: app.periodics.size,
    pool: app.hasPool,
    logged: logger.entries.length,
  };
}

/** Tasks used as bad input, and whether any of them ever ran. */
const ran: string[] = [];
const spy = (label: string) => async () => {
  ran.push(label);
};
const needsConfig = defineTask({ name: 'needsConfig', inject: ['Config'] }, async () => {
  ran.push('needsConfig');
});
const needsDb = defineTask({ name: 'needsDb', inject: [Greeting, Db] }, async () => {
  ran.push('needsDb');
});
@injectable()
class NeedsDb {
  constructor(@inject(Db) readonly db: unknown) {}
  async run(): Promise<void> {
    ran.push('NeedsDb');
  }
}
class StaticRun {
  static run(): void {
    ran.push('StaticRun');
  }
}
const cell = () => new Int32Array(new SharedArrayBuffer(4));

type BadCall = [
  label: string,
  call: (bg: Background, prepared: TaskHandle | undefined) => unknown,
  type: new (...args: never[]) => Error,
  message: RegExp,
  prepare?: { options?: BackgroundOptions; run: (bg: Background) => TaskHandle | Promise<TaskHandle> },
];

// Complements the validation tables of add.test.ts, options.test.ts, task-control.test.ts and
// worker.test.ts with cases they do not have, and checks for every case that nothing was left
// behind: nothing queued, recorded, scheduled, pooled or logged, and nothing ran later.
const badCalls: BadCall[] = [
  ['undefined as the task', (bg) => bg.add(undefined as never), TypeError, /^bg\.add\(task\): task must be a function, .* got undefined \(undefined\)$/],
  ['a promise: the task called instead of passed, add(task())', (bg) => bg.add(Promise.resolve() as never), TypeError, /got an instance of Promise$/],
  ['an array of tasks', (bg) => bg.add([spy('a'), spy('b')] as never), TypeError, /got an instance of Array$/],
  ['a symbol', (bg) => bg.add(Symbol('sendMail') as never), TypeError, /got Symbol\(sendMail\) \(symbol\)$/],
  ['a class whose run() is static', (bg) => bg.add(StaticRun as never), TypeError, /^bg\.add\(StaticRun\): a class task needs a run\(\) method on its prototype/],
  ['a non-task through a view', (bg) => bg.with({ priority: 'high' }).add(42 as never), TypeError, /got 42 \(number\)$/],
  ['a non-task as a periodic task', (bg) => bg.with({ every: 1_000 }).add('tick' as never), TypeError, /got "tick" \(string\)$/],
  ['a definition with an unregistered string token', (bg) => bg.add(needsConfig), TaskDependencyError, /^Cannot add task "needsConfig": the dependency at position #0 \(token "Config"\) cannot be resolved: /],
  ['a definition whose dependency factory throws', (bg) => bg.add(needsDb), TaskDependencyError, /^Cannot add task "needsDb": the dependency at position #1 \(token Symbol\(Db\)\) cannot be resolved: database down$/],
  ['a class task whose dependency factory throws', (bg) => bg.add(NeedsDb), TaskDependencyError, /^Cannot add task "NeedsDb": the dependency at position #0 \(parameter db\) cannot be resolved: .*database down/s],
  ['a periodic task with an unresolvable dependency', (bg) => bg.with({ every: 1_000 }).add(needsConfig), TaskDependencyError, /token "Config"/],
  ['a worker task with a function as its second argument', (bg) => bg.add(gated, cell(), (() => 'label') as never), TypeError, /^bg\.add\("gated"\): argument #1 \(args\[1\]\) is a function/],
  ['a worker task with a function inside a Map', (bg) => bg.add(sumBytes, new Map([['onDone', () => 1]]) as never), TypeError, /argument #0 \(args\[0\]\.get\(onDone\)\) is a function/],
  ['a worker task with a Promise argument', (bg) => bg.add(sumBytes, Promise.resolve(new Uint8Array(1)) as never), TypeError, /argument #0 \(args\[0\]\) is an instance of Promise/],
  ['a worker task with a WeakMap inside an object', (bg) => bg.add(sumBytes, { cache: new WeakMap() } as never), TypeError, /argument #0 \(args\[0\]\.cache\) is an instance of WeakMap/],
  ['transfer() of something that cannot move', (bg) => bg.add(sumBytes, transfer([1, 2] as never)), TypeError, /^transfer\(value\): value must be an ArrayBuffer, a typed array, a DataView or a MessagePort, got an instance of Array$/],
  ['bg.with(null)', (bg) => bg.with(null as unknown as CallOptions).add(spy('with null')), TypeError, /^bg\.with\(options\): options must be an object, got null$/],
  ['a NaN priority', (bg) => bg.with({ priority: NaN }).add(spy('NaN')), RangeError, /priority must be .* got NaN \(number\)$/],
  ['a negative delayMs', (bg) => bg.with({ delayMs: -1 }).add(spy('delay')), RangeError, /options\.delayMs must be an integer from 0 to 2147483647, got -1 \(number\)$/],
  ['runAt given as a string', (bg) => bg.with({ runAt: 'tomorrow' as never }).add(spy('runAt')), TypeError, /options\.runAt must be a valid Date or epoch milliseconds, got "tomorrow" \(string\)$/],
  ['an unknown time zone', (bg) => bg.with({ cron: '0 * * * * *', tz: 'Mars/Olympus_Mons' }).add(spy('tz')), TypeError, /options\.cron "0 \* \* \* \* \*" with options\.tz "Mars\/Olympus_Mons" is not valid/],
  // A periodic task's handle is not accepted in `after`: it never finishes, so nothing could run after it.
  [
    'after: a periodic task',
    (bg, periodic) => bg.with({ after: [periodic!] }).add(spy('after periodic')),
    TypeError,
    /^bg\.with\(options\): options\.after\[0\] must be a handle of a one-off task returned by add\(\) \(a periodic task never finishes\), got an instance of Periodic$/,
    { run: (bg) => bg.with({ every: 60_000 }).add(spy('periodic')) },
  ],
  [
    'a full queue',
    (bg) => bg.add(spy('one too many')),
    QueueFullError,
    /^Cannot add task "anonymous": the queue is full \(maxQueued 1: 1 queued, 1 running\)/,
    {
      options: { concurrency: 1, maxQueued: 1 },
      run: async (bg) => {
        bg.add(() => new Promise<never>(() => undefined));
        await nextTurn();
        return bg.add(spy('queued'));
      },
    },
  ],
  [
    'result() with a negative timeout',
    (_bg, handle) => handle!.result({ timeoutMs: -1 }),
    RangeError,
    /^handle\.result\(options\): options\.timeoutMs must be an integer from 0 to 2147483647, got -1 \(number\)$/,
    { run: (bg) => bg.add(() => new Promise<never>(() => undefined)) },
  ],
];

describe('bad input', () => {
  it.each(badCalls)('%s: a typed error at the call site; nothing queued, recorded or logged', async (_label, call, type, message, prepare) => {
    ran.length = 0;
    const { root, bg, logger } = setup(prepare?.options);
    const prepared = await prepare?.run(bg);
    await nextTurn();
    const before = trace(bg, root, logger);
    const ranBefore = [...ran];
    let thrown: unknown;
    try {
      call(bg, prepared);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(type);
    expect((thrown as Error).message).toMatch(message);
    if (thrown instanceof BackgroundError) expect(thrown.code).toMatch(/^ERR_/);
    expect(trace(bg, root, logger)).toEqual(before);
    await nextTurn();
    expect(ran).toEqual(ranBefore);
    expect(logger.entries).toEqual([]);
    prepared?.result().catch(() => undefined);
    prepared?.cancel();
  });

  // A bad result() call throws before it creates the lazy result promise, so nothing can
  // later reject unobserved.
  it('a result() call rejected for a bad timeout leaves no promise behind to reject unobserved', async () => {
    const { bg } = setup();
    const handle = bg.add(async () => new Promise<never>(() => undefined));
    expect(() => handle.result({ timeoutMs: -1 })).toThrow(RangeError);
    const seen: unknown[] = [];
    const onSeen = (reason: unknown) => seen.push(reason);
    process.on('unhandledRejection', onSeen);
    handle.cancel('no longer needed');
    await nextTurn();
    await nextTurn();
    process.off('unhandledRejection', onSeen);
    unhandled.length = 0; // seen here; not a failure of the suite
    expect(seen).toEqual([]);
  });
});

/** Waits `ms` on the (fake) clock. */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** An object every property read of which throws. */
const hostile = new Proxy({}, {
  get() {
    throw new Error('no property of this object may be read');
  },
});
const busy = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

type Fault = [
  label: string,
  add: (bg: Background) => TaskHandle,
  status: TaskStatus,
  error: (new (...args: never[]) => Error) | undefined,
  logs: { error: number; warn: number },
];

const faults: Fault[] = [
  ['throws (a sync task)', (bg) => bg.add(function throwsSync() { throw new RangeError('sync'); }), 'failed', RangeError, { error: 1, warn: 0 }],
  ['throws before its first await', (bg) => bg.add(async function throwsEarly() { throw new TypeError('early'); }), 'failed', TypeError, { error: 1, warn: 0 }],
  ['rejects after awaiting', (bg) => bg.add(async function rejectsLate() { await nextTurn(); throw new Error('late'); }), 'failed', Error, { error: 1, warn: 0 }],
  ['returns a thenable that rejects (a sync task)', (bg) => bg.add(function thenable() { return { then: (_ok: unknown, fail: (e: unknown) => void) => fail(new Error('thenable')) }; }), 'failed', Error, { error: 1, warn: 0 }],
  ...([
    ['a string', 'just a string'],
    ['undefined', undefined],
    ['null', null],
    ['zero', 0],
    ['false', false],
    ['a symbol', Symbol('thrown')],
    ['a bigint', 10n],
    ['an Error-like plain object', { name: 'Error', message: 'looks like one', stack: 'Error: looks like one' }],
    ['a frozen array', Object.freeze([1, 2])],
    ['an object whose every property read throws', hostile],
  ] as const).map(([what, value]): Fault => [
    `rejects with ${what}`,
    (bg) => bg.add(async function rejectsNonError() { await Promise.resolve(); throw value; }),
    'failed',
    TaskNonErrorError,
    { error: 1, warn: 0 },
  ]),
  ['never settles, with a timeout', (bg) => bg.with({ timeoutMs: 50 }).add(async function hangs() { await new Promise(() => undefined); }), 'timedOut', TaskTimeoutError, { error: 1, warn: 0 }],
  ['resolves after its timeout', (bg) => bg.with({ timeoutMs: 50 }).add(async function tooSlow() { await sleep(100); return 'late'; }), 'timedOut', TaskTimeoutError, { error: 1, warn: 0 }],
  ['rejects after its timeout', (bg) => bg.with({ timeoutMs: 50 }).add(async function failsTooLate() { await sleep(100); throw new Error('late failure'); }), 'timedOut', TaskTimeoutError, { error: 1, warn: 0 }],
  ['times out, retries, and times out again', (bg) => bg.with({ timeoutMs: 50, retries: 1, backoff: { baseMs: 10, jitter: 0 } }).add(async function hangsTwice() { await new Promise(() => undefined); }), 'timedOut', TaskTimeoutError, { error: 1, warn: 1 }],
  ['blocks the loop (a sync task): warned, naming it', (bg) => bg.add(function blocks() { busy(30); }), 'succeeded', undefined, { error: 0, warn: 1 }],
  ['blocks the loop, then throws', (bg) => bg.add(function blocksThenThrows() { busy(30); throw new Error('after blocking'); }), 'failed', Error, { error: 1, warn: 1 }],
  // Observed: only sync tasks are timed, so an async task that blocks before its first await is
  // not warned about.
  ['blocks the loop before its first await (an async task): not warned', (bg) => bg.add(async function blocksAsync() { busy(30); await Promise.resolve(); }), 'succeeded', undefined, { error: 0, warn: 0 }],
  ['fails, and its retryIf throws: not retried, both logged', (bg) => bg.with({ retries: 3, retryIf: () => { throw new Error('retryIf broke'); } }).add(async function judged() { throw new Error('first failure'); }), 'failed', Error, { error: 2, warn: 0 }],
];

describe('a task that fails on the event loop', () => {
  it.each(faults)('%s: one outcome, the rest of the work goes on', async (_label, addFault, status, errorType, logs) => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { bg, logger } = setup({ concurrency: 1, warnBlockingMs: 10 });
    const before = bg.add(async () => 'before');
    const fault = addFault(bg);
    const after = bg.add(async () => 'after');
    const drained = bg.drain();
    await vi.advanceTimersByTimeAsync(200); // past every timeout (50 ms) and late settlement (100 ms)
    await drained;
    await vi.advanceTimersByTimeAsync(200);

    expect(fault.status).toBe(status);
    await expect(before.result()).resolves.toBe('before');
    await expect(after.result()).resolves.toBe('after');
    const { total, byStatus } = bg.stats();
    expect(total).toBe(3);
    expect(finals.reduce((sum, final) => sum + byStatus[final], 0)).toBe(3);
    expect(byStatus[status]).toBe(status === 'succeeded' ? 3 : 1);
    expect(byStatus.succeeded).toBe(status === 'succeeded' ? 3 : 2);
    if (errorType === undefined) {
      await expect(fault.result()).resolves.toBeUndefined();
    } else {
      const error = await fault.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(errorType);
      expect((error as Error).stack).toEqual(expect.any(String));
    }
    expect(logger.at('error')).toHaveLength(logs.error);
    expect(logger.at('warn')).toHaveLength(logs.warn);
    for (const entry of [...logger.at('error'), ...logger.at('warn')]) expect(entry.fields).toMatchObject({ task: fault.name, taskId: fault.id });
    expect(unhandled).toEqual([]);
    expect(uncaught).toEqual([]);
  });
});

// Hostile values, run in a process of their own against dist/ (a production process would die
// of what escapes; in Vitest it would fail the whole run): a thrown revoked proxy, whose
// `instanceof` throws, and a returned object whose `instanceof` or `then` throws.
describe('a task that fails with a hostile value (in a child process, against dist/)', () => {
  const script = fileURLToPath(new URL('./fixtures/hostile-values.mjs', import.meta.url));
  it.each([
    ['an async task that throws a revoked proxy', 'asyncThrows', 'rejectsRevoked'],
    ['a sync task that throws a revoked proxy', 'syncThrows', 'throwsRevoked'],
    ['a sync task that returns a revoked proxy', 'syncReturns', 'returnsRevoked'],
    ['a sync task that returns a proxy that throws on unknown keys', 'syncReturnsStrict', 'returnsStrict'],
  ])('%s fails like any other: one outcome, the next task runs, the process lives', async (_label, which, name) => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, [script, which], { timeout: 10_000 }, (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') reject(new Error(error.message));
        else resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
      });
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ fault: 'failed', after: 'succeeded', logged: [`task "${name}" failed`] });
  });
});

describe('a worker task that fails', () => {
  it('by exiting, running out of memory or looping forever: one outcome each, and the pool goes on', { timeout: 30_000 }, async () => {
    const { root, bg, logger } = setup({
      pool: { maxThreads: 1, minThreads: 1, terminateAfterMs: 50, resourceLimits: { maxOldGenerationSizeMb: 32 } },
    });
    const open = cell();
    Atomics.store(open, 0, 1); // an open gate: `exits` exits at once
    const started = cell();
    const handles = {
      first: bg.add(greet, 'first'),
      exits: bg.add(exits, open),
      afterExit: bg.add(greet, 'after the exit'),
      hogsMemory: bg.add(hogsMemory),
      afterHog: bg.add(greet, 'after the hog'),
      throwsString: bg.add(throwsString),
      spins: bg.with({ timeoutMs: 300 }).add(spins, started),
      afterSpin: bg.add(greet, 'after the spin'),
    };
    const drained = bg.drain();
    const late = deferred<'late'>();
    const timer = setTimeout(() => late.resolve('late'), 25_000);
    await expect(Promise.race([drained.then(() => 'drained'), late.promise])).resolves.toBe('drained');
    clearTimeout(timer);

    const statuses = Object.fromEntries(Object.entries(handles).map(([key, handle]) => [key, handle.status]));
    expect(statuses).toEqual({
      first: 'succeeded',
      exits: 'failed',
      afterExit: 'succeeded',
      hogsMemory: 'failed',
      afterHog: 'succeeded',
      throwsString: 'failed',
      spins: 'timedOut',
      afterSpin: 'succeeded',
    });
    await expect(handles.exits.result()).rejects.toMatchObject({ code: 'ERR_WORKER_EXITED' });
    await expect(handles.hogsMemory.result()).rejects.toMatchObject({ code: 'ERR_WORKER_OUT_OF_MEMORY' });
    await expect(handles.exits.result()).rejects.toBeInstanceOf(WorkerTaskError);
    await expect(handles.throwsString.result()).rejects.toBeInstanceOf(TaskNonErrorError);
    await expect(handles.spins.result()).rejects.toBeInstanceOf(TaskTimeoutError);
    await expect(handles.afterSpin.result()).resolves.toMatchObject({ text: 'Hello, after the spin' });
    expect(Atomics.load(started, 0)).toBe(1);
    const { total, byStatus } = bg.stats();
    expect(total).toBe(8);
    expect(byStatus).toMatchObject({ succeeded: 4, failed: 3, timedOut: 1, cancelled: 0, abandoned: 0, running: 0, queued: 0 });
    // One error entry per fault, naming it; nothing else.
    expect(logger.at('error').map((entry) => entry.fields.taskId).sort()).toEqual(
      [handles.exits.id, handles.hogsMemory.id, handles.throwsString.id, handles.spins.id].sort(),
    );
    expect(logger.at('warn')).toEqual([]);
    // The looping thread was terminated and replaced: one live thread, nothing admitted.
    const pool = appOf(root).pool;
    expect(pool.admission.running).toBe(0);
    expect(pool.threads).toBe(1);
    expect(unhandled).toEqual([]);
    expect(uncaught).toEqual([]);
  });

  it('a detached buffer marked with transfer() is rejected with a TypeError naming the argument', () => {
    const { bg } = setup();
    const bytes = new Uint8Array([1, 2, 3]);
    bg.add(sumBytes, transfer(bytes)).cancel();
    expect(() => bg.add(sumBytes, transfer(bytes))).toThrow(/^bg\.add\("sumBytes"\): argument #0 \(args\[0\]\) .*detached/);
  });
});

describe('stats()', () => {
  it('byStatus holds task statuses only', async () => {
    const { bg } = setup();
    await bg.add(async () => 1).result();
    expect(Object.keys(bg.stats().byStatus).sort()).toEqual(
      ['queued', 'delayed', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', 'timedOut', 'skipped', 'abandoned'].sort(),
    );
  });
});

