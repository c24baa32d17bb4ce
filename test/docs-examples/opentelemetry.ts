/**
 * docs/observability.md, OpenTelemetry: instrumentTasks() after the SDK has started (here its
 * BasicTracerProvider with an in-memory exporter, and the AsyncLocalStorage context manager,
 * registered globally as an SDK's start does), then a task added under an active span: its
 * attempt's span is a child of that span, and the span the task makes is a child of its own.
 * The code below runs when the module loads, as it would at an application's start.
 * Run: npx tsx test/docs-examples/opentelemetry.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { container as globalContainer } from 'tsyringe';
import { instrumentTasks } from '../../src/adapters/opentelemetry.js';
import { Background, BackgroundOptions, defineTask, shutdown } from '../../src/index.js';

// The SDK's start, reduced to tracing: a global tracer provider and context manager.
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(tracerProvider);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
/** The application's root container (an application of its own, so that the example shares nothing). */
const container = globalContainer.createChildContainer();
container.register(BackgroundOptions, { useValue: { root: true } });

// #region docs
// after the OpenTelemetry SDK has started (it registers the global tracer and meter providers
// and an AsyncLocalStorage context manager)
const stop = instrumentTasks({ container }); // tracerProvider, meterProvider: the global ones by default

const tracer = trace.getTracer('shop');
const sendWelcome = defineTask({ name: 'sendWelcome' }, async (to: string) => {
  tracer.startActiveSpan(`smtp send to ${to}`, (span) => span.end()); // a child of the task's span
});
const handle = tracer.startActiveSpan('POST /signup', (request) => {
  const added = container.resolve(Background).add(sendWelcome, 'ada@example.com'); // its span: a child of this one
  request.end();
  return added;
});
// #endregion docs

export async function main() {
  await handle.result();
  stop();
  await shutdown({ container });
  const spans = exporter.getFinishedSpans();
  const nameOf = (spanId: string | undefined) => spans.find((span) => span.spanContext().spanId === spanId)?.name ?? null;
  const task = spans.find((span) => span.name === 'sendWelcome');
  const result = {
    // [span, its parent]
    spans: spans.map((span) => [span.name, nameOf(span.parentSpanContext?.spanId)]).sort(),
    traces: new Set(spans.map((span) => span.spanContext().traceId)).size,
    task: { id: handle.id, attributes: task?.attributes, status: task?.status.code },
  };
  await tracerProvider.shutdown();
  trace.disable();
  context.disable();
  return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.dir(await main(), { depth: 4 });
