/**
 * registerErrorClass() (issue 15, item 7): an error class thrown in a worker thread comes back
 * as that class once registered, with its properties, stack and cause; unregistered, as today (an
 * Error with the same name and properties). Inline runs rebuild errors the same way.
 */
import { afterEach, expect, it } from 'vitest';
import { Background, registerErrorClass, shutdown } from '../src/index.js';
import { declines, PaymentDeclined, throwsCustom } from './fixtures/worker-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root })));
});

function bgOf(pool: Record<string, unknown>): Background {
  const root = freshApp({ logger: captureLogger(), pool: { maxThreads: 1, setupModule: new URL('./fixtures/worker-setup.ts', import.meta.url), ...pool } });
  roots.push(root);
  return root.createChildContainer().resolve(Background);
}

it('brings a registered class back as itself from a worker thread, and from an inline run; an unregistered one as a named Error', async () => {
  const unregistered = (await bgOf({}).add(declines, 'o-1').result().catch((e: unknown) => e)) as Error & Record<string, unknown>;
  expect(unregistered).not.toBeInstanceOf(PaymentDeclined);
  expect(unregistered).toMatchObject({ name: 'PaymentDeclined', orderId: 'o-1', retryable: false });

  registerErrorClass(PaymentDeclined);
  registerErrorClass(PaymentDeclined); // again: harmless
  for (const pool of [{}, { inline: true }]) {
    const error = await bgOf(pool).add(declines, 'o-2').result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PaymentDeclined);
    expect(error).toBeInstanceOf(Error);
    const declined = error as PaymentDeclined;
    expect(declined.describe()).toBe('o-2 (final)');
    expect(declined).toMatchObject({ name: 'PaymentDeclined', message: 'payment for order o-2 was declined', orderId: 'o-2', retryable: false });
    expect(declined.stack).toContain('worker-tasks.ts');
    expect(Object.keys(declined)).not.toContain('message');
  }
});

it('keeps the cause, and leaves other classes as they were', async () => {
  const error = (await bgOf({}).add(throwsCustom).result().catch((e: unknown) => e)) as Error;
  expect(error.constructor).toBe(Error);
  expect(error.name).toBe('CustomError');
  expect(error.cause).toBeInstanceOf(RangeError);
});

it('refuses what is not a class of errors, an empty name, and a second class for the same name', () => {
  expect(() => registerErrorClass(class NotAnError {} as never)).toThrow('registerErrorClass(errorClass): errorClass must be a class extending Error, got function NotAnError');
  class Other extends Error {}
  expect(() => registerErrorClass(Other, 'PaymentDeclined')).toThrow('registerErrorClass(Other): another class is already registered for errors named "PaymentDeclined"');
  expect(() => registerErrorClass(Other, '')).toThrow('registerErrorClass(Other, name): name must be a non-empty string, got "" (string)');
});
