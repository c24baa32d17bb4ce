/**
 * A producer application and a worker application on one fresh queue of the suite's redis-server,
 * each closed after the test through the suite's `closers` (in reverse: workers, backend, apps).
 */
import { randomUUID } from 'node:crypto';
import { startWorkers, useBullMQ, type DurableBackend, type DurableWorkers } from '../../src/adapters/bullmq.js';
import { Background, shutdown, type BackgroundOptions } from '../../src/index.js';
import { captureLogger, freshApp } from '../helpers.js';

export interface QueueApps {
  /** A Background of a request scope of the producer. */
  readonly bg: Background;
  readonly backend: DurableBackend;
  /** The producer's and its backend's logger. */
  readonly logger: ReturnType<typeof captureLogger>;
  readonly producer: ReturnType<typeof freshApp>;
  readonly workerRoot: ReturnType<typeof freshApp>;
  readonly queueName: string;
  /** Undefined with `workers: false`. */
  readonly workers: DurableWorkers | undefined;
}

export function openQueue(
  connection: NonNullable<NonNullable<Parameters<typeof useBullMQ>[1]>['connection']>,
  closers: (() => Promise<unknown>)[],
  options: {
    tasks: Parameters<typeof startWorkers>[0]['tasks'];
    /** Whether workers run the queue's jobs here. @default true */
    workers?: boolean | undefined;
    /** Options of the workers' application. */
    workerApp?: BackgroundOptions | undefined;
    /** How its name starts. @default 'queue' */
    prefix?: string | undefined;
  },
): QueueApps {
  const queueName = `${options.prefix ?? 'queue'}-${randomUUID()}`;
  const logger = captureLogger();
  const producer = freshApp({ logger });
  const backend = useBullMQ(producer, { connection, queueName, logger });
  const workerRoot = freshApp({ logger: captureLogger(), ...options.workerApp });
  const workers = options.workers === false ? undefined : startWorkers({ container: workerRoot, tasks: options.tasks, connection, queueName, concurrency: 4 });
  closers.push(
    () => shutdown({ container: producer }),
    () => backend.close(),
    async () => workers?.close(),
    () => shutdown({ container: workerRoot }),
  );
  return { bg: producer.createChildContainer().resolve(Background), backend, logger, producer, workerRoot, queueName, workers };
}

/** Another producer process's backend on `queueName` (its own application), closed after the test through `closers`. */
export function producerOn(connection: { host: string; port: number }, closers: (() => Promise<unknown>)[], queueName: string): DurableBackend {
  const app = freshApp({ logger: captureLogger() });
  const backend = useBullMQ(app, { connection, queueName, logger: captureLogger() });
  closers.push(
    () => backend.close(),
    () => shutdown({ container: app }),
  );
  return backend;
}
