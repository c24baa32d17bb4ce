/**
 * A durable worker process of the durable example (durable.ts starts two of these): it runs the
 * jobs of chargeInvoice and sendReceipt from the queue, each in a child scope of the global
 * container, until SIGTERM or SIGINT, then finishes its active jobs and exits.
 *
 *   REDIS_PORT=6379 QUEUE_NAME=invoices CONCURRENCY=4 node examples/dist/durable-worker.js
 *
 * Prints `ready` once it takes jobs, and nothing else unless something goes wrong.
 */
import 'reflect-metadata'; // before any decorator runs: it records the constructor types
import { Redis } from 'ioredis';
import { container } from 'tsyringe';
import { startWorkers } from 'tsyringe-background/bullmq';
import { chargeInvoice, sendReceipt, SideEffects } from './durable-tasks.js';

const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT ?? 6379) };
const queueName = process.env.QUEUE_NAME ?? 'invoices';

// What the tasks inject: their clients' shared dependency, one per process.
const redis = new Redis({ ...connection, maxRetriesPerRequest: null });
// While Redis is unreachable, ioredis reconnects and the commands wait: nothing to add to its 'error' events.
redis.on('error', () => undefined);
container.register(SideEffects, { useValue: new SideEffects(redis) });

const workers = startWorkers({
  tasks: [chargeInvoice, sendReceipt],
  container,
  connection,
  queueName,
  concurrency: Number(process.env.CONCURRENCY ?? 4),
  // A job's lock lasts 2 s (renewed every second while its worker lives), and every worker looks
  // for jobs with an expired lock twice a second: the jobs of a worker that died are taken again
  // within about 2.5 s, instead of BullMQ's default 30 s.
  workerOptions: { lockDuration: 2_000, stalledInterval: 500 },
});

async function stop(): Promise<void> {
  await workers.close(); // takes no new job, waits for the active ones
  await redis.quit();
  process.exit(0);
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
// Started by durable.ts (through an IPC channel): when it is gone, so is this process.
process.once('disconnect', () => process.exit(1));

await workers.worker.waitUntilReady();
console.log('ready');
