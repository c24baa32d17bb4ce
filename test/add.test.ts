import { performance } from 'node:perf_hooks';
import { inject, injectable } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { Background, defineTask, TaskContext, TaskDependencyError } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn } from './helpers.js';

class Greeter {
  greet(name: string): string {
    return `hello ${name}`;
  }
}

const Unregistered = Symbol('Unregistered');

@injectable()
class ReindexUser {
  constructor(@inject(Greeter) readonly greeter: Greeter) {}
  async run(id: string): Promise<string> {
    await Promise.resolve();
    return this.greeter.greet(id);
  }
}

@injectable()
class NeedsUnregistered {
  constructor(@inject(Unregistered) readonly missing: unknown) {}
  run(): void {}
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function setup(options = {}) {
  const scope = freshApp(options).createChildContainer();
  scope.register(Greeter, { useValue: new Greeter() });
  return { scope, bg: scope.resolve(Background) };
}

describe('bg.add()', () => {
  it('returns a handle before an async function starts, then runs it', async () => {
    const { bg } = setup();
    const started: string[] = [];
    const handle = bg.add(async (who: string) => {
      started.push(who);
      await Promise.resolve();
      return who.length;
    }, 'abc');
    expect(started).toEqual([]);
    expect(handle.status).toBe('queued');
    await expect(handle.result()).resolves.toBe(3);
    expect(started).toEqual(['abc']);
    expect(handle.status).toBe('succeeded');
  });

  it('runs a plain sync function on the main thread after the current turn', async () => {
    const { bg } = setup();
    const order: string[] = [];
    const handle = bg.add(function tally(n: number) {
      order.push(`task ${n}`);
      return n * 2;
    }, 21);
    queueMicrotask(() => order.push('microtask'));
    order.push('caller');
    expect(handle.name).toBe('tally');
    await expect(handle.result()).resolves.toBe(42);
    expect(order).toEqual(['caller', 'microtask', 'task 21']);
  });

  it('warns, naming the task, when a sync task blocks the event loop past warnBlockingMs', async () => {
    const logger = captureLogger();
    const { bg } = setup({ logger, warnBlockingMs: 5 });
    bg.add(function crunch() {
      const until = performance.now() + 15;
      while (performance.now() < until);
    });
    bg.add(function quick() {});
    await bg.drain();
    const warnings = logger.at('warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toMatch(/sync task "crunch" blocked the event loop for \d+ ms; move CPU-bound work to a worker thread with workerTask\(\)/);
    expect(warnings[0]!.fields).toMatchObject({ task: 'crunch', warnBlockingMs: 5 });
    expect(warnings[0]!.fields.blockedMs).toBeGreaterThanOrEqual(15);
  });

  it('passes injected dependencies of a definition before the arguments', async () => {
    const { bg } = setup();
    const greet = defineTask({ name: 'greet', inject: [Greeter] }, (greeter, who: string) => greeter.greet(who));
    const handle = bg.add(greet, 'ada');
    expect(handle.name).toBe('greet');
    await expect(handle.result()).resolves.toBe('hello ada');
  });

  it('injects the TaskContext at its position', async () => {
    const { bg } = setup();
    const probe = defineTask({ name: 'probe', inject: [Greeter, TaskContext] }, async (greeter, ctx, n: number) => {
      await Promise.resolve();
      return { greeting: greeter.greet('x'), id: ctx.id, name: ctx.name, attempt: ctx.attempt, aborted: ctx.signal.aborted, n };
    });
    const handle = bg.add(probe, 7);
    await expect(handle.result()).resolves.toEqual({
      greeting: 'hello x',
      id: handle.id,
      name: 'probe',
      attempt: 1,
      aborted: false,
      n: 7,
    });
  });

  it('constructs an injectable class task from the scope and calls run(...args)', async () => {
    const { bg } = setup();
    const handle = bg.add(ReindexUser, 'u1');
    expect(handle.name).toBe('ReindexUser');
    await expect(handle.result()).resolves.toBe('hello u1');
  });

  it('resolves dependencies at add() time from its own scope', () => {
    const { scope, bg } = setup();
    const seen = new Greeter();
    const other = scope.createChildContainer();
    other.register(Greeter, { useValue: seen });
    const check = defineTask({ name: 'check', inject: [Greeter] }, (greeter) => greeter === seen);
    const fromOther = other.resolve(Background).add(check);
    const fromParent = bg.add(check);
    return Promise.all([
      expect(fromOther.result()).resolves.toBe(true),
      expect(fromParent.result()).resolves.toBe(false),
    ]);
  });

  it('throws synchronously on an unresolvable token, naming task, position and token; queues nothing', async () => {
    const { bg } = setup();
    const ran = deferred<string>();
    const broken = defineTask({ name: 'broken', inject: [Greeter, Unregistered] }, () => {
      ran.resolve('ran');
    });
    const thrown = catchError(() => bg.add(broken));
    expect(thrown).toBeInstanceOf(TaskDependencyError);
    const error = thrown as TaskDependencyError;
    expect(error.code).toBe('ERR_TASK_DEPENDENCY');
    expect(error.message).toMatch(
      /^Cannot add task "broken": the dependency at position #1 \(token Symbol\(Unregistered\)\) cannot be resolved: /,
    );
    expect(error.position).toBe(1);
    expect(error.token).toBe('Symbol(Unregistered)');
    expect(error.cause).toBeInstanceOf(Error);
    expect((error.cause as Error).message).toContain('unregistered dependency token');
    expect(bg.pending).toBe(0);
    await nextTurn();
    await expect(Promise.race([ran.promise, Promise.resolve('not run')])).resolves.toBe('not run');
  });

  it('wraps a class task whose constructor dependency cannot be resolved', () => {
    const { bg } = setup();
    const error = catchError(() => bg.add(NeedsUnregistered));
    expect(error).toBeInstanceOf(TaskDependencyError);
    expect(error).toMatchObject({ position: 0, parameter: 'missing', token: undefined });
    expect((error as Error).message).toMatch(
      /^Cannot add task "NeedsUnregistered": the dependency at position #0 \(parameter missing\) cannot be resolved: .*Symbol\(Unregistered\)/s,
    );
    expect(bg.pending).toBe(0);
  });

  it('wraps a class task whose constructor throws', () => {
    const { bg } = setup();
    @injectable()
    class Explodes {
      constructor() {
        throw new Error('no config');
      }
      run(): void {}
    }
    const error = catchError(() => bg.add(Explodes));
    expect(error).toBeInstanceOf(TaskDependencyError);
    expect((error as Error).message).toBe('Cannot add task "Explodes": its constructor failed: no config');
    expect(bg.pending).toBe(0);
  });

  it('rejects a class without a run() method with a TypeError naming it', () => {
    const { bg } = setup();
    class NoRun {
      go(): void {}
    }
    expect(() => bg.add(NoRun as never)).toThrow(TypeError);
    expect(() => bg.add(NoRun as never)).toThrow('bg.add(NoRun): a class task needs a run() method on its prototype; NoRun has none');
    expect(bg.pending).toBe(0);
    expect(bg.add(function plain() {})).toBeDefined();
  });

  it('words what cannot be read of a task: a run getter that throws, a revoked Proxy; a name that is not a string is no name', () => {
    const { bg } = setup();
    class Lazy {
      get run(): () => void {
        throw new Error('not yet');
      }
    }
    expect(() => bg.add(Lazy as never)).toThrow(new TypeError('bg.add(task): the task could not be read (not yet): a getter of it threw, or it is a revoked Proxy'));
    const { proxy, revoke } = Proxy.revocable(() => 1, {});
    revoke();
    expect(() => bg.add(proxy)).toThrow(/^bg\.add\(task\): the task could not be read \(.*revoked.*\): a getter of it threw, or it is a revoked Proxy$/);
    const numbered = Object.defineProperty(() => 1, 'name', { value: 42 });
    const throwing = Object.defineProperty(() => 1, 'name', { get: () => { throw new Error('no name'); } });
    expect([bg.add(numbered).name, bg.add(throwing).name]).toEqual(['anonymous', 'anonymous']);
  });

  it.each([
    ['a number', 42, /got 42 \(number\)/],
    ['a string', 'sendMail', /got "sendMail" \(string\)/],
    ['null', null, /got null/],
    ['a plain object', { run() {} }, /got an object/],
    // Their bodies would run only as their results were iterated: the task would "succeed" unrun.
    ['a generator function', function* gen() {}, /got function gen \(a generator function, whose body runs only as its result is iterated: a task runs when it is called\)$/],
    ['an async generator function', async function* agen() {}, /got function agen \(a generator function, /],
  ])('rejects %s as a task with a TypeError, queueing nothing', (_label, task, message) => {
    const { bg } = setup();
    expect(() => bg.add(task as never)).toThrow(TypeError);
    expect(() => bg.add(task as never)).toThrow(message);
    expect(bg.pending).toBe(0);
  });
});

describe('defineTask()', () => {
  it("reads its options once, whole, and keeps them frozen: a config class's getters, a getter that throws named", () => {
    class Options {
      get name(): string {
        return 'fromGetters';
      }
      get retries(): number {
        return 2;
      }
    }
    const definition = defineTask(new Options() as never, () => 0);
    expect([definition.name, (definition.options as { retries?: number }).retries, Object.isFrozen(definition.options)]).toEqual(['fromGetters', 2, true]);
    expect(() => defineTask({ get name(): string { throw new Error('no name'); } }, () => 0)).toThrow(
      new TypeError('defineTask(options, fn): options.name cannot be read: its getter threw (no name)'),
    );
  });

  it.each([
    ['options that are not an object', () => defineTask(null as never, () => 0), /options must be an object, got null/],
    ['an empty name', () => defineTask({ name: '' }, () => 0), /options.name must be a non-empty string \(not only white space\), got "" \(string\)/],
    ['a name of white space only', () => defineTask({ name: ' \t' }, () => 0), /options.name must be a non-empty string \(not only white space\), got " \\t" \(string\)/],
    ['a missing name', () => defineTask({} as never, () => 0), /options.name must be a non-empty string \(not only white space\), got undefined/],
    // The durable backend's own jobs are named so: a task of that name would be run as one of them.
    [
      'a name the library reserves',
      () => defineTask({ name: 'tsyringe-background:after' }, () => 0),
      /^defineTask\("tsyringe-background:after"\): options\.name must not begin with "tsyringe-background:", got "tsyringe-background:after" \(string\): the prefix is reserved for the library's own jobs$/,
    ],
    ['inject that is not an array', () => defineTask({ name: 't', inject: Greeter as never }, () => 0), /defineTask\("t"\): options.inject must be an array/],
    ['an undefined token', () => defineTask({ name: 't', inject: [Greeter, undefined as never] }, () => 0), /options.inject\[1\] must be .* got undefined \(undefined\) \(an import cycle/],
    ['a function that is not one', () => defineTask({ name: 't' }, 'nope' as never), /defineTask\("t"\): fn must be a function, got "nope"/],
    ['a class as fn (it cannot be called)', () => defineTask({ name: 't' }, Greeter as never), /^defineTask\("t"\): fn must be a function, got function Greeter \(a class, which cannot be called: a class task is added as it is/],
    ['a generator function as fn', () => defineTask({ name: 't' }, function* steps() {} as never), /^defineTask\("t"\): fn must be a function, got function steps \(a generator function, /],
    ['an async generator function as fn', () => defineTask({ name: 't' }, async function* steps() {} as never), /^defineTask\("t"\): fn must be a function, got function steps \(a generator function, /],
    [
      'an arrow function as a token (delay() forgotten)',
      () => defineTask({ name: 't', inject: [() => Greeter] as never }, () => 0),
      /^defineTask\("t"\): options\.inject\[0\] must be a class, string, symbol or delay\(\) token, got function \(anonymous\) \(a function that is not a class: a class defined later is injected as delay\(\(\) => TheClass\)\)$/,
    ],
  ])('rejects %s with a TypeError that names the problem', (_label, define, message) => {
    expect(define).toThrow(TypeError);
    expect(define).toThrow(message);
  });

  it('is frozen', () => {
    const task = defineTask({ name: 'frozen', inject: [Greeter] }, () => 0);
    expect(Object.isFrozen(task)).toBe(true);
    expect(Object.isFrozen(task.inject)).toBe(true);
  });
});
