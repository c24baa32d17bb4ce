/**
 * Three levels of task options, merged field by field: the registered `defaults`, then the
 * definition's options, then bg.with(); and the errors that name a bad option.
 * Run: npx tsx test/docs-examples/option-levels.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext, type BackgroundLogger } from '../../src/index.js';

const syncAccount = defineTask({ name: 'syncAccount', inject: [TaskContext], retries: 2 }, async (ctx) => {
  throw new Error(`attempt ${ctx.attempt} failed`);
});

export async function main() {
  const logs: string[] = [];
  const logger: BackgroundLogger = {
    error: (fields, message) => {
      logs.push(`error: ${message} (attempt ${String(fields.attempt)})`);
    },
    warn: (_fields, message) => {
      logs.push(`warn: ${message}`);
    },
    info: () => undefined,
    debug: () => undefined,
  };
  const app = container.createChildContainer();
  // 1. The defaults of every task of the application's scopes.
  app.register(BackgroundOptions, {
    useValue: { root: true, logger, defaults: { retries: 1, backoff: { baseMs: 5, factor: 2, jitter: 0 }, timeoutMs: 1_000 } },
  });
  const bg = app.createChildContainer().resolve(Background);

  // 2. The definition says retries: 2. 3. The call says backoff.factor: 3.
  // Result: retries 2, backoff { baseMs 5, factor 3, jitter 0 }, timeoutMs 1000.
  const handle = bg.with({ backoff: { factor: 3 } }).add(syncAccount);
  await handle.result().catch(() => undefined);

  const errors: string[] = [];
  const attempt = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      errors.push(`${(error as Error).name}: ${(error as Error).message}`);
    }
  };
  attempt(() => bg.with({ retries: -1 }));
  attempt(() => bg.with({ every: 1_000, delayMs: 5 }));
  attempt(() => defineTask({ name: 'report', timeoutMs: 0 }, async () => undefined));
  attempt(() => {
    const scope = app.createChildContainer();
    scope.register(BackgroundOptions, { useValue: { defaults: { retries: 1.5 } } });
    scope.resolve(Background);
  });
  await shutdown({ container: app });
  return { status: handle.status, attempts: handle.attempt, logs, errors };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
