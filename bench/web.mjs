/**
 * Section `web` of bench/run.mjs (issue 13): what background work on a route costs an HTTP
 * server under load, for each framework adapter (Express 5, Fastify 5, Hono 4 on
 * @hono/node-server), against the built output (dist/adapters/).
 *
 *   node bench/web.mjs --child '{"scenario":"web","kind":"express",...}'
 *       one measurement (what run.mjs starts, one per framework and round): starts a server,
 *       loads it with autocannon from this process, prints one JSON line
 *   node bench/web.mjs --server express
 *       the server (started by the measurement, reports on its IPC channel)
 *
 * One server process serves every variant, so that they share its JIT and GC state: `GET
 * /plain` (the request's scope resolves a scoped service and answers a small JSON), `GET
 * /with-background` (the same, plus three fire-and-forget tasks on the request's Background) and,
 * for reference, `GET /with-promises` (the same tasks as bare, untracked promises: what the work
 * costs without the library). The load moves from route to route in runs of `runMs`, in an order
 * that rotates from run to run, after a warm-up of each; between runs the measurement waits
 * until every scope has been disposed and every task has completed, so that no run inherits the
 * previous one's work. The drain of the tasks happens during the run that caused it (the scope is
 * disposed after each response), so its cost is in that run's figures.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { availableParallelism } from 'node:os';
import { childMain, machineCpu, quantile, rotate } from './lib.mjs';

const script = new URL(import.meta.url).pathname;
const routes = { plain: '/plain', with: '/with-background', raw: '/with-promises' };

// --- The server -------------------------------------------------------------------------------------

/**
 * A server of `framework` on 127.0.0.1, port 0, with the framework's `requestScope()`; it sends
 * `{ port }` once listening, answers `stats` with its counts and CPU time, and exits on `exit`.
 */
async function server(framework) {
  await import('reflect-metadata');
  const { Lifecycle, container, scoped } = await import('tsyringe');
  const lib = await import('../dist/index.js');
  const counts = { requests: 0, disposed: 0, added: 0, completed: 0, failed: 0, logged: 0 };
  /** Whatever the library logs (a failed task, a failed disposal) counts as an error. */
  const logger = {
    error: () => counts.logged++,
    warn: () => counts.logged++,
    info: () => {},
    debug: () => {},
  };
  container.register(lib.BackgroundOptions, { useValue: { logger } });

  /** The request's own service, as a request id or a database session: one per scope, disposed with it. */
  class RequestInfo {
    constructor() {
      this.id = ++counts.requests;
      this.at = Date.now();
    }
    async dispose() {
      counts.disposed++;
    }
  }
  scoped(Lifecycle.ContainerScoped)(RequestInfo);

  // The tasks: what a route typically hands off after answering.
  const auditLog = [];
  /** Writes an audit record after a short call to another service (a 2 ms timer stands for it). */
  const writeAudit = async (info, route) => {
    await sleep(2);
    auditLog.push(JSON.stringify({ id: info.id, route, at: info.at, done: Date.now() }));
    if (auditLog.length >= 1000) auditLog.length = 0;
    counts.completed++;
  };
  const audit = lib.defineTask({ name: 'audit', inject: [RequestInfo] }, writeAudit);
  const cache = new Map();
  /** Refreshes a cache entry after an I/O turn (a `setImmediate`, as a socket or file callback). */
  const refresh = async (key) => {
    await nextTurn();
    cache.set(key, (cache.get(key) ?? 0) + 1);
    counts.completed++;
  };
  const hits = new Map();
  /** Counts a metric: a tiny synchronous task. */
  const count = (route) => {
    hits.set(route, (hits.get(route) ?? 0) + 1);
    counts.completed++;
  };

  const failed = () => counts.failed++;

  /**
   * The routes' common body: the same work, plus the tasks on the request's Background (`with`),
   * or the same tasks as bare promises, untracked (`raw`: what the work itself costs without the
   * library; the scope does not wait for them, so a real session could be closed under them).
   */
  const handle = (scope, variant) => {
    const info = scope.resolve(RequestInfo);
    if (variant === 'with') {
      const bg = scope.resolve(lib.Background);
      bg.add(audit, routes.with);
      bg.add(refresh, info.id & 63);
      bg.add(count, routes.with);
      counts.added += 3;
    } else if (variant === 'raw') {
      writeAudit(info, routes.raw).catch(failed);
      refresh(info.id & 63).catch(failed);
      Promise.resolve(routes.raw).then(count).catch(failed);
      counts.added += 3;
    }
    return { ok: true, id: info.id };
  };

  let close;
  let port;
  if (framework === 'express') {
    const { default: express } = await import('express');
    const { requestScope } = await import('../dist/adapters/express.js');
    const app = express();
    app.use(requestScope({ logger }));
    for (const [variant, path] of Object.entries(routes)) app.get(path, (req, res) => res.json(handle(req.container, variant)));
    const srv = app.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = srv.address().port;
    close = () => srv.close();
  } else if (framework === 'fastify') {
    const { default: Fastify } = await import('fastify');
    const { requestScope } = await import('../dist/adapters/fastify.js');
    const app = Fastify({ logger: false });
    await app.register(requestScope, { logger });
    for (const [variant, path] of Object.entries(routes)) app.get(path, async (request) => handle(request.diScope, variant));
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = app.server.address().port;
    close = () => app.close();
  } else if (framework === 'hono') {
    const { Hono } = await import('hono');
    const { serve } = await import('@hono/node-server');
    const { requestScope } = await import('../dist/adapters/hono.js');
    const app = new Hono();
    app.use(requestScope({ logger }));
    for (const [variant, path] of Object.entries(routes)) app.get(path, (c) => c.json(handle(c.var.container, variant)));
    const srv = await new Promise((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    port = srv.address().port;
    close = () => srv.close();
  } else {
    throw new Error(`unknown framework ${framework}`);
  }

  process.on('message', (message) => {
    if (message === 'stats') {
      const { user, system } = process.cpuUsage();
      process.send({ counts: { ...counts }, cpuMs: (user + system) / 1000, heapMb: process.memoryUsage().heapUsed / 2 ** 20 });
    } else if (message === 'exit') {
      close();
      process.disconnect();
      process.exit(0);
    }
  });
  process.send({ port });
}

// --- The measurement (the load generator) -------------------------------------------------------

/**
 * @param spec.kind the framework
 * @param spec.round the round (rotates the order of the variants)
 * @param spec.pairs runs of each variant, interleaved (`plain`, `with`, `raw`, rotating)
 * @param spec.runMs length of a run
 * @param spec.warmMs warm-up of each variant, not recorded
 * @param spec.connections autocannon's connections (pipelining 1)
 * @param spec.serverCpu the CPU the server is pinned to (`taskset -c`), or undefined
 */
async function measure({ kind: framework, round, pairs, runMs, warmMs, connections, serverCpu }) {
  const { default: autocannon } = await import('autocannon');
  const argv = [process.execPath, script, '--server', framework];
  const cmd = serverCpu === undefined ? argv : ['taskset', '-c', String(serverCpu), ...argv];
  const server = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = once(server, 'exit');
  const messages = [];
  let waiting;
  server.on('message', (m) => (waiting !== undefined ? (waiting(m), (waiting = undefined)) : messages.push(m)));
  const next = () => (messages.length > 0 ? Promise.resolve(messages.shift()) : new Promise((resolve) => (waiting = resolve)));
  const stats = () => {
    server.send('stats');
    return next();
  };
  const { port } = await Promise.race([next(), exited.then(([code]) => Promise.reject(new Error(`the ${framework} server exited with ${code}`)))]);

  /** Waits until every scope is disposed and every task has ended (at most `limitMs`); returns the stats then. */
  const idle = async (limitMs = 5_000) => {
    const since = performance.now();
    for (;;) {
      const s = await stats();
      const { requests, disposed, added, completed } = s.counts;
      if ((requests === disposed && added === completed) || performance.now() - since > limitMs) return s;
      await sleep(5);
    }
  };

  /**
   * One run of autocannon on a route: responses within the run's `ms`, with their latency (ms, as
   * a float), and the share of the machine's CPU that other processes used meanwhile.
   */
  const once_ = async (variant, ms, rate) => {
    const before = await stats();
    const machine0 = machineCpu();
    const own0 = process.cpuUsage();
    const latencies = [];
    let bad = 0;
    const t0 = performance.now();
    const end = t0 + ms;
    const instance = autocannon({
      url: `http://127.0.0.1:${port}${routes[variant]}`,
      connections,
      pipelining: 1,
      duration: ms / 1000,
      sampleInt: 100, // the run ends at the first sample after `duration`: keeps the tail short
      ...(rate === undefined ? {} : { overallRate: rate }),
    });
    // autocannon's own histogram has a resolution of 1 ms: the latencies are kept here instead.
    instance.on('response', (_client, status, _bytes, responseTime) => {
      if (performance.now() > end) return;
      if (status === 200) latencies.push(responseTime);
      else bad++;
    });
    const result = await instance;
    const heapMb = (await stats()).heapMb; // at the end of the run, with its tasks still pending
    const after = await idle();
    const wallMs = performance.now() - t0;
    const machine1 = machineCpu();
    const own = process.cpuUsage(own0);
    const ownMs = (own.user + own.system) / 1000 + after.cpuMs - before.cpuMs;
    const foreign =
      machine0 === undefined ? 0 : Math.max(0, (machine1.busy - machine0.busy) / (machine1.total - machine0.total) - ownMs / (wallMs * availableParallelism()));
    latencies.sort((a, b) => a - b);
    return {
      foreign,
      loadCpuShare: (own.user + own.system) / 1000 / wallMs,
      rps: latencies.length / (ms / 1000),
      responses: latencies.length,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      p999: quantile(latencies, 0.999),
      latencies,
      bad: bad + result.errors + result.timeouts,
      serverCpuMs: after.cpuMs - before.cpuMs,
      serverRequests: after.counts.requests - before.counts.requests,
      heapMb,
    };
  };

  /**
   * A run, redone (up to 3 times in all) while other processes used more than 10% of the CPU
   * meanwhile: on a shared machine a burst of other work on the server's core would otherwise
   * land in one route's figures. The least disturbed attempt is kept.
   */
  let redone = 0;
  const load = async (variant, ms, rate) => {
    let best;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const r = await once_(variant, ms, rate);
      if (best === undefined || r.foreign < best.foreign) best = r;
      if (r.foreign <= 0.1) break;
      redone++;
    }
    return best;
  };

  const variants = ['plain', 'with', 'raw'];
  for (const v of rotate(variants, round)) await once_(v, warmMs);
  const runs = { plain: [], with: [], raw: [] };
  const t0 = performance.now();
  for (let p = 0; p < pairs; p++) {
    for (const v of rotate(variants, round + p)) runs[v].push(await load(v, runMs));
  }
  // Then at a fixed rate, half of what /plain served flat out: the latency a request sees at a
  // load the server carries with room to spare, rather than in a queue that saturation makes
  // (where p99 follows the throughput: 20 connections over fewer requests a second).
  const rate = Math.round((runs.plain.reduce((a, r) => a + r.rps, 0) / runs.plain.length) * 0.5);
  const paced = { plain: [], with: [], raw: [] };
  for (let p = 0; p < Math.ceil(pairs / 2); p++) {
    for (const v of rotate(variants, round + p)) paced[v].push(await load(v, runMs * 2, rate));
  }
  const measuredMs = performance.now() - t0;
  const end = await idle();
  const { user, system } = process.cpuUsage();
  server.send('exit');
  await exited;

  /** The variant's runs pooled: every latency of its runs, every response over their total time. */
  const pooled = (list, ms = runMs) => {
    const all = list.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const requests = list.reduce((a, r) => a + r.serverRequests, 0);
    return {
      rps: all.length / ((list.length * ms) / 1000),
      p50: quantile(all, 0.5),
      p99: quantile(all, 0.99),
      p999: quantile(all, 0.999),
      cpuPerRequestUs: (list.reduce((a, r) => a + r.serverCpuMs, 0) * 1000) / requests,
      serverCpuShare: list.reduce((a, r) => a + r.serverCpuMs, 0) / (list.length * ms),
      heapMb: Math.max(...list.map((r) => r.heapMb)),
      bad: list.reduce((a, r) => a + r.bad, 0),
    };
  };
  const summed = { plain: pooled(runs.plain), with: pooled(runs.with), raw: pooled(runs.raw) };
  const atRate = { rate, plain: pooled(paced.plain, runMs * 2), with: pooled(paced.with, runMs * 2), raw: pooled(paced.raw, runMs * 2) };
  for (const list of [...Object.values(runs), ...Object.values(paced)]) for (const r of list) delete r.latencies;
  const { requests, disposed, added, completed, failed, logged } = end.counts;
  const kept = [...Object.values(runs), ...Object.values(paced)].flat();
  return {
    framework,
    pinned: serverCpu !== undefined,
    runs,
    ...summed,
    paced: atRate,
    measuredMs,
    redone,
    // What lib.mjs judges the measurement by (rather than by the whole process's time, which
    // includes the redone runs): the mean share of the CPU other processes used in the runs kept.
    judgedForeign: kept.reduce((a, r) => a + r.foreign, 0) / kept.length,
    tasks: { added, completed, lost: added - completed, failed, logged },
    scopes: { opened: requests, disposed },
    loadCpuMs: (user + system) / 1000,
    // The server's CPU time is the measurement's too (lib.mjs adds it before judging how much
    // other processes used the machine).
    descendantsCpuMs: end.cpuMs,
  };
}

// Last: the declarations above must be initialized first.
if (process.argv.includes('--server')) {
  await server(process.argv[process.argv.indexOf('--server') + 1]);
} else {
  await childMain(async (spec) => {
    if (spec.scenario !== 'web') throw new Error(`unknown scenario ${spec.scenario}`);
    return measure(spec);
  });
}
