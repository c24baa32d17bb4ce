import { container, injectable, type InjectionToken } from 'tsyringe';
import { describe, expectTypeOf, it } from 'vitest';
import {
  ApplicationBackground,
  Background,
  defineTask,
  shutdown,
  TaskContext,
  transfer,
  workerTask,
  type AnyTask,
  type CallOptions,
  type TaskAdder,
  type TaskArgs,
  type TaskDefinition,
  type TaskGroup,
  type TaskHandle,
  type TaskProgress,
  type WorkerTaskDefinition,
} from '../src/index.js';
import type { DurableBackend } from '../src/adapters/bullmq.js';

class Mailer {
  send(to: string): Promise<boolean> {
    return Promise.resolve(to.length > 0);
  }
}
class Clock {
  now(): number {
    return 0;
  }
}
const ApiKey = Symbol('ApiKey') as InjectionToken<string>;

@injectable()
class ReindexUser {
  run(id: string, force?: boolean): Promise<number> {
    return Promise.resolve(force === true ? id.length : 0);
  }
}

/** Overloaded: a call of either signature compiles, `parse('42')` and `parse(42)`. */
function parse(text: string): number;
function parse(value: number): number;
function parse(input: string | number): number {
  return Number(input);
}
class ParseJob {
  run(text: string): number;
  run(value: number): number;
  run(input: string | number): number {
    return Number(input);
  }
}

declare const bg: Background;

describe('defineTask typing', () => {
  it("turns the inject tokens' instance types into the leading parameter types", () => {
    defineTask({ name: 'probe', inject: [Mailer, Clock, ApiKey, TaskContext] }, (mailer, clock, key, ctx, to: string) => {
      expectTypeOf(mailer).toEqualTypeOf<Mailer>();
      expectTypeOf(clock).toEqualTypeOf<Clock>();
      expectTypeOf(key).toEqualTypeOf<string>();
      expectTypeOf(ctx).toEqualTypeOf<TaskContext>();
      expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
      return to;
    });
  });

  it('keeps only the parameters after the dependencies as arguments, and the awaited result', () => {
    const send = defineTask({ name: 'send', inject: [Mailer] }, (mailer, to: string, times?: number) => mailer.send(to.repeat(times ?? 1)));
    expectTypeOf(send).toEqualTypeOf<TaskDefinition<[to: string, times?: number], boolean>>();
    const plain = defineTask({ name: 'plain' }, (n: number) => n * 2);
    expectTypeOf(plain).toEqualTypeOf<TaskDefinition<[n: number], number>>();
  });

  it('rejects using a dependency as the wrong type', () => {
    // @ts-expect-error Mailer has no method now()
    defineTask({ name: 'bad', inject: [Mailer] }, (mailer) => mailer.now());
  });
});

describe('bg.add typing', () => {
  it('flows argument types from a definition', () => {
    const send = defineTask({ name: 'send', inject: [Mailer] }, (mailer, to: string) => mailer.send(to));
    expectTypeOf(bg.add(send, 'a@b.c')).toEqualTypeOf<TaskHandle<boolean>>();
    // @ts-expect-error a number is not a string
    bg.add(send, 42);
    // @ts-expect-error the argument is missing
    bg.add(send);
    // @ts-expect-error one argument too many
    bg.add(send, 'a@b.c', 'extra');
    // @ts-expect-error the dependency is not an argument
    bg.add(send, new Mailer(), 'a@b.c');
  });

  it('flows argument types from a class task run()', () => {
    expectTypeOf(bg.add(ReindexUser, 'u1')).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(bg.add(ReindexUser, 'u1', true)).toEqualTypeOf<TaskHandle<number>>();
    // @ts-expect-error id must be a string
    bg.add(ReindexUser, 1);
    // @ts-expect-error force must be a boolean
    bg.add(ReindexUser, 'u1', 'yes');
  });

  it('flows argument types from plain sync and async functions', () => {
    expectTypeOf(bg.add((a: number, b: string) => b.repeat(a), 2, 'x')).toEqualTypeOf<TaskHandle<string>>();
    expectTypeOf(bg.add(async () => 1)).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(bg.add(() => undefined)).toEqualTypeOf<TaskHandle<undefined>>();
    // @ts-expect-error b must be a string
    bg.add((a: number, b: string) => b.repeat(a), 2, 3);
    // @ts-expect-error missing the second argument
    bg.add(async (a: number, b: string) => b.repeat(a), 2);
  });

  it('reports a wrong argument on that argument (its own line), not on the task', () => {
    const send = defineTask({ name: 'send', inject: [Mailer] }, (mailer, to: string) => mailer.send(to));
    bg.add(
      send,
      // @ts-expect-error here, on the argument: a number is not assignable to a string
      42,
    );
    bg.with({ priority: 'high' }).add(
      ReindexUser,
      'u1',
      // @ts-expect-error here, on the argument: force must be a boolean
      'yes',
    );
    bg.group().add(
      (a: number, b: string) => b.repeat(a),
      2,
      // @ts-expect-error here, on the argument: b must be a string
      3,
    );
  });

  it('types an overloaded function, or an overloaded run(), by its last signature; an arrow function or a definition gives the one meant', () => {
    // A TypeScript limit: inferring a type's parameters sees only its last overload (docs/tasks.md, Typed arguments).
    expectTypeOf(bg.add(parse, 42)).toEqualTypeOf<TaskHandle<number>>();
    // @ts-expect-error parse('42') compiles, but add() sees only parse(value: number)
    bg.add(parse, '42');
    expectTypeOf(bg.add(ParseJob, 42)).toEqualTypeOf<TaskHandle<number>>();
    // @ts-expect-error new ParseJob().run('42') compiles, but add() sees only run(value: number)
    bg.add(ParseJob, '42');
    expectTypeOf(bg.add((text: string) => parse(text), '42')).toEqualTypeOf<TaskHandle<number>>();
    const parseText = defineTask({ name: 'parseText' }, (text: string) => parse(text));
    expectTypeOf(bg.add(parseText, '42')).toEqualTypeOf<TaskHandle<number>>();
    const runText = defineTask({ name: 'runText', inject: [ParseJob] }, (job, text: string) => job.run(text));
    expectTypeOf(bg.add(runText, '42')).toEqualTypeOf<TaskHandle<number>>();
    // @ts-expect-error the definition takes the signature it was given: a string
    bg.add(runText, 42);
  });

  it('only takes tasks', () => {
    // @ts-expect-error a string is not a task
    bg.add('sendWelcome');
    // @ts-expect-error a class without run() is not a task
    bg.add(Mailer);
  });

  it('is AsyncDisposable and its dispose() resolves to void', () => {
    expectTypeOf(bg).toExtend<AsyncDisposable>();
    expectTypeOf(bg.dispose()).toEqualTypeOf<Promise<void>>();
    expectTypeOf(bg.drain()).toEqualTypeOf<Promise<void>>();
  });
});

describe('generic code around add(), defineTask() and workerTask() (a task whose result is a type parameter of yours)', () => {
  it('compiles, and the handle and the definition carry the type parameter', () => {
    // A generator guard on the return type could not be decided for a type parameter, and refused
    // all of these (refused at run time instead, where the mistake is made).
    const addLater = <R>(work: () => R) => bg.add(work);
    expectTypeOf(addLater(() => 1)).toEqualTypeOf<TaskHandle<number>>();
    const maybe = <R>(work: (n: number) => R | undefined) => bg.with({ priority: 'low' }).add(work, 1);
    expectTypeOf(maybe((n): string | undefined => (n > 0 ? 'yes' : undefined))).toEqualTypeOf<TaskHandle<string | undefined>>();
    const addSlowly = <T extends AnyTask>(task: T, ...args: TaskArgs<T>) => bg.with({ priority: 'low' }).add(task, ...args);
    expectTypeOf(addSlowly(async (n: number) => n, 1)).toEqualTypeOf<TaskHandle<number>>();
    const memo = <T>(name: string, compute: (key: string) => T) => defineTask({ name }, (key: string) => compute(key));
    expectTypeOf(memo('m', (key) => key.length)).toEqualTypeOf<TaskDefinition<[key: string], number>>();
    const cpu = <T>(name: string, compute: (n: number) => T) => workerTask(import.meta.url, { name }, (n: number) => compute(n));
    expectTypeOf(cpu('c', (n) => n > 1)).toEqualTypeOf<WorkerTaskDefinition<[n: number], boolean>>();
    const inGroup = <R>(work: () => Promise<R>) => bg.group<R>().add(work);
    expectTypeOf(inGroup(async () => 'x')).toEqualTypeOf<TaskHandle<string>>();
    // @ts-expect-error the arguments are still checked
    const wrong = <R>(work: (n: number) => R) => bg.add(work, 'one');
    expectTypeOf(wrong).toBeFunction();
  });

  it('takes what is not a generator function: one returning an iterator, any, or nothing (it throws)', () => {
    expectTypeOf(bg.add(() => [1, 2].values())).toEqualTypeOf<TaskHandle<ArrayIterator<number>>>();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a function returning any is a task, not taken for a generator function
    expectTypeOf(bg.add((text: string): any => JSON.parse(text), '{}')).toEqualTypeOf<TaskHandle<any>>();
    expectTypeOf(bg.add((): never => {
      throw new Error('refused');
    })).toEqualTypeOf<TaskHandle<never>>();
    expectTypeOf(bg.add(ReindexUser, 'u1')).toEqualTypeOf<TaskHandle<number>>();
  });
});

describe('definitions', () => {
  function* countTo(n: number): Generator<number> {
    for (let i = 1; i <= n; i++) yield i;
  }

  it('still types the dependencies, the arguments and the result of what is not a generator function', () => {
    const send = defineTask({ name: 'send', inject: [Mailer, TaskContext] }, (mailer, ctx, to: string) => {
      expectTypeOf(mailer).toEqualTypeOf<Mailer>();
      expectTypeOf(ctx).toEqualTypeOf<TaskContext>();
      return mailer.send(to);
    });
    expectTypeOf(send).toEqualTypeOf<TaskDefinition<[to: string], boolean>>();
    expectTypeOf(defineTask({ name: 'count' }, (n: number) => [...countTo(n)])).toEqualTypeOf<TaskDefinition<[n: number], number[]>>();
    expectTypeOf(defineTask({ name: 'values' }, () => [1, 2].values())).toEqualTypeOf<TaskDefinition<[], ArrayIterator<number>>>();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a function returning any is a task, not taken for a generator function
    expectTypeOf(defineTask({ name: 'parse' }, (text: string): any => JSON.parse(text))).toEqualTypeOf<TaskDefinition<[text: string], any>>();
    expectTypeOf(
      defineTask({ name: 'refuse' }, (): never => {
        throw new Error('refused');
      }),
    ).toEqualTypeOf<TaskDefinition<[], never>>();
    expectTypeOf(workerTask(import.meta.url, { name: 'render', inject: [Clock] }, (clock, size: number) => size + clock.now())).toEqualTypeOf<
      WorkerTaskDefinition<[size: number], number>
    >();
    // @ts-expect-error Mailer has no method now(): the dependency keeps its type
    defineTask({ name: 'bad', inject: [Mailer] }, (mailer) => mailer.now());
  });
});

describe('durable views', () => {
  const send = defineTask({ name: 'send', inject: [Mailer] }, (mailer, to: string) => mailer.send(to));
  const render = workerTask(import.meta.url, { name: 'render' }, (size: number) => size * 2);

  it('take definitions, their arguments typed', () => {
    expectTypeOf(bg.with({ durable: true }).add(send, 'a@b.c')).toEqualTypeOf<TaskHandle<boolean>>();
    expectTypeOf(bg.with({ durable: true, priority: 'high', delayMs: 5 }).add(render, 64)).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(bg.group().with({ durable: true }).add(send, 'a@b.c')).toEqualTypeOf<TaskHandle<boolean>>();
    // @ts-expect-error the argument must be a string
    bg.with({ durable: true }).add(send, 42);
  });

  it('refuse a plain function or a class task, as add() does at run time', () => {
    // @ts-expect-error only a definition can be durable: a worker finds it by its name
    bg.with({ durable: true }).add(async (to: string) => to, 'a@b.c');
    // @ts-expect-error a class task neither
    bg.with({ durable: true, retries: 3 }).add(ReindexUser, 'u1');
    // @ts-expect-error a group's durable view neither
    bg.group().with({ durable: true }).add(() => 1);
    // @ts-expect-error a view of a durable view stays durable
    bg.with({ durable: true }).with({ retries: 1 }).add(() => 1);
  });

  it('give way to any task again with durable: false, and leave options of the general type as they are', () => {
    expectTypeOf(bg.with({ durable: true }).with({ durable: false }).add(async () => 1)).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(bg.with({ durable: false }).add(ReindexUser, 'u1')).toEqualTypeOf<TaskHandle<number>>();
    const options: CallOptions = { durable: true };
    expectTypeOf(bg.with(options).add(async () => 1)).toEqualTypeOf<TaskHandle<number>>();
    const inferred = { durable: true };
    expectTypeOf(bg.with(inferred).add(ReindexUser, 'u1')).toEqualTypeOf<TaskHandle<number>>();
  });
});

describe('workerTask typing', () => {
  it('types dependencies and arguments like defineTask, and flows them into add()', () => {
    const render = workerTask(import.meta.url, { name: 'render', inject: [Clock, TaskContext] }, (clock, ctx, userId: string, size: number) => {
      expectTypeOf(clock).toEqualTypeOf<Clock>();
      expectTypeOf(ctx).toEqualTypeOf<TaskContext>();
      return { bytes: size + clock.now() + userId.length };
    });
    expectTypeOf(render).toEqualTypeOf<WorkerTaskDefinition<[userId: string, size: number], { bytes: number }>>();
    expectTypeOf(bg.add(render, 'u1', 64)).toEqualTypeOf<TaskHandle<{ bytes: number }>>();
    // @ts-expect-error size must be a number
    bg.add(render, 'u1', '64');
  });

  it('lets an untyped string or symbol token be annotated, and types a typed token', () => {
    workerTask(import.meta.url, { name: 'tokens', inject: ['Config', Symbol('Db'), ApiKey] }, (config: { size: number }, db: Map<string, number>, key) => {
      expectTypeOf(key).toEqualTypeOf<string>();
      return config.size + db.size;
    });
  });

  it('keeps the type of a transferred argument', () => {
    const sum = workerTask(import.meta.url, { name: 'sum' }, (bytes: Uint8Array) => bytes.length);
    expectTypeOf(transfer(new Uint8Array(4))).toEqualTypeOf<Uint8Array<ArrayBuffer>>();
    bg.add(sum, transfer(new Uint8Array(4)));
    // @ts-expect-error transfer() takes binary data only
    transfer({ bytes: 1 });
  });
});

describe('groups', () => {
  const square = defineTask({ name: 'square' }, async (n: number) => n * n);
  const label = defineTask({ name: 'label' }, (n: number) => `#${n}`);
  @injectable()
  class CountRows {
    run(table: string): Promise<number> {
      return Promise.resolve(table.length);
    }
  }

  @injectable()
  class RenderLabel {
    run(n: number): Promise<string> {
      return Promise.resolve(`#${n}`);
    }
  }

  it('typed by their result, take the tasks that resolve to it, and all() resolves to their results', () => {
    const squares = bg.group<number>();
    expectTypeOf(squares).toEqualTypeOf<TaskGroup<number>>();
    expectTypeOf(squares.add(square, 3)).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(squares.add(CountRows, 'users')).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(squares.add(async (n: number) => n + 1, 1)).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(squares.add(() => 2 as const)).toEqualTypeOf<TaskHandle<2>>();
    expectTypeOf(squares.all()).toEqualTypeOf<Promise<number[]>>();
    expectTypeOf(squares.allSettled()).toEqualTypeOf<Promise<PromiseSettledResult<number>[]>>();
    expectTypeOf(squares.handles).toEqualTypeOf<readonly TaskHandle<number>[]>();
    bg.with({ after: squares.handles }).add(async () => 0);
  });

  it('typed by their result, refuse a task of another result, and keep checking the arguments', () => {
    const squares = bg.group<number>();
    // @ts-expect-error label resolves to a string
    squares.add(label, 1);
    // @ts-expect-error a function resolving to a string
    squares.add(async () => 'x');
    // @ts-expect-error a class task whose run() resolves to a string
    squares.add(RenderLabel, 1);
    // @ts-expect-error the argument must be a number
    squares.add(square, '3');
  });

  it('untyped, take any task and all() resolves to unknown[], as before', () => {
    const group = bg.group();
    expectTypeOf(group).toEqualTypeOf<TaskGroup>();
    expectTypeOf(group.add(label, 1)).toEqualTypeOf<TaskHandle<string>>();
    expectTypeOf(group.add(ReindexUser, 'u1')).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(group.all()).toEqualTypeOf<Promise<unknown[]>>();
    expectTypeOf(group.handles).toEqualTypeOf<readonly TaskHandle[]>();
    const addTo = (adder: TaskAdder) => adder.add(async () => 1);
    addTo(group);
    addTo(bg.group<number>());
  });

  it("with() gives the group's own view: a group of the same result, that adds definitions only when durable", () => {
    const squares = bg.group<number>();
    expectTypeOf(squares.with({ priority: 'high' })).toEqualTypeOf<TaskGroup<number>>();
    expectTypeOf(squares.with({ priority: 'high' }).all()).toEqualTypeOf<Promise<number[]>>();
    expectTypeOf(bg.group().with({ retries: 1 }).handles).toEqualTypeOf<readonly TaskHandle[]>();
    const durable = squares.with({ durable: true });
    expectTypeOf(durable.add(square, 2)).toEqualTypeOf<TaskHandle<number>>();
    expectTypeOf(durable.with({ retries: 1 }).all()).toEqualTypeOf<Promise<number[]>>();
    // @ts-expect-error a durable view adds definitions only
    durable.add(async () => 1);
    // @ts-expect-error a view of a durable view stays durable
    durable.with({ retries: 1 }).add(async () => 1);
    // @ts-expect-error and of the group's result
    durable.add(label, 1);
    expectTypeOf(durable.with({ durable: false }).add(async () => 1)).toEqualTypeOf<TaskHandle<number>>();
    // @ts-expect-error durable: false again takes any task of the group's result, not another
    durable.with({ durable: false }).add(async () => 'x');
    expectTypeOf(bg.group().with({ durable: true }).with({ durable: false }).add(ReindexUser, 'u1')).toEqualTypeOf<TaskHandle<number>>();
  });
});

describe('task options typing', () => {
  it('keeps argument types through with() views and groups', () => {
    const send = defineTask({ name: 'send', inject: [Mailer], retries: 2, priority: 'high' }, (mailer, to: string) => mailer.send(to));
    const view = bg.with({ priority: 'critical', timeoutMs: 1_000, delayMs: 10 });
    expectTypeOf(view.add(send, 'a@b.c')).toEqualTypeOf<TaskHandle<boolean>>();
    expectTypeOf(view.with({ retries: 1 }).add(async (n: number) => n, 1)).toEqualTypeOf<TaskHandle<number>>();
    // @ts-expect-error the argument must be a string
    view.add(send, 1);
    const group = bg.group();
    expectTypeOf(group.add(send, 'x')).toEqualTypeOf<TaskHandle<boolean>>();
    expectTypeOf(group.all()).toEqualTypeOf<Promise<unknown[]>>();
  });

  it('rejects options of the wrong type at compile time', () => {
    // @ts-expect-error priority is a named level or a number
    bg.with({ priority: 'urgent' });
    // @ts-expect-error retryIf is a predicate
    bg.with({ retryIf: true });
    // @ts-expect-error runAt is a Date or epoch ms
    bg.with({ runAt: '2026-12-01' });
    // @ts-expect-error after takes handles
    bg.with({ after: [1, 2] });
    // @ts-expect-error definitions take task options, not call options
    defineTask({ name: 'x', delayMs: 5 }, () => 0);
    bg.with({ cron: '0 */5 * * * *', tz: 'Europe/Paris', overlap: false });
  });

  it('types the progress a handle reports and the stats', () => {
    const handle = bg.add(async () => 1);
    expectTypeOf(handle.progress).toEqualTypeOf<TaskProgress | undefined>();
    expectTypeOf(handle.result({ timeoutMs: 5 })).toEqualTypeOf<Promise<number>>();
    expectTypeOf(bg.stats().byStatus.timedOut).toEqualTypeOf<number>();
  });
});

describe('ApplicationBackground and the shutdown report typing', () => {
  it('resolves a Background; the report has totals by final status', () => {
    expectTypeOf(ApplicationBackground).toEqualTypeOf<InjectionToken<Background>>();
    expectTypeOf(container.resolve(ApplicationBackground)).toEqualTypeOf<Background>();
    expectTypeOf<Awaited<ReturnType<typeof shutdown>>['totals']['abandoned']>().toEqualTypeOf<number>();
    expectTypeOf<Awaited<ReturnType<typeof shutdown>>['totals']['total']>().toEqualTypeOf<number>();
  });
});

describe('the durable backend typing', () => {
  it("types backend.handle(id, task) with the task's result, and refuses what is not a definition", () => {
    const backend = null as unknown as DurableBackend;
    const sendInvoice = defineTask({ name: 'sendInvoice', inject: [Mailer] }, async (mailer: Mailer, to: string) => ({ sent: await mailer.send(to) }));
    const checksum = workerTask(import.meta.url, { name: 'checksum' }, (data: Uint8Array, seed: number) => data.length + seed);
    expectTypeOf(backend.handle('id')).toEqualTypeOf<Promise<TaskHandle | undefined>>();
    expectTypeOf(backend.handle('id', sendInvoice)).toEqualTypeOf<Promise<TaskHandle<{ sent: boolean }> | undefined>>();
    expectTypeOf(backend.handle('id', checksum)).toEqualTypeOf<Promise<TaskHandle<number> | undefined>>();
    // @ts-expect-error a function is not a definition
    void backend.handle('id', async () => 1);
    // @ts-expect-error nor is a class task
    void backend.handle('id', ReindexUser);
  });
});
