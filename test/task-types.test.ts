// The types of defineTask()'s `inject` and the checks it makes on its tokens. The type
// assertions (expectTypeOf, @ts-expect-error) are checked by `npm run typecheck` (tsc over
// test/); the runtime tests by vitest.
import { delay, inject, injectable, type InjectionToken } from 'tsyringe';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { Background, defineTask, TaskContext, TaskDependencyError, workerTask, type TaskDefinition, type TaskHandle } from '../src/index.js';
import type { InjectOfUnknownLength } from '../src/model/task.js';
import { freshApp } from './helpers.js';

class Mailer {
  send(to: string): string {
    return `sent to ${to}`;
  }
}
class Clock {
  now(): number {
    return 0;
  }
}
const ApiKey = Symbol('ApiKey') as InjectionToken<string>;

/** A Background for calls whose types are checked, made inside {@link typeOnly} only. */
const bg = undefined as unknown as Background;

/** Type-checks `calls` without running them: the tasks' dependencies are not registered. */
function typeOnly(calls: () => void): void {
  void calls;
}

/** A value of any type, for runtime tests of what the types already refuse. */
function untyped(value: unknown): never {
  return value as never;
}

describe('inject whose length is known', () => {
  it('types inline lists of every kind of token, and add() takes only the arguments', () => {
    const all = defineTask(
      { name: 'all', inject: [Mailer, 'Cache', Symbol('Db'), ApiKey, delay(() => Clock), TaskContext] },
      (mailer, cache, db, key, clock, ctx, to: string) => {
        expectTypeOf(mailer).toEqualTypeOf<Mailer>();
        expectTypeOf(cache).toBeAny();
        expectTypeOf(db).toBeAny();
        expectTypeOf(key).toEqualTypeOf<string>();
        expectTypeOf(clock).toEqualTypeOf<Clock>();
        expectTypeOf(ctx).toEqualTypeOf<TaskContext>();
        return to.length;
      },
    );
    expectTypeOf(all).toEqualTypeOf<TaskDefinition<[to: string], number>>();
    typeOnly(() => {
      expectTypeOf(bg.add(all, 'a@b.c')).toEqualTypeOf<TaskHandle<number>>();
    });
  });

  it('takes a list declared as const, or typed as a tuple, like an inline one', () => {
    const deps = [Mailer, TaskContext] as const;
    const viaConst = defineTask({ name: 'viaConst', inject: deps }, async (mailer, ctx, to: string) => {
      expectTypeOf(ctx).toEqualTypeOf<TaskContext>();
      return Promise.resolve(mailer.send(to));
    });
    expectTypeOf(viaConst).toEqualTypeOf<TaskDefinition<[to: string], string>>();
    typeOnly(() => {
      bg.add(viaConst, 'a@b.c');
      // @ts-expect-error the dependency is not an argument
      bg.add(viaConst, new Mailer(), 'a@b.c');
    });

    const tuple: [typeof Mailer] = [Mailer];
    const viaTuple = defineTask({ name: 'viaTuple', inject: tuple }, (mailer: Mailer, to: string) => mailer.send(to));
    expectTypeOf(viaTuple).toEqualTypeOf<TaskDefinition<[to: string], string>>();
  });

  it('takes no inject, or an empty one', () => {
    expectTypeOf(defineTask({ name: 'none' }, (n: number) => n)).toEqualTypeOf<TaskDefinition<[n: number], number>>();
    expectTypeOf(defineTask({ name: 'empty', inject: [] }, (n: number) => n)).toEqualTypeOf<TaskDefinition<[n: number], number>>();
  });

  it('lets a plain string token be annotated, since its parameter is any', () => {
    defineTask({ name: 'annotated', inject: ['Config'] }, (config: { size: number }, n: number) => config.size + n);
  });
});

describe('inject whose length is unknown', () => {
  it('does not compile, on the inject property, rather than typing add() wrongly', () => {
    const deps = [Mailer];
    defineTask(
      {
        name: 'viaVar',
        // @ts-expect-error an array of unknown length: write the list inline or declare it as const
        inject: deps,
      },
      async (mailer: Mailer, to: string) => Promise.resolve(mailer.send(to)),
    );
    const tokens: readonly InjectionToken[] = [Mailer, Clock];
    defineTask(
      {
        name: 'viaTokens',
        // @ts-expect-error an array of unknown length
        inject: tokens,
      },
      () => 0,
    );
    workerTask(
      import.meta.url,
      {
        name: 'workerViaVar',
        // @ts-expect-error the same for a worker task
        inject: deps,
      },
      (mailer: Mailer, to: string) => mailer.send(to),
    );
  });

  it('says why in the type the error names', () => {
    expectTypeOf<Parameters<typeof defineTask<(typeof Mailer)[], () => 0>>[0]['inject']>().toEqualTypeOf<
      InjectOfUnknownLength | undefined
    >();
  });
});

describe('defineTask() refuses what is not a token', () => {
  it('refuses a hole, naming its position', () => {
    // eslint-disable-next-line no-sparse-arrays -- the mistake under test
    expect(() => defineTask({ name: 'sparse', inject: untyped([, Mailer]) }, () => 0)).toThrow(
      new TypeError(
        'defineTask("sparse"): options.inject[0] must be a class, string, symbol or delay() token, got undefined (undefined) (a hole in the array)',
      ),
    );
    // eslint-disable-next-line no-sparse-arrays -- the mistake under test
    expect(() => defineTask({ name: 'sparseEnd', inject: untyped([Mailer, , Clock]) }, () => 0)).toThrow(
      /^defineTask\("sparseEnd"\): options\.inject\[1\] must be a class, string, symbol or delay\(\) token, got undefined \(undefined\) \(a hole in the array\)$/,
    );
  });

  it('refuses an object that is not a delay() token', () => {
    expect(() => defineTask({ name: 'plainObject', inject: untyped([Mailer, {}]) }, () => 0)).toThrow(
      new TypeError('defineTask("plainObject"): options.inject[1] must be a class, string, symbol or delay() token, got an object'),
    );
    expect(() => defineTask({ name: 'date', inject: untyped([new Date(0)]) }, () => 0)).toThrow(
      new TypeError('defineTask("date"): options.inject[0] must be a class, string, symbol or delay() token, got an instance of Date'),
    );
    expect(() => workerTask(import.meta.url, { name: 'workerObject', inject: untyped([{}]) }, () => 0)).toThrow(
      /^workerTask\("workerObject"\): options\.inject\[0\] must be a class, string, symbol or delay\(\) token, got an object$/,
    );
    // A worker task's mistakes are worded as workerTask()'s, its options' too, and the arguments swapped.
    expect(() => workerTask(import.meta.url, { name: 'resize', retry: 1 } as never, () => 0)).toThrow(/^workerTask\("resize"\): options\.retry is not a known option/);
    expect(() => workerTask(import.meta.url, (() => 0) as never, { name: 'resize' } as never)).toThrow(
      new TypeError('workerTask(moduleUrl, options, fn): options must be an object, got function (anonymous)'),
    );
  });

  it('still takes a delay() token, and add() resolves it', async () => {
    const greet = defineTask({ name: 'greet', inject: [delay(() => Mailer)] }, (mailer, to: string) => mailer.send(to));
    const background = freshApp().createChildContainer().resolve(Background);
    await expect(background.add(greet, 'a@b.c').result()).resolves.toBe('sent to a@b.c');
    await background.dispose();
  });

  it("resolves a delay() token's class at add(), as any dependency: a missing registration throws there, and the scope's disposal (tsyringe's container.dispose()) cannot fail the task", async () => {
    class NeedsConfig {
      constructor(@inject('MissingConfig') readonly config: unknown) {}
    }
    injectable()(NeedsConfig);
    const lazy = defineTask({ name: 'lazy', inject: [delay(() => NeedsConfig)] }, (dep) => typeof dep);
    const scope = freshApp().createChildContainer();
    const background = scope.resolve(Background);
    expect(() => background.add(lazy)).toThrow(TaskDependencyError);
    expect(() => background.add(lazy)).toThrow(/^Cannot add task "lazy": the dependency .*delay\(\(\) => NeedsConfig\)/);
    expect(background.pending).toBe(0);
    // Resolvable: resolved now, so that disposing the container with the task queued changes nothing.
    scope.register('MissingConfig', { useValue: { region: 'eu' } });
    const handle = defineTask({ name: 'lazyOk', inject: [delay(() => NeedsConfig)] }, async (dep) => dep.config);
    const added = background.add(handle);
    await scope.dispose();
    await expect(added.result()).resolves.toEqual({ region: 'eu' });
  });

  it('refuses TaskContext listed twice: a task gets one context', () => {
    expect(() => defineTask({ name: 'twice', inject: [TaskContext, 'X', TaskContext] }, () => 0)).toThrow(
      new TypeError('defineTask("twice"): options.inject[2] is TaskContext again (also at 0); a task gets one context: list it once'),
    );
  });
});
