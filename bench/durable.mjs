/**
 * Section `durable` of bench/run.mjs (issue 14): what the durable backend (useBullMQ +
 * startWorkers, from dist/adapters/bullmq.js) costs against raw BullMQ with the same Redis, the
 * same jobs and the same worker concurrency.
 *
 *   node bench/durable.mjs --child '{"scenario":"durable",...}'
 *       one round (what run.mjs starts): starts a redis-server of its own on 127.0.0.1 (a free
 *       port, no persistence), measures every variant in turn, stops it, prints one JSON line
 *
 * The variants, each on a fresh queue (Redis is flushed between runs):
 *   raw      BullMQ as one would use it: `queue.add(name, { args }, { removeOnComplete, removeOnFail })`
 *            (the library's retention), a `Worker` whose processor is the task's function
 *   rawLib   the same raw BullMQ with the library's exact job for a task of default options (no
 *            retries, no timeout): its data (`{ args }`) and options (a UUID `jobId`, a `priority`
 *            — every library job has one —, the same retention): what the job's shape costs,
 *            apart from the library's code
 *   lib      `bg.with({ durable: true }).add(def, ...args)` through `useBullMQ`, and
 *            `startWorkers({ tasks: [def], concurrency })`; the task has no dependency, so its
 *            jobs run on the workers' Background without a scope each
 *   libScoped  the same, the task injecting a per-job service (ContainerScoped, disposed): each
 *            job in a child scope of its own (drain and e2e only: add() is the same as lib's)
 *   libWatched  lib, every handle's result() asked for at its add(): the producer follows every
 *            job through the queue's event stream (e2e only, timed until the last handle settled)
 *
 * With 2 cores or more and `taskset`, redis-server runs on CPU 0 and the round's process on
 * CPU 1 (run.mjs starts it pinned), as the web section pins its server.
 *
 * Three measurements, each variant in turn in an order that rotates from rep to rep:
 *   drain    jobs enqueued first (not timed), the producer closed; then a worker is started and
 *            timed until it has completed every job: the worker side's throughput
 *   e2e      the worker started and warm, then every job added at once (not awaited one by one)
 *            and timed from the first add() to the worker's last completion: producer and worker
 *            in this one process, as a small deployment runs them (the library's producer also
 *            follows its jobs' events, as its handles need)
 *   enqueue  a batch of add() calls, timed twice: the synchronous part (the loop of calls), and
 *            until every job is in Redis (the add() promises of raw; for lib, the backend's
 *            `queue.add()` promises, counted by a wrapper on its queue); no worker runs
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { childMain, processCpu, rotate } from './lib.mjs';

const sideScript = fileURLToPath(new URL('./durable-side.mjs', import.meta.url));
/** A side's completions are marked every this many jobs. */
const pairStep = 100;

/** Whether this machine can run the section: why not, or undefined. */
export function durableUnavailable() {
  if (spawnSync('redis-server', ['--version']).status !== 0) return 'redis-server is not installed (apt-get install -y redis-server)';
  for (const name of ['bullmq', 'ioredis']) {
    try {
      import.meta.resolve(name);
    } catch {
      return `${name} is not installed (npm install)`;
    }
  }
  return undefined;
}

/**
 * `promise`, or a rejection naming `what` after `ms`: a run that stops making progress (a job
 * lost, Redis stuck) ends the round with an error, and redis-server is stopped, rather than
 * hang until run.mjs kills this process and leaves the server behind.
 */
async function within(promise, what, ms = 60_000) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A port free now (the OS picks it). */
async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A redis-server on 127.0.0.1, a free port, no persistence, pinned to CPU `cpu` when given;
 * resolves once it accepts connections.
 */
async function startRedis(cpu) {
  const port = await freePort();
  const argv = ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const [command, ...args] = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)));
  });
  return {
    port,
    pid: child.pid,
    /** CPU time of the server so far, in ms (jiffies of 10 ms). */
    cpuMs: () => processCpu(child.pid) * 10,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The variants' producers and workers on the Redis at `connection` (see the list at the top):
 * what a round runs one after another, and what a side process (bench/durable-side.mjs) runs
 * against another side at the same time. `counts.ran`: the task's runs; `counts.logged`: errors
 * logged and jobs failed.
 */
export async function kit({ connection, bodyMs, concurrency }) {
  await import('reflect-metadata');
  const { container, Lifecycle, scoped } = await import('tsyringe');
  const { Queue, Worker } = await import('bullmq');
  const lib = await import('../dist/index.js');
  const { useBullMQ, startWorkers } = await import('../dist/adapters/bullmq.js');
  const counts = { ran: 0, logged: 0 };
  const logger = { error: () => counts.logged++, warn: () => counts.logged++, info: () => {}, debug: () => {} };

  // The task: the same body for every variant.
  /** The task's function: what a raw processor calls, and what the library's definition is. */
  const work = bodyMs > 0 ? async () => void (await sleep(bodyMs), counts.ran++) : async () => void counts.ran++;
  const task = lib.defineTask({ name: 'noop' }, work);
  /** A per-job service, as a database session: one per job scope, disposed with it. */
  class JobSession {
    async dispose() {}
  }
  scoped(Lifecycle.ContainerScoped)(JobSession);
  /** The same body, with the session injected: each of its jobs gets a child scope. */
  const scopedTask = lib.defineTask({ name: 'noopScoped', inject: [JobSession] }, async (_session, ...args) => work(...args));
  const taskOf = (variant) => (variant === 'libScoped' ? scopedTask : task);
  const isLib = (variant) => variant === 'lib' || variant === 'libScoped' || variant === 'libWatched';
  /** Small JSON arguments: an order's id, a customer, three lines. */
  const argsOf = (i) => [{ orderId: i, customer: `customer-${i % 97}`, lines: [{ sku: 'a-1', qty: 1 }, { sku: 'b-2', qty: 2 }, { sku: 'c-3', qty: 1 }] }];
  // The library's job, as src/adapters/bullmq-producer.ts makes it for a task of default options.
  const retention = { removeOnComplete: { age: 24 * 3600, count: 10_000 }, removeOnFail: { age: 7 * 24 * 3600 } };
  const libPriority = 1_000_000 - lib.priorities.normal * 1_000;
  const rawJob = (variant, i) =>
    variant === 'raw'
      ? { data: { args: argsOf(i) }, opts: retention }
      : { data: { args: argsOf(i) }, opts: { jobId: crypto.randomUUID(), priority: libPriority, ...retention } };

  const app = () => {
    const root = container.createChildContainer();
    root.register(lib.BackgroundOptions, { useValue: { root: true, logger } });
    return root;
  };

  /** A producer of `variant` on a fresh queue: `add(i)` (returns at once), `enqueued()`, `close()`. */
  async function producer(variant, queueName) {
    if (isLib(variant)) {
      const task = taskOf(variant);
      const root = app();
      const backend = useBullMQ(root, { connection, queueName, logger });
      // Counts the jobs in Redis: the backend's own queue.add() promises, resolved.
      let inRedis = 0;
      let waiter;
      const add = backend.queue.add.bind(backend.queue);
      backend.queue.add = (...a) =>
        add(...a).then((job) => {
          if (++inRedis === waiter?.n) waiter.resolve();
          return job;
        });
      const until = (n) => (inRedis >= n ? Promise.resolve() : new Promise((resolve) => (waiter = { n, resolve })));
      const bg = root.createChildContainer().resolve(lib.Background).with({ durable: true });
      const watched = variant === 'libWatched';
      // Warm: the first add() opens the connection and the event stream.
      bg.add(task, ...argsOf(-1));
      await within(until(1), 'lib: the warm-up job enqueued');
      return {
        handles: [],
        add(i) {
          const handle = bg.add(task, ...argsOf(i));
          // Watched: followed through the event stream from its add().
          if (watched) handle.result().catch(() => undefined);
          this.handles.push(handle);
        },
        enqueued: (n) => until(n + 1),
        async close() {
          await backend.close();
          await lib.shutdown({ container: root });
        },
        backend,
      };
    }
    const queue = new Queue(queueName, { connection });
    await queue.waitUntilReady();
    // Warm, as lib's: one job in Redis.
    const first = rawJob(variant, -1);
    await queue.add('noop', first.data, first.opts);
    const pending = [];
    return {
      add(i) {
        const { data, opts } = rawJob(variant, i);
        pending.push(queue.add('noop', data, opts));
      },
      async enqueued() {
        await Promise.all(pending.splice(0));
      },
      close: () => queue.close(),
    };
  }

  /**
   * A worker of `variant` on `queueName`: counts completions; `done(n)` resolves once n are;
   * `onCompletion(count)` is called at each completion.
   */
  async function worker(variant, queueName, onCompletion = () => {}) {
    let completed = 0;
    let waiter;
    const onCompleted = () => {
      completed++;
      onCompletion(completed);
      if (waiter !== undefined && completed >= waiter.n) waiter.resolve();
    };
    let w;
    let close;
    let root;
    if (isLib(variant)) {
      root = app();
      const workers = startWorkers({ tasks: [taskOf(variant)], container: root, connection, queueName, concurrency, logger });
      w = workers.worker;
      close = async () => {
        await workers.close();
        await lib.shutdown({ container: root });
      };
    } else {
      w = new Worker(queueName, (job) => work(...job.data.args), { connection, concurrency });
      w.on('error', () => counts.logged++);
      close = () => w.close();
    }
    w.on('completed', onCompleted);
    w.on('failed', () => counts.logged++);
    return {
      ready: () => w.waitUntilReady(),
      reset: () => (completed = 0),
      done: (n) => (completed >= n ? Promise.resolve() : new Promise((resolve) => (waiter = { n, resolve }))),
      close,
    };
  }

  return { producer, worker, counts, isLib };
}

/**
 * @param spec.round the round (rotates the order of the variants)
 * @param spec.variants the variants, in this round's order
 * @param spec.jobs jobs per drain or e2e run
 * @param spec.concurrency the worker's concurrency
 * @param spec.reps runs of each variant per measurement, after one warm-up run each
 * @param spec.batch add() calls per enqueue run
 * @param spec.enqueueReps enqueue runs of each variant, after one warm-up each
 * @param spec.bodyMs the task body: 0 for an async no-op, else an await of a timer of this many ms
 * @param spec.redisCpu the CPU redis-server is pinned to (`taskset -c`), or undefined
 * @param spec.pairs the paired measurements: `[mode, a, b]`, mode `'drain'` or `'e2e'`
 * @param spec.pairReps runs of each pair
 */
async function measure({ round, variants, jobs, concurrency, reps, batch, enqueueReps, bodyMs, redisCpu, pairs = [], pairReps = 0 }) {
  const { Redis } = await import('ioredis');

  const redis = await startRedis(redisCpu);
  const connection = { host: '127.0.0.1', port: redis.port };
  const admin = new Redis({ ...connection, maxRetriesPerRequest: null });
  const { producer, worker, counts, isLib } = await kit({ connection, bodyMs, concurrency });
  /** The variants a measurement runs: a task's dependencies change nothing on the producer's side, and a watched handle matters only while a worker runs. */
  const runs = (kind, variant) => (kind === 'e2e' ? true : kind === 'drain' ? variant !== 'libWatched' : variant !== 'libScoped' && variant !== 'libWatched');
  let queues = 0;
  const fresh = () => `bench-${process.pid}-${++queues}`;

  /** CPU of this process and of Redis, from now: `since()` gives the ms used meanwhile. */
  const cpu = () => {
    const own = process.cpuUsage();
    const server = redis.cpuMs();
    return () => {
      const d = process.cpuUsage(own);
      return { nodeMs: (d.user + d.system) / 1000, redisMs: redis.cpuMs() - server };
    };
  };

  async function drain(variant, jobs) {
    const queueName = fresh();
    const p = await producer(variant, queueName);
    const n = jobs - 1; // and the producer's warm-up job
    for (let i = 0; i < n; i++) p.add(i);
    await within(p.enqueued(n), `drain ${variant}: ${n} jobs enqueued`);
    await within(p.close(), `${variant}: the producer closed`);
    const before = counts.ran;
    const used = cpu();
    // The worker's start: its first quarter of the jobs (connections made, V8 warming the code
    // and sizing its young generation); its steady state: the rest.
    const warm = Math.floor(jobs / 4);
    let warmAt;
    const t0 = performance.now();
    const w = await worker(variant, queueName, (count) => void (count === warm && (warmAt = performance.now())));
    await within(w.done(jobs), `drain ${variant}: ${jobs} jobs completed`);
    const ms = performance.now() - t0;
    const startMs = warmAt - t0;
    const c = used();
    await within(w.close(), `${variant}: the worker closed`);
    if (counts.ran - before !== jobs) throw new Error(`drain ${variant}: ${counts.ran - before} of ${jobs} tasks ran`);
    await admin.flushall();
    return { ms, perS: (jobs * 1000) / ms, startMs, steadyPerS: ((jobs - warm) * 1000) / (ms - startMs), nodeUsPerJob: (c.nodeMs * 1000) / jobs, redisUsPerJob: (c.redisMs * 1000) / jobs };
  }

  async function e2e(variant, n) {
    const queueName = fresh();
    const w = await worker(variant, queueName);
    await within(w.ready(), `e2e ${variant}: the worker ready`);
    const p = await producer(variant, queueName);
    await within(w.done(1), `e2e ${variant}: the warm-up job completed`);
    w.reset();
    const before = counts.ran;
    const used = cpu();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) p.add(i);
    await within(w.done(n), `e2e ${variant}: ${n} jobs completed`);
    // Watched: done once every handle knows.
    if (variant === 'libWatched') await within(Promise.all(p.handles.map((h) => h.result())), `e2e ${variant}: ${n} handles settled`);
    const ms = performance.now() - t0;
    const c = used();
    let settledMs;
    if (isLib(variant)) {
      // The handles (watched now, if they were not) read their jobs' outcomes: wait until they all know.
      await within(Promise.all(p.handles.map((h) => h.result())), `e2e ${variant}: ${n} handles settled`);
      settledMs = performance.now() - t0;
    }
    await within(p.enqueued(n), `e2e ${variant}: ${n} jobs enqueued`);
    await within(w.close(), `${variant}: the worker closed`);
    await within(p.close(), `${variant}: the producer closed`);
    if (counts.ran - before !== n) throw new Error(`e2e ${variant}: ${counts.ran - before} of ${n} tasks ran`);
    await admin.flushall();
    return { ms, perS: (n * 1000) / ms, settledMs, nodeUsPerJob: (c.nodeMs * 1000) / n, redisUsPerJob: (c.redisMs * 1000) / n };
  }

  async function enqueue(variant, n) {
    const p = await producer(variant, fresh());
    const t0 = performance.now();
    for (let i = 0; i < n; i++) p.add(i);
    const t1 = performance.now();
    await within(p.enqueued(n), `enqueue ${variant}: ${n} jobs enqueued`);
    const t2 = performance.now();
    await within(p.close(), `${variant}: the producer closed`);
    await admin.flushall();
    return { syncUs: ((t1 - t0) * 1000) / n, enqueuedUs: ((t2 - t0) * 1000) / n };
  }

  /** A side process (bench/durable-side.mjs) of `variant`: `ready`, then `go()`, then `result`. */
  function side(variant, mode, n) {
    const spec = { variant, mode, port: redis.port, queueName: fresh(), jobs: n, concurrency, bodyMs, step: pairStep };
    // It inherits this process's CPU affinity: both sides on the CPU the round runs on.
    const child = spawn(process.execPath, [sideScript, JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const messages = [];
    let wake = () => {};
    child.on('message', (m) => (messages.push(m), wake()));
    const exited = new Promise((resolve) => child.once('exit', (code) => (wake(), resolve(code))));
    const next = async (what) => {
      while (messages.length === 0) {
        if (child.exitCode !== null) throw new Error(`${mode} ${variant} side: exited (${child.exitCode}) before ${what}`);
        await new Promise((resolve) => (wake = resolve));
      }
      return messages.shift();
    };
    return {
      ready: within(next('it was ready'), `${mode} ${variant} side: ready`),
      go: () => child.send('go'),
      result: async () => {
        const result = await within(next('its result'), `${mode} ${variant} side: ${n} jobs completed`);
        await exited;
        return result;
      },
      kill: () => child.kill('SIGKILL'),
    };
  }

  /**
   * `a` and `b` at the same time, each in a side process of its own on this round's CPU and
   * redis-server: `a`'s jobs/s over `b`'s, over the time both ran past their first quarter of
   * the jobs and neither had finished (see bench/durable-side.mjs). `first` says which side
   * starts first (the order of the spawns and the go's).
   */
  async function pair(mode, a, b, n, first) {
    const [x, y] = first === 'a' ? [side(a, mode, n), side(b, mode, n)] : [side(b, mode, n), side(a, mode, n)];
    const [sa, sb] = first === 'a' ? [x, y] : [y, x];
    try {
      await Promise.all([x.ready, y.ready]);
      x.go();
      y.go();
      const [ra, rb] = await Promise.all([sa.result(), sb.result()]);
      pairCpuMs += ra.cpuMs + rb.cpuMs;
      counts.logged += ra.logged + rb.logged;
      // Jobs completed by time t, from the marks (linear between two).
      const doneAt = ({ marks, goAt }, t) => {
        const k = marks.findIndex((m) => m >= t);
        if (k === -1) return marks.length * pairStep;
        const before = k === 0 ? goAt : marks[k - 1];
        return (k + (t - before) / (marks[k] - before)) * pairStep;
      };
      const quarter = Math.floor(n / 4 / pairStep) - 1;
      const from = Math.max(ra.marks[quarter], rb.marks[quarter]);
      const to = Math.min(ra.marks.at(-1), rb.marks.at(-1));
      await admin.flushall();
      if (!(to > from)) return { ratio: undefined, windowMs: 0 };
      return { ratio: (doneAt(ra, to) - doneAt(ra, from)) / (doneAt(rb, to) - doneAt(rb, from)), windowMs: to - from };
    } finally {
      x.kill();
      y.kill();
    }
  }

  const out = { drain: {}, e2e: {}, enqueue: {}, pair: { drain: {}, e2e: {} } };
  let pairCpuMs = 0;
  for (const v of variants) for (const k of ['drain', 'e2e', 'enqueue']) if (runs(k, v)) out[k][v] = [];
  const started = performance.now();
  let redisCpuMs;
  try {
    for (const [kind, fn, n, count] of [
      ['drain', drain, jobs, reps],
      ['e2e', e2e, jobs, reps],
      ['enqueue', enqueue, batch, enqueueReps],
    ]) {
      const measured = variants.filter((v) => runs(kind, v));
      // Warm-up: every variant once, smaller, not kept.
      for (const v of measured) await fn(v, Math.ceil(n / 4));
      for (let rep = 0; rep < count; rep++) {
        for (const v of rotate(measured, round + rep)) out[kind][v].push(await fn(v, n));
      }
    }
    // Paired: each pair at the same time (pair()), the side that starts first alternating.
    for (const [mode, a, b] of pairs) {
      const key = `${a}/${b}`;
      out.pair[mode][key] = [];
      for (let rep = 0; rep < pairReps; rep++) out.pair[mode][key].push(await pair(mode, a, b, jobs, (round + rep) % 2 === 0 ? 'a' : 'b'));
    }
  } finally {
    await admin.quit().catch(() => undefined);
    // Read before it exits: /proc forgets it after.
    redisCpuMs = redis.cpuMs();
    await redis.stop();
  }
  return {
    ...out,
    jobs,
    batch,
    concurrency,
    bodyMs,
    redisCpu,
    logged: counts.logged,
    measuredMs: performance.now() - started,
    // Redis's CPU time is the measurement's too (lib.mjs adds it before judging how much other
    // processes used the machine).
    descendantsCpuMs: redisCpuMs + pairCpuMs,
  };
}

// Last: the declarations above must be initialized first.
await childMain(async (spec) => {
  if (spec.scenario !== 'durable') throw new Error(`unknown scenario ${spec.scenario}`);
  return measure(spec);
});
