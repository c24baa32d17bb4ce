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
    'Done on 2026-12-05 (3f3ff1f): the TaskRun\'s three timer closures are gone, the busy scopes are a linked list, ' +
    '`disposeScope()` is no longer an async function. The runs of that day read req/s 0.76–0.84× and server CPU per request ' +
    '1.21–1.33× (Fastify 38 → 50 µs, against 43 µs for the same tasks as bare promises): the library\'s own part is ≈ 6–7 µs ' +
    'a request on Fastify and Hono, ≈ 20 µs on Express. Note that the bare promises alone read 0.86–0.95× req/s: the target of ' +
    '0.95× leaves the library nothing on this route and machine. Next: ' +
    'make what a pending task retains small: no AsyncResource on a TaskRun unless a retry, a timeout ' +
    'or an observer needs them, and a disposed scope that lets go of its container (registry, interceptors) once only its ' +
    'Background\'s drain is left. Judge each change by the server CPU per request row (steadier than req/s on a shared ' +
    'machine) and a `node --cpu-prof` profile of the server under `/with-background`; measure on 4 or more cores too, where ' +
    'the load generator and the server\'s GC threads do not share the server\'s core. Measured 2026-12-05 evening (Fastify, ' +
    '`--trace-gc`, 5 s of autocannon a route, two runs): the young generation is scavenged 20% more often under ' +
    '`/with-background` than under `/plain` or `/with-promises` (158–161 against 130–131 times) and each scavenge takes ' +
    'longer (1.75 against 1.16–1.21 ms: more survives it), ≈ 2.8 µs of GC a request against 1.2–1.4; the records of ' +
    'finished tasks (1 000 kept) are a third of that excess (records off: 240–248 ms of scavenges against 286–298). The ' +
    'scavenges are also what the p99 waits behind. Since then (8bc8865) `records.maxCount` defaults to 100: with 1 000, ' +
    '219–220 ms of scavenges in 5 s, with 100 174–180 (the bare promises 141, the plain route 129; two alternating runs ' +
    'each), p99 6–7 → 5 ms in those runs; at ≈ 10 000 requests a second 1 000 records were a tenth of a second of history. ' +
    'Not seen in the section\'s req/s or p99 ratios the same evening (one run: 0.79–0.81× req/s, p99 1.51× Fastify, 1.62× ' +
    'Hono), inside this VM\'s spread; the same GC measurement an hour later read twice the req/s on every route (the ' +
    'machine\'s other load changed), which is why single runs of it decide nothing. Later that night (9c1a29e) a request ' +
    'scope draining its tasks stopped keeping its request alive (the adapters kept the request for the log line of a failed ' +
    'disposal: headers, body and the framework\'s request or Hono\'s context lived as long as the slowest task); four runs ' +
    'of the section after it: p99 Fastify 1.34–1.46×, Hono 1.34–1.64×, req/s 0.77–0.87×: no change the spread can show. ' +
    'And a server CPU profile under load (Fastify, `/with-background` against `/with-promises`, per request) spreads the ' +
    'library\'s ≈ 7 µs over some thirty functions of 0.15–0.65 µs each (tsyringe\'s resolve, `disposeScope()`, the run\'s ' +
    'start and end, records, the lane) plus ≈ 1.4 µs of GC: there is no single cost left to cut. The rows "request p99 at ' +
    'half /plain\'s req/s" (section 7\') measure the same routes at a fixed rate the server carries with room to spare ' +
    '(≈ 50–65% busy): p99 0.98× Express, 1.21× Fastify, 1.42× Hono in their first run (bare promises 1.02–1.28×): there too ' +
    'the extra latency follows the extra CPU a request (the server busier, requests wait longer for the event loop), not ' +
    'the saturation alone. For the team: whether the target is judged at saturation or at a stated load. 2026-12-06 ' +
    '(784c688): `disposeScope()` no longer runs tsyringe\'s `dispose()` (its ES5 generator) for a scope with other ' +
    'disposable instances: ≈ 3 µs less CPU per request scope, for `/plain` as much as for `/with-background` (in-process ' +
    'replay of the routes, three alternating pinned runs: /plain 40.4–41.3 → 37.7–38.4 µs, /with-background 46.1–47.6 → ' +
    '43.0–44.4 µs), so the ratios do not move (one run of the section after it: p99 0.96× Express, 1.30× Fastify, 1.36× ' +
    'Hono; req/s 0.74–0.86×). The bare promises read 0.91–1.00× req/s in that run: the target of 0.95× still leaves the ' +
    'library almost nothing on this route.',
};

/**
 * Section 8 (bench/durable.mjs), worker side and end to end: from profiles (CPU, and V8's
 * allocation sampling) of the worker side and of a producer and worker in one process, and
 * paired runs of the built output against the day's start (2026-12-05).
 */
const durable = {
  why:
    'Analysed on the 2-core machine of these pages (issue 14). Since 2026-12-07 the judged rows are paired: the library and ' +
    'raw BullMQ at the same time, each in a process of its own on one CPU and one redis-server, their completions compared ' +
    'over the same window (the method above); raw against raw reads 0.97–1.02 there. One after the other, the same rows ' +
    'swing with the machine: from 2026-12-05 to 12-07, with no change to a job\'s path between some of the runs, the ' +
    'worker side read anywhere from 0.71 to 1.04 and end to end from 0.75 to 1.12, so that no verdict held from one run ' +
    'to the next. Paired, three runs of the section on 2026-12-07 read 8a 0.900 (0.896–0.913), 0.89 (0.88–0.90), and ' +
    '8b 0.88 (0.86–0.88), 0.88 (0.87–0.90); runs of 24 000 jobs instead of 8 000 read the same (0.90, 0.89: no warm-up ' +
    'effect left in the window). The library\'s job (a priority and a UUID id) costs the Node process 0–5% (paired raw ' +
    'with its options / raw 0.94–0.99); one after the other it also costs redis-server ≈ 7% of its CPU a job, which ' +
    'counts when Redis is the slower process. Where the rest goes, from built variants of dist/ measured paired (4 runs ' +
    'each, 2026-12-07): the workers\' processor calling the task\'s function directly, with no local run, reads 0.94–0.95; ' +
    'so the local run of each attempt (its TaskRun in the workers\' application: lifecycle, logs, the attempt\'s context, ' +
    'timeout, cancellation, the lane) is ≈ 6% of raw\'s Node CPU a job, spread over some 25 functions, none above ' +
    '0.5%. The other ≈ 5% has no single place: without the cancellation listener or the library\'s worker settings it ' +
    'reads the same (0.94–0.96); a raw BullMQ worker in a process where the library produced the jobs reads 0.99, and one ' +
    'in a process that also holds an idle worker (raw or the library\'s) 0.96: part of it is what any second worker or ' +
    'connection costs a process, within the method\'s own spread. A paired CPU profile of that variant against raw (both ' +
    'sampled over the same window) gives both the same CPU, spread differently as V8 inlined differently, no hotspot. End to end adds the producer: the ' +
    'JSON check of each add()\'s arguments took ≈ 2.2 µs a job for the bench\'s argument (five objects; ' +
    '`Reflect.ownKeys()`-like questions on arrays are V8 slow paths), ≈ 1.2 µs since 2026-12-07: not visible in 8b.',
  next:
    'What is left is a design call for the team. 0.9× held with margin, for a no-op task, needs the local run gone from ' +
    'a durable attempt (its ceiling, measured paired: 0.94–0.95): a second, lean way to run an attempt when nothing ' +
    'observes the workers\' application, the attempt then invisible to lifecycle events, OpenTelemetry and the live view, ' +
    'and its timeout, cancellation, retryIf, logs and the close\'s put-back written again for it (its floor was tried on ' +
    'a private copy in session 19, when only the sequential rows existed and their spread hid it). Or the ' +
    'target is read as met within the method\'s spread (8a), or at a task body of a millisecond or more, where these ' +
    'µs count for a few percent. Done on 2026-12-05/06, each measured: progress through an internal call option ' +
    '(9b8f73a); the local run off the records (d36db17); `disposeScope()` without tsyringe\'s `dispose()` (3da0c5d); one ' +
    'object per running job, let go when it ends (f718eb6, 45bd2f0); a child scope only for a task with a dependency ' +
    '(edcef10); on the producer, one deadline timer for the jobs being sent (0136e02), a turn\'s jobs handed to BullMQ at ' +
    'its end (1142c42), a lean JSON check (ad716a9, and 2026-12-07), options merged once (2a2582b, ef43c12, 7f55e6e), ' +
    'one HMGET a job for the gap check (08a920c), a job carrying only what its worker needs (6f7f8b6), handles followed ' +
    'only once watched (f4a4a3c, 2b6dc21). Tried and not kept: warm-ups of whole runs, a lean attempt on a copy.',
  whenMet:
    'Paired, 8a sits on its line: 0.900 (0.896–0.913) in one run of 2026-12-07 and 0.89 (0.88–0.90) in the next, the ' +
    'same within the method\'s spread; a run that reads it met is not a margin. 8b read 0.86–0.90 in every paired run.',
};

/** Issue 15, target 3: the worker lane's first burst against raw Piscina sized to the cores (bench/pool.mjs). */
const coldVsRaw = {
  why:
    'Raw Piscina at `maxThreads` = cores starts 2 threads that load only its own entry and a 5-line task module (3–8 ms ' +
    'each); Background\'s first burst also starts 2 threads, each loading the library\'s worker entry and the task module ' +
    '(≈ 38 ms each since the `require` change below, 58–90 ms before), and loads Piscina itself on the first worker task ' +
    '(≈ 13 ms of the main thread; raw Piscina is loaded before the clock starts). Profiles of 2026-12-05: per thread, ' +
    'start → first task 170–255 ms for Background against 80–100 ms for raw (profiled, ≈ 1.4× slower than unprofiled).',
  next:
    'Load Piscina with the application when `pool.prewarm` is on (13 ms); an application can also cache compiled code across ' +
    'threads and restarts with Node 22\'s `NODE_COMPILE_CACHE` (not measured here: the bench runs Node 20).',
  whenMet:
    'since the threads load reflect-metadata and tsyringe with `require` (a39e7d3): before, 0.64× in a `--quick` run. What ' +
    'is left of the gap is the library\'s thread entry (≈ 38 ms of module loading a thread against 3–8 ms) and Piscina loaded on ' +
    'the first worker task.',
};

/** Issue 15, target 3: warm bursts against raw Piscina sized to the cores (bench/pool.mjs). */
const warmVsRaw = {
  why:
    'Warm, both run 2 threads on the 2 vCPUs, so the ratio is the per-task cost against the task: ≈ 40 µs of dispatch and ' +
    'round trip a task is < 1% of 50 ms, and the spread of these rows between runs (± 3–4%) is larger than that. One ' +
    'difference that is not per task: the lane\'s threads run at nice +10 (`pool.niceIncrement`, for the event loop\'s ' +
    'sake, target 6), so on a shared machine any other process\'s work goes before them, where raw Piscina\'s threads compete ' +
    'as equals (a hypothesis, not measured apart).',
  next: 'Compare `pool: { niceIncrement: 0 }` with the default in one `--only pool` run of 5 rounds before changing anything.',
};

export const analysis = {
  durableDrainPaired: durable,
  durableE2ePaired: durable,
  durableDrain: durable,
  durableE2e: durable,
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
  steadyAlone: {
    why:
      'Raw dispatch alone in a process runs in V8\'s fast mode (≈ 0.11 µs a task: its promises die young); `bg.add()` alone ' +
      'runs ≈ 0.29 µs (`--only tax`, 2026-12-05: 2.59 (1.73–2.76)×). Where a task\'s time goes (CPU profile of 5e5 steady ' +
      'tasks): the TaskRun and its AsyncResource (the async context of `add()`, ≈ 35–60 ns alone to create, enter and ' +
      'destroy, measured in isolation) ≈ 12%; the records of finished tasks (`Records.keep`: a `Date.now()` and two array ' +
      'pushes per task) ≈ 7%; `TaskRun.#start` (a `performance.now()` per start for durations) ≈ 7%; `enqueue` and the lane ≈ ' +
      '6%; reading `fn.name` ≈ 1%; GC ≈ 11%.',
    next:
      'Records in a ring of `maxCount` entries stamped from a clock read once per batch of ends (measured on a patched copy on ' +
      '2026-12-01: −0.3× on the interleaved ratio); `fn.name` read only when a name is needed; the start time taken only when ' +
      'something reads a duration (a log, an event, a timeout). The async context cannot be shared between tasks without ' +
      'losing `AsyncLocalStorage.run()` scopes entered between two `add()` calls; on Node 24 (AsyncContextFrame) it is ' +
      'cheaper: measure there.',
  },
  burst: {
    why: 'Not expected: the burst has measured at ≈ 0.45× of p-limit. A miss means something regressed in the queue path (engine/lane.ts `submit`/`#pump`): profile it.',
    next: 'Profile `node --cpu-prof` a burst of 1e5 and compare with the previous page.',
  },
  dispose: {
    why:
      'It had measured ≈ 0.65–0.76× of p-limit\'s time (commit c0dd51a, 2026-12-01). A direct A/B of that commit\'s build ' +
      'against 382545d (1e5 queued no-op tasks, `await scope.dispose()` timed, 10 disposals a process, 3 alternating processes ' +
      'each) reads 87–110 ms against 103–136 ms: ≈ 15–20% slower, the cost of what came since (an AsyncResource per task for ' +
      'its async context, the lifecycle hooks read at each event, the status getter that asks a worker attempt whether it ' +
      'started). The rest of the jump in the ratio is the run: every dispatch figure of 2026-12-05, p-limit\'s and raw\'s too, ' +
      'read about twice the µs of 2026-12-01 on the same machine.',
    next: 'Profile a disposal of 1e5 queued tasks (`node --cpu-prof`) against c0dd51a\'s build, and see the verdict count over the next runs before changing anything.',
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
      'Done on 2026-12-05 (commit 3f3ff1f): the application\'s busy scopes in a linked list (a Set rehashed on most deletes: ' +
      '≈ 7% of a scope\'s life in a profile), the run\'s timer callbacks static (three closures per task, made in advance), a ' +
      'scope\'s label made only when asked for, the drain without a wrapper object, `disposeScope()` without an async function: ' +
      '1.76–1.85× → 1.50–1.51× (two runs). Then (02629e6) one clock read per disposal and a static deadline callback: within ' +
      'the noise (1.50–1.65× in `--only scope` runs). The target is now issue 15\'s 1.3× (issue 6 asked 1.5×). A profile of ' +
      'the bench\'s `bg` scope life alone (1e5 × 7, 2026-12-05): tsyringe\'s own `dispose()` — an ES5 generator through ' +
      'tslib\'s `__awaiter` — is ≈ 35% of it, and the baseline pays it too (this bench calls `scope.dispose()`; ' +
      '`disposeScope()`, which the framework adapters and durable workers use, now skips it for a scope whose only disposable ' +
      'is its Background: 3da0c5d); GC ≈ 22%; `Background`\'s constructor ≈ 4.5% of its own (seven private fields, the Scope, ' +
      'the InProcessRunner, a property added to tsyringe\'s container), `scopeInfo()`\'s walk up three containers ≈ 1%. ' +
      'Left above the baseline ≈ 1.6 µs; 1.3× needs ≈ 0.6 µs of it gone: a Scope without its own counts object (counted on ' +
      'the Scope\'s fields), the InProcessRunner folded into Background, the scope\'s options and application remembered ' +
      'per parent container rather than found by a walk each time. Earlier experiments, for the record: ' +
      'measured on patched copies of dist/ (built from commit 21e5be4; the bench\'s scope scenario, 6 runs each, ratio ' +
      'medians): unpatched 1.77×; dropping cancelled deadline entries from the tail (now in the code, abf30a4): 1.67×; ' +
      'instead, arming the drain deadline on the next turn (one batched `setImmediate`) only for scopes still draining then, ' +
      'and starting the scheduler\'s pump with `Promise.resolve().then()` rather than `queueMicrotask`: 1.65×.',
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
      'It is the first burst of 5 ms tasks: the pool starts with it. Profiles of the first burst (main thread and each worker ' +
      'thread, `--cpu-prof`, 2026-12-05; 5 fresh processes per contender): only 2 threads start during the burst (the ' +
      'admission window holds the pool at the cores; Piscina\'s growth to 40 threads is what hurts raw Piscina at 40), and ' +
      'each spends 58–90 ms (median 86) loading modules against 3–8 ms for a raw Piscina thread. Almost all of it was Node\'s ' +
      'loader, not the modules\' code: Piscina loads the thread entry with `require()`, which on Node 20 loads an ES module ' +
      'graph synchronously, and every CommonJS package that graph imports (reflect-metadata, tsyringe) is first scanned by the ' +
      'cjs-module-lexer (the slow JS build, cold in each new thread) and wrapped: reflect-metadata 15–24 ms through `import` ' +
      'against 4.5–5.5 ms through `require`, tsyringe 16–30 ms. Before the fix the first burst read 0.79–0.90× of inline.',
    next:
      'Done (commits 2d47c98 and a39e7d3, 2026-12-05): task modules import from `tsyringe-background/tasks`, ' +
      'and the thread entry and that entry load reflect-metadata and tsyringe with `require` (model/cjs.ts); a thread loads ' +
      'tsyringe only for a task with a dependency or a setup module. Module loading per thread 86 → 38 ms (medians of 5, on a ' +
      'patched copy); the first burst 0.79 → 1.09× of inline (5 paired rounds), and 1.07–1.08× in `npm run bench`. Left, if ' +
      'it slips again: Piscina itself is loaded on the first worker task (≈ 13 ms of the main thread), and `pool.prewarm` ' +
      'starts the threads with the application.',
    whenMet:
      'since the threads load reflect-metadata and tsyringe with `require` rather than `import` (Node 20\'s ESM loader ' +
      'scanned and wrapped each CommonJS file in every fresh thread: 15–30 ms each) and load tsyringe only for a task that ' +
      'has a dependency: module loading per thread 86 → 38 ms, the first burst 0.79–0.90× → 1.05–1.09× of inline. It stays ' +
      'the slowest burst: the pool starts with it.',
  },
  offload5ColdRaw2: coldVsRaw,
  offload50ColdRaw2: coldVsRaw,
  offload5WarmRaw2: warmVsRaw,
  offload50WarmRaw2: warmVsRaw,
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
      'Done since (commit ae8993f): `Pool.run` hands Piscina a minimal abortable object which the TaskRun fires through an abort ' +
      'listener, so that no AbortController exists unless the task asks for its signal. Pinned, the full runs of 2026-12-05 read ' +
      '1.55–1.66× (≈ 37–43 against ≈ 24 µs), short of the 1.35–1.47× the patched copy gave on 2026-12-01: a direct A/B on one ' +
      'core (3 × 5 000 round trips) showed no difference from this change alone, so the rest of the gap is elsewhere. Next: run ' +
      'the task without `await` in the worker when its set-up and module are already loaded, skip `checkResult()` for primitive ' +
      'results, and count the promise hops on the main thread (TaskRun → Pool.run → #run → Piscina, and back), each a microtask.',
    whenMet:
      'met unpinned (1.13–1.15× in the runs of 2026-12-05 since commit 75a7d88, which runs an attempt in `Pool.run` itself: one ' +
      'async function, one promise and one microtask fewer), though on this VM the unpinned p50 mostly measures vCPU ' +
      'wake-ups; the pinned row below is the library\'s own cost.',
  },
  rtPinnedP50: {
    why:
      'Pinned to one core, a round trip costs what both threads spend: ≈ 32 µs against ≈ 23 µs for raw Piscina (2026-12-05). ' +
      'Main-thread profile (`--cpu-prof`, pinned, 30 000 sequential round trips of a no-op task, before 75a7d88), per round ' +
      'trip: GC 9.3 µs against 5.6 µs for raw Piscina; `Pool.#run` 3.3 µs of its own (its async frame, the request spread ' +
      'from the call, the abort closure and the `Kill` object); then Piscina\'s own `postTask`/`runTask`, the same for both. ' +
      'On the worker thread, three `await`s before the task ran (set-up, module, task). Since: the attempt runs in ' +
      '`Pool.run` (75a7d88: 36 → 32 µs); the thread runs a ready task with no `await` before it (74d1530: no change measured).',
    next:
      'Allocation per round trip, which the GC row says is most of what is left: the invocation `Pool.call()` makes per task ' +
      '(an object and two closures: a small class would do), the TaskRun\'s result promise and its AsyncResource, the request ' +
      'object; then `--trace-gc` on both threads during the pinned run.',
  },
  rtP99: {
    why:
      'The p99 of a no-op round trip is set by vCPU wake-ups (a few hundred µs) and by GC pauses on either thread; Background ' +
      'allocates more per round trip than raw Piscina (the p50 entry lists what), so it meets more scavenges. A pool\'s first ' +
      'few hundred ms are slower while its worker isolate optimizes the library\'s code: the bench warms each pool for 600 ms.',
    next: 'The AbortController per attempt is gone (ae8993f) and the p99 did not move: look at GC pauses of either thread under `--trace-gc` during the pinned run.',
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
      'Done since (commit 1e51c3d): the pool\'s threads run at a lower priority (`pool.niceIncrement`, 10 by default on Linux, ' +
      'through Piscina and @napi-rs/nice), so that the event loop preempts a worker that shares its vCPU: the full runs of ' +
      '2026-12-05 read 1.73× (1.40–2.66×), against 4.97× on the page before, and raw Piscina (no nice) 2.8×. What is left is ' +
      'about what the same work in another process costs (row ↳ another process, 1.3×) plus the wake-ups of 2 vCPUs: measure ' +
      'on 4 or more cores, where the target\'s premise holds. The two full runs of 2026-12-05 after noon read 2.33× ' +
      '(1.55–2.99×) and 1.79× (1.32–2.60×), the lane at ≈ 1.0 ms p99 in both, raw Piscina at 0.9 and 1.5 ms, another ' +
      'process at 0.8 ms, over a baseline of 0.45–0.53 ms: the ratio swings with the baseline\'s own p99. Issue 15 asks ' +
      '≤ 2× here (this row keeps issue 6\'s 1.5×): met in one of those two runs.',
  },
};
