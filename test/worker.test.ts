import { runInNewContext } from 'node:vm';
import { MessageChannel, threadId } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Background,
  observeTasks,
  shutdown,
  TaskCancelledError,
  TaskNonErrorError,
  TaskTimeoutError,
  transfer,
  workerTask,
  WorkerTaskError,
  wrapAttempts,
  type BackgroundOptions,
} from '../src/index.js';
import { admissionWindow } from '../src/engine/pool.js';
import { appOf } from '../src/di/container.js';
import {
  cooperative,
  countOnThread,
  exits,
  gated,
  greet,
  hogsMemory,
  logsEveryLevel,
  needsUnregistered,
  quickProgress,
  reportsFraction,
  returnsFunction,
  shoutsBlob,
  spins,
  sumBytes,
  sumBytesFlaky,
  throwsCustom,
  throwsString,
} from './fixtures/worker-tasks.js';
import { captureLogger, failureOf, freshApp, watchProcessErrors } from './helpers.js';

const setupModule = new URL('./fixtures/worker-setup.ts', import.meta.url);
const tasksModule = new URL('./fixtures/worker-tasks.ts', import.meta.url).href;
const roots: ReturnType<typeof freshApp>[] = [];

/** A fresh application whose pool runs the fixture setup module. */
function app(options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const root = freshApp({ logger, ...options, pool: { setupModule, ...options.pool } });
  roots.push(root);
  return { root, logger, bg: root.createChildContainer().resolve(Background) };
}

/** A gate worker tasks block on (`Atomics.wait`) until the test opens it. */
function gate() {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  return {
    cell,
    open() {
      Atomics.store(cell, 0, 1);
      Atomics.notify(cell, 0);
    },
  };
}

watchProcessErrors();
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
});

describe('worker tasks', () => {
  it('run on a worker thread, with dependencies from the worker container, behind an ordinary handle', async () => {
    const { bg } = app();
    const handle = bg.add(greet, 'Ada');
    expect(handle).toMatchObject({ name: 'greet', status: 'queued' });
    await expect(handle.result()).resolves.toEqual({ text: 'Hello, Ada', taskName: 'greet' });
    expect(handle.status).toBe('succeeded');
    const { threadId: workerThread } = await bg.add(countOnThread).result();
    expect(workerThread).not.toBe(threadId);
  });

  it("load a setup module named by its compiled .js URL from its TypeScript source when only the source is there (an application run by tsx)", async () => {
    // fixtures/worker-setup.js does not exist; fixtures/worker-setup.ts does, as in an application run from source.
    const { bg } = app({ pool: { setupModule: new URL('./fixtures/worker-setup.js', import.meta.url), maxThreads: 1 } });
    await expect(bg.add(greet, 'Ada').result()).resolves.toEqual({ text: 'Hello, Ada', taskName: 'greet' });
    // A .js URL of neither file still fails, naming the module it was given.
    const { bg: missing } = app({ pool: { setupModule: new URL('./fixtures/no-such-setup.js', import.meta.url), maxThreads: 1 } });
    await expect(missing.add(greet, 'Ada').result()).rejects.toMatchObject({ code: 'ERR_WORKER_SETUP', message: expect.stringContaining('no-such-setup.js failed') as unknown });
  });

  it("count a retry's attempt from when it reaches its thread, as its status says: never running/2, then queued/1", async () => {
    const { root, bg } = app();
    const seen: string[] = [];
    const read = (where: string, id: string): void => {
      const task = bg.get(id, { application: true });
      if (task !== undefined) seen.push(`${where} ${task.status}/${task.attempt}`);
    };
    const stop = observeTasks((event) => read(event.type, event.id), { container: root });
    const unwrap = wrapAttempts((event, attempt) => {
      read('wrapper before', event.id);
      const returned = attempt();
      read('wrapper after', event.id);
      return returned;
    }, { container: root });
    const handle = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(sumBytesFlaky, new Uint8Array([1, 2, 3]));
    await expect(handle.result()).resolves.toBe(6);
    stop();
    unwrap();
    // Each attempt reads queued (not started) until its thread takes it: attempt 2 reads queued/1 at its start.
    expect(seen.filter((line) => line.startsWith('started') || line.startsWith('wrapper before'))).toEqual([
      'started queued/0',
      'wrapper before queued/0',
      'started queued/1',
      'wrapper before queued/1',
    ]);
    // Once handed on, the thread may take it at any moment: either reading is right, nothing else.
    expect(seen.filter((line) => line.startsWith('wrapper after'))).toEqual([
      expect.stringMatching(/^wrapper after (queued\/0|running\/1)$/),
      expect.stringMatching(/^wrapper after (queued\/1|running\/2)$/),
    ]);
    expect(seen.at(-1)).toBe('succeeded succeeded/2');
  });

  it('resolve per-thread singletons: each thread sets up once and keeps its own instances', async () => {
    const { bg } = app({ pool: { maxThreads: 2, minThreads: 2 } });
    const results = await Promise.all(Array.from({ length: 12 }, () => bg.add(countOnThread).result()));
    const byThread = new Map<number, number[]>();
    for (const { threadId: id, count } of results) byThread.set(id, [...(byThread.get(id) ?? []), count]);
    expect([...byThread.keys()].every((id) => id !== threadId)).toBe(true);
    for (const counts of byThread.values()) expect(counts.sort((a, b) => a - b)).toEqual(counts.map((_, i) => i + 1));
    expect([...byThread.values()].flat()).toHaveLength(12);
  });

  it('share one pool per application, created with the first worker task', async () => {
    const { root } = app();
    const application = appOf(root);
    const scopes = [root.createChildContainer(), root.createChildContainer()].map((scope) => scope.resolve(Background));
    await scopes[0]!.add(async () => 'event-loop work').result();
    expect(application.hasPool).toBe(false);
    await Promise.all(scopes.map((bg) => bg.add(greet, 'x').result()));
    expect(application.hasPool).toBe(true);
    expect(application.pool.settings).toMatchObject({ maxThreads: 40, idleTimeout: 10_000 });
  });

  it('reaps idle threads beyond minThreads after idleTimeout', async () => {
    const { root, bg } = app({ pool: { minThreads: 0, idleTimeout: 50 } });
    await bg.add(greet, 'x').result();
    const pool = appOf(root).pool;
    expect(pool.threads).toBeGreaterThan(0);
    await vi.waitFor(() => expect(pool.threads).toBe(0), { timeout: 5_000, interval: 20 });
  });

  it('a result({ timeoutMs }) that expires while its thread is still being set up says the task is queued, as its handle does', async () => {
    const { bg } = app({ pool: { setupModule: new URL('./fixtures/slow-setup.ts', import.meta.url), maxThreads: 1 } });
    const handle = bg.add(greet, 'x');
    const error = await failureOf(handle.result({ timeoutMs: 50 }));
    expect([handle.status, error.message]).toEqual(['queued', expect.stringMatching(/\(it is queued\)$/)]);
    await expect(handle.result()).resolves.toMatchObject({ text: 'Hello, x' });
  });

  it('refuses a worker task added inside a worker thread (a task module that runs the application as it is imported): the task fails saying why, and no thread starts a pool of its own', async () => {
    const { root, bg } = app({ pool: { maxThreads: 1 } });
    const { doubled } = await import('./fixtures/reruns-app-tasks.js');
    const error = await failureOf(bg.add(doubled, 21).result({ timeoutMs: 10_000 }));
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_TASK_NOT_FOUND' });
    expect(error.message).toMatch(/its module cannot be imported in the worker: Cannot add worker task "doubled" inside one of the library's worker threads: it would start a worker pool there/);
    expect(appOf(root).pool.threads).toBe(1);
  });

  it('widen admission beyond the cores while admitted tasks block instead of computing', async () => {
    const { root, bg } = app();
    const open = gate();
    const handles = Array.from({ length: 6 }, (_, i) => bg.add(gated, open.cell, `task ${i}`));
    const admission = appOf(root).pool.admission;
    await vi.waitFor(() => expect(admission.running).toBe(6), { timeout: 10_000, interval: 20 });
    open.open();
    await expect(Promise.all(handles.map((h) => h.result()))).resolves.toHaveLength(6);
  });

  it.each([
    ['a function', () => 1, /argument #0 \(args\[0\]\) is a function \(anonymous\), which cannot cross to another thread/],
    ['a symbol inside an object', { tag: Symbol('t') }, /argument #0 \(args\[0\]\.tag\) is a symbol \(Symbol\(t\)\)/],
    ['a symbol-keyed property', { a: { [Symbol('k')]: 1 } }, /argument #0 \(args\[0\]\.a\) has a symbol-keyed property \(Symbol\(k\)\), which structured clone leaves out/],
    ['an error with a field of its own', [Object.assign(new Error('x'), { code: 'E_X' })], /argument #0 \(args\[0\]\[0\]\) is an error with its own field "code", which structured clone leaves out/],
    ['a class instance', new (class Point { x = 1 })(), /argument #0 \(args\[0\]\) is an instance of Point: it would arrive as a plain object without its class/],
    ['a MessagePort not marked with transfer()', new MessageChannel().port1, /argument #0 \(args\[0\]\) is a MessagePort, which can only be moved: mark it with transfer\(\)/],
    // Cloned as a plain Error (registerErrorClass() rebuilds errors a worker throws, not arguments).
    [
      'an error of a class of its own',
      { reason: new (class PaymentError extends Error {})('card declined') },
      /^bg\.add\("sumBytes"\): argument #0 \(args\[0\]\.reason\) is an instance of PaymentError: it would arrive as a plain Error without its class and methods \(registerErrorClass\(\) rebuilds errors a worker throws, not arguments\); pass it as plain data \(\{ name, message \}\)$/,
    ],
    ['a non-enumerable property', { a: Object.defineProperty({ b: 1 }, 'secret', { value: 2 }) }, /argument #0 \(args\[0\]\.a\) has a non-enumerable property \(secret\), which structured clone leaves out$/],
    ['a non-enumerable property of a list', [Object.defineProperty([1], 'total', { value: 1 })], /argument #0 \(args\[0\]\[0\]\) has a non-enumerable property \(total\), which structured clone leaves out$/],
    // Structured clone keeps seven classes of errors (by name): an AggregateError arrives as an Error, without its errors.
    [
      'an AggregateError',
      { failed: new AggregateError([new Error('inner')], 'several') },
      /^bg\.add\("sumBytes"\): argument #0 \(args\[0\]\.failed\) is an instance of AggregateError: structured clone does not keep that class, and it would arrive as a plain Error without its errors; pass it as plain data \(\{ name, message, errors \}\)$/,
    ],
    ['an error with a non-enumerable field of its own', Object.defineProperty(new Error('x'), 'code', { value: 'E_X' }), /argument #0 \(args\[0\]\) is an error with its own field "code", which structured clone leaves out; pass it as plain data \(\{ message, code \}\)$/],
    ['an error with a name of its own', Object.defineProperty(new TypeError('x'), 'name', { value: 'RangeError' }), /argument #0 \(args\[0\]\) is an error with its own field "name", which structured clone leaves out/],
    ['a Map with a property of its own', { m: Object.assign(new Map([['k', 1]]), { note: 1 }) }, /argument #0 \(args\[0\]\.m\) is an instance of Map with a property of its own \(note\), which structured clone leaves out$/],
    ['a Set with a non-enumerable property of its own', Object.defineProperty(new Set([1]), 'tag', { value: 'x' }), /argument #0 \(args\[0\]\) is an instance of Set with a property of its own \(tag\), which structured clone leaves out$/],
    ['a Date with a property of its own', [Object.assign(new Date(0), { tz: 'Europe/Berlin' })], /argument #0 \(args\[0\]\[0\]\) is an instance of Date with a property of its own \(tz\), which structured clone leaves out$/],
    ['a RegExp with a property of its own', Object.assign(/a/g, { flagsNote: 1 }), /argument #0 \(args\[0\]\) is an instance of RegExp with a property of its own \(flagsNote\)/],
    ['an ArrayBuffer with a property of its own', Object.assign(new ArrayBuffer(2), { meta: 'x' }), /argument #0 \(args\[0\]\) is an instance of ArrayBuffer with a property of its own \(meta\)/],
    ['a DataView with a property of its own', Object.assign(new DataView(new ArrayBuffer(2)), { meta: 'x' }), /argument #0 \(args\[0\]\) is an instance of DataView with a property of its own \(meta\)/],
    // Its characters are what it holds; an index past them is a property of its own.
    ['a boxed string with an index past its characters', Object.assign(new String('ab'), { 5: 'lost' }), /argument #0 \(args\[0\]\) is an instance of String with a property of its own \(5\), which structured clone leaves out$/],
    ['a typed array with a property of its own', { bytes: Object.assign(new Uint8Array(4), { meta: 'x' }) }, /argument #0 \(args\[0\]\.bytes\) is an instance of Uint8Array with a property of its own \(meta\), which structured clone leaves out$/],
    ['an empty typed array with a property of its own', Object.assign(new Int8Array(0), { meta: 'x' }), /argument #0 \(args\[0\]\) is an instance of Int8Array with a property of its own \(meta\)/],
    ['a subclass of Map made in another realm', runInNewContext('new (class Tally extends Map {})()'), /argument #0 \(args\[0\]\) is an instance of Tally: it would arrive as a plain object without its class/],
    ['an error of a class of its own made in another realm', runInNewContext('new (class Late extends Error {})("x")'), /argument #0 \(args\[0\]\) is an instance of Late: it would arrive as a plain Error without its class/],
  ])('reject %s as an argument at add(), naming the task and the position; nothing is queued', (_label, arg, message) => {
    const { bg } = app();
    expect(() => bg.add(sumBytes, arg as never)).toThrow(TypeError);
    expect(() => bg.add(sumBytes, arg as never)).toThrow(/^bg\.add\("sumBytes"\): /);
    expect(() => bg.add(sumBytes, arg as never)).toThrow(message);
    expect(bg.pending).toBe(0);
  });

  it('accept plain objects and arrays made in another realm (node:vm), and errors of the built-in classes, as they clone as they are', async () => {
    const { bg } = app();
    const open = gate();
    open.open();
    const data = runInNewContext('({ a: 1, list: [1, { b: [2] }], none: Object.create(null) })') as unknown;
    await expect(bg.add(gated, open.cell, data as never).result()).resolves.toEqual({ a: 1, list: [1, { b: [2] }], none: {} });
    const error = await bg.add(gated, open.cell, new RangeError('too far') as never).result();
    expect(error).toBeInstanceOf(RangeError);
  });

  it('accept the built-ins structured clone keeps made in another realm (node:vm), and the slots that are their contents, which arrive as this realm\'s', async () => {
    const { bg } = app();
    const open = gate();
    open.open();
    const data = runInNewContext(
      '({ map: new Map([["a", [1]]]), set: new Set([2]), when: new Date(0), pattern: /x/g, bytes: new Uint8Array([1, 2]), raw: new ArrayBuffer(1), range: new RangeError("r"), word: new String("ab") })',
    ) as Record<string, unknown>;
    (data.pattern as RegExp).lastIndex = 1;
    const back = (await bg.add(gated, open.cell, data as never).result()) as unknown as Record<string, unknown>;
    expect(back.map).toEqual(new Map([['a', [1]]]));
    expect(back.set).toEqual(new Set([2]));
    expect(back.when).toEqual(new Date(0));
    expect(back.pattern).toBeInstanceOf(RegExp);
    expect(back.bytes).toEqual(new Uint8Array([1, 2]));
    expect(back.raw).toBeInstanceOf(ArrayBuffer);
    expect(back.range).toBeInstanceOf(RangeError);
    expect(String(back.word)).toBe('ab');
    // A long typed array without fields of its own is taken (its indices are not fields).
    await expect(bg.add(gated, open.cell, new Float64Array(100_000) as never).result()).resolves.toHaveLength(100_000);
  });

  it('refuse a Map made in another realm when an entry cannot cross, by its path (its entries are looked into)', () => {
    const { bg } = app();
    const map = runInNewContext('(f) => new Map([["k", f]])') as (f: unknown) => unknown;
    expect(() => bg.add(sumBytes, map(() => 1) as never)).toThrow(/argument #0 \(args\[0\]\.get\(k\)\) is a function \(anonymous\), which cannot cross to another thread/);
  });

  it('accept the same definition again when its module is evaluated again, and refuse a different one', () => {
    const define = () => workerTask(new URL('./fixtures/no-tasks.ts', import.meta.url), { name: 'again' }, () => 1);
    expect(define().name).toBe('again');
    expect(define().name).toBe('again');
    expect(() => workerTask(new URL('./fixtures/no-tasks.ts', import.meta.url), { name: 'again' }, () => 2)).toThrow(
      /workerTask\("again"\): file:.*no-tasks\.ts already defines a different worker task of that name/,
    );
  });

  it("refuse a name beginning with the library's own prefix, as defineTask() does", () => {
    expect(() => workerTask(new URL('./fixtures/no-tasks.ts', import.meta.url), { name: 'tsyringe-background:after' }, () => 1)).toThrow(
      /^workerTask\("tsyringe-background:after"\): options\.name must not begin with "tsyringe-background:", got "tsyringe-background:after" \(string\): the prefix is reserved/,
    );
  });

  it('fail a task whose argument was changed after add() into one that cannot be copied, saying so, and keep its thread', async () => {
    const { bg } = app({ pool: { maxThreads: 1, minThreads: 1 } });
    const before = await bg.add(countOnThread).result();
    const open = gate();
    const busy = bg.add(gated, open.cell, 'busy');
    await vi.waitFor(() => expect(busy.status).toBe('running'), { timeout: 15_000, interval: 10 });
    // Checked at add(); copied only when the one thread, busy now, takes it.
    const label: { n: number; f?: () => number } = { n: 1 };
    const changed = bg.add(gated, open.cell, label as never);
    label.f = () => 1;
    expect(changed.status).toBe('queued');
    open.open();
    await expect(busy.result()).resolves.toBe('busy');
    const error = await failureOf(changed.result());
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_FAILED' });
    expect((error as Error).message).toBe(
      `worker task "gated" (#${changed.id}, ${tasksModule}) failed: its arguments could not be copied to the thread when it took the task (() => 1 could not be cloned.); ` +
        'add() checked them, so they were changed after it: a worker task takes its arguments as they are when a thread takes it, so do not change them after add()',
    );
    // Nothing ran and nothing was thrown on the thread: it goes on.
    const after = await bg.add(countOnThread).result();
    expect(after).toEqual({ threadId: before.threadId, count: before.count + 1 });
  });

  it('move buffers marked with transfer() at add()', async () => {
    const { bg } = app();
    const bytes = new Uint8Array([1, 2, 3, 250]);
    const handle = bg.add(sumBytes, transfer(bytes));
    expect(bytes.byteLength).toBe(0);
    await expect(handle.result()).resolves.toEqual({ sum: 256, length: 4 });
  });

  it("bring the task's own error back faithfully: class name, message, stack, code, own properties and cause", async () => {
    const { bg, logger } = app();
    const error = (await bg.add(throwsCustom).result().catch((e: unknown) => e)) as Error & Record<string, unknown>;
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'CustomError', message: 'custom failure', code: 'E_CUSTOM', detail: { retryable: false } });
    expect(error.stack).toContain('worker-tasks.ts');
    expect(error.cause).toBeInstanceOf(RangeError);
    expect((error.cause as Error).message).toBe('root cause');
    expect(logger.at('error')).toHaveLength(1);
    expect(logger.at('error')[0]!.fields.err).toBe(error);
  });

  it('fail a task whose result cannot be sent back, naming the task and the path', async () => {
    const { bg } = app();
    const error = await bg.add(returnsFunction).result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(
      'worker task "returnsFunction" returned a value that cannot be sent back: result.callback is a function (callback), which cannot cross to another thread',
    );
  });

  it('take a Blob as an argument and give one back (its internal symbol-keyed slots are not data left out)', async () => {
    const { bg } = app();
    const { read, blob } = await bg.add(shoutsBlob, { blob: new Blob(['abc']) }).result();
    expect(read).toBe('abc');
    expect(blob).toBeInstanceOf(Blob);
    expect(blob.type).toBe('text/plain');
    await expect(blob.text()).resolves.toBe('ABC');
  });

  it('wrap a non-Error thrown in the worker', async () => {
    const { bg } = app();
    const error = await bg.add(throwsString).result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskNonErrorError);
    expect((error as Error).cause).toBe('a plain string');
  });

  it('fail a task whose token the worker cannot resolve, naming task, module, position and token', async () => {
    const { bg } = app();
    const error = await bg.add(needsUnregistered).result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_DEPENDENCY' });
    expect((error as Error).message).toBe(
      `worker task "needsUnregistered" (${tasksModule}) cannot run: the dependency at position #1 (token Symbol(Unregistered)) ` +
        'cannot be resolved in the worker: Attempted to resolve unregistered dependency token: "Symbol(Unregistered)"',
    );
    await expect(bg.add(greet, 'still usable').result()).resolves.toMatchObject({ text: 'Hello, still usable' });
  });

  it('fail a task that its module does not define, naming what the module defines', async () => {
    const { bg } = app();
    const ghost = workerTask(new URL('./fixtures/no-tasks.ts', import.meta.url), { name: 'ghost' }, () => 1);
    const error = await bg.add(ghost).result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_TASK_NOT_FOUND' });
    expect((error as Error).message).toMatch(/^worker task "ghost" \(file:.*no-tasks\.ts\) cannot run: the module defines no workerTask\(\) named "ghost" \(it defines none\)$/);
  });

  it('fail a task whose setup module throws, naming task, module and reason, and try the setup again', async () => {
    const { bg } = app({ pool: { setupModule: new URL('./fixtures/flaky-setup.ts', import.meta.url), maxThreads: 1, minThreads: 1 } });
    const error = await bg.add(greet, 'first').result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_SETUP' });
    expect((error as Error).message).toMatch(/^worker task "greet" \(file:.*worker-tasks\.ts\) cannot run: the setup module file:.*flaky-setup\.ts failed: database not reachable yet$/);
    await expect(bg.add(greet, 'second').result()).resolves.toMatchObject({ text: 'Hi, second' });
  });

  it('try a setup module whose own evaluation threw again with the next task (Node keeps a failed evaluation: it is imported again by another URL)', async () => {
    const { bg } = app({ pool: { setupModule: new URL('./fixtures/flaky-import-setup.ts', import.meta.url), maxThreads: 1, minThreads: 1 } });
    const error = await bg.add(greet, 'first').result().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_WORKER_SETUP' });
    expect((error as Error).message).toMatch(/^worker task "greet" \(file:.*worker-tasks\.ts\) cannot run: the setup module file:.*flaky-import-setup\.ts failed: config file not there yet$/);
    await expect(bg.add(greet, 'second').result()).resolves.toMatchObject({ text: 'Hey, second' });
    await expect(bg.add(greet, 'third').result()).resolves.toMatchObject({ text: 'Hey, third' });
  });

  it('try a task module whose evaluation threw again with the next task of it, found by its own URL', async () => {
    const { bg } = app({ pool: { maxThreads: 1, minThreads: 1 } });
    const { shout } = await import('./fixtures/flaky-import-tasks.js');
    const error = await bg.add(shout, 'first').result().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_WORKER_TASK_NOT_FOUND' });
    expect((error as Error).message).toMatch(/^worker task "shout" \(file:.*flaky-import-tasks\.ts\) cannot run: its module cannot be imported in the worker: index not built yet$/);
    await expect(bg.add(shout, 'second').result()).resolves.toBe('SECOND!');
    await expect(bg.add(shout, 'third').result()).resolves.toBe('THIRD!');
  });

  it('contain a worker that calls process.exit(): the task fails clearly, the thread is replaced, queued tasks run', async () => {
    const { bg, logger } = app({ pool: { maxThreads: 1, minThreads: 1 } });
    const open = gate();
    const exiting = bg.add(exits, open.cell);
    const after = [bg.add(greet, 'a'), bg.add(greet, 'b')];
    open.open();
    const error = await exiting.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_EXITED' });
    expect((error as Error).message).toMatch(/^worker task "exits" \(#\d+, file:.*\) failed: its worker thread exited before the task finished \(worker exited with code: 7\)/);
    await expect(Promise.all(after.map((h) => h.result()))).resolves.toHaveLength(2);
    expect(logger.at('error')).toHaveLength(1);
  });

  it('contain a task over the memory limit: it fails clearly and the pool goes on', async () => {
    const { bg } = app({ pool: { maxThreads: 1, minThreads: 1, resourceLimits: { maxOldGenerationSizeMb: 32 } } });
    const hog = bg.add(hogsMemory);
    const after = bg.add(greet, 'after');
    const error = await hog.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_OUT_OF_MEMORY' });
    expect((error as Error).message).toMatch(/failed: its worker thread ran out of memory \(\{"maxOldGenerationSizeMb":32\}\)/);
    await expect(after.result()).resolves.toMatchObject({ text: 'Hello, after' });
  });

  it('cancel a running task by terminating its thread; queued tasks still run', async () => {
    const { root, bg } = app({ pool: { maxThreads: 1, minThreads: 1 } });
    const started = new Int32Array(new SharedArrayBuffer(4));
    const spinning = bg.add(spins, started);
    const queued = bg.add(greet, 'next');
    await vi.waitFor(() => expect(Atomics.load(started, 0)).toBe(1), { timeout: 5_000, interval: 10 });
    expect(spinning.cancel('enough')).toBe(true);
    await expect(spinning.result()).rejects.toThrow(TaskCancelledError);
    expect(spinning.status).toBe('cancelled');
    await expect(queued.result()).resolves.toMatchObject({ text: 'Hello, next' });
    expect(appOf(root).pool.admission.running).toBe(0);
  });
});

describe('worker tasks and task control', () => {
  it('carry progress back and the signal in: a cancelled task that injects TaskContext sees its signal abort', async () => {
    const { bg } = app();
    const seen = new Int32Array(new SharedArrayBuffer(8));
    const handle = bg.add(cooperative, seen);
    await vi.waitFor(() => expect(handle.progress).toEqual({ fraction: 0.5, message: 'half way' }), { timeout: 5_000, interval: 10 });
    handle.cancel('stop');
    expect(handle.status).toBe('cancelled');
    await vi.waitFor(() => expect(Atomics.load(seen, 0)).toBe(1), { timeout: 5_000, interval: 10 });
    expect(Atomics.load(seen, 1)).toBe(2);
  });

  it('deliver the last progress report of every task, even when its result overtakes it', async () => {
    const { bg } = app();
    const handles = Array.from({ length: 60 }, (_, n) => bg.add(quickProgress, n));
    await Promise.all(handles.map((handle) => handle.result()));
    expect(handles.map((handle) => handle.progress)).toEqual(handles.map((_, n) => ({ fraction: 1, message: `done ${n}` })));
  });

  it.each([
    [1.5, RangeError, '1.5 (number)'],
    ['0.5', TypeError, '"0.5" (string)'],
  ] as const)('refuse a progress of %o on the thread as on the main one (a %o naming the task)', async (fraction, type, got) => {
    const { bg } = app();
    const handle = bg.add(reportsFraction, fraction);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(type);
    expect(error).toHaveProperty('message', `progress(fraction) in task "reportsFraction" (#${handle.id}): fraction must be a number from 0 to 1, got ${got}`);
  });

  it('time out a task that ignores its signal, and terminate its thread after the grace period', async () => {
    const { root, bg, logger } = app({ pool: { maxThreads: 1, minThreads: 1, terminateAfterMs: 50 } });
    const started = new Int32Array(new SharedArrayBuffer(4));
    const spinning = bg.with({ timeoutMs: 200 }).add(spins, started);
    const next = bg.add(greet, 'after the timeout');
    await expect(spinning.result()).rejects.toThrow(TaskTimeoutError);
    expect(spinning.status).toBe('timedOut');
    await expect(next.result()).resolves.toMatchObject({ text: 'Hello, after the timeout' });
    expect(appOf(root).pool.threads).toBe(1);
    expect(logger.at('error')[0]!.message).toBe('task "spins" timed out');
  });

  it('retry a failing worker task like any other', async () => {
    const { bg, logger } = app();
    const handle = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(throwsCustom);
    await expect(handle.result()).rejects.toMatchObject({ name: 'CustomError' });
    expect(handle.attempt).toBe(2);
    expect(logger.at('warn')[0]!.message).toBe('task "throwsCustom" failed (attempt 1 of 2); retrying in 1 ms');
  });
});

describe('worker tasks and disposal', () => {
  it("a scope's drain waits for its worker tasks", async () => {
    const { bg } = app();
    const open = gate();
    const handle = bg.add(gated, open.cell, 'done');
    let drained = false;
    const draining = bg.drain().then(() => (drained = true));
    // Running once its function is called on a thread: after the thread started and imported the task's module.
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 15_000, interval: 10 });
    expect(drained).toBe(false);
    open.open();
    await draining;
    expect(handle.status).toBe('succeeded');
  });

  it("ctx.logger in a worker writes to the scope's logger, at every level, in order, with the task's fields", async () => {
    const { bg, logger } = app();
    const handle = bg.add(logsEveryLevel, 7);
    await expect(handle.result()).resolves.toBe(7);
    const fields = { task: 'logsEveryLevel', taskId: handle.id, attempt: 1 };
    expect(logger.entries).toEqual([
      { level: 'debug', fields: { ...fields, step: 1, n: 7 }, message: 'starting' },
      { level: 'info', fields: { ...fields, step: 2 }, message: 'half way' },
      { level: 'warn', fields: { ...fields, step: 3, err: expect.any(RangeError) as unknown }, message: 'a little late' },
      { level: 'error', fields: { ...fields, fields: expect.stringMatching(/step: 4, callback: \[Function: callback\]/) as unknown }, message: 'could not clone this one' },
    ]);
    // An error among the fields comes back as a failure does: its class, own fields and cause (a clone keeps only the first).
    const err = logger.entries[2]!.fields.err as RangeError & { code: string; limit: number };
    expect({ message: err.message, code: err.code, limit: err.limit, cause: (err.cause as Error).message }).toEqual({ message: 'over quota', code: 'E_QUOTA', limit: 5, cause: 'the plan' });
  });

  it('closing the application drains, then closes the pool; nothing reaches the pool after', async () => {
    const { root, bg } = app();
    const open = gate();
    const handle = bg.add(gated, open.cell, 'finished');
    const pool = appOf(root).pool;
    // Running once its function is called on a thread: after the thread started and imported the task's module.
    await vi.waitFor(() => expect(handle.status).toBe('running'), { timeout: 15_000, interval: 10 });
    const closing = shutdown({ container: root, timeoutMs: 5_000 });
    open.open();
    await expect(closing).resolves.toMatchObject({ abandoned: 0 });
    await expect(handle.result()).resolves.toBe('finished');
    expect(pool.threads).toBe(0);
    await expect(pool.run({ module: tasksModule, name: 'greet', args: ['late'] }, { id: '0', onAbort: () => undefined, attempts: 1, reportProgress: () => undefined, logFromWorker: () => undefined }, [], false)).rejects.toThrow(
      /the worker pool is closed/,
    );
  });

  it('a deadline that passes with a worker task stuck abandons it, terminates its thread and still closes', async () => {
    const { root, bg, logger } = app();
    const started = new Int32Array(new SharedArrayBuffer(4));
    const stuck = bg.add(spins, started);
    await vi.waitFor(() => expect(Atomics.load(started, 0)).toBe(1), { timeout: 5_000, interval: 10 });
    const report = await shutdown({ container: root, timeoutMs: 100 });
    expect(report.abandoned).toBe(1);
    expect(stuck.status).toBe('abandoned');
    expect(appOf(root).pool.threads).toBe(0);
    expect(logger.at('error')[0]!.message).toMatch(/^application closed with 1 task\(s\) unfinished/);
  });
});

describe('the admission window', () => {
  const base = { limit: 2, base: 2, max: 40 };
  it.each([
    ['stays at the cores while the CPUs are busy with our tasks', { ...base, queued: 10, running: 2, idleShare: 0.03, ownShare: 0.97 }, 2],
    ['stays at the cores while other processes keep the CPUs busy', { ...base, queued: 10, running: 2, idleShare: 0.03, ownShare: 0.2 }, 2],
    ['stays at the cores when pinned to fewer CPUs than the machine has, and using them', { ...base, queued: 10, running: 2, idleShare: 0.5, ownShare: 0.95 }, 2],
    ['widens by the cores while admitted tasks leave the CPUs idle', { ...base, queued: 10, running: 2, idleShare: 0.9, ownShare: 0.05 }, 4],
    ['does not widen while the window is not full', { ...base, limit: 4, queued: 3, running: 3, idleShare: 0.9, ownShare: 0.05 }, 4],
    ['never passes maxThreads', { ...base, limit: 39, queued: 10, running: 39, idleShare: 0.9, ownShare: 0.05 }, 40],
    ['returns to the cores once nothing waits', { ...base, limit: 12, queued: 0, running: 5, idleShare: 0.9, ownShare: 0.05 }, 2],
    ['widens only as far as the memory left holds more threads', { ...base, queued: 10, running: 2, idleShare: 0.9, ownShare: 0.05, memoryFor: 1 }, 3],
    ['stays when the memory left holds no more threads', { ...base, limit: 6, queued: 10, running: 6, idleShare: 0.9, ownShare: 0.05, memoryFor: 0 }, 6],
  ])('%s', (_label, sample, expected) => {
    expect(admissionWindow(sample)).toBe(expected);
  });
});
