/**
 * Durable tasks end to end, on a real Redis: jobs survive the crash of the worker running them.
 *
 * It starts a redis-server of its own (127.0.0.1, a free port, a temporary directory, no
 * persistence) and two worker processes (durable-worker.ts: startWorkers() with chargeInvoice
 * and sendReceipt, see durable-tasks.ts), then adds a few hundred durable jobs from this process
 * through a tsyringe container's `Background`. While they run, it kills one worker with SIGKILL:
 * the jobs it was running keep their place in Redis and the other worker takes them again once
 * their locks expire. Every job's side effect is counted in Redis, per job, outside the worker
 * processes; the summary checks that none is missing, and that only jobs the killed worker held
 * ran twice. Exits 0 only when no job was lost. redis-server and the workers are stopped at the
 * end, on an error and on Ctrl-C.
 *
 *   npm run example:durable
 */
import 'reflect-metadata'; // before any decorator runs: it records the constructor types
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { container } from 'tsyringe';
import { Background, consoleLogger, shutdown, type BackgroundLogger, type TaskHandle } from 'tsyringe-background';
import { useBullMQ } from 'tsyringe-background/bullmq';
import { chargeInvoice, EFFECTS_KEY, effectsKeyOf, sendReceipt, type Invoice } from './durable-tasks.js';

/** Two jobs each: a charge and a receipt. */
const INVOICES = 200;
/** The share of the jobs completed when one worker is killed. */
const KILL_AFTER = 0.25;
const QUEUE_NAME = 'invoices';
/** When to stop waiting for the jobs: only reached when something is broken. */
const GIVE_UP_AFTER_MS = 60_000;
/** Jobs each worker process runs at once. */
const CONCURRENCY = 4;
const workerJs = fileURLToPath(new URL('./durable-worker.js', import.meta.url));

// --- Processes this example starts, stopped however it ends ------------------------------------

const children = new Set<ChildProcess>();
let tempDir: string | undefined;
/** Set on Ctrl-C or SIGTERM. */
let interrupted = false;

/** Kills whatever is still running and removes the temporary directory: synchronous, for any way out. */
function cleanUp(): void {
  // The workers first, then redis-server: started last, stopped first.
  for (const child of [...children].reverse()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}
process.once('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.error(`\n${signal}: stopping the workers and redis-server`);
    const running = [...children];
    cleanUp();
    // Exits once they have (within a second at most), so that none outlives this process.
    void Promise.race([Promise.all(running.map(exited)), sleep(1_000)]).then(() => process.exit(130));
  });
}

/** The library's warnings and errors, to stderr; quiet once stopping, when Redis going away is expected. */
const logger: BackgroundLogger = {
  error: (fields, message) => {
    if (!interrupted) consoleLogger.error(fields, message);
  },
  warn: (fields, message) => {
    if (!interrupted) consoleLogger.warn(fields, message);
  },
  info: () => undefined,
  debug: () => undefined,
};

/** Resolves once `child` printed a line matching `pattern` on stdout; rejects, with its output, if it exits first. */
function lineFrom(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  let output = '';
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (pattern.test(output)) resolve();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`${what} exited (${code ?? signal}) before it was ready:\n${output.trim()}`)));
  });
}

/** Resolves when `child` has exited. */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A port free now, picked by the OS. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts redis-server on a free port, in `dir`, without persistence; tries 3 ports in case another process takes one first. */
async function startRedis(dir: string): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: Ctrl-C reaches this process only, which stops it after the workers
    });
    children.add(child);
    try {
      await lineFrom(child, /Ready to accept connections/, 'redis-server');
      return { port, child };
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

/** Starts a worker process (durable-worker.js) on the queue; resolves once it takes jobs. Its stderr is passed on. */
async function startWorker(port: number): Promise<ChildProcess> {
  const child = fork(workerJs, [], {
    env: { ...process.env, REDIS_PORT: String(port), QUEUE_NAME, CONCURRENCY: String(CONCURRENCY) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: true, // as redis-server
  });
  children.add(child);
  await lineFrom(child, /^ready$/m, `worker process ${child.pid}`);
  child.stderr!.on('data', (chunk: string) => {
    if (!interrupted) process.stderr.write(chunk.replace(/^(?=.)/gm, `[worker ${child.pid}] `));
  });
  return child;
}

// --- The run -----------------------------------------------------------------------------------

async function main(): Promise<number> {
  const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) {
    console.error(
      [
        'This example needs redis-server, which is not installed (or not on the PATH). Install it, then run `npm run example:durable` again:',
        '  Debian, Ubuntu:  sudo apt-get install redis-server',
        '  macOS:           brew install redis',
        'The example starts and stops a redis-server of its own on 127.0.0.1: nothing needs to be running.',
      ].join('\n'),
    );
    return 1;
  }
  tempDir = mkdtempSync(join(tmpdir(), 'tsyringe-background-durable-'));
  const redis = await startRedis(tempDir);
  const connection = { host: '127.0.0.1', port: redis.port };
  console.log(`redis-server ${/v=(\S+)/.exec(version.stdout)?.[1] ?? ''} on 127.0.0.1:${redis.port} (started for this run: a temporary directory, no persistence)`);

  const [victim, survivor] = await Promise.all([startWorker(redis.port), startWorker(redis.port)]);
  console.log(`2 worker processes (pids ${victim.pid}, ${survivor.pid}), ${CONCURRENCY} jobs at a time each`);

  // The producer: an application whose durable tasks go to the queue.
  const backend = useBullMQ(container, { connection, queueName: QUEUE_NAME, logger });
  const bg = container.resolve(Background);
  const jobs: { key: string; handle: TaskHandle }[] = [];
  const began = performance.now();
  for (let i = 1; i <= INVOICES; i++) {
    const invoice: Invoice = { id: `inv-${String(i).padStart(4, '0')}`, customer: `customer-${i}@example.com`, amountCents: 1_000 + ((i * 7_919) % 90_000) };
    jobs.push({ key: `charge:${invoice.id}`, handle: bg.add(chargeInvoice, invoice) }); // durable on its definition
    jobs.push({ key: `receipt:${invoice.id}`, handle: bg.with({ durable: true }).add(sendReceipt, invoice) }); // durable for this call
  }
  console.log(`added ${jobs.length} durable jobs: ${INVOICES} invoices, each charged (chargeInvoice) and its receipt mailed (sendReceipt), ~20 ms a job`);

  // Mid-run, one worker dies without a chance to finish or hand back its jobs.
  let completed = 0;
  const failures: unknown[] = [];
  const killAfter = Math.round(jobs.length * KILL_AFTER);
  const settled = Promise.all(
    jobs.map(({ handle }) =>
      handle.result().then(
        () => {
          if (++completed === killAfter) {
            victim.kill('SIGKILL');
            console.log(`killed worker ${victim.pid} with SIGKILL after ${completed} jobs had completed; worker ${survivor.pid} carries on`);
          }
        },
        (error: unknown) => void failures.push(error),
      ),
    ),
  );
  // A bound for when something is broken, not a wait: the run takes a few seconds.
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([settled.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), GIVE_UP_AFTER_MS)))]);
  clearTimeout(timer);
  const seconds = ((performance.now() - began) / 1_000).toFixed(1);
  if (victim.exitCode === null && victim.signalCode === null) victim.kill('SIGKILL');
  await exited(victim);

  // The books, from Redis: every job's side effect, counted per job, and by the killed worker.
  const client = new Redis({ ...connection, maxRetriesPerRequest: null });
  const [effects, byVictim] = await Promise.all([client.hgetall(EFFECTS_KEY), client.hgetall(effectsKeyOf(victim.pid!))]);
  await client.quit();
  const countOf = (key: string): number => Number(effects[key] ?? 0);
  const lost = jobs.filter(({ key }) => countOf(key) === 0);
  // Taken by a worker more often than they made attempts: taken again (a crash is not a failed attempt).
  const records = await Promise.all(jobs.map(({ handle }) => backend.queue.getJob(handle.id)));
  const takenAgain = jobs.filter((_, i) => (records[i]?.attemptsStarted ?? 0) > (records[i]?.attemptsMade ?? 0));
  const twice = jobs.filter(({ key }) => countOf(key) > 1);
  // Allowed: one run in the killed worker (its side effect made before it died), one in the survivor.
  const unexplained = twice.filter(({ key }) => countOf(key) !== 2 || byVictim[key] !== '1');
  const some = (keys: string[]): string => (keys.length > 5 ? `${keys.slice(0, 5).join(', ')}, …` : keys.join(', '));

  console.log('');
  console.log(`jobs added: ${jobs.length}`);
  console.log(
    `completed: ${completed} (failed ${failures.length}), ` +
      (finished ? `in ${seconds} s` : `${jobs.length - completed - failures.length} still unfinished when it gave up after ${seconds} s`),
  );
  console.log(
    `taken again after the crash: ${takenAgain.length} ` +
      (takenAgain.length === 0
        ? `(worker ${victim.pid} was running none when it was killed)`
        : `(worker ${victim.pid} was running them when it was killed; worker ${survivor.pid} ran them once their locks expired)`),
  );
  console.log(
    `run twice because of the crash: ${twice.length - unexplained.length}` +
      (twice.length === unexplained.length
        ? ''
        : ' (only jobs the killed worker held, whose charge or mail had gone out before it died: a job runs at least once, ' +
          'see docs/durable.md#idempotency)'),
  );
  if (unexplained.length > 0) {
    console.log(`run twice WITHOUT a crash to explain it: ${unexplained.length} (${some(unexplained.map(({ key }) => `${key} ×${countOf(key)}`))})`);
  }
  console.log(`lost: ${lost.length}${lost.length === 0 ? " (every job's side effect is in Redis)" : ` (no side effect in Redis: ${some(lost.map(({ key }) => key))})`}`);
  const reasons = new Set(failures.map((error) => (error instanceof Error ? error.message : String(error))));
  for (const reason of [...reasons].slice(0, 3)) console.error(`a job failed: ${reason}`);
  if (!finished || failures.length > 0 || lost.length > 0 || unexplained.length > 0) return 1;

  // Shutdown, in order: the workers finish their active jobs, then the producer, then Redis.
  survivor.kill('SIGTERM');
  await exited(survivor);
  await backend.close();
  await shutdown();
  redis.child.kill('SIGTERM');
  await exited(redis.child);
  cleanUp();
  return 0;
}

try {
  const code = await main();
  cleanUp();
  // Exits 1 without shutting the producer down: its clients would go on reconnecting to the stopped redis-server.
  if (code === 0) process.exitCode = 0;
  else process.exit(code);
} catch (error) {
  // After Ctrl-C, what fails is the stopping's doing: the signal's handler exits.
  if (!interrupted) {
    cleanUp();
    console.error(`the example failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
