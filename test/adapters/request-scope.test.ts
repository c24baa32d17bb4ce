/** The adapters' shared part on its own: options, and a scope closed once whatever calls close(). */
import { container, Lifecycle } from 'tsyringe';
import { describe, expect, it, vi } from 'vitest';
import { openScope, resolveRequestScopeOptions } from '../../src/adapters/request-scope.js';
import { consoleLogger } from '../../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from '../helpers.js';

watchProcessErrors();

describe('resolveRequestScopeOptions()', () => {
  it('defaults to the global container and the console logger', () => {
    for (const given of [undefined, {}, { parent: undefined, register: undefined, logger: undefined }]) {
      expect(resolveRequestScopeOptions(given)).toEqual({ parent: container, register: undefined, logger: consoleLogger });
    }
  });

  it.each([
    [null, 'options must be an object, got null'],
    ['app', 'options must be an object, got "app" (string)'],
    [{ parent: {} }, 'options.parent must be a tsyringe container, got an object'],
    [{ parent: null }, 'options.parent must be a tsyringe container, got null'],
    [{ register: 'yes' }, 'options.register must be a function, got "yes" (string)'],
    // Each request would answer 500.
    [{ register: class Register {} }, 'options.register must be a function, got function Register (a class, which cannot be called)'],
    [{ register: function* register() {} }, 'options.register must be a function, got function register (a generator function, whose body runs only as its result is iterated)'],
    [{ logger: { error() {} } }, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    [{ logger: { error: class Error {}, warn() {}, info() {}, debug() {} } }, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    [{ container: 'app' }, 'options.container is not a known option; known options: parent, register, logger'],
    // A Map's entries would be no options: scopes under the global container.
    [new Map([['parent', 'app']]), 'options must be an object, got an instance of Map'],
    [[], 'options must be an object, got an empty array'],
  ])('names a wrong option: %j', (given, message) => {
    expect(() => resolveRequestScopeOptions(given as never)).toThrow(new TypeError(`requestScope(options): ${message}`));
  });
});

describe('openScope()', () => {

  it('makes a child of the parent, and disposes it once however often close() is called', async () => {
    const parent = freshApp();
    let disposals = 0;
    const disposed = deferred();
    class Session {
      dispose(): void {
        disposals++;
        disposed.resolve();
      }
    }
    const { scope, close } = openScope({ parent, logger: captureLogger() }, 'GET', '/x');
    parent.register('marker', { useValue: 'from the parent' });
    expect(scope.resolve('marker')).toBe('from the parent');
    scope.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
    scope.resolve(Session);
    close();
    close();
    await disposed.promise;
    close();
    await nextTurn();
    expect(disposals).toBe(1);
  });

  it('survives a logger that throws while logging a failed disposal: printed on the console, never unhandled', async () => {
    const printed = deferred<unknown[]>();
    const spy = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => printed.resolve(args));
    try {
      const logger = { ...captureLogger(), error: () => { throw new Error('logger down'); } };
      const { scope, close } = openScope({ parent: freshApp(), logger }, 'GET', 'http://127.0.0.1:3000/x');
      class Faulty {
        dispose(): void {
          throw new Error('cannot close');
        }
      }
      scope.register(Faulty, { useClass: Faulty }, { lifecycle: Lifecycle.ContainerScoped });
      scope.resolve(Faulty);
      close();
      const [text, message, entryFields, loggerError] = await printed.promise;
      expect([text, message, loggerError]).toEqual(['[tsyringe-background] the logger threw while logging:', 'disposing a request scope failed', new Error('logger down')]);
      expect(entryFields).toMatchObject({ err: new Error('cannot close'), method: 'GET', url: '/x' });
    } finally {
      spy.mockRestore();
    }
  });
});
