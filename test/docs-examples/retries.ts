/**
 * Retries: exponential backoff, a retryIf predicate, a warning per failed attempt and one
 * error for the final failure.
 * Run: npx tsx test/docs-examples/retries.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext, type BackgroundLogger } from '../../src/index.js';

class TransientMailError extends Error {
  override name = 'TransientMailError';
}

const sendMail = defineTask(
  {
    name: 'sendMail',
    inject: [TaskContext],
    retries: 3, // up to 4 attempts
    backoff: { baseMs: 5, factor: 2, maxMs: 1_000, jitter: 0 }, // 5 ms, then 10 ms, then 20 ms
    retryIf: (error) => error instanceof TransientMailError, // a bounce is not worth retrying
  },
  async (ctx, to: string) => {
    if (to.endsWith('.invalid')) throw new Error(`550 no such domain: ${to}`);
    if (ctx.attempt < 3) throw new TransientMailError('451 greylisted, try again later');
    return `sent to ${to} on attempt ${ctx.attempt}`;
  },
);

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

  const delivery = bg.add(sendMail, 'ada@example.com');
  const delivered = await delivery.result();
  const bounce = bg.add(sendMail, 'bob@example.invalid');
  const bounced = await bounce.result().catch((error: unknown) => (error as Error).message);
  await shutdown({ container: app });
  return {
    delivered,
    delivery: { status: delivery.status, attempt: delivery.attempt },
    bounce: { status: bounce.status, attempt: bounce.attempt, error: bounced },
    logs,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
