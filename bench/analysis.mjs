/**
 * Why a target is missed and what to do next, by row key (see run.mjs `summarize`), written from
 * profiles (`node --cpu-prof`) of the hot paths and from patches tried on a private copy of
 * dist/ (never on src/), on the benchmark machine (2 vCPUs, Node 20), 2026-12-01. The page
 * prints an entry when its target is missed on the run that writes the page; `whenMet`, if
 * any, when it is met. The figures quoted here are from those experiments, not from the run
 * that printed them: the table above the entry has the run's own.
 */
/**
 * Section 7 (bench/web.mjs), the same for the three frameworks. From the two runs of 2026-12-05
 * (`--only web`, 3 rounds each), and from a replay of the routes' work without HTTP, CPU
 * profiles and a heap snapshot (scripts run once, not kept in bench/), on the benchmark machine
 * while it was shared with other test runs: CPU times are approximate; read the ratios between
 * variants of one process.
 */
const web = {
  why:
    'The routes run at saturation (20 connections, the server\'s core ≈ 85–100% busy), so req/s is the inverse of the ' +
    'server\'s CPU per request, and p99 (20 requests queueing) follows it. With the three tasks that CPU is 1.2–1.45× the ' +
    'plain route\'s (row ↳ server CPU per request; two runs: Fastify 42 → 58 and 54 → 76 µs, Hono 50 → 69 and 48 → 68 µs, ' +
    'Express 158 → 220 and 163 → 198 µs). Part of it is the work itself: the same tasks as bare promises already give ' +
    '0.85–0.96× the req/s (reference row), which leaves the 0.95× target almost no room on the fast frameworks; the library ' +
    'adds ≈ 12–16 µs per request above them on Fastify and Hono (16–44 µs on Express). Where that goes, from a replay of the routes\' work in one process without ' +
    'HTTP (20 concurrent request scopes: child container, resolve, tasks, `disposeScope()` after a `setImmediate`; CPU per ' +
    'request): one synchronous task +4.7 µs; the 2 ms timer task alone +17 µs against +2 µs as a bare promise; the three ' +
    'tasks +27–31 µs against +8–9.5 µs. The replay\'s CPU profile with the timer task is ≈ 60% GC: a task still pending when ' +
    'its scope is disposed keeps the whole scope alive until it ends (the child container and its registry, Background, ' +
    'Scope, InProcessRunner, the TaskRun with its `#due`/`#timedOut`/`#retry` closures, an AsyncResource per task, ' +
    'tsyringe\'s dispose generator: ≈ 1.5–2 KB per request in a heap snapshot), and what lives 2 ms or more at 10–20 k ' +
    'requests/s is promoted out of the young generation. (Faster than ≈ 30–50 k such tasks/s, the application-wide ' +
    'concurrency of 100 also queues them, and the queued scopes grow the heap; the HTTP runs stay below that.)',
  next:
    'Make what a pending task retains small: no per-attempt closures or AsyncResource on a TaskRun unless a retry, a timeout ' +
    'or an observer needs them, and a disposed scope that lets go of its container (registry, interceptors) once only its ' +
    'Background\'s drain is left. Judge each change by the server CPU per request row (steadier than req/s on a shared ' +
    'machine) and a `node --cpu-prof` profile of the server under `/with-background`; measure on 4 or more cores too, where ' +
    'the load generator and the server\'s GC threads do not share the server\'s core.',
};

export const analysis = {
  webexpressP99: web,
  webexpressRps: web,
  webfastifyP99: web,
  webfastifyRps: web,
  webhonoP99: web,
  webhonoRps: web,
  steady: {
    why:
      'Profile of 2e6 no-op tasks in batches of 100: `TaskRun` construction ≈ 10% of the time (about 25 fields per task), ' +
      'the records of finished tasks ≈ 10% (`App.ended()`: a `Date.now()` per task, an array push, and a splice every 1024), ' +
      '`#functionRun` ≈ 9% (of which 3.5% the `Function.prototype.name` getter), `TaskRun.start()` ≈ 7% (a `performance.now()` ' +
      'per start for the duration in logs), GC ≈ 14%. With records off the ratio drops by ≈ 0.4 (row below).',
    next:
      'Measured on a patched copy of dist/ (built from commit 21e5be4, 3 runs): records kept in a ring of `maxCount` entries, stamped from a clock read once per 256 ' +
      'finished tasks (`maxAgeMs` is 60 s, so a stamp a few µs old is exact enough): 1.83× → 1.53×; not reading `fn.name` ' +
      'until a name is needed (log, handle, error): → 1.47×.',
    whenMet:
      'the records of finished tasks are a quarter of the cost (compare the records-off row); measured on a patched copy, a ring ' +
      'buffer stamped by a clock read every 256 ends takes the ratio from ≈ 1.8× to ≈ 1.5×, and reading `fn.name` lazily to ≈ 1.47×.',
  },
  burst: {
    why: 'Not expected: the burst has measured at ≈ 0.45× of p-limit. A miss means something regressed in the queue path (engine/lane.ts `submit`/`#pump`): profile it.',
    next: 'Profile `node --cpu-prof` a burst of 1e5 and compare with the previous page.',
  },
  dispose: {
    why: 'Not expected: disposal has drained 1e5 queued tasks in ≈ 0.65× of p-limit\'s time. A miss means the drain path regressed (engine/scope.ts `settled`, engine/application.ts `ended`, the lane\'s yield every 1024 starts).',
    next: 'Profile a disposal of 1e5 queued tasks and compare with the previous page.',
  },
  tax: {
    why:
      'The library installs no process-wide hook (no AsyncLocalStorage, no promise hooks, no patched globals): the AsyncLocalStorage ' +
      'row shows what such a tax looks like (≈ 2.9×). What remains is the noise between fresh processes (their min–max spans ±7%).',
    next: 'Run more pairs (`--rounds 9`) before looking for a cause.',
  },
  scope: {
    why:
      'Profile (`node --cpu-prof`) of 3e5 scope lives: resolving `Background` without adding a task costs about what the baseline ' +
      'costs (3.7 against 3.4 µs): the gap is the one task and its drain on disposal. Cost centres: **GC**, 29–33% of the time ' +
      'against 24% for the baseline — per scope a `Tracker` with its own counts object, a `TaskRun`, the drain promise and its ' +
      'resolver, and a drain-deadline entry with its closure; then tsyringe\'s own `dispose()` (an async generator and a ' +
      '`Promise.all`) ≈ 18%, the same in the baseline; the scheduler\'s `queueMicrotask` (Node wraps every callback in an ' +
      '`AsyncResource`) 2–3%; `scopeInfo()`\'s walk up the containers ≈ 3%. tsyringe does not double its cost with a second ' +
      'disposable: a scope with two plain disposables costs 3.7 µs against 3.4 µs for one; it is the drain that costs. Until ' +
      'commit abf30a4 a cancelled deadline entry stayed in `Deadlines`\' array until the 10 s timer fired, so every request scope ' +
      'left an object to be promoted to the old generation (`--trace-gc`: live heap after a mark-compact 11.6 MB against 6.3 MB ' +
      'for the baseline); that commit drops them from the tail at once.',
    next:
      'Measured on patched copies of dist/ (built from commit 21e5be4; the bench\'s scope scenario, 6 runs each, ratio ' +
      'medians): unpatched 1.77×; dropping cancelled deadline entries from the tail (now in the code, abf30a4): 1.67× (−0.7 µs ' +
      'per scope); instead, arming the drain deadline on the next turn (one batched `setImmediate`) only for scopes still ' +
      'draining then, and starting the scheduler\'s pump with `Promise.resolve().then()` rather than `queueMicrotask`: 1.65× ' +
      '(−0.8 µs). To reach 1.5× the rest must go too, ≈ 1.5 µs per scope above the baseline, mostly allocation: a Tracker that ' +
      'creates its counts object and drain promise only when asked, and a disposal that returns one shared resolved promise ' +
      'when the scope is idle.',
  },
  offload5: {
    why:
      'The ceiling is the platform\'s: raw Piscina sized to the cores reaches ≈ 1.6× on 5 ms tasks on this machine (row ↳ raw ' +
      'Piscina, maxThreads 2), the main thread\'s dispatch and the result messages sharing the 2 vCPUs with the workers.',
    next: 'Nothing in the library to take: compare with raw Piscina at 2 threads on each run; measure on a machine with more cores.',
  },
  offload50: {
    why: 'As for 5 ms tasks: raw Piscina at 2 threads reaches ≈ 1.9× on this machine, and Background matches it within the noise.',
    next: 'Nothing in the library to take; look at the raw Piscina row of the same run before looking further.',
  },
  offloadFloor: {
    why:
      'It is the first burst of 5 ms tasks: the pool starts with it. The first two no-op worker tasks of a fresh process take ' +
      '125–137 ms through Background against 36–39 ms through raw Piscina: Piscina itself is loaded on the first worker task, ' +
      'and each worker thread, beside its own start-up, imports reflect-metadata (11–15 ms), tsyringe (15–19 ms), the library\'s ' +
      'worker entry (8–17 ms) and the task module, which imports the whole library index (9–15 ms). About 100 ms of a 2-core ' +
      'machine against a 300 ms burst puts that burst at 0.85–0.99× of inline; every later burst is at the target.',
    next:
      'Start the pool\'s `minThreads` before the first burst: when the application\'s first `workerTask()` is defined on the main ' +
      'thread, or through an explicit warm-up call at start-up (the warm rows show what that gives: ≈ 1.75×). Let task modules ' +
      'import `workerTask` from a light entry point (`tsyringe-background/worker`) rather than the full index, so that worker ' +
      'threads do not load the main-thread engine.',
    whenMet:
      'only just: the first burst of 5 ms tasks, which starts the pool, is the slowest (≈ 1.0×; 0.85–0.99× on other runs of the ' +
      'same day). The first two worker tasks of a process take 125–137 ms against 36–39 ms with raw Piscina (Piscina loaded on ' +
      'first use, and each thread importing reflect-metadata, tsyringe, the worker entry and the whole library index through the ' +
      'task module); starting `minThreads` before the first burst would take that out.',
  },
  rtP50: {
    why:
      'On this VM an unpinned round trip is bimodal, ≈ 15–25 µs or ≈ 80–95 µs, depending on whether the thread that waits has ' +
      'gone to sleep on an idle vCPU by the time the answer comes (a VM\'s idle wake-up costs tens of µs); which mode each pool ' +
      'falls into depends on where the kernel puts its threads and on how long the main thread stays busy after posting, so ' +
      'that raw Piscina, whose main thread goes idle soonest, is often the slower one. The pinned row (one core, no cross-CPU ' +
      'wake-ups) is the library\'s own cost: ≈ 1.7× (≈ 20–26 against ≈ 12–15 µs). Profile of the pinned main thread, per round ' +
      'trip (on the build before commit ad5b7e6, which already removed the second controller, the listener and the request copy ' +
      'for tasks that cannot see their signal): an `AbortController` per attempt (`Pool.run` reads `attempt.signal`, which ' +
      'creates the TaskRun\'s controller, and Piscina adds its listener to it) ≈ 3 µs with its GC; the TaskRun, its result ' +
      'promise and the request copied by `{ ...request, attempt }`; the admission pump\'s `queueMicrotask` (Node wraps every ' +
      'callback in an AsyncResource) ≈ 1.5 µs; in the worker, three `await`s before the task runs (`setUp()`, `load()`, the task) ' +
      'and `checkResult()` ≈ 3 µs.',
    next:
      'Measured on a patched copy of the current dist/ (pinned, 4 runs): `Pool.run` hands Piscina a minimal abortable object ' +
      '(Piscina only calls `addEventListener`/`removeEventListener` and reads `aborted`/`reason`) which the TaskRun fires through ' +
      'an abort hook, so that no AbortController exists unless the task asks for its signal: 1.7× → 1.35–1.47× (cancellation and ' +
      'timeouts still terminate the thread). Then: run the task without `await` in the worker when its set-up and module are ' +
      'already loaded, and skip `checkResult()` for primitive results.',
    whenMet:
      'met unpinned, but not on the library\'s merit: on this VM the unpinned p50 mostly measures vCPU wake-ups, and raw ' +
      'Piscina\'s main thread, idle sooner, pays more of them. The pinned row is the library\'s own cost (≈ 1.7×); a patched ' +
      'copy without an AbortController per attempt measured 1.35–1.47× (see the analysis in bench/analysis.mjs, `rtP50.next`).',
  },
  rtP99: {
    why:
      'The p99 of a no-op round trip is set by vCPU wake-ups (a few hundred µs) and by GC pauses on either thread; Background ' +
      'allocates more per round trip than raw Piscina (the p50 entry lists what), so it meets more scavenges. A pool\'s first ' +
      'few hundred ms are slower while its worker isolate optimizes the library\'s code: the bench warms each pool for 600 ms.',
    next: 'The p50 patch (no AbortController per attempt) removes the largest allocation; measure again with it.',
    whenMet: 'the pinned p99 (one core) is ≈ 2–3.5× raw Piscina\'s: with everything on one core, a GC pause of either thread is in every round trip it overlaps, and Background allocates more per round trip (see rtP50 in bench/analysis.mjs).',
  },
  addBlock: {
    why: 'Not expected: `add()` of a worker task has measured ≈ 2 µs (the argument check, the TaskRun, a queue entry). Profile it.',
    next: 'Profile `add()` with a larger argument, and look at clone.ts `checkCloneable`.',
  },
  loop: {
    why:
      'Not the library: raw Piscina under the same load raises the lateness as much (row ↳ raw Piscina), and inline execution is ' +
      '≈ 100–150× worse, so the worker lane does its job. It is where the kernel runs the worker: a worker thread woken by the ' +
      'main thread (a message, then `Atomics.notify`) tends to be started on the main thread\'s own vCPU (wake-affine placement), ' +
      'and the event loop then waits for that vCPU while the task computes. Evidence: with the main thread pinned to CPU 0 and ' +
      'the worker thread to CPU 1 (`taskset -p` on their thread ids), a worker woken every 200 ms for 50 ms of work gave a p99 ' +
      'of 0.54–0.71 ms against 0.9–3.3 ms unpinned (baseline ≈ 0.35 ms), 3 runs each; the same work in another process, on its ' +
      'own timer (row ↳ the same work in another process), has measured from ≈ 1.0× to ≈ 2× on quiet runs, below the worker ' +
      'lane, though on a shared machine that row is the noisiest of all.',
    next:
      'Run the pool\'s threads at a lower priority, so that the event loop preempts a worker that shares its vCPU: Piscina\'s ' +
      '`niceIncrement` (through @napi-rs/nice, an optional dependency of Piscina, installed here). Measured on a patched copy of ' +
      'dist/ (`niceIncrement: 10` in pool.ts\'s Piscina options), 3 runs each of the bench\'s loop scenario: worker lane ' +
      '5.3–7.3× → 2.1–3.1×, raw Piscina unchanged. Make it the pool\'s default on Linux (and an option); the rest (≈ 2× with the ' +
      'threads pinned apart) is what 2 vCPUs leave: measure on 4 or more cores, where the target\'s premise holds.',
  },
};
