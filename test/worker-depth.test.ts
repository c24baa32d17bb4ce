/**
 * Worker tasks and data nested deep: a result, an argument or an error's field nested past the
 * documented bound (1 000 levels) fails cleanly, naming the task, and the thread goes on (V8's
 * serializer would overflow its stack in the worker's answer, and the task would never settle);
 * an error's `cause` chain comes back whole up to 100 errors, cut with a note past that, and a
 * circular one comes back circular.
 */
import type { DependencyContainer } from 'tsyringe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Background, shutdown, TaskNonErrorError, type AnyTask, type TaskArgs, type TaskHandle, type TaskResult } from '../src/index.js';
import { nested, returnsNested, throwsCauseChain, throwsCircularCause, throwsNestedField, throwsNestedValue, whichThread } from './fixtures/deep-tasks.js';
import { captureLogger, failureOf, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();

/** The errors of a `cause` chain, top first, up to `max` of them (a loop would go on for ever). */
function chainOf(error: unknown, max = 1_000): unknown[] {
  const chain: unknown[] = [];
  for (let at = error; at !== undefined && chain.length < max; at = (at as { cause?: unknown }).cause) {
    chain.push(at);
    if (!(at instanceof Error)) break;
  }
  return chain;
}

describe.each([
  ['on a thread of the pool', false],
  ['inline', true],
] as const)('data nested past 1 000 levels, %s', (_where, inline) => {
  let root: DependencyContainer;
  let bg: Background;
  // A deadline, so that a task that never settles fails the test rather than hanging it.
  const add = <T extends AnyTask>(task: T, ...args: TaskArgs<T>): TaskHandle<TaskResult<T>> => bg.with({ timeoutMs: 8_000 }).add(task, ...args);
  beforeAll(() => {
    root = freshApp({ logger: captureLogger(), pool: inline ? { inline: true } : { maxThreads: 1, minThreads: 1 } });
    bg = root.createChildContainer().resolve(Background);
  });
  afterAll(() => shutdown({ container: root, timeoutMs: 1_000 }));

  it.each([
    ['objects', false, /^result\.next\.next\.next\.next/],
    ['arrays', true, /^result\[0\]\[0\]\[0\]\[0\]/],
  ] as const)('a result of %s nested 5 000 deep fails with the TypeError naming the task, and the thread goes on', async (_kind, array, path) => {
    const thread = await add(whichThread).result();
    const error = await failureOf(add(returnsNested, 5_000, array).result());
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message.startsWith('worker task "returnsNested" returned a value that cannot be sent back: ')).toBe(true);
    const problem = error.message.slice(error.message.indexOf('sent back: ') + 'sent back: '.length);
    expect(problem).toMatch(path);
    expect(problem).toContain('… (level 1001) is nested more than 1000 levels deep');
    expect(error.message.length).toBeLessThan(400);
    // The same thread runs the next task.
    await expect(add(whichThread).result()).resolves.toBe(thread);
  });

  it('a result nested 1 000 deep comes back whole; 1 001 deep is refused', async () => {
    await expect(add(returnsNested, 1_000).result()).resolves.toEqual(nested(1_000));
    await expect(add(returnsNested, 1_001).result()).rejects.toThrow(/is nested more than 1000 levels deep/);
  });

  it("an error with a field nested 5 000 deep comes back as the task's own error, that field left out, and the thread goes on", async () => {
    const thread = await add(whichThread).result();
    const error = await failureOf(add(throwsNestedField, 5_000).result());
    expect({ name: error.name, message: error.message, code: error.code, details: error.details }).toEqual({
      name: 'Error',
      message: 'with deep details',
      code: 'E_DEEP',
      details: undefined,
    });
    await expect(add(whichThread).result()).resolves.toBe(thread);
  });

  it('a thrown non-Error nested 5 000 deep comes back printed, as one that cannot be cloned', async () => {
    const error = await failureOf(add(throwsNestedValue, 5_000).result());
    expect(error).toBeInstanceOf(TaskNonErrorError);
    expect(error.cause).toEqual(expect.any(String));
  });

  it.each([1_001, 5_000])('an argument nested %i deep is refused at add() with the TypeError naming the task and the path; nothing is queued', (depth) => {
    const before = bg.stats().total;
    expect(() => add(returnsNested, nested(depth) as never)).toThrow(TypeError);
    expect(() => add(returnsNested, nested(depth) as never)).toThrow(
      /^bg\.add\("returnsNested"\): argument #0 \(args\[0\]\.next\.next\.next.*… \(level 1001\)\) is nested more than 1000 levels deep/,
    );
    expect(bg.stats().total).toBe(before);
  });
});

it('a result nested 1 000 deep, and a 100-error chain each with a field 700 deep, come back from a thread with the smallest stack allowed', async () => {
  const root = freshApp({ logger: captureLogger(), pool: { maxThreads: 1, minThreads: 1, resourceLimits: { stackSizeMb: 1 } } });
  try {
    const bg = root.createChildContainer().resolve(Background).with({ timeoutMs: 8_000 });
    await expect(bg.add(returnsNested, 1_000).result()).resolves.toEqual(nested(1_000));
    const error = await failureOf(bg.add(throwsCauseChain, 100, 700).result());
    const chain = chainOf(error) as (Error & { details?: unknown })[];
    expect(chain).toHaveLength(100);
    expect(chain[99]!.message).toBe('root');
    // The answer nests the chain's records and the fields in them: about 900 levels in all.
    for (const each of chain) expect(each.details).toEqual(nested(700));
  } finally {
    await shutdown({ container: root, timeoutMs: 1_000 });
  }
});

describe.each([
  ['on a thread of the pool', false],
  ['inline', true],
] as const)("an error's cause chain, %s", (_where, inline) => {
  let root: DependencyContainer;
  let bg: Background;
  beforeAll(() => {
    root = freshApp({ logger: captureLogger(), pool: inline ? { inline: true } : { maxThreads: 1, minThreads: 1 } });
    bg = root.createChildContainer().resolve(Background);
  });
  afterAll(() => shutdown({ container: root, timeoutMs: 1_000 }));

  it('comes back whole up to 100 errors', async () => {
    const chain = chainOf(await failureOf(bg.add(throwsCauseChain, 100).result()));
    expect(chain).toHaveLength(100);
    expect(chain.every((error) => error instanceof Error)).toBe(true);
    expect((chain[0] as Error).message).toBe('level 0');
    expect((chain[99] as Error).message).toBe('root');
    expect((chain[99] as Error).cause).toBeUndefined();
  });

  it('past 100 errors, is cut with a note as the 100th error’s cause', async () => {
    const chain = chainOf(await failureOf(bg.add(throwsCauseChain, 500).result()));
    expect(chain).toHaveLength(101);
    expect((chain[99] as Error).message).toBe('level 99');
    expect(chain[100]).toBe('(the cause chain was cut here: it is more than 100 errors long)');
  });

  it('that loops back to itself comes back looping: an error that is its own cause', async () => {
    const error = await failureOf(bg.add(throwsCircularCause, 'self').result());
    expect(error).toBeInstanceOf(TypeError);
    expect({ message: error.message, code: error.code }).toEqual({ message: 'myself', code: 'E_SELF' });
    expect(error.cause).toBe(error);
  });

  it('that loops further down comes back looping at the same place: a → b → c → b', async () => {
    const a = await failureOf(bg.add(throwsCircularCause, 'loop').result());
    const b = a.cause as Error;
    const c = b.cause as Error;
    expect([a.message, b.message, c.message]).toEqual(['a', 'b', 'c']);
    expect(c).toBeInstanceOf(RangeError);
    expect(c.cause).toBe(b);
  });
});
