/**
 * The durable dashboard, shared by `tsyringe-background/express/dashboard`, `/fastify/dashboard`
 * and `/hono/dashboard`: bull-board (`@bull-board/api`) over the application's BullMQ queues,
 * read-only unless asked otherwise. It imports no web framework: each entry point hands it
 * bull-board's server adapter for its framework, and mounts what that adapter makes.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { IServerAdapter, UIConfig } from '@bull-board/api/typings/app';
import type { DurableBackend } from './bullmq.js';
import { checkLink } from './live-view.js';
import { checkKnownKeys, describe, isOptionsObject, ownOptions } from '../model/checks.js';

/** A BullMQ queue, as `useBullMQ()`'s backend holds it (`backend.queue`). */
export type DashboardQueue = DurableBackend['queue'];

/** Options of every framework's `durableDashboard`: whose queues to show, and how. */
export interface DurableDashboardOptions {
  /**
   * The application's durable backend, as `useBullMQ()` returned it: the dashboard shows its
   * queue. Give either `backend` or `queues`, not both.
   */
  backend?: DurableBackend | undefined;
  /**
   * BullMQ queues to show (several backends' `backend.queue`, or queues of your own), instead of
   * `backend`. Their names must differ (bull-board tells queues apart by name, whatever their prefix).
   */
  queues?: readonly DashboardQueue[] | undefined;
  /**
   * Whether the dashboard only shows: every method but `GET` and `HEAD` is answered 405 before
   * bull-board sees it, and bull-board hides its buttons (retry, remove, promote, pause, clean,
   * add). `false` gives bull-board's full controls: anyone who reaches the dashboard can then
   * change or delete jobs.
   * @default true
   */
  readOnly?: boolean | undefined;
  /**
   * Where the live view is (`'/background'`, say): bull-board's menu gets a link to it, named
   * "Live view". An absolute path on this site, or an `http(s)` URL.
   * @default no link
   */
  liveViewPath?: string | undefined;
  /**
   * bull-board's own UI settings (`boardTitle`, `miscLinks`, `theme`, `pollingInterval`, …),
   * merged over the defaults (`boardTitle: 'Durable tasks'`).
   * @default {}
   */
  uiConfig?: UIConfig | undefined;
}

/** Options of a dashboard mounted as an app of its own (Express, Hono): where it is mounted too. */
export interface MountedDashboardOptions extends DurableDashboardOptions {
  /**
   * The path the dashboard is mounted at, as the browser sees it (`'/background/queues'`): its
   * page loads its assets and calls its API from there. Mount it at the same path.
   */
  basePath: string;
}

/** Options with the defaults filled in and checked. */
export interface ResolvedDurableDashboardOptions {
  readonly queues: readonly DashboardQueue[];
  readonly readOnly: boolean;
  readonly uiConfig: UIConfig;
  /** The options as read, once (their own copy): where an entry point reads its own keys (`basePath`). */
  readonly given: Readonly<Record<string, unknown>>;
}

/** The keys of {@link DurableDashboardOptions}. */
const dashboardKeys = ['backend', 'queues', 'readOnly', 'liveViewPath', 'uiConfig'] as const satisfies readonly (keyof DurableDashboardOptions)[];

/**
 * Fills in the defaults and checks the options, naming what is wrong. A key that is neither an
 * option nor one of `entryKeys` (those its entry point reads itself: `basePath`, and for Fastify
 * its own `prefix`, `logLevel`, `logSerializers`) is refused.
 * @throws TypeError when an option is not a known one or has the wrong type, or both or neither of `backend` and `queues` are given.
 */
export function resolveDashboardOptions(options: DurableDashboardOptions | undefined, entryKeys: readonly string[] = []): ResolvedDurableDashboardOptions {
  const at = 'durableDashboard(options)';
  if (!isOptionsObject(options)) throw new TypeError(`${at}: options must be an object with backend or queues, got ${describe(options)}`);
  const given = checkKnownKeys(options, [...dashboardKeys, ...entryKeys], at);
  const { backend, queues, readOnly = true, liveViewPath, uiConfig = {} } = given;
  if (backend !== undefined && queues !== undefined) throw new TypeError(`${at}: give options.backend or options.queues, not both`);
  let shown: readonly DashboardQueue[];
  if (backend !== undefined) {
    if (!isQueue((backend as Partial<DurableBackend> | null)?.queue)) {
      throw new TypeError(`${at}: options.backend must be the durable backend useBullMQ() returned, got ${describe(backend)}`);
    }
    shown = [backend.queue];
  } else if (queues !== undefined) {
    if (!Array.isArray(queues) || queues.length === 0) throw new TypeError(`${at}: options.queues must be a non-empty array of BullMQ queues, got ${describe(queues)}`);
    const names = new Set<string>();
    for (const [i, queue] of (queues as readonly unknown[]).entries()) {
      if (!isQueue(queue)) throw new TypeError(`${at}: options.queues[${i}] must be a BullMQ Queue, got ${describe(queue)}`);
      if (names.has(queue.name)) throw new TypeError(`${at}: options.queues[${i}] is a second queue named "${queue.name}"; bull-board tells queues apart by name`);
      names.add(queue.name);
    }
    shown = [...(queues as readonly DashboardQueue[])];
  } else {
    throw new TypeError(`${at}: options.backend (what useBullMQ() returned) or options.queues (BullMQ queues) is required`);
  }
  if (typeof readOnly !== 'boolean') throw new TypeError(`${at}: options.readOnly must be a boolean, got ${describe(readOnly)}`);
  if (liveViewPath !== undefined) checkLink(`${at}: options.liveViewPath`, liveViewPath);
  if (!isOptionsObject(uiConfig) || Array.isArray(uiConfig)) {
    throw new TypeError(`${at}: options.uiConfig must be an object (bull-board's UIConfig), got ${describe(uiConfig)}`);
  }
  const links = liveViewPath === undefined ? [] : [{ text: 'Live view', url: liveViewPath }];
  const merged: UIConfig = { boardTitle: 'Durable tasks', ...ownOptions(uiConfig, `${at}: options.uiConfig`) };
  if (links.length > 0) merged.miscLinks = [...links, ...(uiConfig.miscLinks ?? [])];
  return Object.freeze({ queues: Object.freeze(shown), readOnly, uiConfig: Object.freeze(merged), given: Object.freeze(given) });
}

/**
 * Checks the path a dashboard is served under, as the browser sees it: its page and assets are
 * addressed from there.
 * @throws TypeError naming `what` otherwise.
 */
export function checkBasePath(what: string, value: unknown): string {
  if (typeof value !== 'string' || !/^\/[^\s?#]*$/.test(value) || value.startsWith('//')) {
    throw new TypeError(`${what} must be the path the dashboard is mounted at, starting with "/" (such as "/background/queues"), got ${describe(value)}`);
  }
  return value.length > 1 && value.endsWith('/') ? value.slice(0, -1) : value;
}

/**
 * Wires bull-board onto a framework's server adapter (whose base path is set already): the
 * queues, each read-only when asked, and the UI settings.
 */
export function mountBoard<Adapter extends IServerAdapter>(serverAdapter: Adapter, options: ResolvedDurableDashboardOptions): Adapter {
  const readOnlyMode = options.readOnly;
  createBullBoard({
    queues: options.queues.map((queue) => new BullMQAdapter(queue, { readOnlyMode, allowRetries: !readOnlyMode })),
    serverAdapter,
    options: { uiConfig: options.uiConfig },
  });
  return serverAdapter;
}

/** The 405 a read-only dashboard answers any method but GET and HEAD with, shaped as the live view's errors are. */
export function readOnlyRefusal(method: string): { status: 405; headers: Record<string, string>; body: string } {
  return {
    status: 405,
    headers: { allow: 'GET, HEAD', 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    body: JSON.stringify({ error: { status: 405, message: `the dashboard is read-only: ${method} is not allowed, only GET and HEAD (durableDashboard({ readOnly: false }) allows changes)` } }),
  };
}

function isQueue(value: unknown): value is DashboardQueue {
  const queue = value as Partial<DashboardQueue> | null | undefined;
  return typeof queue?.name === 'string' && typeof queue.getJobCounts === 'function' && typeof queue.getJobs === 'function';
}
