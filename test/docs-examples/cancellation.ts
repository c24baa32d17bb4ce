/**
 * Cancellation: a queued or delayed task never starts; a running one sees its signal abort,
 * ends cancelled at once and frees its slot; what its own code does afterwards is ignored.
 * Run: npx tsx test/docs-examples/cancellation.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext, type BackgroundLogger } from '../../src/index.js';

const ran: string[] = [];
let signalReason: unknown;
let started!: () => void;
const downloadStarted = new Promise<void>((resolve) => (started = resolve));

const download = defineTask({ name: 'download', inject: [TaskContext] }, async (ctx, file: string) => {
  started();
  await new Promise<void>((_resolve, reject) => {
    ctx.signal.addEventListener('abort', () => {
      signalReason = ctx.signal.reason;
      reject(new Error(`download of ${file} aborted`)); // ignored: the task has already ended
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
    debug: (_fields, message) => {
      logs.push(`debug: ${message}`);
    },
  };
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger, concurrency: 1 } });
  const bg = app.createChildContainer().resolve(Background);

  const running = bg.add(download, 'big.iso');
  const queued = bg.add(async function queuedJob() {
    ran.push('queuedJob');
  });
  const delayed = bg.with({ delayMs: 60_000 }).add(async function delayedJob() {
    ran.push('delayedJob');
  });
  await downloadStarted;
  queued.cancel(); // waiting for the slot: it never starts
  delayed.cancel(); // waiting for its time: it never starts

  const next = bg.add(async function nextJob() {
    return 'the freed slot ran this';
  });
  const cancelledRunning = running.cancel('the user closed the tab');
  const statusAtOnce = running.status; // 'cancelled' before the task's own code reacts
  const error = (await running.result().catch((e: unknown) => e)) as Error;
  const nextResult = await next.result();
  await bg.drain();
  await shutdown({ container: app });
  return {
    cancelledRunning,
    statusAtOnce,
    cancelAgain: running.cancel(),
    error: `${error.name}: ${error.message}`,
    cause: error.cause as string,
    signalReason: (signalReason as Error).name,
    statuses: [queued.status, delayed.status],
    ran,
    next: nextResult,
    logs,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
