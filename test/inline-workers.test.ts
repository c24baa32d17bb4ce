/**
 * `pool: { inline: true }`: worker tasks on the main thread, for tests — dependencies faked per
 * test in the test's own container, no setup module, no thread. What would cross a thread
 * crosses as it would: checked against the same tasks on a real pool (one for the whole file,
 * as docs/testing.md recommends).
 */
import { threadId } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DependencyContainer } from 'tsyringe';
import { appOf } from '../src/di/container.js';
import { Background, BackgroundOptions, disposeScope, shutdown, TaskDependencyError, transfer, type AnyTask, type TaskArgs } from '../src/index.js';
import {
  countOnThread,
  greet,
  logsEveryLevel,
  Greeting,
  needsUnregistered,
  returnsFunction,
  sumBytes,
  ThreadCounter,
  throwsCustom,
  throwsString,
} from './fixtures/worker-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();

/** One application with a real pool for the whole file; each test takes a scope of it. */
let pooled: DependencyContainer;
beforeAll(() => {
  pooled = freshApp({ logger: captureLogger(), pool: { maxThreads: 2, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url) } });
});
afterAll(() => shutdown({ container: pooled }));

/** A fresh inline application, with what the fixture setup module would register in a worker. */
function inlineApp(): { root: DependencyContainer; bg: Background; logger: ReturnType<typeof captureLogger> } {
  const logger = captureLogger();
  const root = freshApp({ logger, pool: { inline: true } });
  root.register(Greeting, { useValue: 'Hello' });
  root.register(ThreadCounter, { useValue: new ThreadCounter('unused') });
  return { root, bg: root.createChildContainer().resolve(Background), logger };
}

/** What a caller can see of a task's outcome, in a form two runs can be compared by. */
async function outcome<T extends AnyTask>(bg: Background, task: T, ...args: TaskArgs<T>): Promise<unknown> {
  const handle = bg.add(task, ...args);
  try {
    return { status: 'succeeded', value: await handle.result() };
  } catch (error) {
    const e = error as Error & Record<string, unknown>;
    const cause = e.cause instanceof Error ? { class: e.cause.constructor.name, message: e.cause.message } : e.cause;
    // (Each handle's own id, in the message of an outcome error, told apart from the other's.)
    return { status: handle.status, class: e.constructor.name, name: e.name, message: e.message.replace(`(#${handle.id})`, '(#id)'), code: e.code, detail: e.detail, cause };
  }
}

describe('pool: { inline: true }', () => {
  it('runs a worker task on the main thread with the dependencies of the test scope: a fake per test, no setup module, no pool', async () => {
    for (const count of [41, 7]) {
      const { root, bg } = inlineApp();
      const scope = root.createChildContainer();
      scope.register(ThreadCounter, { useValue: Object.assign(new ThreadCounter('fake'), { count }) });
      const result = await scope.resolve(Background).add(countOnThread).result();
      expect(result).toEqual({ threadId, count: count + 1 });
      await bg.drain();
      expect(appOf(root).hasPool).toBe(false);
      await shutdown({ container: root });
    }
  });

  it('gives the same outcome as a real worker, for results, errors, non-Errors and results that cannot cross', async () => {
    const { root, bg } = inlineApp();
    const scope = pooled.createChildContainer();
    const onPool = scope.resolve(Background);
    const bytes = () => new Uint8Array([1, 2, 3]);
    const cases: [string, (bg: Background) => Promise<unknown>][] = [
      ['greet', (b) => outcome(b, greet, 'Ada')],
      ['sumBytes', (b) => outcome(b, sumBytes, bytes())],
      ['throwsCustom', (b) => outcome(b, throwsCustom)],
      ['throwsString', (b) => outcome(b, throwsString)],
      ['returnsFunction', (b) => outcome(b, returnsFunction)],
    ];
    for (const [name, run] of cases) {
      const inline = await run(bg);
      expect({ name, inline }).toEqual({ name, inline: await run(onPool) });
    }
    // The error of a custom class comes back as its name on an Error, from a thread and inline alike.
    expect(await outcome(bg, throwsCustom)).toMatchObject({ class: 'Error', name: 'CustomError', code: 'E_CUSTOM' });
    await disposeScope(scope);
    await shutdown({ container: root });
  });

  it('copies the arguments for each attempt and detaches what transfer() marks, as a thread would', async () => {
    const { root, bg } = inlineApp();
    const marked = new Uint8Array([5, 6]);
    const handle = bg.add(sumBytes, transfer(marked));
    expect(marked.byteLength).toBe(0);
    await expect(handle.result()).resolves.toEqual({ sum: 11, length: 2 });
    await shutdown({ container: root });
  });

  it('resolves dependencies at add(): a missing one throws TaskDependencyError there, and nothing is queued', async () => {
    const { root, bg } = inlineApp();
    expect(() => bg.add(needsUnregistered)).toThrow(TaskDependencyError);
    expect(bg.stats().total).toBe(0);
    await shutdown({ container: root });
  });

  it('still refuses, at add(), an argument that could not cross to a thread', async () => {
    const { root, bg } = inlineApp();
    expect(() => bg.add(sumBytes, (() => 1) as unknown as Uint8Array)).toThrow(/argument #0 \(args\[0\]\) is a function/);
    await shutdown({ container: root });
  });

  it('is validated like the other options', () => {
    const root = freshApp();
    root.register(BackgroundOptions, { useValue: { root: true, pool: { inline: 'yes' } } as unknown as BackgroundOptions });
    expect(() => root.resolve(Background)).toThrow('options.pool.inline must be a boolean, got "yes" (string)');
  });

  it('fails a task whose result could not cross back, naming the task and the path', async () => {
    const { root, bg } = inlineApp();
    const error = await bg.add(returnsFunction).result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(
      'worker task "returnsFunction" returned a value that cannot be sent back: result.callback is a function (callback), which cannot cross to another thread',
    );
    await shutdown({ container: root });
  });

  it('gives a TaskContext whose logger writes to the scope logger with the task fields', async () => {
    const { root, bg, logger } = inlineApp();
    await expect(bg.add(greet, 'Ada').result()).resolves.toEqual({ text: 'Hello, Ada', taskName: 'greet' });
    const handle = bg.add(logsEveryLevel, 2);
    await expect(handle.result()).resolves.toBe(2);
    expect(logger.entries.map(({ level, fields }) => [level, fields.step])).toEqual([
      ['debug', 1],
      ['info', 2],
      ['warn', 3],
      ['error', 4],
    ]);
    expect(logger.entries[0]!.fields).toMatchObject({ task: 'logsEveryLevel', taskId: handle.id, attempt: 1, n: 2 });
    await shutdown({ container: root });
  });
});
