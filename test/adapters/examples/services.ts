/**
 * The small application the three framework examples of docs/frameworks.md share: a request id,
 * a session per request, a mailer, and the task that uses them. `signUpOnce()` runs one example
 * against a real server and returns what happened, in order.
 */
import 'reflect-metadata';
import { container, inject, Lifecycle, scoped, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { BackgroundOptions, defineTask, shutdown, type BackgroundLogger } from '../../../src/index.js';

export const RequestId: InjectionToken<string> = Symbol('RequestId');

/** What happened, in order. */
export class Log {
  readonly entries: string[] = [];
  readonly #waiting = new Map<string, () => void>();
  push(entry: string): void {
    this.entries.push(entry);
    this.#waiting.get(entry)?.();
  }
  /** Resolves once `entry` has been pushed. */
  until(entry: string): Promise<void> {
    if (this.entries.includes(entry)) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.set(entry, resolve));
  }
}

/** Stands in for an SMTP client. Its relay holds every mail until `openRelay()`: the example shows the response did not wait for it. */
export class Mailer {
  #open!: () => void;
  readonly #relay = new Promise<void>((open) => (this.#open = open));
  constructor(private readonly log: Log) {}
  openRelay(): void {
    this.#open();
  }
  async send(to: string, text: string): Promise<void> {
    await this.#relay;
    this.log.push(`mail to ${to}: ${text}`);
  }
}

/** A resource of one request (a database session, say): its scope makes it, and closes it when the scope is disposed. */
@scoped(Lifecycle.ContainerScoped)
export class Session {
  constructor(
    @inject(RequestId) readonly requestId: string,
    @inject(Log) private readonly log: Log,
  ) {}
  dispose(): void {
    this.log.push(`session ${this.requestId} closed`);
  }
}

// #region docs
export const sendWelcome = defineTask({ name: 'sendWelcome', inject: [Mailer, Session] }, async (mailer: Mailer, session: Session, to: string) => {
  await mailer.send(to, `Welcome! (request ${session.requestId})`);
});
// #endregion docs

/** A server an example started on 127.0.0.1. */
export interface Started {
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * Makes a fresh application root, starts the example's server in it, signs one user up, lets
 * the mail relay go once the response has arrived, and waits for the session to close.
 */
export async function signUpOnce(start: (root: DependencyContainer, logger: BackgroundLogger) => Promise<Started>): Promise<string[]> {
  const log = new Log();
  const logger: BackgroundLogger = {
    error: (_fields, message) => log.push(`error: ${message}`),
    warn: (_fields, message) => log.push(`warn: ${message}`),
    info: () => undefined,
    debug: () => undefined,
  };
  const mailer = new Mailer(log);
  const root = container.createChildContainer();
  root.register(BackgroundOptions, { useValue: { root: true, logger } });
  root.register(Log, { useValue: log });
  root.register(Mailer, { useValue: mailer });
  const server = await start(root, logger);
  try {
    const response = await fetch(`${server.origin}/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'r-1' },
      body: JSON.stringify({ email: 'ada@example.com' }),
    });
    log.push(`response ${response.status} ${await response.text()}`);
    mailer.openRelay();
    await log.until('session r-1 closed');
  } finally {
    await server.close();
    await shutdown({ container: root });
  }
  return log.entries;
}
