/**
 * Bad input found from outside, each refused where the mistake is made with the error the docs
 * give (TypeError for a wrong type or a misspelt option, RangeError for a number out of range),
 * and a root's options registered again, which must not turn it into a scope of the application
 * above.
 */
import { container } from 'tsyringe';
import { afterEach, describe, expect, it } from 'vitest';
import { ApplicationBackground, Background, BackgroundOptions, defineTask, disposeScope, observeTasks, shutdown, transfer, workerTask, wrapAttempts, type CallOptions } from '../src/index.js';
import { deferred, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 1_000 })));
});
function app(options: Parameters<typeof freshApp>[0] = {}) {
  const root = freshApp(options);
  const bg = root.createChildContainer().resolve(Background);
  roots.push(root);
  return { root, bg };
}

describe('a root whose options are registered again without root: true', () => {
  it('stays a root: its scopes stay in its application, and shutdown() of it closes it, not the application above', async () => {
    const { root } = app({ concurrency: 10 });
    const rootBg = root.resolve(Background);
    root.register(BackgroundOptions, { useValue: { concurrency: 2 } }); // "to change options, register a new object"
    const request = root.createChildContainer();
    expect(request.resolve(ApplicationBackground)).toBe(rootBg);
    const above = container.resolve(Background);
    await shutdown({ container: root });
    expect(() => rootBg.add(async () => undefined)).toThrow(/disposed/);
    expect(above.add(async () => 'the global application still takes tasks').status).toBe('queued');
  });
});

describe('options objects', () => {
  it("take a user's class instance, even one naming its own tag, and null-prototype and frozen objects", async () => {
    class Tagged {
      retries = 1;
      get [Symbol.toStringTag](): string {
        return 'MyConfig';
      }
    }
    const { bg } = app();
    for (const options of [new Tagged(), Object.assign(Object.create(null) as object, { retries: 1 }), Object.freeze({ retries: 1 })]) {
      let runs = 0;
      const handle = bg.with({ ...(options as object), backoff: { baseMs: 1, jitter: 0 } }).with(options as CallOptions).add(async () => {
        if (++runs === 1) throw new Error('once');
        return runs;
      });
      await expect(handle.result()).resolves.toBe(2);
    }
  });
});

describe("options given as a class instance's accessors, or as non-enumerable fields", () => {
  /** Options as a config class gives them: getters on its prototype, none of them enumerable. */
  class RetryTwice {
    get retries(): number {
      return 2;
    }
    get backoff(): object {
      return { baseMs: 1, jitter: 0 };
    }
  }
  const failsTwice = () => {
    let runs = 0;
    return async () => {
      if (++runs < 3) throw new Error('not yet');
      return runs;
    };
  };

  it('are honoured as fields are: by bg.with(), a definition, registered defaults', async () => {
    const { bg } = app();
    await expect(bg.with(new RetryTwice() as CallOptions).add(failsTwice()).result()).resolves.toBe(3);
    await expect(bg.add(defineTask(Object.assign(new RetryTwice(), { name: 'fromAClass' }) as never, failsTwice())).result()).resolves.toBe(3);
    const hidden = Object.defineProperty({ backoff: { baseMs: 1, jitter: 0 } }, 'retries', { value: 2, enumerable: false });
    await expect(bg.with(hidden).add(failsTwice()).result()).resolves.toBe(3);
    const registered = app({ defaults: new RetryTwice() });
    await expect(registered.bg.add(failsTwice()).result()).resolves.toBe(3);
  });

  it("read a config class's methods as options too: a helper method is refused as a misspelt option would be", () => {
    class Settings {
      get retries(): number {
        return 2;
      }
      describe(): string {
        return `${this.retries} retries`;
      }
    }
    expect(() => app().bg.with(new Settings() as never)).toThrow('bg.with(options): options.describe is not a known option');
  });

  it("are honoured in the registered options too: a getter's drainTimeoutMs bounds the drain", async () => {
    class Settings {
      get root(): boolean {
        return true;
      }
      get drainTimeoutMs(): number {
        return 20;
      }
    }
    const root = container.createChildContainer().register(BackgroundOptions, { useValue: new Settings() });
    roots.push(root);
    const bg = root.createChildContainer().resolve(Background);
    const handle = bg.add(() => new Promise(() => undefined));
    const started = Date.now();
    await bg.dispose();
    expect(handle.status).toBe('abandoned');
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe('inherited options', () => {
  it('are honoured as own ones, through a chain of views too; symbol keys are not options', async () => {
    const { bg } = app();
    const retryTwice = Object.create({ retries: 2, backoff: { baseMs: 1, jitter: 0 } }) as { retries: number };
    for (const view of [bg.with(retryTwice), bg.with({ priority: 'high' }).with(retryTwice), bg.with({ [Symbol('brand')]: true, ...{} }).with(retryTwice)]) {
      let runs = 0;
      const handle = view.add(async () => {
        if (++runs < 3) throw new Error('not yet');
        return runs;
      });
      await expect(handle.result()).resolves.toBe(3);
    }
  });
});

describe('an Object.prototype polluted with an enumerable field', () => {
  it('that names an option is not read as one: not as task options, registered options, a view\'s call options, nor a close\'s', async () => {
    const polluted = Object.prototype as Record<string, unknown>;
    Object.assign(polluted, { retries: 2, timeoutMs: 10, every: 100, durable: true, concurrency: 1, drainTimeoutMs: 0 });
    try {
      const { root, bg } = app();
      let attempts = 0;
      const failing = bg.with({}).add(async () => {
        attempts++;
        await new Promise((resolve) => setTimeout(resolve, 30));
        throw new Error('once');
      });
      // Not retried (retries), not timed out (timeoutMs), not periodic (every), not durable; nor
      // is its result() bounded by the polluted timeoutMs.
      await expect(failing.result({})).rejects.toThrow('once');
      expect(attempts).toBe(1);
      // Registered { root: true } with nothing else: the default concurrency, not 1.
      const gate = deferred();
      const both = [bg.add(async () => gate.promise), bg.add(async () => gate.promise)];
      await nextTurn();
      expect(both.map((handle) => handle.status)).toEqual(['running', 'running']);
      gate.resolve();
      await Promise.all(both.map((handle) => handle.result()));
      await shutdown({ container: root, timeoutMs: 1_000 });
    } finally {
      for (const key of ['retries', 'timeoutMs', 'every', 'durable', 'concurrency', 'drainTimeoutMs']) delete polluted[key];
    }
  });

  it("is no one's options: every options object is still taken, the application still closes", async () => {
    const polluted = Object.prototype as Record<string, unknown>;
    polluted.polluted = 1;
    try {
      const { root, bg } = app({ concurrency: 2 });
      const handle = bg.with({ retries: 0 }).with({ priority: 'high' }).add(async () => 'ran');
      await expect(handle.result({ timeoutMs: 1_000 })).resolves.toBe('ran');
      expect(bg.list({ status: 'succeeded' })).toHaveLength(1);
      await shutdown({ container: root, timeoutMs: 1_000 });
    } finally {
      delete polluted.polluted;
    }
  });
});

describe('options refused with the right error, naming what is wrong', () => {
  it.each<[string, () => unknown, ErrorConstructor, string]>([
    ['a number for a boolean option', () => app({ root: 1 as never }), TypeError, 'options.root must be a boolean, got 1 (number)'],
    ['an empty time zone', () => app().bg.with({ cron: '0 * * * *', tz: '' }), TypeError, 'bg.with(options): options.tz must be a time zone name, got "" (string)'],
    ['a number for the logger', () => app({ logger: 5 as never }), TypeError, 'options.logger must be an object with error, warn, info and debug methods, got 5 (number)'],
    ['a name inherited from Object.prototype', () => app({ valueOf: 1 } as never), TypeError, 'options.valueOf is not a known option'],
    ['a misspelt shutdown() option', () => shutdown({ timeout: 50 } as never), TypeError, 'shutdown(options): options.timeout is not a known option; known options: container, timeoutMs'],
    ['a shutdown() container that is not one', () => shutdown({ container: 5 } as never), TypeError, 'shutdown(options): options.container must be a tsyringe container, got 5 (number)'],
    ['an observeTasks() container that is not one', () => observeTasks(() => undefined, { container: 42 as never }), TypeError, 'observeTasks(observer, options): options.container must be a tsyringe container, got 42 (number)'],
    ['a misspelt observeTasks() option', () => observeTasks(() => undefined, { containr: freshApp() } as never), TypeError, 'observeTasks(observer, options): options.containr is not a known option; known options: container'],
    ['a wrapAttempts() container that is not one', () => wrapAttempts((_event, attempt) => attempt(), { container: {} as never }), TypeError, 'wrapAttempts(wrapper, options): options.container must be a tsyringe container, got an object'],
    ['a misspelt wrapAttempts() option', () => wrapAttempts((_event, attempt) => attempt(), { containr: freshApp() } as never), TypeError, 'wrapAttempts(wrapper, options): options.containr is not a known option; known options: container'],
    ['a string shutdown() timeoutMs', () => shutdown({ container: freshApp(), timeoutMs: '5' } as never), TypeError, 'shutdown(options): options.timeoutMs must be an integer from 0 to 2147483647, got "5" (string)'],
    ['a misspelt result() option', () => app().bg.add(async () => undefined).result({ timeout: 50 } as never), TypeError, 'handle.result(options): options.timeout is not a known option; known options: timeoutMs'],
    ['a list as bg.with() options', () => app().bg.with([] as never), TypeError, 'bg.with(options): options must be an object, got an empty array'],
    ['a Map as bg.with() options (its entries would be no options)', () => app().bg.with(new Map([['retries', 2]]) as never), TypeError, 'bg.with(options): options must be an object, got an instance of Map'],
    ['a Date as more options', () => app().bg.with({ retries: 1 }).with(new Date(0) as never), TypeError, 'bg.with(options).with(more): more must be an object, got an instance of Date'],
    ['a list as backoff', () => app().bg.with({ backoff: [] as never }), TypeError, 'bg.with(options): options.backoff must be an object, got an empty array'],
    ['an Invalid Date as runAt', () => app().bg.with({ runAt: new Date('not a date') }), TypeError, 'bg.with(options): options.runAt must be a valid Date or epoch milliseconds, got an Invalid Date'],
    ['undefined among the handles of after', () => app().bg.with({ after: [undefined as never] }), TypeError, 'bg.with(options): options.after[0] must be a handle of a one-off task returned by add() (a periodic task never finishes), got undefined (undefined)'],
    ['a hole among the handles of after', () => { const { bg } = app(); const after = [bg.add(async () => 1)]; after.length = 2; return bg.with({ after }); }, TypeError, 'bg.with(options): options.after[1] must be a handle of a one-off task returned by add() (a periodic task never finishes), got undefined (undefined)'],
    ['a periodic handle in after', () => { const { bg } = app(); return bg.with({ after: [bg.with({ every: 1_000 }).add(async () => 1)] }); }, TypeError, 'bg.with(options): options.after[0] must be a handle of a one-off task returned by add() (a periodic task never finishes), got an instance of Periodic'],
    ['an http: URL as a worker task\'s module', () => workerTask(new URL('http://x/t.js'), { name: 'w' }, () => 1), TypeError, 'workerTask("w"): moduleUrl must be the module\'s import.meta.url (a file: URL) or an absolute path, got URL "http://x/t.js"'],
    ['an http: URL as the setup module', () => app({ pool: { setupModule: new URL('http://x/setup.js') } }), TypeError, 'options.pool.setupModule must be a file: URL (new URL(..., import.meta.url)) or an absolute path, got URL "http://x/setup.js"'],
    ['an empty list to transfer()', () => transfer([] as never), TypeError, 'transfer(value): value must be an ArrayBuffer, a typed array, a DataView or a MessagePort, got an empty array'],
    // Shared, not movable: add() failed later, blaming a detached buffer.
    ['a view over a SharedArrayBuffer to transfer()', () => transfer(new Uint8Array(new SharedArrayBuffer(8))), TypeError, 'transfer(value): value is an instance of Uint8Array over a SharedArrayBuffer, which is shared, not transferred: pass it without transfer()'],
    ['a SharedArrayBuffer to transfer()', () => transfer(new SharedArrayBuffer(8) as never), TypeError, 'transfer(value): value is a SharedArrayBuffer, which is shared, not transferred: pass it without transfer()'],
    ['null as a view\'s more options', () => app().bg.with({ priority: 'high' }).with(null as never), TypeError, 'bg.with(options).with(more): more must be an object, got null'],
    ['a misspelt status in list()', () => app().bg.list({ status: 'bogus' as never }), TypeError, 'bg.list(filter): filter.status must be a task status or an array of them'],
    ['null as list()\'s filter', () => app().bg.list(null as never), TypeError, 'bg.list(filter): filter must be an object, got null'],
    ['a misspelt list() option', () => app().bg.list({ state: 'running' } as never), TypeError, 'bg.list(filter): filter.state is not a known option; known options: status, application'],
    // Misspelt, they answered for the scope where the application was meant.
    ['a number as disposeScope()\'s scope', () => disposeScope(42 as never), TypeError, 'disposeScope(scope): scope must be a tsyringe container, got 42 (number)'],
    ['nothing as disposeScope()\'s scope', () => disposeScope(undefined as never), TypeError, 'disposeScope(scope): scope must be a tsyringe container, got undefined (undefined)'],
    ['a string as list()\'s application', () => app().bg.list({ application: 'true' } as never), TypeError, 'bg.list(filter): filter.application must be a boolean, got "true" (string)'],
    ['a class as retryIf', () => app().bg.with({ retryIf: class Retry {} as never }), TypeError, 'bg.with(options): options.retryIf must be a function, got function Retry (a class, which cannot be called)'],
    ['a generator function as retryIf', () => app().bg.with({ retryIf: function* retry() {} as never }), TypeError, 'bg.with(options): options.retryIf must be a function, got function retry (a generator function, whose body runs only as its result is iterated)'],
    [
      'an async function as retryIf (its promise would read as no)',
      () => defineTask({ name: 'flaky', retryIf: (async () => true) as never }, () => 1),
      TypeError,
      'defineTask("flaky"): options.retryIf must be a function that answers at once, got function retryIf (an async function: its promise would read as no, and the task would never be retried)',
    ],
    ['a class as the observer', () => observeTasks(class Observer {} as never), TypeError, 'observeTasks(observer): observer must be a function, got function Observer (a class, which cannot be called)'],
    ['a generator function as the wrapper', () => wrapAttempts(function* wrap() {}), TypeError, 'wrapAttempts(wrapper): wrapper must be a function, got function wrap (a generator function, whose body runs only as its result is iterated)'],
    ['a misspelt get() option', () => app().bg.get('1', { aplication: true } as never), TypeError, 'bg.get(id, options): options.aplication is not a known option; known options: application'],
    ['a number as get()\'s id', () => app().bg.get(1 as never), TypeError, "bg.get(id, options): id must be a string (a handle's id), got 1 (number)"],
    ['a misspelt stats() option', () => app().bg.stats({ aplication: true } as never), TypeError, 'bg.stats(options): options.aplication is not a known option; known options: application'],
    ['a string as stats() options', () => app().bg.stats('application' as never), TypeError, 'bg.stats(options): options must be an object, got "application" (string)'],
    ['a string as stats()\'s application', () => app().bg.stats({ application: 'yes' } as never), TypeError, 'bg.stats(options): options.application must be a boolean, got "yes" (string)'],
    ['a runAt past what a Date can hold', () => app().bg.with({ runAt: 1e300 }), RangeError, 'bg.with(options): options.runAt must be a time a Date can hold'],
    // Inherited keys are read as options, so a misspelt one is refused as an own one is (they were not looked at).
    ['a misspelt option inherited by bg.with() options', () => app().bg.with(Object.create({ retriess: 2 }) as never), TypeError, 'bg.with(options): options.retriess is not a known option'],
    ['a misspelt option inherited by registered options', () => container.createChildContainer().register(BackgroundOptions, { useValue: Object.assign(Object.create({ concurency: 2 }) as object, { root: true }) }).resolve(Background), TypeError, 'options.concurency is not a known option'],
    ['a misspelt option inherited by pool options', () => app({ pool: Object.create({ maxThread: 2 }) as never }), TypeError, 'options.pool.maxThread is not a known option'],
    ['a misspelt option inherited by records options', () => app({ records: Object.create({ maxcount: 2 }) as never }), TypeError, 'options.records.maxcount is not a known option'],
    ['a misspelt option inherited by backoff', () => defineTask({ name: 'b', backoff: Object.create({ base: 5 }) as never }, () => 1), TypeError, 'defineTask("b"): options.backoff.base is not a known option'],
    ['a misspelt option inherited by shutdown() options', () => shutdown(Object.create({ timeout: 5 }) as never), TypeError, 'shutdown(options): options.timeout is not a known option'],
    ['a misspelt option inherited by result() options', () => app().bg.add(async () => undefined).result(Object.create({ timeout: 5 }) as never), TypeError, 'handle.result(options): options.timeout is not a known option'],
    // Node's Worker reads inherited limits: they were taken unchecked (and a dying thread's message read {}).
    ['a limit inherited by resourceLimits, under the minimum', () => app({ pool: { resourceLimits: Object.create({ maxOldGenerationSizeMb: 1 }) as never } }), RangeError, 'options.pool.resourceLimits.maxOldGenerationSizeMb must be at least 16 (megabytes)'],
    ['a misspelt limit inherited by resourceLimits', () => app({ pool: { resourceLimits: Object.create({ maxOldGenerationSizeMB: 64 }) as never } }), TypeError, 'options.pool.resourceLimits.maxOldGenerationSizeMB is not a known limit'],
    ['a misspelt option inherited by list()\'s filter', () => app().bg.list(Object.create({ state: 'running' }) as never), TypeError, 'bg.list(filter): filter.state is not a known option'],
    // A config class's getters are options: a misspelt one is refused, one that throws is named.
    ['a misspelt getter of a class instance given to bg.with()', () => app().bg.with(new (class { get sooner() { return 1; } })() as never), TypeError, 'bg.with(options): options.sooner is not a known option'],
    ['a misspelt getter of registered options', () => container.createChildContainer().register(BackgroundOptions, { useValue: new (class { get concurency() { return 2; } })() as never }).resolve(Background), TypeError, 'options.concurency is not a known option'],
    ['a non-enumerable misspelt field', () => app().bg.with(Object.defineProperty({}, 'retriess', { value: 2 })), TypeError, 'bg.with(options): options.retriess is not a known option'],
    ['a getter that throws, in bg.with() options', () => app().bg.with({ get retries(): number { throw new Error('no config'); } }), TypeError, 'bg.with(options): options.retries cannot be read: its getter threw (no config)'],
    ['a getter that throws, in a definition\'s backoff', () => defineTask({ name: 'b', backoff: { get baseMs(): number { throw new Error('no config'); } } }, () => 1), TypeError, 'defineTask("b"): options.backoff.baseMs cannot be read: its getter threw (no config)'],
    ['a getter that throws, in registered options', () => container.createChildContainer().register(BackgroundOptions, { useValue: { get concurrency(): number { throw new Error('no config'); } } }).resolve(Background), TypeError, 'BackgroundOptions: options.concurrency cannot be read: its getter threw (no config)'],
    ['a getter that throws, in registered pool options', () => container.createChildContainer().register(BackgroundOptions, { useValue: { pool: { get maxThreads(): number { throw new Error('no config'); } } } }).resolve(Background), TypeError, 'BackgroundOptions: options.pool.maxThreads cannot be read: its getter threw (no config)'],
    ['a Proxy whose ownKeys trap throws, as bg.with() options', () => app().bg.with(new Proxy({}, { ownKeys: () => { throw new Error('ownKeys boom'); } })), TypeError, 'bg.with(options): options cannot be read: listing its keys threw (ownKeys boom)'],
    ['a Proxy whose get trap throws, as bg.with() options', () => app().bg.with(new Proxy({ retries: 1 }, { get: () => { throw new Error('get boom'); } })), TypeError, 'bg.with(options): options.retries cannot be read: its getter threw (get boom)'],
    ['a Proxy whose ownKeys trap throws, as registered options', () => container.createChildContainer().register(BackgroundOptions, { useValue: new Proxy({}, { ownKeys: () => { throw new Error('ownKeys boom'); } }) }).resolve(Background), TypeError, 'BackgroundOptions: options cannot be read: listing its keys threw (ownKeys boom)'],
    ['a logger whose error getter throws, in registered options', () => container.createChildContainer().register(BackgroundOptions, { useValue: { logger: { get error(): () => void { throw new Error('logger getter'); }, warn: () => undefined, info: () => undefined, debug: () => undefined } } }).resolve(Background), TypeError, 'BackgroundOptions: options.logger must be an object with error, warn, info and debug methods'],
    ['a getter that throws, in registered records options', () => container.createChildContainer().register(BackgroundOptions, { useValue: { records: { get maxCount(): number { throw new Error('no config'); } } } }).resolve(Background), TypeError, 'BackgroundOptions: options.records.maxCount cannot be read: its getter threw (no config)'],
    ['a getter that throws, in result() options', () => app().bg.add(async () => undefined).result({ get timeoutMs(): number { throw new Error('no config'); } }), TypeError, 'handle.result(options): options.timeoutMs cannot be read: its getter threw (no config)'],
    ['a getter that throws, in shutdown() options', () => shutdown({ get timeoutMs(): number { throw new Error('no config'); } }), TypeError, 'shutdown(options): options.timeoutMs cannot be read: its getter threw (no config)'],
    ['a malformed file: URL as the setup module', () => app({ pool: { setupModule: 'file://[bad' } }), TypeError, 'options.pool.setupModule must be a file: URL (new URL(..., import.meta.url)) or an absolute path, got "file://[bad" (string)'],
  ])('%s', (_what, call, ErrorType, message) => {
    let thrown: unknown;
    try {
      call();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ErrorType);
    expect((thrown as Error).message).toContain(message);
  });
});

describe('a backoff whose maxMs is below a baseMs it inherits', () => {
  it("is refused at add(), naming the task and where the baseMs comes from: the scope's registered defaults", () => {
    const { bg } = app({ defaults: { backoff: { baseMs: 5_000 } } });
    const view = bg.with({ backoff: { maxMs: 2_000 } });
    expect(() => view.add(async () => undefined)).toThrow(
      new RangeError(
        'bg.add("anonymous"): bg.with(options): options.backoff.maxMs must be an integer from 5000 to 2147483647, got 2000 (number) (at least backoff.baseMs, 5000 here, inherited from the registered defaults (options.defaults); give baseMs too)',
      ),
    );
  });
});

describe("a group's handles", () => {
  it('are a frozen copy: pushing into them cannot make all() wait for what the group never added', async () => {
    const group = app().bg.group();
    group.add(async () => 1);
    const seen = group.handles;
    expect(() => (seen as unknown[]).push({ result: () => Promise.reject(new Error('not a handle')) })).toThrow(TypeError);
    await expect(group.all()).resolves.toEqual([1]);
    expect(group.handles).toHaveLength(1);
  });
});

describe('a cron expression with no time from now on', () => {
  it('is refused at bg.with(), as a durable one is at add(): a schedule that would never run is a mistake; nothing queued is lost', async () => {
    const { bg } = app();
    const queued = bg.with({ delayMs: 10 }).add(async () => 'still runs');
    for (const cron of ['0 0 30 2 *', '0 0 31 4 *', '0 0 0 1 1 * 2020']) {
      expect(() => bg.with({ cron })).toThrow(
        new TypeError(
          `bg.with(options): options.cron ${JSON.stringify(cron)} is not valid: it has no time from now on (a day that never comes, such as February 30, or only years that have passed)`,
        ),
      );
    }
    await expect(queued.result()).resolves.toBe('still runs');
  });
});

describe('maxQueued and tasks added while slots are free', () => {
  it('counts only those that will wait: with concurrency 1 and maxQueued 1, two add() calls in one turn are taken, the third is refused', async () => {
    const { bg } = app({ concurrency: 1, maxQueued: 1 });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const first = bg.add(async () => gate.then(() => 1)); // takes the free slot at the next microtask
    let room = false;
    void bg.waitForRoom().then(() => (room = true));
    const second = bg.add(async () => gate.then(() => 2)); // waits for that slot
    expect(() => bg.add(async () => 3)).toThrow('the queue is full (maxQueued 1: 1 queued, 1 running)');
    await Promise.resolve();
    expect(room).toBe(true);
    open();
    await expect(Promise.all([first.result(), second.result()])).resolves.toEqual([1, 2]);
  });
});
