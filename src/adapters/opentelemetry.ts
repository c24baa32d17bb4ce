/**
 * OpenTelemetry for an application's tasks: a span per attempt, a child of the span that was
 * active at `add()`, and metrics of their outcomes, durations, waits and of what is queued and
 * running. Built on the public hooks (`observeTasks`, `wrapAttempts`): nothing is traced or
 * counted, and nothing is built, until `instrumentTasks()` is called.
 */
import {
  context,
  metrics,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type MeterProvider,
  type ObservableResult,
  type Span,
  type TracerProvider,
} from '@opentelemetry/api';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { ApplicationBackground, observeTasks, wrapAttempts, type Background, type TaskEvent, type TaskObservation } from '../index.js';
import { checkKnownKeys, describe, isOptionsObject } from '../model/checks.js';

/** The name of the instrumentation scope (the tracer's and the meter's). */
export const instrumentationName = 'tsyringe-background';

/** The attributes set on spans and metric points. */
export const attributes = Object.freeze({
  application: 'background.application',
  name: 'background.task.name',
  id: 'background.task.id',
  scope: 'background.task.scope',
  attempt: 'background.task.attempt',
  waitedMs: 'background.task.waited_ms',
  outcome: 'background.task.outcome',
});

/** Options of {@link instrumentTasks}. */
export interface InstrumentOptions {
  /**
   * A container of the application to instrument (any of its scopes will do).
   * @default the global container
   */
  container?: DependencyContainer | undefined;
  /**
   * Where spans go; `false`: no spans (and no attempt wrapper).
   * @default the global tracer provider (`trace.getTracerProvider()`)
   */
  tracerProvider?: TracerProvider | false | undefined;
  /**
   * Where metrics go; `false`: no metrics.
   * @default the global meter provider (`metrics.getMeterProvider()`)
   */
  meterProvider?: MeterProvider | false | undefined;
  /**
   * The value of `background.application` on this application's spans and metric points, which
   * tells applications that share a tracer or meter provider apart (each has its own points of
   * every metric, its own queued and running gauges). Give each application its own.
   * @default `app-1`, `app-2`, …: the applications of the process in the order they were first
   * instrumented (an application instrumented again keeps its name)
   */
  application?: string | undefined;
}

const instrumentKeys = ['container', 'tracerProvider', 'meterProvider', 'application'] as const satisfies readonly (keyof InstrumentOptions)[];

/** The default names given to applications, by their root `Background`. */
const applicationNames = new WeakMap<Background, string>();
let instrumentedApplications = 0;

/**
 * Traces and measures every task of an application with OpenTelemetry (`@opentelemetry/api`,
 * an optional peer dependency); returns what stops it.
 *
 * - **Spans**: one per attempt, named after the task, a child of the span active at `add()`
 *   (the request's, typically); the task's own spans (a query, an HTTP call) are its children.
 *   Attributes: `background.application`, `background.task.name`, `.id`, `.scope`, `.attempt`,
 *   `.waited_ms`, and `.outcome` when it ends. Status: OK when it succeeds; ERROR, with the exception recorded,
 *   when the attempt fails, times out or is abandoned (outcome `retried` when another attempt
 *   follows); unset when it is cancelled.
 * - **Metrics**: `background.tasks` (counter of outcomes, by task name and outcome),
 *   `background.task.duration` (histogram of attempt durations, ms, by name and outcome),
 *   `background.task.wait` (histogram of the wait before each attempt started, ms, by name),
 *   `background.tasks.queued` and `background.tasks.running` (gauges of the application, now).
 *   Every point carries `background.application` (see {@link InstrumentOptions.application}),
 *   so that applications sharing a meter provider are told apart.
 *
 * ```ts
 * import { instrumentTasks } from 'tsyringe-background/opentelemetry';
 * const stop = instrumentTasks();   // after the OpenTelemetry SDK has started
 * ```
 *
 * A durable task's job carries the context active at `add()` (through the global propagator:
 * W3C trace context and baggage with the SDK's defaults), so that its attempts' spans in a
 * worker's process are children of that span; instrument the workers' application too. A
 * schedule's runs start traces of their own.
 *
 * A worker task's span covers its round trip from the main thread; the span context does not
 * cross into the worker thread. Its attempt starts (span, `waited_ms`, `background.task.wait`)
 * when the pool admits it, not when it reaches its thread; one cancelled or abandoned in between
 * still has a span and a duration point (see docs/observability.md).
 *
 * @throws TypeError when an option is not a known one or has the wrong type (a `container` that
 * is not a tsyringe container, a `tracerProvider` or `meterProvider` that is neither a provider
 * nor `false`, an empty `application`).
 */
export function instrumentTasks(options: InstrumentOptions = {}): TaskObservation {
  const at = 'instrumentTasks(options)';
  if (!isOptionsObject(options)) throw new TypeError(`${at}: options must be an object, got ${describe(options)}`);
  // The checks of observeTasks() and shutdown(), in their words: this adapter sees only the public API.
  options = checkKnownKeys(options, instrumentKeys, at);
  if (options.container !== undefined && typeof (options.container as Partial<DependencyContainer> | null)?.createChildContainer !== 'function') {
    throw new TypeError(`${at}: options.container must be a tsyringe container, got ${describe(options.container)}`);
  }
  if (options.application !== undefined && (typeof options.application !== 'string' || options.application === '')) {
    throw new TypeError(`${at}: options.application must be a non-empty string, got ${describe(options.application)}`);
  }
  // Checked here, not where they are first called (getTracer(), getMeter()), so that the message names the option.
  checkProvider(at, 'tracerProvider', 'TracerProvider', 'getTracer', options.tracerProvider);
  checkProvider(at, 'meterProvider', 'MeterProvider', 'getMeter', options.meterProvider);
  const scope = options.container ?? globalContainer;
  const app: Background = scope.resolve(ApplicationBackground);
  let application = options.application ?? applicationNames.get(app);
  if (application === undefined) applicationNames.set(app, (application = `app-${++instrumentedApplications}`));
  const stops: (() => void)[] = [];
  const tracerProvider = options.tracerProvider ?? trace.getTracerProvider();
  if (tracerProvider !== false) stops.push(traceTasks(scope, application, tracerProvider), carryContext(app));
  const meterProvider = options.meterProvider ?? metrics.getMeterProvider();
  if (meterProvider !== false) stops.push(measureTasks(scope, app, application, meterProvider));
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    for (const each of stops) each();
  };
  return Object.assign(stop, { [Symbol.dispose]: stop });
}

/**
 * Refuses a provider option that is neither `false`, nor undefined, nor an object with the
 * method the instrumentation calls on it (`getTracer`, `getMeter`).
 * @throws TypeError naming the option and what was received.
 */
function checkProvider(at: string, option: string, kind: string, method: string, value: unknown): void {
  if (value === undefined || value === false) return;
  if (typeof value !== 'object' || value === null || typeof (value as Record<string, unknown>)[method] !== 'function') {
    throw new TypeError(`${at}: options.${option} must be an OpenTelemetry ${kind} (an object with a ${method}() method) or false, got ${describe(value)}`);
  }
}

/**
 * Spans: opened by an attempt wrapper (so that the task's code runs inside), ended by the events.
 * Every span opened is ended by an event: the wrapper is called only while the attempt is running
 * (a task ended before an outer wrapper calls `attempt()` never reaches this one, and has no span),
 * and whatever ends the attempt after that comes as an event.
 */
function traceTasks(scope: DependencyContainer, application: string, provider: TracerProvider): () => void {
  const tracer = provider.getTracer(instrumentationName);
  /** The span of each task's attempt in progress, by task id. */
  const open = new Map<string, Span>();
  const wrapping = wrapAttempts(
    (event, attempt) => {
      const parent = context.active();
      const span = tracer.startSpan(
        event.name,
        {
          kind: SpanKind.INTERNAL,
          attributes: {
            [attributes.application]: application,
            [attributes.name]: event.name,
            [attributes.id]: event.id,
            [attributes.scope]: event.scope,
            [attributes.attempt]: event.attempt,
            [attributes.waitedMs]: event.waitedMs,
          },
        },
        parent,
      );
      open.set(event.id, span);
      return context.with(trace.setSpan(parent, span), attempt);
    },
    { container: scope },
  );
  const observing = observeTasks(
    (event) => {
      const span = open.get(event.id);
      if (span === undefined) return;
      if (event.type === 'attemptFailed') end(span, 'retried', event.error);
      else if (event.type === 'succeeded') end(span, 'succeeded', undefined);
      else if (event.type === 'cancelled' || event.type === 'skipped') end(span, event.type, undefined, false);
      else if (event.type === 'failed' || event.type === 'timedOut' || event.type === 'abandoned') end(span, event.type, event.error);
      else return;
      open.delete(event.id);
    },
    { container: scope },
  );
  return () => {
    wrapping();
    observing();
    for (const span of open.values()) span.end();
    open.clear();
  };
}

/**
 * The `Background` property that is its application's job context (src/model/runner.ts's
 * `jobContext`: the facade captures at a durable `add()`, the durable worker enters around each
 * attempt of the job). A `Symbol.for`: this adapter sees only the package entry.
 */
const jobContext: unique symbol = Symbol.for('tsyringe-background.jobContext');
type Carried = Readonly<Record<string, string>>;
interface ContextDoor {
  [jobContext]: typeof carrier | undefined;
}

/**
 * A durable task's context, carried by its job through the global propagator (the SDK sets the
 * W3C trace context and baggage by default): what is active at `add()` in one process is the
 * parent of the attempt's span in the worker's. A propagator that throws carries nothing.
 */
const carrier = {
  capture(): Carried | undefined {
    const carried: Record<string, string> = {};
    try {
      propagation.inject(context.active(), carried);
    } catch {
      return undefined;
    }
    return Object.keys(carried).length > 0 ? carried : undefined;
  },
  enter<T>(carried: Carried, run: () => T): T {
    let entered;
    try {
      entered = propagation.extract(context.active(), carried);
    } catch {
      return run();
    }
    return context.with(entered, run);
  },
};

/** How many instrumentations trace each application: its durable jobs carry their context while one does. */
const carrying = new WeakMap<Background, number>();

function carryContext(app: Background): () => void {
  const door = app as unknown as ContextDoor;
  carrying.set(app, (carrying.get(app) ?? 0) + 1);
  door[jobContext] = carrier;
  return () => {
    const left = (carrying.get(app) ?? 1) - 1;
    carrying.set(app, left);
    if (left === 0) door[jobContext] = undefined;
  };
}

function end(span: Span, outcome: string, error: Error | undefined, isError = error !== undefined): void {
  span.setAttribute(attributes.outcome, outcome);
  if (error !== undefined && isError) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  } else if (outcome === 'succeeded') {
    span.setStatus({ code: SpanStatusCode.OK });
  }
  span.end();
}

/** Metrics: counters and histograms from the events, gauges read from the application on collection. */
function measureTasks(scope: DependencyContainer, app: Background, application: string, provider: MeterProvider): () => void {
  const meter = provider.getMeter(instrumentationName);
  const outcomes = meter.createCounter('background.tasks', { description: 'Tasks that reached an outcome, by task name and outcome.', unit: '{task}' });
  const durations = meter.createHistogram('background.task.duration', { description: 'How long each attempt ran, by task name and outcome.', unit: 'ms' });
  const waits = meter.createHistogram('background.task.wait', { description: 'How long each attempt waited for a slot before it started.', unit: 'ms' });
  const queued = meter.createObservableGauge('background.tasks.queued', { description: "The application's tasks waiting for a slot now.", unit: '{task}' });
  const running = meter.createObservableGauge('background.tasks.running', { description: "The application's tasks running now.", unit: '{task}' });
  const ofApplication: Attributes = { [attributes.application]: application };
  const readQueued = (result: ObservableResult): void => result.observe(app.stats({ application: true }).queued, ofApplication);
  const readRunning = (result: ObservableResult): void => result.observe(app.stats({ application: true }).running, ofApplication);
  /** Tasks whose last attempt failed and was recorded as `retried`, and that have not started another. */
  const retried = new Set<string>();
  queued.addCallback(readQueued);
  running.addCallback(readRunning);
  const observing = observeTasks(
    (event: TaskEvent) => {
      const byName: Attributes = { ...ofApplication, [attributes.name]: event.name };
      switch (event.type) {
        case 'added':
        case 'retrying':
        case 'progress':
          return;
        case 'started':
          retried.delete(event.id);
          waits.record(event.waitedMs, byName);
          return;
        case 'attemptFailed':
          retried.add(event.id);
          durations.record(event.durationMs, { ...byName, [attributes.outcome]: 'retried' });
          return;
        default: {
          const byOutcome = { ...byName, [attributes.outcome]: event.type };
          outcomes.add(1, byOutcome);
          // Ended while waiting for its next attempt (cancelled, abandoned): its durationMs is
          // that of the attempt already recorded as `retried`.
          if (!retried.delete(event.id) && event.durationMs !== undefined) durations.record(event.durationMs, byOutcome);
        }
      }
    },
    { container: scope },
  );
  return () => {
    observing();
    retried.clear();
    queued.removeCallback(readQueued);
    running.removeCallback(readRunning);
  };
}
