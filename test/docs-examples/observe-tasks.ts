/**
 * docs/observability.md, Lifecycle events: an observer of every task of an application that
 * prints the failed ones. A task failing twice (one retry) is printed once, with its attempts.
 * The code below runs when the module loads, as it would at an application's start.
 * Run: npx tsx test/docs-examples/observe-tasks.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container as globalContainer } from 'tsyringe';
import { Background, BackgroundOptions, observeTasks, shutdown, type BackgroundLogger } from '../../src/index.js';

const quiet: BackgroundLogger = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
/** The application's root container (an application of its own, so that the example shares nothing). */
const container = globalContainer.createChildContainer();
container.register(BackgroundOptions, { useValue: { root: true, logger: quiet } });

// #region docs
const stop = observeTasks((event) => {
  if (event.type === 'failed') console.error(`task ${event.name} #${event.id} failed after ${event.attempt} attempt(s)`, event.error);
}, { container });
// at shutdown: stop()
// #endregion docs

export async function main() {
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => printed.push(args);
  try {
    const bg = container.createChildContainer().resolve(Background);
    const handle = bg.with({ retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(async function chargeCard() {
      throw new Error('card declined');
    });
    await handle.result().catch(() => undefined);
    await bg.add(async function sendReceipt() {}).result();
    stop();
    await bg.add(async function failsUnobserved() {
      throw new Error('nobody is told');
    }).result().catch(() => undefined);
    await shutdown({ container });
    return { id: handle.id, printed: printed.map(([line, error]) => [line, String(error)]) };
  } finally {
    console.error = consoleError;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
