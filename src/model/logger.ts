import { inspect } from 'node:util';
import { callbackProblem } from './checks.js';

/** One log method: a structured object first, then a message, as pino takes them. */
export type LogFn = (fields: Record<string, unknown>, message: string) => void;

/**
 * The logger `Background` writes to. A pino logger satisfies it as is; so does any object with
 * these four methods taking `(fields, message)`.
 */
export interface BackgroundLogger {
  /** Work lost or failed: a task's final failure or timeout, tasks abandoned at a deadline, a callback of yours that threw. */
  error: LogFn;
  /** Trouble that work survives: an attempt that will be retried, a sync task that blocked the event loop. */
  warn: LogFn;
  /** What `gracefulShutdown()` does: its start and, when nothing was lost, its summary. */
  info: LogFn;
  /** Tasks cancelled or skipped, and threads the worker pool's close terminated. */
  debug: LogFn;
}

/**
 * The default logger: errors and warnings to `console.error`/`console.warn`, with the fields
 * printed after the message (an `err` field is printed with its stack). `info` and `debug` are
 * silent, so a library never chatters in an application's output unless asked to.
 */
export const consoleLogger: BackgroundLogger = Object.freeze<BackgroundLogger>({
  error: (fields, message) => {
    console.error(format(message, fields));
  },
  warn: (fields, message) => {
    console.warn(format(message, fields));
  },
  info: () => undefined,
  debug: () => undefined,
});

function format(message: string, fields: Record<string, unknown>): string {
  const { err, ...rest } = fields;
  const head = `[tsyringe-background] ${message} ${inspect(rest, { breakLength: Infinity })}`;
  return err === undefined ? head : `${head}\n${inspect(err, { depth: 4 })}`;
}

/**
 * Writes one entry through `logger`; a logger that throws, or whose promise rejects (an `async`
 * method), is survived (reported on the console), so that logging a task's failure can never
 * become a failure of its own, nor an unhandled rejection.
 */
export function logSafely(logger: BackgroundLogger, level: keyof BackgroundLogger, fields: Record<string, unknown>, message: string): void {
  try {
    const returned = logger[level](fields, message) as unknown;
    if (typeof (returned as PromiseLike<unknown> | null | undefined)?.then === 'function') {
      Promise.resolve(returned).catch((loggerError: unknown) => loggerFailed(message, fields, loggerError));
    }
  } catch (loggerError) {
    loggerFailed(message, fields, loggerError);
  }
}

/** The entry a logger could not write, on the console with why: it is not lost. */
function loggerFailed(message: string, fields: Record<string, unknown>, loggerError: unknown): void {
  console.error('[tsyringe-background] the logger threw while logging:', message, fields, loggerError);
}

/** Whether `value` is a logger: an object whose four methods can be called (none a class or a generator function). */
export function isLogger(value: unknown): value is BackgroundLogger {
  return (
    typeof value === 'object' &&
    value !== null &&
    (['error', 'warn', 'info', 'debug'] as const).every((level) => {
      let method: unknown;
      try {
        method = (value as Record<string, unknown>)[level];
      } catch {
        return false; // a getter that throws: no method there
      }
      return typeof method === 'function' && callbackProblem(method) === undefined;
    })
  );
}
