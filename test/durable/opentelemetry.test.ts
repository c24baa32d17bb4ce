/**
 * OpenTelemetry across the durable backend (issues 13 and 14), against a real redis-server: a
 * durable task's job carries the context active at `add()` (through the global propagator), so
 * that each attempt's span in the worker's application is a child of the span active at `add()`
 * in the producer's, with its baggage; nothing is carried without a span, without the producer's
 * instrumentation, or for a schedule's runs. The producer and the workers run in one process
 * here, but in applications of their own, and the context reaches the workers only through the
 * job in Redis (a worker's jobs start from BullMQ's loop, outside any `add()`).
 */
import { context, propagation, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { DependencyContainer } from 'tsyringe';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { JobData } from '../../src/adapters/bullmq-jobs.js';
import { instrumentTasks } from '../../src/adapters/opentelemetry.js';
import { defineTask, TaskContext, type TaskHandle } from '../../src/index.js';
import { watchProcessErrors } from '../helpers.js';
import { openQueue } from './queue-apps.js';
import { hasRedis, redisForSuite } from './redis.js';

const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
});
afterAll(() => {
  propagation.disable();
  contextManager.disable();
  context.disable();
});

watchProcessErrors();

/** The tracer the tasks' own code uses (their spans go to the same exporter as the workers'). */
const inner = { tracer: trace.getTracer('unset') };
/** What each attempt saw of its context: the baggage entry `user`, by attempt. */
const seen: { attempt: number; user: string | undefined }[] = [];
const invoice = defineTask({ name: 'invoice', inject: [TaskContext] }, async (ctx, failUntil: number) => {
  seen.push({ attempt: ctx.attempt, user: propagation.getBaggage(context.active())?.getEntry('user')?.value });
  inner.tracer.startActiveSpan('render pdf', (span) => span.end());
  if (ctx.attempt < failUntil) throw new Error(`attempt ${ctx.attempt} fails`);
  return ctx.attempt;
});
const tasks = [invoice];

describe.skipIf(!hasRedis)('OpenTelemetry on durable tasks', () => {
  const redis = redisForSuite();
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    seen.length = 0;
  });

  /** A tracer provider whose finished spans the test reads. */
  function traced() {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    return { provider, tracer: provider.getTracer('test'), spans: (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((span) => span.name === name) };
  }

  /** Instruments an application's tracing only, stopped after the test. */
  function instrument(app: DependencyContainer, tracerProvider: BasicTracerProvider) {
    const stop = instrumentTasks({ container: app, tracerProvider, meterProvider: false });
    closers.push(async () => stop());
    return stop;
  }

  /** A producer and workers on a fresh queue; the workers' application traced (the producer's only if asked). */
  function setup(options: { traceProducer: boolean }) {
    const apps = openQueue(redis.connection, closers, { tasks, prefix: 'otel' });
    const producerTrace = traced();
    const workersTrace = traced();
    inner.tracer = workersTrace.tracer;
    if (options.traceProducer) instrument(apps.producer, producerTrace.provider);
    instrument(apps.workerRoot, workersTrace.provider);
    return { ...apps, producerTrace, workersTrace };
  }

  /** Adds `invoice` inside an active request span carrying baggage; returns the span and the handle. */
  function addInRequest(add: () => TaskHandle, tracer = trace.getTracer('unused')): { request: Span; handle: TaskHandle } {
    const baggage = propagation.createBaggage({ user: { value: 'u-42' } });
    return context.with(propagation.setBaggage(context.active(), baggage), () =>
      tracer.startActiveSpan('POST /invoices', (request) => {
        const handle = add();
        request.end();
        return { request, handle };
      }),
    );
  }

  const storedData = async (apps: ReturnType<typeof setup>, id: string): Promise<JobData | undefined> => (await apps.backend.queue.getJob(id))?.data as JobData | undefined;

  it("makes every attempt's span in the worker a child of the span active at add() in the producer, with its baggage, through the job", async () => {
    const apps = setup({ traceProducer: true });
    const { request, handle } = addInRequest(() => apps.bg.with({ durable: true, retries: 1, backoff: { baseMs: 1, jitter: 0 } }).add(invoice, 2), apps.producerTrace.tracer);
    await expect(handle.result()).resolves.toBe(2);
    const { traceId, spanId } = request.spanContext();
    const attempts = apps.workersTrace.spans('invoice');
    expect(attempts).toHaveLength(2);
    for (const attempt of attempts) {
      expect(attempt.spanContext().traceId).toBe(traceId);
      expect(attempt.parentSpanContext?.spanId).toBe(spanId);
      expect(attempt.parentSpanContext?.isRemote).toBe(true);
    }
    expect(attempts.map((span) => span.attributes['background.task.attempt'])).toEqual([1, 2]);
    // Each attempt is a run of its own in the worker's application: the first one's outcome is `failed` (docs/durable.md).
    expect(attempts.map((span) => span.attributes['background.task.outcome'])).toEqual(['failed', 'succeeded']);
    // The task's own spans are the attempts' children.
    const renders = apps.workersTrace.spans('render pdf');
    expect(renders.map((span) => span.parentSpanContext?.spanId)).toEqual(attempts.map((span) => span.spanContext().spanId));
    expect(seen).toEqual([
      { attempt: 1, user: 'u-42' },
      { attempt: 2, user: 'u-42' },
    ]);
    // What the job carries: the W3C headers, in its data.
    const data = await storedData(apps, handle.id);
    expect(data?.context?.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    expect(data?.context?.baggage).toBe('user=u-42');
  });

  it('carries the context of add() into a task that waits for another (a flow) and into a delayed one', async () => {
    const apps = setup({ traceProducer: true });
    const { request, handle } = addInRequest(() => {
      const first = apps.bg.with({ durable: true }).add(invoice, 1);
      apps.bg.with({ durable: true, delayMs: 20 }).add(invoice, 1);
      return apps.bg.with({ durable: true, after: [first] }).add(invoice, 1);
    }, apps.producerTrace.tracer);
    await handle.result();
    await vi.waitFor(() => expect(apps.workersTrace.spans('invoice')).toHaveLength(3), { timeout: 10_000, interval: 10 });
    for (const attempt of apps.workersTrace.spans('invoice')) expect(attempt.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
  });

  it('carries nothing without a span or baggage at add(): the attempt is the root of its own trace', async () => {
    const apps = setup({ traceProducer: true });
    const handle = apps.bg.with({ durable: true }).add(invoice, 1);
    await handle.result();
    const [attempt] = apps.workersTrace.spans('invoice');
    expect(attempt?.parentSpanContext).toBeUndefined();
    expect(await storedData(apps, handle.id)).not.toHaveProperty('context');
    expect(seen).toEqual([{ attempt: 1, user: undefined }]);
  });

  it("carries nothing when the producer's application is not traced, or no longer", async () => {
    const apps = setup({ traceProducer: false });
    const untraced = addInRequest(() => apps.bg.with({ durable: true }).add(invoice, 1), apps.producerTrace.tracer);
    await untraced.handle.result();
    expect(await storedData(apps, untraced.handle.id)).not.toHaveProperty('context');
    expect(apps.workersTrace.spans('invoice')[0]?.parentSpanContext).toBeUndefined();

    // Traced, then stopped: two instrumentations of one application, the context carried until both stop.
    const first = instrument(apps.producer, apps.producerTrace.provider);
    const second = instrument(apps.producer, apps.producerTrace.provider);
    first();
    const carried = addInRequest(() => apps.bg.with({ durable: true }).add(invoice, 1), apps.producerTrace.tracer);
    await carried.handle.result();
    expect((await storedData(apps, carried.handle.id))?.context).toHaveProperty('traceparent');
    second();
    const after = addInRequest(() => apps.bg.with({ durable: true }).add(invoice, 1), apps.producerTrace.tracer);
    await after.handle.result();
    expect(await storedData(apps, after.handle.id)).not.toHaveProperty('context');
  });

  it("starts each run of a durable schedule in a trace of its own, not in the one of the add() that made the schedule", async () => {
    const apps = setup({ traceProducer: true });
    const { handle } = addInRequest(() => apps.bg.with({ durable: true, every: 30, overlap: true }).add(invoice, 1), apps.producerTrace.tracer);
    await vi.waitFor(() => expect(apps.workersTrace.spans('invoice').length).toBeGreaterThanOrEqual(2), { timeout: 10_000, interval: 10 });
    handle.cancel();
    for (const run of apps.workersTrace.spans('invoice')) expect(run.parentSpanContext).toBeUndefined();
  });
});
