/**
 * The live view, shared by the Express, Fastify and Hono adapters: a read-only JSON API over the
 * application's tasks (`stats`, `list`, `get`, through `ApplicationBackground`) and one HTML page
 * that shows them and refreshes itself. It imports no framework: each adapter turns its request
 * into a {@link LiveViewRequest} and sends the {@link LiveViewResponse} back.
 */
import { createHash } from 'node:crypto';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import { ApplicationBackground, type Background, type TaskHandle, type TaskStatus } from '../index.js';
import { checkKnownKeys, describe, isOptionsObject } from '../model/checks.js';

/** Options of every adapter's `liveView`. */
export interface LiveViewOptions {
  /**
   * Any container of the application whose tasks the view shows: the view resolves
   * `ApplicationBackground` from it on each request, and shows the whole application's tasks
   * (every scope's), whichever container of the application is given.
   * @default tsyringe's global `container`
   */
  container?: DependencyContainer | undefined;
  /**
   * Where the durable dashboard is (`'/background/queues'`, where `durableDashboard` from
   * `tsyringe-background/express/dashboard`, `/fastify/dashboard` or `/hono/dashboard` is
   * mounted): the page's header links to it. An absolute path on this site, or an `http(s)` URL.
   * @default no link
   */
  dashboardPath?: string | undefined;
}

/** Options with the defaults filled in and checked. */
export interface ResolvedLiveViewOptions {
  readonly container: DependencyContainer;
  readonly dashboardPath: string | undefined;
}

/** One request, as an adapter hands it over. */
export interface LiveViewRequest {
  /** The HTTP method, upper case. */
  readonly method: string;
  /** The path below the mount point, still percent-encoded: `/`, `/api/tasks/42`. */
  readonly path: string;
  readonly query: URLSearchParams;
}

/** What an adapter sends back, as it is; each response is the adapter's own to change. */
export interface LiveViewResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Answers one request; never rejects (a failure is a 500 with a JSON error). */
export type LiveViewHandler = (request: LiveViewRequest) => Promise<LiveViewResponse>;

/** A task as the JSON API shows it. */
export interface LiveViewTask {
  /** The task's id, as `handle.id`. */
  readonly id: string;
  /** The task's name, as `handle.name`. */
  readonly name: string;
  /** Where the task is now, as `handle.status`. */
  readonly status: TaskStatus;
  /** The current attempt, from 1 (0 before the first starts), as `handle.attempt`. */
  readonly attempt: number;
  /** The last report of `ctx.progress()`, or `null`. */
  readonly progress: {
    /** From 0 to 1. */
    readonly fraction: number;
    /** The message reported with it, or `null` when none was. */
    readonly message: string | null;
  } | null;
  /** Why the task ended without succeeding (failed, timedOut, cancelled, skipped, abandoned), or `null`. */
  readonly error: LiveViewError | null;
}

/** An error as the JSON API shows it: never its stack, its cause or its other fields. */
export interface LiveViewError {
  /** The error's `name`: `TaskTimeoutError`, `TypeError`, …; `Error` for a value that is not an error. */
  readonly name: string;
  /** The error's `message`; for a value that is not an error, the value as a string. */
  readonly message: string;
  /** The error's `code` when it is a string or a number (`ERR_TASK_TIMEOUT`, say); absent otherwise. */
  readonly code?: string | number;
}

/** `GET /api/tasks`: how many tasks matched, and the first `limit` of them (live first, then finished; newest first in each). */
export interface LiveViewTaskList {
  /** How many tasks matched (those of the query's `status`, or all), in `tasks` or not. */
  readonly count: number;
  /** The most tasks `tasks` holds: the query's `limit`, from 1 to 500; 50 when none was given. */
  readonly limit: number;
  /** The first `limit` tasks that matched: live first, then finished; newest first in each. */
  readonly tasks: readonly LiveViewTask[];
}

/** How many tasks `GET /api/tasks` returns: `limit` defaults to 50 and may be from 1 to 500. */
export const liveViewLimits = Object.freeze({ default: 50, max: 500 });

/**
 * The page's timing: a round of requests starts `refreshMs` after the previous one ended, and
 * a round not answered in full within `roundTimeoutMs` is given up (its requests aborted) and
 * counts as failed, so that one answer that never comes cannot stop the refreshes.
 */
export const liveViewPageTiming = Object.freeze({ refreshMs: 1000, roundTimeoutMs: 5000 });

const known = { queued: true, delayed: true, running: true, retrying: true, succeeded: true, failed: true, cancelled: true, timedOut: true, skipped: true, abandoned: true } satisfies Record<TaskStatus, true>;
const statuses = Object.keys(known) as TaskStatus[];
const failedStatuses: ReadonlySet<TaskStatus> = new Set<TaskStatus>(['failed', 'cancelled', 'timedOut', 'skipped', 'abandoned']);
const routes = '/, /api/stats, /api/tasks and /api/tasks/:id';

/** The keys of {@link LiveViewOptions}. */
const liveViewKeys = ['container', 'dashboardPath'] as const satisfies readonly (keyof LiveViewOptions)[];

/**
 * Fills in the defaults and checks the options, naming what is wrong. A key that is neither an
 * option nor one of `frameworkKeys` (the framework's own, which it reads from the same object:
 * Fastify's `prefix`, `logLevel`, `logSerializers`) is refused.
 * @throws TypeError when an option is not a known one or has the wrong type.
 */
export function resolveLiveViewOptions(options: LiveViewOptions | undefined, frameworkKeys: readonly string[] = []): ResolvedLiveViewOptions {
  if (options === undefined) return Object.freeze({ container: globalContainer, dashboardPath: undefined });
  if (!isOptionsObject(options)) throw new TypeError(`liveView(options): options must be an object, got ${describe(options)}`);
  const { container = globalContainer, dashboardPath } = checkKnownKeys(options, [...liveViewKeys, ...frameworkKeys], 'liveView(options)');
  if (typeof (container as Partial<DependencyContainer> | null)?.resolve !== 'function') {
    throw new TypeError(`liveView(options): options.container must be a tsyringe container, got ${describe(container)}`);
  }
  if (dashboardPath !== undefined) checkLink('liveView(options): options.dashboardPath', dashboardPath);
  return Object.freeze({ container, dashboardPath });
}

/**
 * Checks a path or URL a page links to: an absolute path on this site (`/background`) or an
 * `http(s)` URL, with no whitespace (Unicode's too: U+00A0, U+2028…) or control characters
 * (C0, DEL, C1). A path may not start with `//` nor `/\`: browsers take both for a link to
 * another host (URL parsing reads `\` as `/` in http(s) URLs).
 * @throws TypeError naming `what` otherwise.
 */
export function checkLink(what: string, value: unknown): asserts value is string {
  const refused = `${what} must be an absolute path (such as "/background/queues") or an http(s) URL, got ${describe(value)}`;
  if (typeof value !== 'string') throw new TypeError(refused);
  const invisible = /[\s\p{Cc}]/u.exec(value);
  if (invisible !== null) {
    const codePoint = `U+${invisible[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    throw new TypeError(`${refused}, which has whitespace or a control character (${codePoint}) in it`);
  }
  if (/^\/[/\\]/.test(value)) throw new TypeError(`${refused}, which browsers take for a link to another host`);
  if (!value.startsWith('/') && !/^https?:\/\/[^/]/i.test(value)) throw new TypeError(refused);
}

/**
 * The live view's routes, below its mount point: `GET /` (the page), `GET /api/stats`,
 * `GET /api/tasks?status=running,queued&limit=50` and `GET /api/tasks/:id`. `HEAD` too; any
 * other method is a 405. Each request reads the application's tasks afresh.
 */
export function createLiveView(options: ResolvedLiveViewOptions): LiveViewHandler {
  const page = options.dashboardPath === undefined ? plainPage : pageOf(options.dashboardPath);
  return async (request) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return json(405, { error: { status: 405, message: `the live view is read-only: ${request.method} is not allowed, only GET and HEAD` } }, { allow: 'GET, HEAD' });
    }
    const path = request.path.length > 1 && request.path.endsWith('/') ? request.path.slice(0, -1) : request.path;
    try {
      if (path === '/' || path === '') return { ...page, headers: { ...page.headers } };
      if (path === '/api/stats') return json(200, background(options).stats({ application: true }));
      if (path === '/api/tasks') return await listTasks(options, request.query);
      const byId = /^\/api\/tasks\/([^/]+)$/.exec(path);
      if (byId !== null) return await getTask(options, byId[1]!);
      return json(404, { error: { status: 404, message: `the live view has no route ${path}; it serves ${routes}` } });
    } catch (error) {
      return json(500, { error: { status: 500, message: 'the live view could not read the tasks', cause: errorOf(error) } });
    }
  };
}

/**
 * The path below a mount point, from a request's path and the mount point's route pattern
 * (`/background`, `/t/:tenant/background`): as many segments are dropped as the pattern has.
 * Empty segments are not counted (a router may take `//background//api` for `/background/api`).
 */
export function pathBelow(pathname: string, mountPattern: string): string {
  const depth = mountPattern.split('/').filter((segment) => segment !== '').length;
  const segments = pathname.split('/').filter((segment) => segment !== '');
  return `/${segments.slice(depth).join('/')}`;
}

/**
 * A request target (`/api/tasks?status=running`) cut into its path and its query. An
 * absolute-form target (`http://host/api/tasks?…`, which a proxy may send: RFC 9112 §3.2.2)
 * gives its path (`/api/tasks`) the same, still percent-encoded.
 */
export function splitTarget(target: string): { path: string; query: URLSearchParams } {
  const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(target);
  const rest = origin === null ? target : target.slice(origin[0].length);
  const at = rest.indexOf('?');
  const path = at < 0 ? rest : rest.slice(0, at);
  return { path: path === '' ? '/' : path, query: new URLSearchParams(at < 0 ? '' : rest.slice(at + 1)) };
}

function background(options: ResolvedLiveViewOptions): Background {
  return options.container.resolve(ApplicationBackground);
}

async function listTasks(options: ResolvedLiveViewOptions, query: URLSearchParams): Promise<LiveViewResponse> {
  const wanted: TaskStatus[] = [];
  for (const given of query.getAll('status')) {
    for (const status of given.split(',')) {
      if (!(statuses as readonly string[]).includes(status)) {
        return badQuery('status', `a comma-separated list of statuses (${statuses.join(', ')})`, given);
      }
      wanted.push(status as TaskStatus);
    }
  }
  let limit: number = liveViewLimits.default;
  const givenLimit = query.get('limit');
  if (givenLimit !== null) {
    // Digits only (no sign, exponent, fraction or space); leading zeros are read past.
    limit = /^[0-9]+$/.test(givenLimit) ? Number(givenLimit) : NaN;
    if (!(limit >= 1 && limit <= liveViewLimits.max)) return badQuery('limit', `an integer from 1 to ${liveViewLimits.max}`, givenLimit);
  }
  const found = background(options).list({ status: query.has('status') ? wanted : undefined, application: true });
  const body: LiveViewTaskList = { count: found.length, limit, tasks: await Promise.all(found.slice(0, limit).map(taskOf)) };
  return json(200, body);
}

async function getTask(options: ResolvedLiveViewOptions, encodedId: string): Promise<LiveViewResponse> {
  let id: string;
  try {
    id = decodeURIComponent(encodedId);
  } catch {
    return badQuery('id', 'a percent-encoded task id', encodedId);
  }
  const handle = background(options).get(id, { application: true });
  if (handle === undefined) {
    return json(404, { error: { status: 404, message: `no task with id ${JSON.stringify(id)}: it never existed, or it finished and is no longer on record` } });
  }
  return json(200, await taskOf(handle));
}

/**
 * The task's fields; its error only when it ended without succeeding (its `result()` has settled
 * then). Only strings, numbers and `null` are copied, so that the answer is always JSON. A task
 * whose fields cannot be read is shown with an error that says so: one task never takes the
 * list down with it.
 */
async function taskOf(handle: TaskHandle): Promise<LiveViewTask> {
  const { id, name, status, attempt } = handle;
  try {
    const { progress } = handle;
    const error = failedStatuses.has(status) ? await handle.result().then(() => null, errorOf) : null;
    const message = progress?.message === undefined ? null : textOf(() => progress.message, 'progress message');
    return { id, name, status, attempt, progress: progress === undefined ? null : { fraction: progress.fraction, message }, error };
  } catch (error) {
    const why = textOf(() => errorOf(error).message, 'reason');
    return { id, name, status, attempt, progress: null, error: { name: 'Error', message: `the live view could not read this task: ${why}` } };
  }
}

/** An error reduced to its name, message and code (a string or a number), each read with care: a getter may throw. */
function errorOf(error: unknown): LiveViewError {
  if (!isError(error)) return { name: 'Error', message: textOf(() => error, 'value') };
  const name = textOf(() => error.name, 'name');
  const message = textOf(() => error.message, 'message');
  let code: unknown;
  try {
    code = (error as { code?: unknown }).code;
  } catch {
    code = undefined;
  }
  return typeof code === 'string' || typeof code === 'number' ? { name, message, code } : { name, message };
}

/** Whether a value is an Error; a revoked Proxy (whose `instanceof` throws) is not. */
function isError(value: unknown): value is Error {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

/**
 * A value as text for the page: a string as it is, anything else printed. When reading or
 * printing it throws (a getter, a `toString()`), a text that says its `what` could not be read,
 * and why when that can be read: `(its message could not be read: getter failed)`.
 */
function textOf(read: () => unknown, what: string): string {
  try {
    const value = read();
    return typeof value === 'string' ? value : String(value);
  } catch (problem) {
    let why = '';
    try {
      if (isError(problem) && typeof problem.message === 'string' && problem.message !== '') why = `: ${problem.message}`;
    } catch {
      // Its own message cannot be read either: say only what could not be.
    }
    return `(its ${what} could not be read${why})`;
  }
}

function badQuery(parameter: string, expected: string, got: string): LiveViewResponse {
  return json(400, { error: { status: 400, parameter, message: `${parameter} must be ${expected}, got ${JSON.stringify(got)}` } });
}

const commonHeaders = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

function json(status: number, body: unknown, headers: Record<string, string> = {}): LiveViewResponse {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8', ...commonHeaders, ...headers }, body: JSON.stringify(body) };
}

// The page: no external assets and no build step. Task-provided text (names, messages, errors)
// only ever reaches the DOM through textContent, and a Content-Security-Policy allows only this
// page's own style and script (by hash), so even markup in a task name could not run.
const style = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --run: #0969da; --wait: #9a6700; --muted: #6e7781; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 16px 24px; }
header { display: flex; align-items: baseline; gap: 16px; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 15px; margin: 20px 0 6px; }
#state { color: var(--muted); }
#state.error { color: var(--bad); }
#dashboard { margin-left: auto; }
#counts { display: flex; flex-wrap: wrap; gap: 8px; }
.count { flex: 1 1 0; min-width: 72px; border: 1px solid var(--line); border-radius: 6px; padding: 4px 8px; }
.count .n { display: block; font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.count .label { color: var(--muted); font-size: 11px; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
th.name { width: 28%; } th.id { width: 8%; } th.status { width: 11%; } th.attempt { width: 8%; }
progress { width: 120px; vertical-align: middle; }
.pct { display: inline-block; width: 40px; text-align: right; font-variant-numeric: tabular-nums; }
.message { color: var(--muted); margin-left: 6px; }
progress + .pct + .error, td > .error:not(:first-child) { margin-left: 6px; }
.error { color: var(--bad); }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; border: 1px solid currentColor; }
.s-running { color: var(--run); } .s-queued, .s-delayed, .s-retrying { color: var(--wait); }
.s-succeeded { color: var(--ok); } .s-failed, .s-timedOut, .s-abandoned { color: var(--bad); } .s-cancelled, .s-skipped { color: var(--muted); }
.empty { color: var(--muted); margin: 6px 8px; }
`;

const script = `
'use strict';
(() => {
  const live = 'queued,delayed,running,retrying';
  const finished = 'succeeded,failed,cancelled,timedOut,skipped,abandoned';
  // Relative to the page, wherever it is mounted, with or without a trailing slash.
  const base = location.pathname.endsWith('/') ? location.pathname : location.pathname + '/';
  const byId = (id) => document.getElementById(id);
  let refreshes = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = shown(String(text));
    return node;
  }

  // Direction controls in task-provided text are named, not obeyed: a right-to-left override
  // would show a name reversed from there on ("invoice\u202Egnp.exe" as "invoiceexe.png").
  function shown(text) {
    return text.replace(/[\u202A-\u202E\u2066-\u2069]/g, (c) => '<U+' + c.charCodeAt(0).toString(16).toUpperCase() + '>');
  }

  // The view's answer has its key (byStatus, tasks). Another's (a login that expired: a 401, a
  // redirect to a login page, a proxy's own JSON) is said as what it is.
  async function getJson(path, signal, key) {
    let response;
    try {
      response = await fetch(base + path, { cache: 'no-store', headers: { accept: 'application/json' }, signal });
    } catch (error) {
      // The round's deadline (said by the round), or fetch's one word for every other failure
      // ("Failed to fetch", which would read as a dead server whatever the cause).
      if (signal.aborted) throw error;
      throw new Error('no answer from the server (it cannot be reached, or it redirected the request to another origin or in a loop)');
    }
    const isJson = (response.headers.get('content-type') || '').startsWith('application/json');
    const body = isJson ? await response.json().catch(() => undefined) : undefined;
    const own = body !== null && typeof body === 'object';
    if (!response.ok) {
      // The view's own errors: { error: { message } }; a framework's: { error: 'Unauthorized', message }.
      const viewError = own && body.error !== null && typeof body.error === 'object' && typeof body.error.message === 'string' ? body.error.message : undefined;
      const theirs = own && typeof body.message === 'string' ? ': ' + body.message : '';
      throw new Error(viewError || 'HTTP ' + response.status + (response.statusText ? ' ' + response.statusText : '') + theirs);
    }
    if (!own || !(key in body)) throw new Error("the answer was not the live view's JSON (HTTP " + response.status + (response.redirected ? ', redirected to ' + response.url : '') + ')');
    return body;
  }

  function renderCounts(stats) {
    const boxes = [['total', 'added']].concat(Object.keys(stats.byStatus).map((status) => [status, status]));
    byId('counts').replaceChildren(...boxes.map(([key, label]) => {
      const box = el('div', 'count');
      box.dataset.status = key;
      box.append(el('span', 'n', key === 'total' ? stats.total : stats.byStatus[key]), el('span', 'label', label));
      return box;
    }));
  }

  function progressCell(task) {
    const cell = el('td', 'progress');
    if (task.progress) {
      const bar = el('progress');
      bar.max = 1;
      bar.value = task.progress.fraction;
      cell.append(bar, el('span', 'pct', Math.round(task.progress.fraction * 100) + '%'));
      if (task.progress.message !== null) cell.append(el('span', 'message', task.progress.message));
    }
    if (task.error) cell.append(el('span', 'error', task.error.name + ': ' + task.error.message));
    if (!task.progress && !task.error) cell.append(el('span', 'message', '\\u2014'));
    cell.title = cell.textContent;
    return cell;
  }

  function row(task) {
    const tr = el('tr');
    tr.dataset.id = task.id;
    tr.dataset.status = task.status;
    const status = el('td', 'status');
    status.append(el('span', 'badge s-' + task.status, task.status));
    tr.append(el('td', 'name', task.name), el('td', 'id', task.id), status, el('td', 'attempt', task.attempt), progressCell(task));
    tr.firstChild.title = task.name;
    return tr;
  }

  function renderTable(id, list) {
    byId(id).tBodies[0].replaceChildren(...list.tasks.map(row));
    byId(id + '-empty').hidden = list.tasks.length > 0;
    byId(id + '-count').textContent = list.count > list.tasks.length ? '(' + list.tasks.length + ' of ' + list.count + ')' : '(' + list.count + ')';
  }

  // Each round has a deadline (an AbortController and a timer, which older browsers have too):
  // an answer that never comes fails its round, and the next round starts all the same.
  async function refresh() {
    const round = new AbortController();
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      round.abort();
    }, ${liveViewPageTiming.roundTimeoutMs});
    try {
      if (!document.hidden) {
        const [stats, liveTasks, finishedTasks] = await Promise.all([
          getJson('api/stats', round.signal, 'byStatus'),
          getJson('api/tasks?status=' + live + '&limit=50', round.signal, 'tasks'),
          getJson('api/tasks?status=' + finished + '&limit=20', round.signal, 'tasks'),
        ]);
        renderCounts(stats);
        renderTable('live', liveTasks);
        renderTable('finished', finishedTasks);
        byId('state').className = '';
        byId('state').textContent = 'updated ' + new Date().toLocaleTimeString();
        document.body.dataset.refreshes = String(++refreshes);
      }
    } catch (error) {
      const why = timedOut ? 'no answer within ${liveViewPageTiming.roundTimeoutMs / 1000} s' : error && error.message ? error.message : String(error);
      byId('state').className = 'error';
      byId('state').textContent = 'could not refresh: ' + why;
    } finally {
      clearTimeout(deadline);
      round.abort(); // what is left of a failed round: its other requests
      setTimeout(refresh, ${liveViewPageTiming.refreshMs});
    }
  }

  void refresh();
})();
`;

const table = (id: string, title: string, last: string, empty: string): string => `
<h2>${title} <span id="${id}-count"></span></h2>
<table id="${id}"><thead><tr><th class="name">Name</th><th class="id">Id</th><th class="status">Status</th><th class="attempt">Attempt</th><th>${last}</th></tr></thead><tbody></tbody></table>
<p class="empty" id="${id}-empty" hidden>${empty}</p>`;

const htmlOf = (headerLink: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Background tasks</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>
<header><h1>Background tasks</h1><span id="state" role="status">loading\u2026</span>${headerLink}</header>
<section id="counts" aria-label="Tasks by status"></section>
${table('live', 'Live', 'Progress', 'No task is queued, delayed, running or retrying.')}
${table('finished', 'Recently finished', 'Last progress or error', 'No finished task on record.')}
<script>${script}</script>
</body>
</html>
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

const pageHeaders = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  ...commonHeaders,
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(style)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
});

const plainPage: LiveViewResponse = Object.freeze({ status: 200, headers: pageHeaders, body: htmlOf('') });

/** The page with a link to the durable dashboard in its header (a plain link: the policy above allows it as it is). */
function pageOf(dashboardPath: string): LiveViewResponse {
  const link = `<a id="dashboard" href="${escapeAttribute(dashboardPath)}">Durable jobs (dashboard)</a>`;
  return Object.freeze({ status: 200, headers: pageHeaders, body: htmlOf(link) });
}

function escapeAttribute(text: string): string {
  return text.replace(/[&"'<>]/g, (c) => `&#${c.charCodeAt(0)};`);
}
