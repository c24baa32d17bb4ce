/**
 * What the shipped default `pool.maxThreads: 40` costs on this machine, as ratios to baselines
 * measured in the same run:
 *
 *   a. memory: RSS and heap of the process with 40 live idle worker threads, 2, and no pool;
 *   b. throughput: bursts of CPU-bound worker tasks (5 ms and 50 ms each) through Background at
 *      the default 40, through Background at maxThreads 2, through raw Piscina (40 with its own
 *      defaults, and 2), against the same work done inline on the main thread;
 *   c. round trip: a no-op worker task through Background against raw Piscina with the same options;
 *   d. a busy neighbour: the default against maxThreads 2 while another process keeps every core
 *      busy; the admission window should not take the neighbour's load for tasks that wait, and
 *      widen.
 *
 * Every measurement runs in a fresh child process (so a pool, its threads and its JIT state never
 * leak from one measurement into the next); the configurations of a round run one after another,
 * in an order that rotates from round to round. Ratios are computed within a round, then
 * summarized over the rounds as median (min–max). Nothing here touches the network.
 *
 * The machine may be shared: before each measurement the bench waits until other processes leave
 * the CPU nearly idle, and a measurement during which they used more than 10% of it (read from
 * /proc/stat on Linux) is taken again, up to three times; the report says which stayed disturbed.
 * (The child processes, the waiting and the statistics are in lib.mjs, shared with run.mjs.)
 *
 *   npm run bench                       builds, then runs this file (about 3½ minutes on an idle 2-core machine)
 *   node bench/pool.mjs --rounds 5      more rounds
 *   node bench/pool.mjs --quick         one round, fewer bursts: checks that the bench runs
 *   node bench/pool.mjs --json out.json also writes every measurement as JSON
 *   node bench/pool.mjs --only bd       only sections b and d (of a, b, c, d)
 *   node bench/pool.mjs --quiet-wait 45 waits at most 45 s (not 120) for a quiet machine before a measurement
 *
 * Runs against the built output (dist/): run `npm run build` first when calling it directly.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { calibrate, childMain, childRunner, cores, median, note, rotate, summary, table } from './lib.mjs';
import { spin } from './work.mjs';

const self = fileURLToPath(import.meta.url);
const rawWorker = new URL('./raw-worker.mjs', import.meta.url).href;
const quietAt = process.argv.indexOf('--quiet-wait');
/**
 * Runs one measurement in a fresh Node process and returns what it printed. The machine is
 * shared: when other processes used more than 10% of its CPU while the child ran (read from
 * /proc/stat, less the child's own CPU time), the measurement is taken again, up to three times
 * in all; `runner.disturbed` lists those that stayed disturbed.
 */
const runner = childRunner(self, { quietWaitMs: quietAt === -1 ? 120_000 : Number(process.argv[quietAt + 1]) * 1000 });
const foreignLimit = runner.foreignLimit;
const disturbed = runner.disturbed;
/** A process that keeps every core busy: one spinning thread per core. */
const neighbourCode = `
  const { Worker } = require('node:worker_threads');
  for (let i = 1; i < ${cores}; i++) new Worker('for (;;);', { eval: true });
  for (;;);
`;

if (!(await childMain(child))) await main();

// --- The parent: plan, run the children, summarize ------------------------------------------

async function main() {
  if (!existsSync(new URL('../dist/index.js', import.meta.url))) {
    console.error('bench/pool.mjs runs against dist/: run `npm run build` first (or `npm run bench`).');
    process.exit(1);
  }
  const quick = process.argv.includes('--quick');
  const roundsAt = process.argv.indexOf('--rounds');
  const rounds = roundsAt === -1 ? (quick ? 1 : 3) : Number(process.argv[roundsAt + 1]);
  const onlyAt = process.argv.indexOf('--only');
  const sections = onlyAt === -1 ? 'abcd' : process.argv[onlyAt + 1];
  const startedAt = performance.now();

  console.log('tsyringe-background: what the default pool.maxThreads 40 costs');
  console.log(
    `machine: ${cores} cores (availableParallelism), ${cpus()[0]?.model ?? 'unknown CPU'}; ` +
      `Node ${process.version}; ${new Date().toISOString()}`,
  );
  console.log(`rounds: ${rounds}; each measurement in a fresh child process; order rotates per round\n`);

  const perMs = calibrate();
  note(`calibrated: ${Math.round(perMs)} spin iterations per ms on the main thread`);

  // a. Memory ---------------------------------------------------------------------------------
  const memoryVariants = ['none', 'bg2', 'bg40'];
  const memory = [];
  // Memory hardly varies from run to run: two rounds are enough.
  for (let round = 0; sections.includes('a') && round < Math.min(rounds, 2); round++) {
    const results = {};
    for (const variant of rotate(memoryVariants, round)) {
      note(`memory, round ${round + 1}: ${variant}`);
      results[variant] = await runChild({ scenario: 'memory', variant }, { nodeArgs: ['--expose-gc'] });
    }
    memory.push(results);
  }

  // b. Throughput -----------------------------------------------------------------------------
  const tasks = 60;
  const gapMs = 250;
  const sizes = quick
    ? [{ taskMs: 5, warm: 2 }, { taskMs: 50, warm: 1 }]
    : [{ taskMs: 5, warm: 4 }, { taskMs: 50, warm: 2 }];
  const configs = ['inline', 'bg40', 'bg2', 'raw40', 'raw2'];
  const throughput = {};
  for (const { taskMs, warm } of sections.includes('b') ? sizes : []) {
    const iterations = Math.round(perMs * taskMs);
    throughput[taskMs] = [];
    for (let round = 0; round < rounds; round++) {
      const results = {};
      for (const config of rotate(configs, round)) {
        note(`throughput ${taskMs} ms, round ${round + 1}: ${config}`);
        // Inline work has no cold start worth the name: one 50 ms burst, two 5 ms ones, are enough.
        const bursts = config === 'inline' ? (taskMs === 5 ? 2 : 1) : 1 + warm;
        results[config] = await runChild({ scenario: 'throughput', config, iterations, bursts, tasks, gapMs });
      }
      throughput[taskMs].push(results);
    }
  }

  // c. Round trip -----------------------------------------------------------------------------
  const latency = [];
  for (let round = 0; sections.includes('c') && round < rounds; round++) {
    const results = {};
    for (const config of rotate(['bg40', 'raw40'], round)) {
      note(`round trip, round ${round + 1}: ${config}`);
      results[config] = await runChild({ scenario: 'latency', config, warmup: 300, count: quick ? 500 : 2000 });
    }
    latency.push(results);
  }

  // d. A busy neighbour -------------------------------------------------------------------------
  const contention = [];
  const neighbourBursts = quick ? 1 : 2;
  for (let round = 0; sections.includes('d') && round < Math.min(rounds, 2); round++) {
    const results = {};
    for (const config of rotate(['bg40', 'bg2'], round)) {
      note(`busy neighbour, round ${round + 1}: ${config}`);
      const spec = { scenario: 'throughput', config, iterations: Math.round(perMs * 50), bursts: neighbourBursts, tasks, gapMs };
      results[config] = await runChild(spec, { hog: true });
    }
    contention.push(results);
  }

  // Report ------------------------------------------------------------------------------------
  if (memory.length > 0) {
    console.log('\na. Memory of the main process (RSS includes every worker thread; heap is the main isolate only)');
    console.log('   pool started through BackgroundOptions { pool: { maxThreads: N, minThreads: N } }; N tasks held');
    console.log('   one per thread (each thread has loaded the library and the task module), then released; idle');
    table(
      ['', 'RSS MB', 'heap used MB', 'threads'],
      memoryVariants.map((v) => [
        { none: 'no pool', bg2: '2 threads', bg40: '40 threads' }[v],
        summary(memory.map((r) => r[v].rssMb), 1),
        summary(memory.map((r) => r[v].heapUsedMb), 1),
        summary(memory.map((r) => r[v].threads), 0),
      ]),
    );
    table(
      ['', 'value'],
      [
        ['RSS per thread, (40 − 2) / 38', `${summary(memory.map((r) => (r.bg40.rssMb - r.bg2.rssMb) / 38), 1)} MB`],
        ['RSS per thread, (2 − none) / 2', `${summary(memory.map((r) => (r.bg2.rssMb - r.none.rssMb) / 2), 1)} MB`],
        ['RSS, 40 threads / no pool', `${summary(memory.map((r) => r.bg40.rssMb / r.none.rssMb), 2)}×`],
        ['RSS, 40 threads / 2 threads', `${summary(memory.map((r) => r.bg40.rssMb / r.bg2.rssMb), 2)}×`],
        ['time to 40 held tasks (window widening)', `${summary(memory.map((r) => r.bg40.readyMs / 1000), 1)} s`],
      ],
    );
  }

  if (sections.includes('b')) {
    const label = {
      inline: 'inline, main thread',
      bg40: 'Background, default (40)',
      bg2: 'Background, maxThreads 2',
      raw40: 'raw Piscina, maxThreads 40',
      raw2: 'raw Piscina, maxThreads 2',
    };
    for (const { taskMs } of sizes) {
      const runs = throughput[taskMs];
      console.log(
        `\nb. Throughput: bursts of ${tasks} × ${taskMs} ms CPU-bound tasks, ${gapMs} ms apart; ` +
          'speedup = inline time / burst time (same round)',
      );
      table(
        ['', 'cold burst ms', 'cold speedup', 'warm burst ms', 'warm speedup', 'threads'],
        configs.map((config) => {
          const inline = runs.map((r) => median(r.inline.durations));
          const cold = runs.map((r) => r[config].durations[0]);
          const warm = runs.map((r) => median(config === 'inline' ? r[config].durations : r[config].durations.slice(1)));
          return [
            label[config],
            config === 'inline' ? '—' : summary(cold, 0),
            config === 'inline' ? '—' : `${summary(cold.map((c, i) => inline[i] / c), 2)}×`,
            summary(warm, 0),
            `${summary(warm.map((w, i) => inline[i] / w), 2)}×`,
            config === 'inline' ? '—' : summary(runs.map((r) => r[config].threads), 0),
          ];
        }),
      );
    }
    console.log('   threads: bg = live threads after the last burst; raw = threads started over all bursts');
  }

  if (latency.length > 0) {
    console.log('\nc. Round trip of a no-op worker task, sequential (await each before the next)');
    console.log(`   both pools: maxThreads 40, minThreads ${Math.min(cores, 40)}, idleTimeout 10 s (Background's defaults)`);
    table(
      ['', 'p50 µs', 'p99 µs', 'mean µs'],
      [
        ['Background: await bg.add(noop).result()', 'bg40'],
        ['raw Piscina: await pool.run(noop)', 'raw40'],
      ].map(([name, config]) => [
        name,
        summary(latency.map((r) => r[config].p50), 0),
        summary(latency.map((r) => r[config].p99), 0),
        summary(latency.map((r) => r[config].mean), 0),
      ]),
    );
    table(
      ['', 'value'],
      [
        ['p50, Background / raw Piscina', `${summary(latency.map((r) => r.bg40.p50 / r.raw40.p50), 2)}×`],
        ['p99, Background / raw Piscina', `${summary(latency.map((r) => r.bg40.p99 / r.raw40.p99), 2)}×`],
      ],
    );
  }

  if (contention.length > 0) {
    console.log(`\nd. A busy neighbour: another process keeps every core busy (one spinning thread per core); bursts of ${tasks} × 50 ms tasks`);
    table(
      ['', 'cold burst ms', 'warm burst ms', 'threads', 'process CPU s', "neighbour's cores"],
      [
        ['Background, default (40)', 'bg40'],
        ['Background, maxThreads 2', 'bg2'],
      ].map(([name, config]) => [
        name,
        summary(contention.map((r) => r[config].durations[0]), 0),
        neighbourBursts > 1 ? summary(contention.map((r) => r[config].durations[1]), 0) : '—',
        summary(contention.map((r) => r[config].threads), 0),
        summary(contention.map((r) => r[config].cpuMs / 1000), 1),
        summary(contention.map((r) => r[config].neighbourShare * cores), 2),
      ]),
    );
    table(
      ['', 'value'],
      [
        ['cold burst, default / maxThreads 2', `${summary(contention.map((r) => r.bg40.durations[0] / r.bg2.durations[0]), 2)}×`],
        ['process CPU, default / maxThreads 2', `${summary(contention.map((r) => r.bg40.cpuMs / r.bg2.cpuMs), 2)}×`],
      ],
    );
  }

  if (sections.includes('b')) {
    console.log('\nTargets (issue 6): Background at the default 40 ≥ 1.75× inline on 5 ms tasks, ≥ 1.9× on 50 ms, never below 1.0×');
    for (const { taskMs } of sizes) {
      const target = taskMs === 5 ? 1.75 : 1.9;
      const runs = throughput[taskMs];
      const inline = runs.map((r) => median(r.inline.durations));
      const warm = median(runs.map((r, i) => inline[i] / median(r.bg40.durations.slice(1))));
      const cold = median(runs.map((r, i) => inline[i] / r.bg40.durations[0]));
      const worst = Math.min(...runs.flatMap((r, i) => r.bg40.durations.map((d) => inline[i] / d)));
      console.log(
        `  ${taskMs} ms: warm ${warm.toFixed(2)}× (target ${target}×) ${warm >= target ? 'met' : 'MISSED'}; ` +
          `cold ${cold.toFixed(2)}×; slowest burst ${worst.toFixed(2)}× (floor 1.0×) ${worst >= 1 ? 'met' : 'MISSED'}`,
      );
    }
  }

  console.log(
    disturbed.length === 0
      ? `\nevery measurement ran while other processes used < ${foreignLimit * 100}% of the CPU`
      : `\nWARNING: measured while other processes used the CPU (best of 3 attempts): ${disturbed.join('; ')}`,
  );
  const jsonAt = process.argv.indexOf('--json');
  if (jsonAt !== -1) writeFileSync(process.argv[jsonAt + 1], JSON.stringify({ cores, node: process.version, perMs, memory, throughput, latency, contention, disturbed }, null, 2));
  console.log(`total time: ${((performance.now() - startedAt) / 1000).toFixed(0)} s`);
}

/** One measurement, in a fresh child process; `hog`: with a busy neighbour alongside. */
function runChild(spec, { nodeArgs = [], hog = false } = {}) {
  return runner.run(spec, { nodeArgs, neighbour: hog ? neighbourCode : undefined });
}

// --- The children: one measurement each --------------------------------------------------------

async function child(spec) {
  switch (spec.scenario) {
    case 'memory':
      return memoryChild(spec);
    case 'throughput':
      return throughputChild(spec);
    case 'latency':
      return latencyChild(spec);
    default:
      throw new Error(`unknown scenario ${spec.scenario}`);
  }
}

/**
 * The application as a user would set it up: the global container is the root; `pool` is
 * registered as BackgroundOptions when given, else every default applies.
 */
async function application(pool) {
  const lib = await import('../dist/index.js');
  const { container } = await import('tsyringe');
  if (pool !== undefined) container.register(lib.BackgroundOptions, { useValue: { pool } });
  const bg = container.createChildContainer().resolve(lib.Background);
  return {
    lib,
    bg,
    /** Live threads of the application's pool (an internal, read for the report only). */
    async threads() {
      const { appOf } = await import('../dist/di/container.js');
      const app = appOf(container);
      return app.hasPool ? app.pool.threads : 0;
    },
    close: () => lib.shutdown({ timeoutMs: 10_000 }),
  };
}

async function memoryChild({ variant }) {
  const threads = { none: 0, bg2: 2, bg40: 40 }[variant];
  const app = await application(threads === 0 ? undefined : { maxThreads: threads, minThreads: threads });
  const { hold } = await import('./tasks.mjs');
  const t0 = performance.now();
  if (threads === 0) {
    await app.bg.add(async () => 0).result();
  } else {
    // One held task per thread: all N threads live, each having loaded the task module. Past
    // the cores, tasks are admitted only as the admission window widens (they leave the CPU idle).
    const cell = new Int32Array(new SharedArrayBuffer(8));
    const handles = Array.from({ length: threads }, () => app.bg.add(hold, cell));
    while (Atomics.load(cell, 1) < threads) {
      if (performance.now() - t0 > 60_000) throw new Error(`only ${Atomics.load(cell, 1)} of ${threads} tasks started`);
      await sleep(10);
    }
    Atomics.store(cell, 0, 1);
    Atomics.notify(cell, 0);
    await Promise.all(handles.map((h) => h.result()));
  }
  const readyMs = performance.now() - t0;
  await sleep(500);
  globalThis.gc();
  globalThis.gc();
  await sleep(200);
  const { rss, heapUsed } = process.memoryUsage();
  const live = await app.threads();
  await app.close();
  return { rssMb: rss / 2 ** 20, heapUsedMb: heapUsed / 2 ** 20, threads: live, readyMs };
}

async function throughputChild({ config, iterations, bursts, tasks, gapMs }) {
  const durations = [];
  let threads = 0;
  if (config === 'inline') {
    let sink = 0;
    for (let b = 0; b < bursts; b++) {
      const t0 = performance.now();
      for (let i = 0; i < tasks; i++) sink ^= spin(iterations);
      durations.push(performance.now() - t0);
      await sleep(gapMs);
    }
    return { durations, sink };
  }
  if (config === 'bg40' || config === 'bg2') {
    const app = await application(config === 'bg2' ? { maxThreads: 2 } : undefined);
    const { busy } = await import('./tasks.mjs');
    for (let b = 0; b < bursts; b++) {
      // The first burst creates the pool: that is the cold start a deploy pays.
      const t0 = performance.now();
      const handles = Array.from({ length: tasks }, () => app.bg.add(busy, iterations));
      await Promise.all(handles.map((h) => h.result()));
      durations.push(performance.now() - t0);
      threads = await app.threads();
      await sleep(gapMs);
    }
    await app.close();
    return { durations, threads };
  }
  // Raw Piscina: 40 with its own defaults (minThreads cores/2, idleTimeout 0), or 2.
  const { Piscina } = await import('piscina');
  let pool;
  for (let b = 0; b < bursts; b++) {
    const t0 = performance.now();
    if (pool === undefined) {
      pool = new Piscina({ filename: rawWorker, maxThreads: config === 'raw40' ? 40 : 2 });
      pool.on('workerCreate', () => threads++);
    }
    await Promise.all(Array.from({ length: tasks }, () => pool.run({ kind: 'busy', iterations })));
    durations.push(performance.now() - t0);
    await sleep(gapMs);
  }
  await pool.destroy();
  return { durations, threads };
}

async function latencyChild({ config, warmup, count }) {
  let once;
  let close;
  if (config === 'bg40') {
    const app = await application(undefined);
    const { noop } = await import('./tasks.mjs');
    once = () => app.bg.add(noop).result();
    close = app.close;
  } else {
    const { Piscina } = await import('piscina');
    const pool = new Piscina({ filename: rawWorker, maxThreads: 40, minThreads: Math.min(cores, 40), idleTimeout: 10_000 });
    once = () => pool.run({ kind: 'noop' });
    close = () => pool.destroy();
  }
  for (let i = 0; i < warmup; i++) await once();
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await once();
    times[i] = (performance.now() - t0) * 1000;
  }
  await close();
  times.sort();
  const mean = times.reduce((a, b) => a + b, 0) / count;
  return { p50: times[Math.floor(count * 0.5)], p99: times[Math.floor(count * 0.99)], mean };
}
