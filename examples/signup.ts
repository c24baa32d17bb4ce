/**
 * The sign-up service and its background tasks, with fake outside services that misbehave on
 * purpose, deterministically, so that the summary can check every outcome:
 * - the mail relay greylists one new recipient in 7: a temporary refusal, retried;
 * - the company directory hangs on one call in 10: that lookup times out;
 * - the CRM rejects one call in 5: a permanent failure, not retried.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { injectable, singleton } from 'tsyringe';
import { Background, defineTask, TaskContext, type TaskHandle } from 'tsyringe-background';
import { renderAvatar, type Avatar } from './cpu-tasks.js';

export const GREYLIST_EVERY = 7;
export const HANG_EVERY = 10;
export const CRM_FAILS_EVERY = 5;

/** Request-scoped: each request's child container gets its own, registered with useValue. */
export class RequestInfo {
  readonly receivedAt = performance.now();
  constructor(readonly id: number) {}
}

/** A temporary SMTP refusal (4xx): worth another attempt, unlike a permanent (5xx) one. */
export class TransientMailError extends Error {
  override name = 'TransientMailError';
}

@singleton()
export class Mailer {
  readonly outbox: string[] = [];
  readonly #seen = new Set<string>();
  /** Sends refused on purpose. */
  greylisted = 0;
  async send(to: string, text: string): Promise<void> {
    if (!this.#seen.has(to) && this.#seen.add(to).size % GREYLIST_EVERY === 0) {
      await sleep(20);
      this.greylisted++;
      throw new TransientMailError(`451 4.7.1 ${to}: greylisted, try again later`);
    }
    await sleep(500); // a slow SMTP round trip: the reason not to make the client wait for it
    this.outbox.push(`${to}: ${text}`);
  }
}

/** How long after its sign-up each welcome mail and audit row first started, in ms. */
export const startedAfter = { welcome: [] as number[], audit: [] as number[] };

// A task whose dependencies come from the container of the Background it is added to, at
// add() time: the app-wide Mailer, this request's RequestInfo, and the task's own context.
export const sendWelcome = defineTask(
  {
    name: 'sendWelcome',
    inject: [Mailer, RequestInfo, TaskContext],
    priority: 'high', // the new user is waiting for it: it starts before the bookkeeping
    retries: 2,
    backoff: { baseMs: 100 }, // 50 to 100 ms, then 100 to 200 ms: half of each delay is random
    retryIf: (error) => error instanceof TransientMailError,
  },
  async (mailer, request, ctx, email: string) => {
    if (ctx.attempt === 1) startedAfter.welcome.push(performance.now() - request.receivedAt);
    await mailer.send(email, `Welcome! (you signed up in request #${request.id})`);
  },
);

/** A third-party API that finds the company behind an email domain. */
@singleton()
export class CompanyDirectory {
  #calls = 0;
  /** Calls made to hang on purpose, and those that stopped when their signal aborted. */
  hung = 0;
  stopped = 0;
  async lookup(domain: string, signal: AbortSignal): Promise<string> {
    const hangs = ++this.#calls % HANG_EVERY === 0;
    if (hangs) this.hung++;
    try {
      await sleep(hangs ? 60_000 : 50, undefined, { signal }); // as fetch(url, { signal }) would
    } catch (error) {
      if (signal.aborted) this.stopped++;
      throw error;
    }
    return `${domain}, Inc.`;
  }
}

// Nice to have, not worth waiting for: after timeoutMs the task ends as timedOut, and its
// signal aborts, so the lookup stops too (instead of holding a socket for a minute).
export const enrichProfile = defineTask(
  { name: 'enrichProfile', inject: [CompanyDirectory, TaskContext], timeoutMs: 300 },
  async (directory, ctx, email: string) => {
    const company = await directory.lookup(email.slice(email.indexOf('@') + 1), ctx.signal);
    return company; // a real service would store it on the user's profile
  },
);

// Plain async functions are tasks too; add() passes them its extra arguments.
export const auditLog: { userId: number; event: string; at: number }[] = [];
export async function recordAudit(userId: number, at: number): Promise<void> {
  startedAfter.audit.push(performance.now() - at);
  await sleep(20); // a database round trip
  auditLog.push({ userId, event: 'signup', at });
}

export const crm = { calls: 0, failures: 0 };
export async function syncToCrm(userId: number): Promise<void> {
  await sleep(10);
  if (++crm.calls % CRM_FAILS_EVERY === 0) {
    crm.failures++; // a 4xx: trying again would not help, so this task has no retries
    throw new Error(`CRM rejected user ${userId} (every ${CRM_FAILS_EVERY}th call fails on purpose)`);
  }
}

@injectable()
export class SignupService {
  // Both come from the request's child container: its own Background (by type, no token
  // needed) and its RequestInfo.
  constructor(
    private readonly bg: Background,
    private readonly request: RequestInfo,
  ) {}

  signUp(email: string): { userId: number; tasks: TaskHandle[]; avatar: TaskHandle<Avatar> } {
    const userId = this.request.id; // a real service would insert a row here
    // add() returns a handle at once and never throws for a failing task: failures are logged.
    const avatar = this.bg.add(renderAvatar, userId); // CPU-bound: runs on a worker thread
    const tasks = [
      this.bg.add(sendWelcome, email), // bg.add(sendWelcome, 42) would not compile
      this.bg.add(enrichProfile, email),
      this.bg.add(syncToCrm, userId),
      // A view with options for the tasks it adds: the audit row can wait for a free slot.
      this.bg.with({ priority: 'low' }).add(recordAudit, userId, this.request.receivedAt),
      avatar,
    ];
    return { userId, tasks, avatar };
  }
}
