/**
 * What bench/run.mjs writes: docs/benchmarks.md (the page) and docs/benchmarks.svg (the chart of
 * the dispatch and CPU-offload figures), from the rows it measured. No dependencies: the SVG is
 * written by hand.
 */
import { analysis } from './analysis.mjs';

// --- The page -------------------------------------------------------------------------------------

/**
 * @param machine what ran it (cores, CPU, versions, commit…)
 * @param rows every figure: id, figure, measured, target, met, key
 * @param details the sections' tables of absolute figures: { title, head, rows }
 * @param load how busy the machine was meanwhile
 */
export function page({ machine, rounds, rows, details, load, totalS }) {
  const out = [];
  const p = (line = '') => out.push(line);
  const missed = rows.filter((r) => r.met === false);

  p('# Benchmarks');
  p();
  p(`<!-- Written by bench/run.mjs (\`npm run bench\`): edit the script, not this page. -->`);
  p();
  p(
    'What the library costs, measured as ratios to baselines run in the same process (or, where a baseline needs a ' +
      'process of its own, in the same round of fresh processes), against the built output. Variants are interleaved ' +
      'in an order that rotates from round to round; each round is a fresh child process; a figure is the median over ' +
      `the rounds, with the lowest and highest in parentheses (${rounds} rounds; memory 2, the global-tax pairs ` +
      `${Math.max(rounds, 5)}, the unpinned round trips ${Math.max(rounds, 7)}). Absolute times are for orientation only: they depend on the machine, the ratios much less.`,
  );
  p();
  p(`${targetsLine(rows)}${missed.length === 0 ? '' : ' — see [below](#missed-targets-why-and-the-next-step).'}`);
  p();
  targetTable(p, rows);
  p();
  p('Ratios are *time with the library / time of the baseline* (lower is better), except CPU offload: *inline time / time through the pool* (higher is better). Rows marked ↳ qualify the row above them; rows without a target are there for comparison (p-limit alone, records off, AsyncLocalStorage on, inline CPU work). After each verdict, how many of the last runs that measured the row (up to 10, this one included; bench/verdicts.json) gave the same verdict: a verdict that flips from run to run says little.');
  p();
  p('![Dispatch and CPU-offload figures: bars are medians, whiskers the range over the rounds, red ticks the targets](benchmarks.svg)');
  p();
  p('In the chart, the cold-burst bars are drawn against the 1.0× floor of target 4 (every burst at least as fast as inline).');
  p();
  p(webLink);
  p();
  p(durableLink);
  p();

  p('## Missed targets: why, and the next step');
  p();
  if (missed.length === 0) p('None on this run.');
  /** Analyses already printed (one may cover several rows), with the row that printed them. */
  const printed = new Map();
  for (const r of missed) {
    const a = analysis[r.key];
    p(`### ${r.id}: ${r.figure.trim()} — ${r.measured}, target ${r.target}`);
    p();
    if (printed.has(a)) {
      p(`The same cause as ${printed.get(a)} above.`);
    } else if (a === undefined) {
      p('No analysis recorded for this figure yet (bench/analysis.mjs): profile it (`node --cpu-prof`) before changing anything.');
    } else {
      printed.set(a, `${r.id} (${r.figure.trim()})`);
      p(`**Why.** ${a.why}`);
      p();
      p(`**Next step.** ${a.next}`);
    }
    p();
  }
  notesOnMet(p, rows);

  p('## What each figure measures');
  p();
  for (const line of methods) p(line);
  p();

  p('## Absolute figures');
  p();
  detailTables(p, details);

  p('## Machine and versions');
  p();
  machineLines(p, machine, load, { took: `; the run took ${Math.floor(totalS / 60)} min ${Math.round(totalS % 60)} s`, who: 'the suite' });
  p();
  p('## Reproduce');
  p();
  p('```sh');
  p('npm ci');
  p('npm run bench                      # npm run build, then node bench/run.mjs: writes this page and benchmarks.svg');
  p('node bench/run.mjs --rounds 5      # more rounds');
  p('node bench/run.mjs --quick         # one round, smaller sizes, no page: checks that the suite runs');
  p('node bench/run.mjs --only dispatch,loop --json out.json   # some sections, every measurement as JSON');
  p('node bench/pool.mjs                # the worker-pool benchmark alone (memory per thread, offload, round trip, a busy neighbour)');
  p('```');
  p();
  p('Never a CI gate: absolute times on a shared machine say little, and `npm test` does not run this.');
  p();
  return out.join('\n');
}

/** The paragraph of benchmarks.md that points to the web section's page. */
const webLink =
  'Section 7, a route with background tasks against the same route without, on an HTTP server of each framework under ' +
  'autocannon\'s load, has a page of its own, [benchmarks-web.md](benchmarks-web.md), written whenever that section runs ' +
  '(`node bench/run.mjs --only web` rewrites it and leaves this page alone).';

/** The paragraph of benchmarks.md that points to the durable section's page. */
const durableLink =
  'Section 8, durable tasks on BullMQ against raw BullMQ on the same redis-server (throughput, and the cost of `add()`), ' +
  'has a page of its own too, [benchmarks-durable.md](benchmarks-durable.md) (`node bench/run.mjs --only durable`).';

/** What the web section measures and why the comparison is fair: on both pages. */
const webMethod =
  '- **7 Under HTTP load** (bench/web.mjs): for each framework (Express 5, Fastify 5, Hono 4 on @hono/node-server), one server ' +
  'process per round, on 127.0.0.1, with the framework\'s `requestScope()` from dist/adapters/ and two routes of the same shape: ' +
  '`GET /plain` resolves a `ContainerScoped` service (a request id, with an async `dispose()` as a session has) and answers a ' +
  'small JSON; `GET /with-background` does the same and adds three fire-and-forget tasks to the request\'s `Background`: an ' +
  'async `defineTask` with the scoped service injected that awaits a 2 ms timer (a call to another service) and then writes ' +
  'an audit record, an async function that awaits an I/O turn (`setImmediate`) and updates a cache, and a tiny synchronous ' +
  'counter. For reference, `GET /with-promises` starts the same three tasks as bare promises, untracked (what the work ' +
  'itself costs without the library; the scope does not wait for them). The server keeps serving while the scopes of ' +
  'earlier requests drain, so the drain\'s cost is inside the run that caused it. autocannon (20 connections, pipelining 1) ' +
  'runs in the measuring process and loads one route at a time: a warm-up of each route (0.7 s), then runs of 0.5 s moving ' +
  'from route to route in an order that rotates from run to run, 6 of each per round, every route in the same server ' +
  'process so that they share its JIT and GC state. A run during which other processes used more than 10% of the CPU ' +
  '(from /proc/stat, less the two processes\' own CPU time) is redone at once, up to 3 times, the least disturbed kept: on a ' +
  'shared machine a burst of other work on the server\'s core would otherwise land in one route\'s figures. Between runs ' +
  'the measurement waits ' +
  'until every scope has been disposed and every task has completed (the server counts them), so that no run inherits the ' +
  'previous one\'s work; a task still pending 5 s after a run, or a scope never disposed, is an error (row 7). Only responses ' +
  'within a run\'s 0.5 s count; latencies are autocannon\'s per-response times, kept at full resolution (its own ' +
  'histogram rounds to 1 ms). A round\'s figure pools each route\'s runs: p99 over all their responses, req/s over their ' +
  'total time; the ratio is with / without. On a machine of 2 cores or more, `taskset` pins the server to CPU 1 and ' +
  'autocannon to CPU 0, so that the load generator does not take the server\'s CPU (the server\'s helper threads, GC and ' +
  'libuv pool share its core). "Server CPU busy" says whether the server was the bottleneck (≈ 100%: req/s is the server\'s ' +
  'capacity, and the req/s ratio is the cost of the background work in capacity); "server heap MB" is the largest heap ' +
  'used at the end of a run, its last tasks still pending.';

const methods = [
  '- **1a Steady dispatch**: `bg.add()` of a no-op async task in batches of 100, each batch awaited (`bg.drain()`) before the next, so the default limit of 100 is never exceeded; against "raw" = `const p = fn().catch(log); set.add(p); p.then(() => set.delete(p))`, drained by waiting for the Set to empty. Blocks of 50 000 tasks per contender, interleaved in one process, 15 per round after 3 of warm-up; each contender runs its own copy of the task and the loop (bench/contenders.mjs, imported once per contender). Note: raw dispatch measured alone, block after block, in a process that does nothing else runs ≈ 0.14 µs/task on this machine; as soon as anything else runs between its blocks (another contender, or a single `gc()`), V8 keeps promoting its short-lived promises to the old generation and it settles at ≈ 0.3 µs/task, the figure an application sees and the one in the design notes (≈ 0.33 µs). The interleaved figure is the one used. (The global-tax processes of 3a run raw dispatch alone, hence their lower absolute figure.) "Events observed" is the same with one no-op `observeTasks()` observer on the application (issue 15, item 5: the cost of the lifecycle events when used; unused, no event is built).',
  '- **1b Burst**: 1e5 tasks added at once (all but 100 queue), then drained; against p-limit(100) with the same Set.',
  '- **1c Disposal**: 1e5 tasks added to a fresh request scope, then only `await scope.dispose()` (tsyringe, which calls `Background.dispose()`) is timed; against the time p-limit(100) takes to run 1e5 queued tasks.',
  '- **2 Memory**: 1e5 or 1e6 async tasks that `await` one shared gate, added at once; heap used (after three full GCs) with them pending, less before, per task. Then the gate opens, everything drains, and the heap left is measured again. Background keeps the last 100 finished tasks for `get()`/`list()` (`records`, 1 minute; 1 000 before 2026-12-05 evening): those are what is left. One fresh process per contender and size (`--expose-gc`).',
  '- **3a No global tax**: the raw dispatch loop of 1a, in fresh processes that have or have not imported the library, constructed a `Background` and run one task. Pairs of processes, rotating order.',
  '- **3b Request scope**: `createChildContainer()`, resolve, add one no-op task, `await scope.dispose()`; the baseline resolves a `ContainerScoped` class with an `async dispose()` instead (the same scope life without Background).',
  '- **4 CPU offload** (bench/pool.mjs): bursts of 60 CPU-bound tasks of 5 ms and 50 ms, 250 ms apart, through Background at the default `maxThreads: 40`, against the same work inline on the main thread; raw Piscina and `maxThreads: 2` for comparison. "Warm" is the median of the bursts after the first.',
  '- **5 Worker round trip**: `await bg.add(noop).result()` one after another, against raw Piscina `await pool.run()` of a module doing the same, with the same options (maxThreads 40, minThreads 2, idleTimeout 10 s: Background\'s defaults); both pools in one process, each warmed for 600 ms of round trips (a new worker isolate needs a few hundred ms of calls before its code is optimized), then alternating blocks of 300 timed round trips, 20 blocks each per round; 7 rounds unpinned (each process lands in one of the modes below), 3 pinned. The same pinned to one core (`taskset -c 0`) shows the CPU both ends spend, without the wake-up latency of a thread on the other core, which swings the unpinned p50 between ≈ 15 and ≈ 90 µs from one process to the next. bench/pool.mjs c measures the same in separate processes (shown for reference). **Caller blocked**: each `add()` of a worker task with a small object argument timed on its own (`performance.now()` around the call), in batches of 50; raw Piscina `run()` sized to the cores for comparison.',
  '- **6 Event-loop protection**: a `setTimeout(5 ms)` loop standing for request handling; lateness = when a tick ran − when it was due. Phases of 1 s (the first 100 ms not counted), interleaved, 5 cycles per round: nothing else (the baseline); a 50 ms CPU task every 200 ms through the worker lane; the same through raw Piscina sized to the cores (what the platform allows); the same in another process, toggled on for its phase (what any CPU-bound work on this machine does to the loop); the same inline. p99 over each phase\'s ≈ 900 ticks per round.',
  webMethod,
  '- **8 Durable tasks on BullMQ**: see [benchmarks-durable.md](benchmarks-durable.md#what-is-measured).',
];

/**
 * docs/benchmarks-web.md: the web section's figures, written whenever it runs, so that
 * `--only web` need not rewrite benchmarks.md (whose other figures it did not measure).
 * @param whole whether a full run wrote it (benchmarks.md then has the same rows)
 * @param web the section's raw results (`pinned`)
 */
export function webPage({ machine, rounds, rows, details, load, web, whole }) {
  const out = [];
  const p = (line = '') => out.push(line);
  const targets = rows.filter((r) => r.met !== undefined);
  const missed = targets.filter((r) => r.met === false);
  p('# Benchmarks: background work under HTTP load');
  p();
  p('<!-- Written by bench/run.mjs (`npm run bench`, or `node bench/run.mjs --only web`): edit the script, not this page. -->');
  p();
  p(
    'Section 7 of the [benchmarks](benchmarks.md) (issue 13): for each framework adapter, the request latency p99 and the ' +
      'requests per second of a route that adds background tasks, against the same route without them, served by the same ' +
      `server process in the same run. A figure is the median over ${rounds} rounds (a fresh server process each), with the ` +
      'lowest and highest in parentheses. ' +
      (whole
        ? 'This page was written by a full run, which put the same rows in benchmarks.md.'
        : 'This page was written by `node bench/run.mjs --only web`: benchmarks.md keeps the figures of its own last full run.'),
  );
  p();
  p(`${targetsLine(rows)}${missed.length === 0 ? '' : '.'}`);
  p();
  targetTable(p, rows);
  p();
  if (missed.length > 0) {
    missedCauses(p, missed, 'profile the server (`node --cpu-prof`) under the same load');
  }
  p('## What is measured');
  p();
  p(webMethod);
  p();
  p(
    web.pinned
      ? 'On this run the server was pinned to CPU 1 and autocannon to CPU 0 (`taskset -c`).'
      : 'On this run nothing was pinned (no `taskset`, or fewer than 2 cores): autocannon and the server shared the CPUs, so req/s is partly the load generator\'s.',
  );
  p();
  p('## Absolute figures');
  p();
  detailTables(p, details);
  const measurements = Object.values(web.frameworks).flat();
  const runs = measurements.reduce((a, m) => a + Object.values(m.runs).flat().length, 0);
  const redone = measurements.reduce((a, m) => a + (m.redone ?? 0), 0);
  const tasks = measurements.reduce((a, m) => a + m.tasks.added, 0);
  p(
    `Absolute figures are for orientation only: they depend on the machine, the ratios much less. Runs kept: ${runs}; ` +
      `${redone} more were redone because other processes used the CPU meanwhile. Background tasks added: ${tasks}, ` +
      `${measurements.reduce((a, m) => a + m.tasks.completed, 0)} completed.`,
  );
  p();
  p('## Machine and load');
  p();
  machineLines(p, machine, load, { who: 'the section' });
  p();
  p('## Reproduce');
  p();
  p('```sh');
  p('npm run build');
  p('node bench/run.mjs --only web             # this section alone: rewrites this page, not benchmarks.md');
  p('node bench/run.mjs --only web --quick     # one short round, no page: checks that it runs');
  p('npm run bench                             # everything: benchmarks.md (rows 7 included) and this page');
  p('```');
  p();
  return out.join('\n');
}

/** What the durable section measures, for its page. */
const durableMethod = [
  'Each round is a fresh process (bench/durable.mjs) that starts a redis-server of its own on 127.0.0.1 (a free port, no ' +
    'persistence) and stops it at the end; without redis-server the section is skipped with a notice. Everything runs ' +
    'against the built output (dist/). Five variants, each run on a fresh queue, Redis flushed between runs:',
  '',
  '- **raw**: BullMQ as an application uses it without the library: `queue.add(name, { args }, { removeOnComplete, removeOnFail })` ' +
    '(the library\'s retention, so that both keep the same jobs) and a `Worker` whose processor calls the task\'s function.',
  '- **raw, the library\'s job data and options**: the same raw BullMQ, with the exact job the library makes for a task ' +
    'without retries: data `{ args }`, a UUID `jobId`, and a `priority` (every library job has one, so that priorities ' +
    'work: BullMQ keeps prioritized jobs in a sorted set). It separates what the job\'s shape ' +
    'costs from what the library\'s code costs.',
  '- **library**: `useBullMQ(root, { connection, queueName })` and `bg.with({ durable: true }).add(task, arg)` on a producer ' +
    'application, `startWorkers({ tasks: [task], concurrency })` on a worker application. The task has no dependency, so its ' +
    'jobs run on the workers\' `Background` with no scope each (a scope of its own could not change what such a task does).',
  '- **library, the task injecting a per-job service**: the same, with a `ContainerScoped` service (with a `dispose()`, as a ' +
    'database session) injected: each job gets a child tsyringe scope, where the service is resolved, drained and disposed ' +
    'before the job completes. Worker side and end to end only (`add()` is the same).',
  '- **library, every handle watched**: the library variant with each handle\'s `result()` asked for at its `add()`, so ' +
    'that the producer follows every job through the queue\'s event stream (a handle nobody watches is not followed: ' +
    'see [durable.md](durable.md)). End to end only, timed until the last handle has settled.',
  '',
  'The task is the same async function in every variant (an async no-op that counts its runs), with one small JSON argument ' +
    '(an order: an id, a customer, three lines); the worker\'s concurrency is the same (50); producer and worker are in the ' +
    'one process of the round. Measurements, each variant in turn in an order that rotates from rep to rep, after one ' +
    'smaller warm-up run of each (not kept), 3 reps per round; a round\'s absolute figure is the median of its reps, its ' +
    'ratio the median over its reps of the ratio within each rep (whose variants ran one after another), and the page ' +
    'gives the median over the rounds with the lowest and highest in parentheses:',
  '',
  '- **8a Worker side**: every job enqueued first (not timed), the producer closed; then the worker is created and timed ' +
    'until it has completed every job (its `completed` events): the throughput of the worker side alone, the fair figure ' +
    'for "how many jobs a worker process gets through".',
  '- **8b End to end**: the worker started and warm (one job through), then every job added at once (the calls not ' +
    'awaited one by one) and timed from the first `add()` to the worker\'s last completion. Producer and worker share the ' +
    'process, as a small deployment runs them. Nobody watches the library\'s handles while the run is timed (as with ' +
    'fire-and-forget `add()` calls), so its producer reads no event, as raw BullMQ\'s does not; the "every handle ' +
    'watched" row is the cost of following them all.',
  '- **8c Enqueue**: a batch of `add()` calls on a warm producer (one job enqueued first), no worker running. *Synchronous ' +
    'part*: the loop of calls, per call (`bg.add()` returns its handle at once; `queue.add()` returns a promise). *Until ' +
    'in Redis*: from the first call until every job is in Redis, per job: the `queue.add()` promises for raw; for the ' +
    'library, the promises of its backend\'s own `queue.add()` calls, counted by a wrapper on `backend.queue` (the bench ' +
    'needs it: a handle does not say when its job reached Redis).',
  '',
  'CPU per job is this process\'s (`process.cpuUsage()`) and redis-server\'s (from /proc) over the timed part, divided by ' +
    'the jobs. With 2 cores or more (and `taskset`), redis-server runs on CPU 0 and the round\'s process on CPU 1, as a ' +
    'deployment with Redis on its own host would, and as the web section pins its server: left to the kernel, both ran on ' +
    'one core part of the time, and the same variant\'s jobs/s swung by ±25% from run to run (2026-12-05), more than the ' +
    'differences measured. Jobs/s is then the slower of the two processes: the Node one, for every variant.',
  '',
  '- **Paired (the judged rows of 8a and 8b, since 2026-12-07)**: one after the other, the rows above still swing with ' +
    'the machine (its speed drifts by tens of percent from second to second), so that runs of the section disagree on ' +
    'them. Paired, the two variants run at the same time, each in a process of its own (bench/durable-side.mjs) on the same ' +
    'CPU and the same redis-server, against a queue of its own, started together: drain (every job enqueued first, then ' +
    'the worker started) or end to end (worker warm, then every job added). Each side marks when every 100th job ' +
    'completed; the ratio is the two sides\' completions over the same window of time: from when both have completed ' +
    'their first quarter of the jobs (fresh processes: connections made, code warmed) until the first of them has ' +
    'completed all. The kernel gives the two processes equal shares of the CPU, so the ratio is how many jobs each ' +
    'variant gets through for the same CPU; whatever the machine does meanwhile, it does to both. 3 runs per round, the ' +
    'side that starts first alternating; a round\'s figure is the median of its runs. *raw / raw* says what the method ' +
    'reads for no difference (its own row).',
];


/**
 * docs/benchmarks-durable.md: the durable section's figures, written whenever it runs, so that
 * `--only durable` need not rewrite benchmarks.md.
 * @param whole whether a full run wrote it (benchmarks.md then has the same rows)
 * @param durable the section's raw results, one per round
 */
export function durablePage({ machine, rounds, rows, details, load, durable, whole }) {
  const out = [];
  const p = (line = '') => out.push(line);
  const targets = rows.filter((r) => r.met !== undefined);
  const missed = targets.filter((r) => r.met === false);
  p('# Benchmarks: durable tasks on BullMQ');
  p();
  p('<!-- Written by bench/run.mjs (`npm run bench`, or `node bench/run.mjs --only durable`): edit the script, not this page. -->');
  p();
  p(
    'Section 8 of the [benchmarks](benchmarks.md) (issue 14): the [durable backend](durable.md) (`useBullMQ` and ' +
      '`startWorkers`) against raw BullMQ on the same redis-server, with the same jobs and the same worker concurrency, ' +
      `side by side in the same round. A figure is the median over ${rounds} round${rounds === 1 ? '' : 's'} (a fresh process and a fresh ` +
      'redis-server each), with the lowest and highest in parentheses. ' +
      (whole
        ? 'This page was written by a full run, which put the same rows in benchmarks.md.'
        : 'This page was written by `node bench/run.mjs --only durable`: benchmarks.md keeps the figures of its own last full run.'),
  );
  p();
  p(`${targetsLine(rows)}${missed.length === 0 ? '' : '.'}`);
  p();
  targetTable(p, rows);
  p();
  p('Throughput ratios are *library jobs/s / raw jobs/s* (higher is better); enqueue ratios are *time with the library / time with raw BullMQ* (lower is better). Rows marked ↳ qualify the row above them.');
  p();
  if (missed.length > 0) {
    missedCauses(p, missed, 'profile the worker side (`node --cpu-prof`)');
  }
  notesOnMet(p, rows);
  p('## What is measured');
  p();
  for (const line of durableMethod) p(line);
  p();
  p('## Absolute figures');
  p();
  detailTables(p, details);
  const runs = durable.reduce((a, r) => a + Object.values(r.drain).flat().length + Object.values(r.e2e).flat().length + Object.values(r.enqueue).flat().length, 0);
  p(`Absolute figures are for orientation only: they depend on the machine, the ratios much less. Timed runs kept: ${runs} (warm-ups not counted).`);
  p();
  p('## Machine and load');
  p();
  machineLines(p, machine, load, { who: 'the section', ownProcesses: ' (redis-server counts as the measurement\'s own)' });
  p();
  p('## Reproduce');
  p();
  p('```sh');
  p('npm run build');
  p('node bench/run.mjs --only durable            # this section alone: rewrites this page, not benchmarks.md');
  p('node bench/run.mjs --only durable --quick    # one short round, no page: checks that it runs');
  p('npm run bench                                # everything: benchmarks.md (rows 8 included) and this page');
  p('```');
  p();
  return out.join('\n');
}

/** The detail tables of a page ("Absolute figures"). */
function detailTables(p, details) {
  for (const d of details) {
    p(`**${d.title}**`);
    p();
    p(`| ${d.head.map(escapeMd).join(' | ')} |`);
    p(`|${d.head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
    for (const row of d.rows) p(`| ${row.map((c) => escapeMd(String(c))).join(' | ')} |`);
    p();
  }
}

/**
 * A page's lines on the machine, the commit and the load while it measured.
 * @param options.who what waited for a quiet machine ("the suite", "the section")
 * @param options.took appended to the commit line (how long the run took), if any
 * @param options.ownProcesses appended to the load line: which other processes are the measurement's own
 */
function machineLines(p, machine, load, { who, took = '', ownProcesses = '' }) {
  p(`- ${machine.cores} cores (\`availableParallelism()\`), ${machine.cpu}, ${machine.memGb.toFixed(0)} GB RAM, ${machine.os}`);
  p(`- Node ${machine.node}; ${Object.entries(machine.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  p(`- commit ${machine.commit}${machine.dirty ? ' with uncommitted changes under src/ (the build measured includes them)' : ''}; ${machine.date}${took}`);
  const foreign = [...load.foreign].sort((a, b) => a - b);
  const share = (q) => `${((foreign[Math.min(foreign.length - 1, Math.floor(foreign.length * q))] ?? 0) * 100).toFixed(0)}%`;
  p(
    `- Load: the machine is shared (other sessions run test suites on it). Load average ${load.before.map((l) => l.toFixed(1)).join(' / ')} ` +
      `(1 / 5 / 15 min) at the start, ${load.after.map((l) => l.toFixed(1)).join(' / ')} at the end; ${who} waited ${load.waitedS.toFixed(0)} s ` +
      `in all for a quiet machine before its ${load.measurements} measurements, took ${load.retried} of them again, and other processes used a ` +
      `median ${share(0.5)} (at most ${share(1)}) of the CPU while the measurements kept ran${ownProcesses}.` +
      (load.disturbed.length === 0 ? '' : ` Still disturbed after 3 attempts: ${load.disturbed.join('; ')}.`),
  );
}

/** How many targets are met, and which are missed (bold, for the top of a page). */
function targetsLine(rows) {
  const targets = rows.filter((r) => r.met !== undefined);
  const missed = targets.filter((r) => r.met === false);
  const line = `**${targets.length - missed.length} of ${targets.length} targets met.**`;
  return missed.length === 0 ? line : `${line} Missed: ${missed.map((r) => `${r.id} (${r.figure.trim()})`).join('; ')}`;
}

/** The rows as a table: figure, measured, target and verdict. */
function targetTable(p, rows) {
  p('| # | figure | measured: median (min–max) | target | |');
  p('|---|---|---|---|---|');
  for (const r of rows) {
    p(`| ${r.id} | ${escapeMd(r.figure.startsWith('  ') ? `↳ ${r.figure.trim()}` : r.figure)} | ${r.measured} | ${r.target ?? '—'} | ${verdict(r)} |`);
  }
}

/**
 * The analysis of each missed row (bench/analysis.mjs), printed once per cause with the rows it
 * covers; where none is recorded, what to profile first.
 */
function missedCauses(p, missed, profileFirst) {
  p('## Missed targets: why, and the next step');
  p();
  const causes = new Map();
  for (const r of missed) causes.set(analysis[r.key], [...(causes.get(analysis[r.key]) ?? []), r]);
  for (const [a, list] of causes) {
    p(`**${list.map((r) => `${r.id} ${r.figure.trim().replace(/^\(|\)$/g, '')}`).join('; ')}.**`);
    p();
    if (a === undefined) {
      p(`No analysis recorded for these figures yet (bench/analysis.mjs): ${profileFirst} before changing anything.`);
    } else {
      p(`**Why.** ${a.why}`);
      p();
      p(`**Next step.** ${a.next}`);
    }
    p();
  }
}

/**
 * What bench/analysis.mjs says of rows whose targets are met on this run (`whenMet`: how close,
 * how steady), printed once per analysis with the rows it covers.
 */
function notesOnMet(p, rows) {
  const notes = new Map();
  for (const r of rows) {
    const a = analysis[r.key];
    if (r.met === true && a?.whenMet !== undefined) notes.set(a, [...(notes.get(a) ?? []), r]);
  }
  if (notes.size === 0) return;
  p('## Notes on targets met');
  p();
  for (const [a, list] of notes) p(`- ${list.map((r) => `**${r.id}, ${r.figure.trim()}** (${r.measured})`).join('; ')}: ${a.whenMet}`);
  p();
}

/** A row's verdict, and how many of the last runs agree with it (bench/verdicts.json). */
function verdict(r) {
  if (r.met === undefined) return '';
  const word = r.met ? 'met' : '**missed**';
  return r.agree === undefined ? word : `${word} (${r.agree.same} of the last ${r.agree.of} runs)`;
}

function escapeMd(text) {
  return String(text).replaceAll('|', '\\|');
}

// --- The chart ------------------------------------------------------------------------------------

/** Two panels: async dispatch (ratio to baseline) and CPU offload (speedup over inline). */
export function chart(rows) {
  const panels = [
    { title: 'Async dispatch: time relative to the baseline (lower is better)', rows: rows.filter((r) => r.chart === 'dispatch'), better: 'lower' },
    { title: 'CPU offload on 2 cores: speedup over inline (higher is better)', rows: rows.filter((r) => r.chart === 'offload'), better: 'higher' },
  ].filter((panel) => panel.rows.length > 0);
  const width = 840;
  const labelW = 340;
  const plotX = labelW + 10;
  const plotW = width - plotX - 70;
  const rowH = 22;
  const parts = [];
  let y = 10;
  for (const panel of panels) {
    const top = Math.max(...panel.rows.flatMap((r) => [r.high, r.max ?? 0, r.min ?? 0])) * 1.08;
    const scale = (v) => plotX + (Math.min(v, top) / top) * plotW;
    const step = niceStep(top);
    parts.push(`<text x="10" y="${y + 14}" class="title">${esc(panel.title)}</text>`);
    y += 26;
    const plotTop = y;
    const plotBottom = y + panel.rows.length * rowH;
    for (let t = 0; t <= top; t += step) {
      const x = scale(t);
      parts.push(`<line x1="${x}" y1="${plotTop}" x2="${x}" y2="${plotBottom}" class="${t === 1 ? 'one' : 'grid'}"/>`);
      parts.push(`<text x="${x}" y="${plotBottom + 13}" class="tick">${fmtTick(t)}×</text>`);
    }
    for (const r of panel.rows) {
      const cy = y + rowH / 2;
      const met = r.chartMet ?? r.met;
      const cls = met === undefined ? 'ref' : met ? 'met' : 'missed';
      const figure = r.chartLabel ?? r.figure;
      const label = figure.startsWith('  ') ? `↳ ${figure.trim()}` : figure;
      parts.push(`<text x="${labelW}" y="${cy + 4}" class="label">${esc(label)}</text>`);
      parts.push(`<rect x="${plotX}" y="${y + 4}" width="${Math.max(1, scale(r.median) - plotX)}" height="${rowH - 8}" class="${cls}"/>`);
      if (r.high > r.low) {
        parts.push(`<line x1="${scale(r.low)}" y1="${cy}" x2="${scale(r.high)}" y2="${cy}" class="whisker"/>`);
        for (const v of [r.low, r.high]) parts.push(`<line x1="${scale(v)}" y1="${cy - 4}" x2="${scale(v)}" y2="${cy + 4}" class="whisker"/>`);
      }
      const target = r.chartTarget ?? r.max ?? r.min;
      if (target !== undefined) parts.push(`<line x1="${scale(target)}" y1="${y + 1}" x2="${scale(target)}" y2="${y + rowH - 1}" class="target"/>`);
      const after = Math.max(scale(r.median), scale(r.high), target === undefined ? 0 : scale(target));
      parts.push(`<text x="${after + 5}" y="${cy + 4}" class="value">${r.median.toFixed(2)}×</text>`);
      y += rowH;
    }
    y = plotBottom + 34;
  }
  const legend = [
    ['met', 'target met'],
    ['missed', 'target missed'],
    ['ref', 'for comparison'],
  ];
  let lx = plotX;
  for (const [cls, text] of legend) {
    parts.push(`<rect x="${lx}" y="${y - 10}" width="12" height="10" class="${cls}"/><text x="${lx + 16}" y="${y}" class="legend">${text}</text>`);
    lx += 120;
  }
  parts.push(`<line x1="${lx}" y1="${y - 11}" x2="${lx}" y2="${y + 1}" class="target"/><text x="${lx + 6}" y="${y}" class="legend">target</text>`);
  const height = y + 12;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    '<style>',
    '  .title { font-weight: 600; font-size: 13px; fill: #222 }',
    '  .label { text-anchor: end; fill: #333 }',
    '  .tick { text-anchor: middle; fill: #666; font-size: 11px }',
    '  .legend { text-anchor: start; fill: #444; font-size: 11px }',
    '  .value { fill: #222; font-size: 11px }',
    '  .grid { stroke: #e4e4e4 }',
    '  .one { stroke: #999 }',
    '  .met { fill: #4c9a5b }',
    '  .missed { fill: #d0563b }',
    '  .ref { fill: #a9b4c2 }',
    '  .whisker { stroke: #222; stroke-width: 1.2 }',
    '  .target { stroke: #c00; stroke-width: 2; stroke-dasharray: 3 2 }',
    '</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

function niceStep(top) {
  for (const step of [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100]) if (top / step <= 8) return step;
  return 200;
}

function fmtTick(t) {
  return Number.isInteger(t) ? String(t) : t.toFixed(2).replace(/0$/, '');
}

function esc(text) {
  return String(text).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
