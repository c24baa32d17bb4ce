/**
 * OpenTelemetry (issue 13, item 4), with the SDK's in-memory span exporter and a metric reader
 * the test collects from: a span per attempt, a child of the span active at add(), the task's own
 * spans its children, statuses by outcome; metrics of outcomes, durations, waits, and the queued
 * and running gauges; nothing once stopped. Applications sharing a meter provider are told apart
 * (`background.application`); an attempt is measured once, also when the task ends during its
 * backoff; a worker task cancelled before it reached its thread is traced as documented.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { context, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { attributes, instrumentTasks } from '../../src/adapters/opentelemetry.js';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DependencyContainer } from 'tsyringe';
import { Background, defineTask, observeTasks, shutdown, TaskCancelledError, TaskContext, wrapAttempts, type BackgroundOptions, type TaskHandle, type TaskObservation } from '../../src/index.js';
import { modelOk } from '../fixtures/worker-tasks.js';
import { captureLogger, deferred, freshApp, nextTurn, watchProcessErrors } from '../helpers.js';

/** Collects on demand. */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  contextManager.disable();
  context.disable();
});

watchProcessErrors();
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An instrumented application; `before` is called with its root before `instrumentTasks()` (to add wrappers outside the adapter's). */
function instrumented(options: BackgroundOptions = {}, before?: (root: DependencyContainer) => void) {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const logger = captureLogger();
  const root = freshApp({ logger, ...options });
  before?.(root);
  const stop: TaskObservation = instrumentTasks({ container: root, tracerProvider, meterProvider });
  cleanups.push(() => shutdown({ container: root }), stop, () => meterProvider.shutdown());
  const tracer = tracerProvider.getTracer('test');
  const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
  const named = (name: string): ReadableSpan[] => spans().filter((span) => span.name === name);
  const collect = async () => (await reader.collect()).resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
  const points = async (metric: string) => (await collect()).find((m) => m.descriptor.name === metric)?.dataPoints ?? [];
  return { root, logger, bg: root.createChildContainer().resolve(Background), tracer, spans, named, points, stop };
}

const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

describe('instrumentTasks()', () => {
  it("makes a span per attempt, a child of the span active at add(), with the task's own spans inside it", async () => {
    const { bg, tracer, named } = instrumented();
    let request: Span | undefined;
    const handle = tracer.startActiveSpan('GET /signup', (span) => {
      request = span;
      const h = bg.add(async function sendWelcome() {
        tracer.startActiveSpan('smtp send', (inner) => inner.end());
        return 'sent';
      });
      span.end();
      return h;
    });
    await handle.result();
    const [task] = named('sendWelcome');
    const [inner] = named('smtp send');
    expect(task).toBeDefined();
    expect(task!.spanContext().traceId).toBe(request!.spanContext().traceId);
    expect(parentOf(task!)).toBe(request!.spanContext().spanId);
    expect(parentOf(inner!)).toBe(task!.spanContext().spanId);
    expect(task!.attributes).toMatchObject({
      [attributes.name]: 'sendWelcome',
      [attributes.id]: handle.id,
      [attributes.attempt]: 1,
      [attributes.outcome]: 'succeeded',
      [attributes.scope]: expect.stringMatching(/^scope #\d+$/) as unknown,
    });
    expect(task!.status.code).toBe(1); // OK
  });

  it('marks failed attempts as errors with the exception, one span per attempt, and the outcome of each', async () => {
    const { bg, named } = instrumented();
    let calls = 0;
    const handle = bg.with({ retries: 2, backoff: { baseMs: 1, jitter: 0 } }).add(async function flaky() {
      if (++calls < 3) throw new Error(`attempt ${calls} failed`);
    });
    await handle.result();
    const attempts = named('flaky').sort((a, b) => Number(a.attributes[attributes.attempt]) - Number(b.attributes[attributes.attempt]));
    expect(attempts.map((span) => [span.attributes[attributes.attempt], span.attributes[attributes.outcome], span.status.code])).toEqual([
      [1, 'retried', 2],
      [2, 'retried', 2],
      [3, 'succeeded', 1],
    ]);
    expect(attempts[0]!.events.map((event) => event.name)).toEqual(['exception']);
    expect(attempts[0]!.status.message).toBe('attempt 1 failed');
    const timedOut = bg.with({ timeoutMs: 1 }).add(async function hangs() {
      await new Promise(() => undefined);
    });
    await timedOut.result().catch(() => undefined);
    expect(named('hangs')[0]!.attributes[attributes.outcome]).toBe('timedOut');
    expect(named('hangs')[0]!.status.code).toBe(2);
  });

  it('ends the span of a cancelled attempt without an error status, and makes none for a task that never ran', async () => {
    const { bg, named } = instrumented();
    const gate = deferred();
    const run = defineTask({ name: 'cancellable', inject: [TaskContext] }, async (ctx) => {
      await Promise.race([gate.promise, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
    });
    const running = bg.add(run);
    await new Promise((resolve) => setImmediate(resolve));
    running.cancel();
    const never = bg.with({ delayMs: 60_000 }).add(async function never() {});
    never.cancel();
    gate.resolve();
    expect(named('cancellable').map((span) => [span.attributes[attributes.outcome], span.status.code])).toEqual([['cancelled', 0]]);
    expect(named('never')).toEqual([]);
  });

  it('makes no span, and leaves none open, for a task that an attempt wrapper outside the adapter cancels before calling attempt() (docs/observability.md)', async () => {
    const added: { handle?: TaskHandle } = {};
    const { bg, named, points, stop } = instrumented({}, (root) => {
      wrapAttempts((_event, attempt) => {
        added.handle?.cancel('policy: not now');
        return attempt();
      }, { container: root });
    });
    let ran = false;
    const handle = (added.handle = bg.add(async function rateLimited() {
      ran = true;
    }));
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    expect(ran).toBe(false);
    expect(named('rateLimited')).toEqual([]);
    stop(); // ends (and exports) what the adapter still holds open
    expect(named('rateLimited')).toEqual([]);
    expect((await points('background.tasks')).map((point) => [point.attributes[attributes.outcome], point.value])).toEqual([['cancelled', 1]]);
  });

  it.each(['outside', 'inside'] as const)("keeps the task's span, the parent of its own spans, when a faulty attempt wrapper %s the adapter's is skipped", async (where) => {
    const store = new AsyncLocalStorage<string>();
    const faulty = (): unknown => {
      throw new Error('wrapper bug');
    };
    const { root, logger, bg, tracer, named } = instrumented({}, (root) => {
      if (where === 'outside') cleanups.push(wrapAttempts(faulty, { container: root }));
    });
    cleanups.push(wrapAttempts((event, attempt) => store.run(event.id, attempt), { container: root }));
    if (where === 'inside') cleanups.push(wrapAttempts(faulty, { container: root }));
    let seen: string | undefined;
    const handle = bg.add(async function traced() {
      seen = store.getStore();
      tracer.startActiveSpan('own work', (span) => span.end());
    });
    await handle.result();
    const [task] = named('traced');
    expect(task?.attributes[attributes.outcome]).toBe('succeeded');
    expect(named('own work').map(parentOf)).toEqual([task?.spanContext().spanId]);
    expect(seen).toBe(handle.id);
    expect(logger.at('error').map((entry) => entry.message)).toEqual(['an attempt wrapper threw before running task "traced"; it runs without the wrapper']);
  });

  it('counts outcomes and records durations and waits by task name, and gauges what is queued and running', async () => {
    const { root, bg, points } = instrumented();
    const gate = deferred();
    const app = root.resolve(Background);
    const blocking = Array.from({ length: 3 }, () => bg.add(async function held() {
      await gate.promise;
    }));
    await bg.add(async function quick() {}).result();
    await bg.add(async function broken() {
      throw new Error('no');
    }).result().catch(() => undefined);
    const value = async (metric: string) => (await points(metric))[0]?.value;
    expect(await value('background.tasks.running')).toBe(3);
    expect(await value('background.tasks.queued')).toBe(0);
    gate.resolve();
    await Promise.all(blocking.map((handle) => handle.result()));
    await app.drain();
    const outcomes = (await points('background.tasks')).map((point) => [point.attributes[attributes.name], point.attributes[attributes.outcome], point.value]);
    expect(outcomes).toEqual(expect.arrayContaining([
      ['held', 'succeeded', 3],
      ['quick', 'succeeded', 1],
      ['broken', 'failed', 1],
    ]));
    const durations = (await points('background.task.duration')) as DataPoint<Histogram>[];
    expect(durations.find((point) => point.attributes[attributes.name] === 'held')?.value.count).toBe(3);
    const waits = (await points('background.task.wait')) as DataPoint<Histogram>[];
    expect(waits.reduce((sum, point) => sum + point.value.count, 0)).toBe(5);
    expect(await value('background.tasks.running')).toBe(0);
  });

  it('traces and counts nothing once stopped; stopping twice is harmless', async () => {
    const { bg, named, points, stop } = instrumented();
    await bg.add(async function before() {}).result();
    stop();
    stop();
    await bg.add(async function after() {}).result();
    expect(named('before')).toHaveLength(1);
    expect(named('after')).toEqual([]);
    const counted = (await points('background.tasks')).map((point) => point.attributes[attributes.name]);
    expect(counted).toEqual(['before']);
  });

  it('can trace without metrics and measure without traces', async () => {
    const exporter = new InMemorySpanExporter();
    const root = freshApp({ logger: captureLogger() });
    const stop = instrumentTasks({ container: root, tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }), meterProvider: false });
    cleanups.push(() => shutdown({ container: root }), stop);
    await root.resolve(Background).add(async function traced() {}).result();
    expect(exporter.getFinishedSpans().map((span) => span.name)).toEqual(['traced']);
    expect(trace.getActiveSpan()).toBeUndefined();
  });

  it('tells applications that share a meter provider apart: each has its own gauges, counts and durations', async () => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    cleanups.push(() => meterProvider.shutdown());
    const gate = deferred();
    const held = defineTask({ name: 'held' }, async () => {
      await gate.promise;
    });
    const handles = (['shop', 'billing'] as const).flatMap((application, index) => {
      const root = freshApp({ logger: captureLogger(), concurrency: 1 });
      cleanups.push(() => shutdown({ container: root }), instrumentTasks({ container: root, tracerProvider: false, meterProvider, application }));
      const bg = root.resolve(Background);
      return Array.from({ length: index === 0 ? 5 : 1 }, () => bg.add(held));
    });
    cleanups.push(() => gate.resolve());
    await nextTurn();
    const metrics = async () => (await reader.collect()).resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
    const byApplication = async (metric: string, read: (point: DataPoint<unknown>) => unknown = (point) => point.value) => {
      const points: DataPoint<unknown>[] = (await metrics()).find((m) => m.descriptor.name === metric)?.dataPoints ?? [];
      return Object.fromEntries(points.map((point) => [String(point.attributes[attributes.application]), read(point)]));
    };
    expect(await byApplication('background.tasks.queued')).toEqual({ shop: 4, billing: 0 });
    expect(await byApplication('background.tasks.running')).toEqual({ shop: 1, billing: 1 });
    gate.resolve();
    await Promise.all(handles.map((handle) => handle.result()));
    expect(await byApplication('background.tasks')).toEqual({ shop: 5, billing: 1 });
    expect(await byApplication('background.task.duration', (point) => (point as DataPoint<Histogram>).value.count)).toEqual({ shop: 5, billing: 1 });
    expect(await byApplication('background.task.wait', (point) => (point as DataPoint<Histogram>).value.count)).toEqual({ shop: 5, billing: 1 });
    expect(await byApplication('background.tasks.queued')).toEqual({ shop: 0, billing: 0 });
  });

  it('names an application app-1, app-2, … by default, on spans and points; the same application keeps its name', async () => {
    const first = instrumented();
    const second = instrumented();
    await first.bg.add(async function one() {}).result();
    await second.bg.add(async function two() {}).result();
    const named = (span: ReadableSpan | undefined) => span?.attributes[attributes.application];
    const one = named(first.named('one')[0]);
    expect(one).toMatch(/^app-\d+$/);
    expect(named(second.named('two')[0])).toMatch(/^app-\d+$/);
    expect(named(second.named('two')[0])).not.toBe(one);
    expect((await first.points('background.tasks')).map((point) => point.attributes[attributes.application])).toEqual([one]);
    expect((await first.points('background.tasks.running')).map((point) => point.attributes)).toEqual([{ [attributes.application]: one }]);
    first.stop();
    const exporter = new InMemorySpanExporter();
    const again = instrumentTasks({ container: first.root, tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }), meterProvider: false });
    cleanups.push(again);
    await first.bg.add(async function three() {}).result();
    expect(exporter.getFinishedSpans().map(named)).toEqual([one]);
    expect(() => instrumentTasks({ container: first.root, application: '' })).toThrow(/application must be a non-empty string/);
  });

  it.each<[string, unknown, string]>([
    ['a container that is not one', { container: {} }, 'instrumentTasks(options): options.container must be a tsyringe container, got an object'],
    ['a number as the container', { container: 42 }, 'instrumentTasks(options): options.container must be a tsyringe container, got 42 (number)'],
    ['a misspelt option', { containr: freshApp() }, 'instrumentTasks(options): options.containr is not a known option; known options: container, tracerProvider, meterProvider, application'],
    ['an empty application', { application: '' }, 'instrumentTasks(options): options.application must be a non-empty string, got "" (string)'],
    ['a number as the tracer provider', { tracerProvider: 5 }, 'instrumentTasks(options): options.tracerProvider must be an OpenTelemetry TracerProvider (an object with a getTracer() method) or false, got 5 (number)'],
    ['true as the tracer provider', { tracerProvider: true }, 'instrumentTasks(options): options.tracerProvider must be an OpenTelemetry TracerProvider (an object with a getTracer() method) or false, got true (boolean)'],
    ['a meter provider without getMeter()', { meterProvider: {} }, 'instrumentTasks(options): options.meterProvider must be an OpenTelemetry MeterProvider (an object with a getMeter() method) or false, got an object'],
  ])('refuses %s with a TypeError naming the option, instrumenting nothing', (_what, options, message) => {
    expect(() => instrumentTasks({ tracerProvider: false, meterProvider: false, ...(options as object) })).toThrow(new TypeError(message));
  });

  it('refuses a Map as its options (its entries would be no options)', () => {
    expect(() => instrumentTasks(new Map() as never)).toThrow(new TypeError('instrumentTasks(options): options must be an object, got an instance of Map'));
  });

  it.each(['cancelled', 'abandoned'] as const)('records an attempt once when its task is %s while it waits to be retried', async (how) => {
    const { root, bg, points } = instrumented();
    const failing = bg.with({ retries: 3, backoff: { baseMs: 60_000, jitter: 0 } }).add(async function failing() {
      throw new Error('down');
    });
    await vi.waitFor(() => expect(failing.status).toBe('retrying'));
    if (how === 'cancelled') failing.cancel();
    else await shutdown({ container: root, timeoutMs: 0 });
    await failing.result().catch(() => undefined);
    expect(failing.status).toBe(how);
    const durations = (await points('background.task.duration')) as DataPoint<Histogram>[];
    expect(durations.map((point) => [point.attributes[attributes.outcome], point.value.count])).toEqual([['retried', 1]]);
    expect((await points('background.tasks')).map((point) => [point.attributes[attributes.outcome], point.value])).toEqual([[how, 1]]);
  });

  it('traces a worker task from its admission to the pool: one cancelled before it reached its thread has a span, and no duration (it never ran; docs/observability.md)', async () => {
    // A thread that takes its time to be ready: its setup module waits.
    const dir = await mkdtemp(join(tmpdir(), 'otel-slow-setup-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const setupModule = join(dir, 'setup.mjs');
    await writeFile(setupModule, 'export default () => new Promise((resolve) => setTimeout(resolve, 400));\n');
    const { root, bg, named, points } = instrumented({ pool: { maxThreads: 1, minThreads: 0, setupModule: pathToFileURL(setupModule) } });
    const admitted = deferred();
    cleanups.push(observeTasks((event) => event.type === 'started' && admitted.resolve(), { container: root }));
    const handle = bg.add(modelOk, new Int32Array(1));
    await admitted.promise;
    expect(handle.status).toBe('queued'); // admitted to the pool, waiting for its thread
    handle.cancel();
    await handle.result().catch(() => undefined);
    expect(named('modelOk').map((span) => [span.attributes[attributes.attempt], span.attributes[attributes.outcome]])).toEqual([[1, 'cancelled']]);
    expect(await points('background.task.duration')).toEqual([]);
  });
});
