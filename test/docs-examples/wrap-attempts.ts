/**
 * docs/observability.md, Attempt wrappers: every attempt of an application's tasks runs inside an
 * AsyncLocalStorage store of its own, so that code the task calls (a logger, say) can read the
 * task's id without being passed it. The code below runs when the module loads, as it would at
 * an application's start.
 * Run: npx tsx test/docs-examples/wrap-attempts.ts
 */
import 'reflect-metadata';
import { AsyncLocalStorage } from 'node:async_hooks';
import { fileURLToPath } from 'node:url';
import { container as globalContainer } from 'tsyringe';
import { Background, BackgroundOptions, shutdown, wrapAttempts } from '../../src/index.js';

/** The application's root container (an application of its own, so that the example shares nothing). */
const container = globalContainer.createChildContainer();
container.register(BackgroundOptions, { useValue: { root: true } });

// #region docs
const logContext = new AsyncLocalStorage<{ taskId: string }>();
wrapAttempts((event, attempt) => logContext.run({ taskId: event.id }, attempt), { container });
// #endregion docs

/** What a logger deep in the task's code would read. */
function currentTask(): string {
  return logContext.getStore()?.taskId ?? 'none';
}

export async function main() {
  const bg = container.createChildContainer().resolve(Background);
  const first = bg.add(async function importRows() {
    await new Promise((resolve) => setImmediate(resolve));
    return currentTask(); // still the task's store after an await
  });
  const second = bg.add(async function sendDigest() {
    return currentTask();
  });
  const seen = { [first.id]: await first.result(), [second.id]: await second.result(), outside: currentTask() };
  await shutdown({ container });
  return { ids: [first.id, second.id], seen };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
