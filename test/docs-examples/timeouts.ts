/**
 * Timeouts: a default for every task (options.defaults), one per definition or call; on expiry
 * the signal aborts, the task ends timedOut and its slot is freed at once.
 * Run: npx tsx test/docs-examples/timeouts.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext, type BackgroundLogger } from '../../src/index.js';

let abortReason: unknown;

/** Honours its signal: it stops as soon as the timeout aborts it. */
const lookUpCompany = defineTask({ name: 'lookUpCompany', inject: [TaskContext], timeoutMs: 20 }, async (ctx, domain: string) => {
  await new Promise<never>((_resolve, reject) => {
    ctx.signal.addEventListener('abort', () => {
      abortReason = ctx.signal.reason;
      reject(new Error(`lookup of ${domain} aborted`));
    });
  });
});

export async function main() {
  const logs: string[] = [];
  const logger: BackgroundLogger = {
    error: (_fields, message) => {
      logs.push(`error: ${message}`);
    },
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
  };
  const app = container.createChildContainer();
  // One slot, and a 10 ms timeout for every task that sets none of its own.
  app.register(BackgroundOptions, { useValue: { root: true, logger, concurrency: 1, defaults: { timeoutMs: 10 } } });
  const bg = app.createChildContainer().resolve(Background);

  const hung = bg.add(async function neverEnds() {
    await new Promise(() => undefined); // ignores any signal: it never settles
  });
  const lookup = bg.add(lookUpCompany, 'example.com'); // its definition's 20 ms win over the default
  // A call's own timeout wins over both (an async attempt that settles past its bound times out,
  // even when a loaded machine delays the turn it settles in: this one is given room).
  const next = bg.with({ timeoutMs: 5_000 }).add(async function next() {
    return 'started as soon as the slots were freed';
  });
  const hungError = (await hung.result().catch((error: unknown) => error)) as Error;
  const lookupError = (await lookup.result().catch((error: unknown) => error)) as Error;
  const nextResult = await next.result();
  await shutdown({ container: app });
  return {
    hung: { status: hung.status, error: `${hungError.name}: ${hungError.message}` },
    lookup: { status: lookup.status, error: lookupError.message, signalReason: (abortReason as Error).name },
    next: nextResult,
    logs,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
