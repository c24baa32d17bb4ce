/**
 * `tsyringe-background/bullmq`, the durable backend: the same `defineTask()` and `workerTask()`
 * definitions, on BullMQ and Redis. `useBullMQ()` registers it on an application's root, so that
 * `add()` of a task with `durable: true` enqueues a job (its handle's id is the job's id);
 * `startWorkers()` runs the jobs of a set of definitions in any process, each in a child scope of
 * a container there.
 *
 * Its parts, each importing only those before it: what both sides share (bullmq-jobs.ts), a
 * producer's handle (bullmq-handle.ts), the producer (bullmq-producer.ts) and the workers
 * (bullmq-workers.ts).
 */
export { checkJson, type BullMQConnection, type DurableJob } from './bullmq-jobs.js';
export { useBullMQ, type DurableBackend, type UseBullMQOptions } from './bullmq-producer.js';
export { startWorkers, type DurableWorkers, type StartWorkersOptions } from './bullmq-workers.js';
