/**
 * The measurements of bench/run.mjs, each run in a fresh child process:
 *   node bench/scenarios.mjs --child '{"scenario":"dispatch",...}'
 * prints one JSON line. Each scenario that compares against a baseline runs the variants in the
 * same process, interleaved in blocks whose order rotates, and returns every block's time; the
 * parent takes the medians and the ratios. Runs against the built output (dist/).
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { childMain, cores, quantile, rotate } from './lib.mjs';
import { spin } from './work.mjs';

const rawWorker = new URL('./raw-worker.mjs', import.meta.url).href;


// --- Set-up ----------------------------------------------------------------------------------------

/** The contenders' own code: a fresh instance of contenders.mjs per contender (see there why). */
const own = (variant) => import(`./contenders.mjs?${variant}`);

/**
 * The library as an application sets it up: the global container is the root (its defaults:
 * concurrency 100, records of the last 1000 finished tasks); `scope()` makes a request scope.
 * With `records: false`, a second application root (a child registered `{ root: true }`) whose
 * records are off (`records: { maxCount: 0 }`), to show what the records cost.
 */
async function library() {
  const lib = await import('../dist/index.js');
  const { container } = await import('tsyringe');
  const offRoot = container.createChildContainer();
  offRoot.register(lib.BackgroundOptions, { useValue: { root: true, records: { maxCount: 0 } } });
  // An application whose tasks are observed (lifecycle events, issue 13): one no-op observer.
  const observedRoot = container.createChildContainer();
  observedRoot.register(lib.BackgroundOptions, { useValue: { root: true } });
  let events = 0;
  lib.observeTasks(() => void events++, { container: observedRoot });
  return {
    lib,
    container,
    /** A new request scope of the application with the shipped defaults, or with records off. */
    scope: (records = true) => (records ? container : offRoot).createChildContainer(),
    /** A new request scope of the observed application. */
    observedScope: () => observedRoot.createChildContainer(),
  };
}

/** Times `block(variant)` for each variant, `reps` times, interleaved in rotating order; returns ms per block. */
async function interleave(variants, reps, warm, block) {
  for (let w = 0; w < warm; w++) for (const v of variants) await block(v);
  const times = Object.fromEntries(variants.map((v) => [v, []]));
  for (let r = 0; r < reps; r++) {
    for (const v of rotate(variants, r)) {
      const t0 = performance.now();
      await block(v);
      times[v].push(performance.now() - t0);
    }
  }
  return times;
}

const isBackground = (variant) => variant === 'bg' || variant === 'bgOff' || variant === 'bgObserved';

// --- 1. Async dispatch ----------------------------------------------------------------------------

/**
 * kind `steady`: batches of 100 no-op async tasks, each batch drained before the next (always
 * under the limit of 100). `burst`: `count` tasks added at once (all but 100 queue), then
 * drained. `dispose`: `count` tasks added at once to a fresh scope; only the drain is timed, by
 * disposal of the scope for Background, by waiting for the Set for p-limit.
 * Variants: bg (defaults), bgOff (records off), bgObserved (defaults, one no-op observer of the
 * lifecycle events), raw, plimit (p-limit(100) + the same Set).
 * Returns ms per block for each variant (`perBlock` tasks each).
 */
async function dispatch({ kind, variants, reps, warm, batches = 0, count = 0 }) {
  const app = await library();
  const { default: pLimit } = await import('p-limit');
  const code = {};
  for (const v of variants) code[v] = await own(v);
  /** A new adder: a request scope's Background, or the baseline's Set (through p-limit for plimit). */
  const fresh = (v) => {
    if (isBackground(v)) {
      const scope = v === 'bgObserved' ? app.observedScope() : app.scope(v !== 'bgOff');
      return { scope, adder: scope.resolve(app.lib.Background) };
    }
    return { adder: code[v].tracked(v === 'plimit' ? pLimit(100) : undefined) };
  };

  if (kind === 'steady' || kind === 'burst') {
    const adders = Object.fromEntries(variants.map((v) => [v, fresh(v).adder]));
    const times = await interleave(variants, reps, warm, (v) =>
      kind === 'steady' ? code[v].steady(adders[v], batches) : code[v].burst(adders[v], count),
    );
    return { times, perBlock: kind === 'steady' ? batches * 100 : count };
  }
  // dispose: only the drain is timed, so time it here rather than through interleave().
  const times = Object.fromEntries(variants.map((v) => [v, []]));
  const adds = Object.fromEntries(variants.map((v) => [v, []]));
  for (let r = -warm; r < reps; r++) {
    for (const v of rotate(variants, Math.max(0, r))) {
      const { scope, adder } = fresh(v);
      const t0 = performance.now();
      code[v].addMany(adder, count);
      const t1 = performance.now();
      await (scope === undefined ? adder.drain() : scope.dispose());
      const t2 = performance.now();
      if (r >= 0) {
        adds[v].push(t1 - t0);
        times[v].push(t2 - t1);
      }
    }
  }
  return { times, adds, perBlock: count };
}

// --- 2. Memory ------------------------------------------------------------------------------------

/**
 * Heap per pending task: `count` async tasks that wait on one gate, added at once; heap used
 * (after full GCs) with them pending, less before (after a warm-up); then the gate opens,
 * everything drains, and the heap left over is measured too, against the heap before the
 * warm-up: for Background, the records of the last finished tasks (bounded by `records`).
 * Variants: bg (defaults), bgOff (records off), raw, plimit. One per process; needs --expose-gc.
 */
async function memory({ variant, count }) {
  const code = await own(variant);
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  const task = code.waiter(gate);
  let adder;
  if (isBackground(variant)) {
    const app = await library();
    adder = app.scope(variant === 'bg').resolve(app.lib.Background);
  } else {
    const { default: pLimit } = await import('p-limit');
    adder = code.tracked(variant === 'plimit' ? pLimit(100) : undefined);
  }
  const base = await heap();
  // A warm-up, not counted: leaves Background's records at their bound, as in a running app.
  await code.burst(adder, 2000);
  const before = await heap();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) adder.add(task);
  const addMs = performance.now() - t0;
  await sleep(0); // the first tasks start and reach their await
  const pending = await heap();
  open();
  const t1 = performance.now();
  await adder.drain();
  const drainMs = performance.now() - t1;
  const after = await heap();
  return {
    perTaskBytes: (pending - before) / count,
    leftBytes: after - base,
    baseMb: base / 2 ** 20,
    pendingMb: pending / 2 ** 20,
    addMs,
    drainMs,
  };
}

async function heap() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await sleep(10);
  }
  return process.memoryUsage().heapUsed;
}

// --- 3. No global tax -----------------------------------------------------------------------------

/**
 * Raw promise dispatch (the steady-state loop of `dispatch`, raw contender) in a process that
 * has (`after`) or has not (`before`) imported the library, constructed a Background and run a
 * task through it; `als`: one with an AsyncLocalStorage entered, to show what a tax looks like;
 * `bgAlone`: Background's own steady dispatch, alone in its process. Returns ms per block.
 */
async function tax({ variant, reps, warm, batches }) {
  if (variant === 'bgAlone') {
    // Background's steady dispatch alone in its process, as `before` runs raw's: raw's fast mode
    // has a counterpart (issue 15, target 2).
    const app = await library();
    const code = await own('bg');
    const bg = app.scope(true).resolve(app.lib.Background);
    const times = await interleave(['bg'], reps, warm, () => code.steady(bg, batches));
    return { times: times.bg, perBlock: batches * 100 };
  }
  if (variant === 'after') {
    const app = await library();
    const bg = app.scope(true).resolve(app.lib.Background);
    await bg.add(async () => {}).result();
  } else if (variant === 'als') {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    new AsyncLocalStorage().enterWith({ request: 1 });
  }
  const code = await own('raw');
  const raw = code.tracked();
  const times = await interleave(['raw'], reps, warm, () => code.steady(raw, batches));
  return { times: times.raw, perBlock: batches * 100 };
}

/**
 * One request scope's life, `per` times per block: create a child container, resolve, dispose.
 *   plain:   resolve a ContainerScoped class with an async dispose() (the baseline)
 *   bg:      resolve Background, add one no-op task
 *   bgOff:   the same, in an application with records off
 *   plainBg: both (a scope that already has a disposable, as a request with a database session)
 * each disposed with tsyringe's `await scope.dispose()`; `plainBgOrdered` disposes plainBg's scope
 * with `disposeScope(scope)` (Background first, then the rest).
 */
async function scopeLife({ variants, reps, warm, per }) {
  await import('reflect-metadata');
  const { Lifecycle, scoped } = await import('tsyringe');
  class Session {
    async dispose() {}
  }
  scoped(Lifecycle.ContainerScoped)(Session);
  const app = await library(); // after Session's registration, so that the application roots copy it
  const { Background, disposeScope } = app.lib;
  const noop = {};
  for (const v of variants) noop[v] = (await own(v)).noop;
  const once = {
    plain: async () => {
      const scope = app.scope();
      scope.resolve(Session);
      await scope.dispose();
    },
    bg: async () => {
      const scope = app.scope();
      scope.resolve(Background).add(noop.bg);
      await scope.dispose();
    },
    bgOff: async () => {
      const scope = app.scope(false);
      scope.resolve(Background).add(noop.bgOff);
      await scope.dispose();
    },
    plainBg: async () => {
      const scope = app.scope();
      scope.resolve(Session);
      scope.resolve(Background).add(noop.plainBg);
      await scope.dispose();
    },
    plainBgOrdered: async () => {
      const scope = app.scope();
      scope.resolve(Session);
      scope.resolve(Background).add(noop.plainBgOrdered);
      await disposeScope(scope);
    },
  };
  const times = await interleave(variants, reps, warm, async (v) => {
    const life = once[v];
    for (let i = 0; i < per; i++) await life();
  });
  return { times, perBlock: per };
}

// --- 5. The caller's time in add() of a worker task -------------------------------------------------

/**
 * How long `add()` blocks its caller: each call timed on its own, in batches of `batch`, the
 * batch's results awaited before the next. Interleaved: a worker task with a small argument
 * through Background (default pool), raw Piscina's `run()` (its synchronous part), and
 * Background's `add()` of a no-op async task. Returns µs per call.
 */
async function addBlock({ batches, batch, warm }) {
  const app = await library();
  const { echo } = await import('./tasks.mjs');
  const { Piscina } = await import('piscina');
  const bg = app.scope().resolve(app.lib.Background);
  // Sized to the cores, so that its run() never starts a thread (at 40 it starts one whenever
  // its queue is not empty, and that is what its run() would then cost).
  const pool = new Piscina({ filename: rawWorker, maxThreads: cores, minThreads: cores, idleTimeout: 10_000 });
  const arg = { id: 42, email: 'a@b.c' };
  const calls = {
    worker: () => bg.add(echo, arg).result(),
    piscina: () => pool.run({ kind: 'noop', arg }),
    async: () => bg.add(async () => {}).result(),
  };
  const variants = Object.keys(calls);
  const times = Object.fromEntries(variants.map((v) => [v, []]));
  const pending = new Array(batch);
  for (let b = -warm; b < batches; b++) {
    for (const v of rotate(variants, Math.max(0, b))) {
      const call = calls[v];
      for (let i = 0; i < batch; i++) {
        const t0 = performance.now();
        pending[i] = call();
        const t = performance.now() - t0;
        if (b >= 0) times[v].push(t * 1000);
      }
      await Promise.all(pending);
    }
  }
  await pool.destroy();
  await app.lib.shutdown({ timeoutMs: 10_000 });
  const out = {};
  for (const v of variants) {
    const sorted = times[v].sort((a, b) => a - b);
    out[v] = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), mean: sorted.reduce((a, c) => a + c, 0) / sorted.length };
  }
  return out;
}

/**
 * The round trip of a no-op worker task, one after another: `await bg.add(noop).result()`
 * against raw Piscina's `await pool.run()` of a module doing the same, with the same options
 * (maxThreads 40, minThreads = cores, idleTimeout 10 s: Background's defaults), both pools in
 * this process, each warmed for `warmMs` (a new worker isolate takes a few hundred ms of calls
 * before its code is optimized), then timed in alternating blocks of `block` round trips.
 * Returns the p50, p99 and mean of every timed round trip, in µs.
 */
async function roundTrip({ blocks, block, warmMs }) {
  const app = await library();
  const { noop } = await import('./tasks.mjs');
  const { Piscina } = await import('piscina');
  const bg = app.scope().resolve(app.lib.Background);
  const pool = new Piscina({ filename: rawWorker, maxThreads: 40, minThreads: Math.min(cores, 40), idleTimeout: 10_000 });
  const calls = {
    bg: () => bg.add(noop).result(),
    raw: () => pool.run({ kind: 'noop' }),
  };
  for (const call of Object.values(calls)) {
    for (const until = performance.now() + warmMs; performance.now() < until; ) await call();
  }
  const times = { bg: [], raw: [] };
  for (let b = 0; b < blocks; b++) {
    for (const v of rotate(['bg', 'raw'], b)) {
      const call = calls[v];
      for (let i = 0; i < block; i++) {
        const t0 = performance.now();
        await call();
        times[v].push((performance.now() - t0) * 1000);
      }
    }
  }
  await pool.destroy();
  await app.lib.shutdown({ timeoutMs: 10_000 });
  const out = {};
  for (const v of ['bg', 'raw']) {
    const sorted = times[v].sort((a, b) => a - b);
    out[v] = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), mean: sorted.reduce((a, c) => a + c, 0) / sorted.length };
  }
  return out;
}

// --- 6. Event-loop protection -------------------------------------------------------------------

/**
 * A request-like timer loop (setTimeout every `tickMs`; lateness = when it ran − when it was
 * due), measured in segments of `segmentMs` (the first `skipMs` of each not counted), the
 * phases interleaved in the given order, `cycles` times:
 *   none:    nothing else (the baseline)
 *   worker:  a CPU-bound task of 50 ms (`iterations`) every `everyMs`, through Background's worker lane
 *   piscina: the same through raw Piscina sized to the cores (what the platform itself allows)
 *   process: the same work in another process (not this one at all): what such work anywhere on
 *            the machine does to this process's timers
 *   inline:  the same work on the main thread
 * Returns each phase's lateness p50, p99 and max over its segments, in ms.
 */
async function loop({ phases, cycles, segmentMs, tickMs, everyMs, iterations, skipMs }) {
  const app = await library();
  const { busy } = await import('./tasks.mjs');
  const { Piscina } = await import('piscina');
  const bg = app.scope().resolve(app.lib.Background);
  const raw = new Piscina({ filename: rawWorker, maxThreads: cores, minThreads: cores, idleTimeout: 10_000 });
  // Both pools are warm, as in a running application: threads started, the task module loaded.
  await Promise.all([bg.add(busy, 1000).result(), bg.add(busy, 1000).result()]);
  await Promise.all([raw.run({ kind: 'busy', iterations: 1000 }), raw.run({ kind: 'busy', iterations: 1000 })]);
  let sink = spin(iterations); // and the inline spin is optimized
  // A neighbour process doing the same work on the machine, switched on for the `process` phase.
  const neighbour = spawn(process.execPath, ['--input-type=module', '-e', neighbourCode(iterations, everyMs)], { stdio: ['pipe', 'ignore', 'inherit'] });
  await sleep(300);
  const late = Object.fromEntries(phases.map((p) => [p, []]));
  const tasks = Object.fromEntries(phases.map((p) => [p, 0]));
  for (let c = 0; c < cycles; c++) {
    for (const phase of phases) {
      const handles = [];
      if (phase === 'process') neighbour.stdin.write('on\n');
      const load =
        phase === 'none' || phase === 'process'
          ? undefined
          : setInterval(() => {
              if (phase === 'worker') handles.push(bg.add(busy, iterations).result());
              else if (phase === 'piscina') handles.push(raw.run({ kind: 'busy', iterations }));
              else sink ^= spin(iterations);
            }, everyMs);
      const samples = late[phase];
      const start = performance.now();
      await new Promise((resolve) => {
        let due = performance.now() + tickMs;
        const tick = () => {
          const now = performance.now();
          if (now - start > skipMs) samples.push(now - due);
          if (now - start >= segmentMs) {
            resolve();
            return;
          }
          due = now + tickMs;
          setTimeout(tick, tickMs);
        };
        setTimeout(tick, tickMs);
      });
      clearInterval(load);
      if (phase === 'process') neighbour.stdin.write('off\n');
      tasks[phase] += handles.length;
      await Promise.all(handles);
    }
  }
  neighbour.kill();
  await raw.destroy();
  await app.lib.shutdown({ timeoutMs: 10_000 });
  const out = {};
  for (const phase of phases) {
    const sorted = late[phase].sort((a, b) => a - b);
    out[phase] = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1), samples: sorted.length, tasks: tasks[phase] };
  }
  return { phases: out, sink };
}

/** A process that spins `iterations` every `everyMs` while its stdin last said "on". */
function neighbourCode(iterations, everyMs) {
  return `
    const { spin } = await import(${JSON.stringify(new URL('./work.mjs', import.meta.url).href)});
    let on = false;
    process.stdin.on('data', (data) => { on = String(data).trim().endsWith('on'); });
    process.stdin.on('end', () => process.exit(0));
    setInterval(() => { if (on) spin(${iterations}); }, ${everyMs});
  `;
}

// Last: the declarations above must be initialized before a scenario runs.
await childMain(async (spec) => {
  switch (spec.scenario) {
    case 'dispatch':
      return dispatch(spec);
    case 'memory':
      return memory(spec);
    case 'tax':
      return tax(spec);
    case 'scope':
      return scopeLife(spec);
    case 'addblock':
      return addBlock(spec);
    case 'roundtrip':
      return roundTrip(spec);
    case 'loop':
      return loop(spec);
    default:
      throw new Error(`unknown scenario ${spec.scenario}`);
  }
});
