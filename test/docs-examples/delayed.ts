/**
 * Delayed tasks: delayMs and runAt; and what a scope's disposal does with them: those due
 * within the drain deadline run and are waited for, those due after it are abandoned at once.
 * Run: npx tsx test/docs-examples/delayed.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, shutdown, type BackgroundLogger } from '../../src/index.js';

export async function main() {
  const logs: string[] = [];
  const logger: BackgroundLogger = {
    error: (_fields, message) => {
      logs.push(`error: ${message}`);
    },
    warn: (_fields, message) => {
      logs.push(`warn: ${message}`);
    },
    info: () => undefined,
    debug: () => undefined,
  };
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger } });

  const bg = app.createChildContainer().resolve(Background);
  const started: string[] = [];
  const reminder = bg.with({ delayMs: 20 }).add(async function reminder() {
    started.push('reminder');
  });
  const digest = bg.with({ runAt: new Date(Date.now() + 5) }).add(async function digest() {
    started.push('digest');
  });
  const statusesBefore = [reminder.status, digest.status];
  await bg.drain(); // waits for delayed tasks too

  const scope = app.createChildContainer();
  scope.register(BackgroundOptions, { useValue: { drainTimeoutMs: 50 } });
  const request = scope.resolve(Background);
  const soon = request.with({ delayMs: 5 }).add(async function soon() {
    started.push('soon');
  });
  const late = request.with({ delayMs: 60_000 }).add(async function late() {
    started.push('late');
  });
  const disposal = request.dispose();
  const lateStatusAtOnce = late.status; // abandoned as soon as disposal began
  const lateError = await late.result().catch((error: unknown) => (error as Error).message);
  await disposal; // resolves once `soon` has run
  await shutdown({ container: app });
  return { statusesBefore, started, soon: soon.status, lateStatusAtOnce, lateError, logs };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
