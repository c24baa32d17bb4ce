/**
 * The live view's page in a real headless browser: Debian's `chromium` (or `CHROMIUM_PATH`),
 * driven by puppeteer-core, opens the page that each framework serves while tasks run (two
 * running with progress, two queued, one succeeded, one failed), and checks what it shows, then
 * that it follows a task to its end after the test opens its gate. Tasks are held on gates; the
 * test waits for the page's own refreshes (it counts them in `body[data-refreshes]`), never for
 * a fixed time. Then, on a plain Node server, a request that never gets its answer: the test
 * holds it, passes the page's deadline for the round itself (the page's timer of that length is
 * the test's to fire), and sees the page say so and refresh again; and answers that are not the
 * view's (a 401, a redirect to a login page), which the page names. One browser for the file.
 */
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import puppeteer, { type Browser, type BrowserContext, type Page } from 'puppeteer-core';
import type { DependencyContainer } from 'tsyringe';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLiveView, liveViewPageTiming, pathBelow, resolveLiveViewOptions, splitTarget } from '../../src/adapters/live-view.js';
import { Background, defineTask, shutdown, TaskContext, type TaskHandle } from '../../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors, type Deferred } from '../helpers.js';
import { authorization, liveViewServers, type LiveViewServer } from './live-view-servers.js';

watchProcessErrors();

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Without a Chromium, the page's tests are skipped with a notice; under CI (where .ci/run installs it) that is a failure. */
const hasChromium = existsSync(chromium);
if (!hasChromium) {
  const hint = `no Chromium at ${chromium}: install Debian's (apt-get install -y chromium) or set CHROMIUM_PATH to a Chromium or Chrome binary`;
  if (process.env.CI === 'true') throw new Error(hint);
  console.warn(`[live view browser test] skipped: ${hint}`);
}

/** What the page shows, read from its DOM. */
interface View {
  refreshes: number;
  state: string;
  stateIsError: boolean;
  counts: Record<string, number>;
  live: Row[];
  finished: Row[];
  liveCount: string;
  images: number;
  pwned: boolean;
  pathname: string;
}

interface Row {
  id: string;
  name: string;
  status: string;
  attempt: string;
  fraction: number | null;
  progress: string;
}

// Runs in the page: plain JavaScript, no DOM types needed on this side.
const readView = `(() => {
  const text = (root, selector) => root.querySelector(selector)?.textContent ?? '';
  const rows = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')].map((tr) => ({
    id: tr.dataset.id, name: text(tr, '.name'), status: text(tr, '.status'), attempt: text(tr, '.attempt'),
    fraction: tr.querySelector('progress')?.value ?? null, progress: text(tr, '.progress'),
  }));
  return {
    refreshes: Number(document.body.dataset.refreshes ?? 0),
    state: text(document, '#state'),
    stateIsError: document.getElementById('state').classList.contains('error'),
    counts: Object.fromEntries([...document.querySelectorAll('#counts .count')].map((box) => [box.dataset.status, Number(text(box, '.n'))])),
    live: rows('live'),
    finished: rows('finished'),
    liveCount: text(document, '#live-count'),
    images: document.images.length,
    pwned: globalThis.__pwned === true,
    pathname: location.pathname,
  };
})()`;

/**
 * Reads the page until `shows(view)` holds, waiting for the page's next refresh (or its error
 * state) between two reads; fails with the last view after `refreshes` refreshes.
 */
async function waitForView(page: Page, shows: (view: View) => boolean, refreshes = 5): Promise<View> {
  let view = (await page.evaluate(readView)) as View;
  for (let i = 0; !shows(view); i++) {
    if (i === refreshes) throw new Error(`the page did not show what was expected after ${refreshes} refreshes; it shows ${JSON.stringify(view, null, 1)}`);
    await page.waitForFunction(`Number(document.body.dataset.refreshes ?? 0) > ${view.refreshes} || document.getElementById('state').classList.contains('error')`, {
      timeout: 5_000,
    });
    view = (await page.evaluate(readView)) as View;
  }
  return view;
}

// Markup, and a right-to-left override that would show what follows it reversed (a name disguised: "…exe.png" read as "…gnp.exe").
const xssName = '<img src=x onerror="globalThis.__pwned=true">\u202Egnp.exe';
/** How the page shows it: the markup as text, the direction control named rather than obeyed. */
const xssShown = '<img src=x onerror="globalThis.__pwned=true"><U+202E>gnp.exe';

let browser: Browser;

beforeAll(async () => {
  if (!hasChromium) return;
  // headless: true runs Chromium's new headless mode (puppeteer passes --headless=new).
  browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}, 30_000);

afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!hasChromium).each(Object.entries(liveViewServers))('%s: the live view page in Chromium', (_framework, start) => {
  let app: DependencyContainer;
  let server: LiveViewServer;
  let context: BrowserContext;
  let page: Page;
  let pageErrors: string[];
  let gates: Deferred[];

  beforeEach(async () => {
    gates = [];
    app = freshApp({ concurrency: 2, logger: captureLogger() });
    server = await start(app);
    context = await browser.createBrowserContext();
    page = await context.newPage();
    await page.setViewport({ width: 1000, height: 700 });
    await page.setExtraHTTPHeaders({ authorization }); // the page and its fetches, past the server's stand-in authentication
    pageErrors = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
  });

  afterEach(async () => {
    for (const gate of gates) gate.resolve();
    await context.close();
    await server.close();
    await shutdown({ container: app });
  });

  /** A task that reports `fraction` and `message`, then waits for its gate. */
  function held(name: string, fraction: number, message: string) {
    const started = deferred();
    const gate = deferred();
    gates.push(gate);
    const task = defineTask({ name, inject: [TaskContext] }, async (ctx: TaskContext) => {
      ctx.progress(fraction, message);
      started.resolve();
      await gate.promise;
      return 'done';
    });
    return { started: started.promise, gate, task };
  }

  it('shows the counts, the running tasks with their progress, the queued and the finished ones, task text as text; then follows a task to its end', async () => {
    const bg = app.resolve(Background);
    const welcome = bg.add(defineTask({ name: 'sendWelcome' }, async () => 'sent'));
    await welcome.result();
    const charge = bg.add(
      defineTask({ name: 'chargeCard' }, async () => {
        throw new Error('card <b>declined</b>');
      }),
    );
    await charge.result().catch(() => undefined);
    const importRows = held('importRows', 0.4, 'rows 40 of 100');
    const resize = held('resizeImages', 0.75, '<i>3 of 4</i> images');
    const importing = bg.add(importRows.task);
    const resizing = bg.add(resize.task);
    await Promise.all([importRows.started, resize.started]);
    const xss: TaskHandle = bg.add(defineTask({ name: xssName }, async () => 'harmless'));
    const digest = bg.add(defineTask({ name: 'sendDigest' }, async () => 'sent'));
    expect([importing.status, resizing.status, xss.status, digest.status]).toEqual(['running', 'running', 'queued', 'queued']);

    await page.goto(server.base); // no trailing slash: the page's requests are relative to it all the same
    const before = await waitForView(page, (view) => view.refreshes > 0 && view.live.length === 4);

    expect(before.pathname).toBe('/background');
    expect(before.counts).toEqual({
      total: 6,
      queued: 2,
      delayed: 0,
      running: 2,
      retrying: 0,
      succeeded: 1,
      failed: 1,
      cancelled: 0,
      timedOut: 0,
      skipped: 0,
      abandoned: 0,
    });
    expect(before.live).toEqual([
      { id: digest.id, name: 'sendDigest', status: 'queued', attempt: '0', fraction: null, progress: '\u2014' },
      { id: xss.id, name: xssShown, status: 'queued', attempt: '0', fraction: null, progress: '\u2014' },
      { id: resizing.id, name: 'resizeImages', status: 'running', attempt: '1', fraction: 0.75, progress: '75%<i>3 of 4</i> images' },
      { id: importing.id, name: 'importRows', status: 'running', attempt: '1', fraction: 0.4, progress: '40%rows 40 of 100' },
    ]);
    expect(before.liveCount).toBe('(4)');
    expect(before.finished).toEqual([
      { id: charge.id, name: 'chargeCard', status: 'failed', attempt: '1', fraction: null, progress: 'Error: card <b>declined</b>' },
      { id: welcome.id, name: 'sendWelcome', status: 'succeeded', attempt: '1', fraction: null, progress: '\u2014' },
    ]);
    // The task's markup is text: no element was made from it, and its handler never ran.
    expect(before.images).toBe(0);
    expect(before.pwned).toBe(false);
    expect(before.stateIsError).toBe(false);
    expect(before.state).toMatch(/^updated /);

    importRows.gate.resolve(); // importRows ends; the two queued tasks take its slot, one after the other, and end
    await Promise.all([importing.result(), xss.result(), digest.result()]);
    const after = await waitForView(page, (view) => view.counts.succeeded === 4);

    expect(after.counts).toMatchObject({ total: 6, queued: 0, running: 1, succeeded: 4, failed: 1 });
    expect(after.live).toEqual([{ id: resizing.id, name: 'resizeImages', status: 'running', attempt: '1', fraction: 0.75, progress: '75%<i>3 of 4</i> images' }]);
    expect(after.finished.map((row) => [row.name, row.status])).toEqual([
      ['sendDigest', 'succeeded'],
      [xssShown, 'succeeded'],
      ['importRows', 'succeeded'],
      ['chargeCard', 'failed'],
      ['sendWelcome', 'succeeded'],
    ]);
    expect(after.finished[2]).toMatchObject({ fraction: 0.4, progress: '40%rows 40 of 100' }); // its last report stays
    expect(after.pwned).toBe(false);
    expect(pageErrors).toEqual([]); // nothing the Content-Security-Policy refused, no script error
  });
});

describe.skipIf(!hasChromium)('the live view page when an answer never comes', () => {
  let app: DependencyContainer;
  let context: BrowserContext;
  let page: Page;
  let scriptErrors: string[];
  let closeServer: () => Promise<void>;

  afterEach(async () => {
    await context?.close();
    await closeServer?.();
    await shutdown({ container: app });
  });

  /**
   * Replaces the page's timers of the round's deadline length with ones the test fires itself
   * (`__passDeadlines()`: fires those pending, returns how many): set before the page's script runs.
   */
  const controlDeadlines = `(() => {
    const deadlineMs = ${liveViewPageTiming.roundTimeoutMs};
    const realSetTimeout = window.setTimeout.bind(window);
    const realClearTimeout = window.clearTimeout.bind(window);
    const pending = new Map();
    let nextId = 1e9;
    window.setTimeout = (callback, ms, ...args) => {
      if (ms !== deadlineMs) return realSetTimeout(callback, ms, ...args);
      pending.set(++nextId, () => callback(...args));
      return nextId;
    };
    window.clearTimeout = (id) => {
      if (!pending.delete(id)) realClearTimeout(id);
    };
    window.__passDeadlines = () => {
      const due = [...pending.values()];
      pending.clear();
      for (const fire of due) fire();
      return due.length;
    };
  })()`;

  /**
   * A plain Node server of the view under /background, for an application with one task held on
   * `gate`; `answer` may answer a request first (returning true); then the page, opened on it.
   */
  async function openOnPlainServer(gate: Deferred, answer: (path: string, below: string, res: ServerResponse) => boolean, beforeGoto?: (opened: Page) => Promise<unknown>): Promise<void> {
    const view = createLiveView(resolveLiveViewOptions({ container: app }));
    const server = createServer((req, res) => {
      const { path, query } = splitTarget(req.url ?? '/');
      const below = pathBelow(path, '/background');
      if (answer(path, below, res)) return;
      void view({ method: req.method ?? 'GET', path: below, query }).then((viewed) => res.writeHead(viewed.status, viewed.headers).end(viewed.body));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closeServer = async () => {
      gate.resolve();
      server.closeAllConnections();
      await new Promise((closed) => server.close(closed));
    };
    context = await browser.createBrowserContext();
    page = await context.newPage();
    scriptErrors = [];
    page.on('pageerror', (error) => scriptErrors.push(String(error)));
    await beforeGoto?.(page);
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/background/`);
  }

  it('a round whose answer never comes fails once its deadline passes ("could not refresh"), and the page goes on refreshing', async () => {
    app = freshApp({ logger: captureLogger() });
    const gate = deferred();
    const task = app.resolve(Background).add(defineTask({ name: 'waiting' }, () => gate.promise));
    let holdNextStats = false;
    const held = deferred<ServerResponse>();
    await openOnPlainServer(
      gate,
      (_path, below, res) => {
        if (!holdNextStats || below !== '/api/stats') return false;
        holdNextStats = false; // one request held, as a stalled proxy would; every later one is answered
        held.resolve(res);
        return true;
      },
      (opened) => opened.evaluateOnNewDocument(controlDeadlines),
    );
    const before = await waitForView(page, (view) => view.refreshes > 0 && view.live.length === 1);
    expect(before.live[0]).toMatchObject({ id: task.id, name: 'waiting', status: 'running' });

    holdNextStats = true;
    const stalled = await held.promise; // a later round's api/stats: it gets no answer
    const closed = once(stalled, 'close');
    const waiting = (await page.evaluate(readView)) as View;
    expect(waiting).toMatchObject({ stateIsError: false }); // the round waits, and nothing says so yet
    expect(await page.evaluate('window.__passDeadlines()')).toBe(1); // the round's deadline, and only it
    await page.waitForFunction("document.getElementById('state').classList.contains('error')", { timeout: 5_000 });
    const failed = (await page.evaluate(readView)) as View;
    expect(failed).toMatchObject({ refreshes: waiting.refreshes, state: `could not refresh: no answer within ${liveViewPageTiming.roundTimeoutMs / 1000} s`, stateIsError: true });
    await closed; // the page gave the request up

    await page.waitForFunction(`Number(document.body.dataset.refreshes ?? 0) > ${failed.refreshes}`, { timeout: 5_000 });
    const after = (await page.evaluate(readView)) as View;
    expect(after).toMatchObject({ stateIsError: false, live: [{ id: task.id, status: 'running' }] });
    expect(after.state).toMatch(/^updated /);
    expect(scriptErrors).toEqual([]);
  });

  it('a round answered by something else than the view (a login that expired: a 401 with no body, a redirect to an HTML page) says what came, not a JSON parse error', async () => {
    app = freshApp({ logger: captureLogger() });
    const gate = deferred();
    app.resolve(Background).add(defineTask({ name: 'waiting' }, () => gate.promise));
    let expired: 'no' | '401' | 'redirect' | 'loop' | 'framework' | 'other json' = 'no';
    await openOnPlainServer(gate, (path, below, res) => {
      if (path === '/login') res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><p>log in</p>');
      else if (!below.startsWith('/api/') || expired === 'no') return false;
      else if (expired === '401') res.writeHead(401).end();
      else if (expired === 'redirect') res.writeHead(302, { location: '/login' }).end();
      // A login proxy that sends the request back to itself.
      else if (expired === 'loop') res.writeHead(302, { location: path }).end();
      // Fastify's own error reply, from an authentication hook that throws.
      else if (expired === 'framework') res.writeHead(401, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ statusCode: 401, error: 'Unauthorized', message: 'session expired' }));
      // A proxy's own JSON, of another shape.
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return true;
    });
    await waitForView(page, (shown) => shown.refreshes > 0 && shown.live.length === 1);

    expired = '401';
    await page.waitForFunction("document.getElementById('state').textContent.startsWith('could not refresh')", { timeout: 5_000 });
    expect(await page.evaluate(readView)).toMatchObject({ state: 'could not refresh: HTTP 401 Unauthorized', stateIsError: true });

    expired = 'redirect';
    await page.waitForFunction("document.getElementById('state').textContent.includes('not the live view')", { timeout: 5_000 });
    const redirected = (await page.evaluate(readView)) as View;
    expect(redirected.state).toMatch(/^could not refresh: the answer was not the live view's JSON \(HTTP 200, redirected to http:\/\/127\.0\.0\.1:\d+\/login\)$/);

    expired = 'loop';
    await page.waitForFunction("document.getElementById('state').textContent.includes('no answer from the server')", { timeout: 5_000 });
    expect(await page.evaluate(readView)).toMatchObject({
      state: 'could not refresh: no answer from the server (it cannot be reached, or it redirected the request to another origin or in a loop)',
      stateIsError: true,
    });

    expired = 'framework';
    await page.waitForFunction("document.getElementById('state').textContent.includes('session expired')", { timeout: 5_000 });
    expect(await page.evaluate(readView)).toMatchObject({ state: 'could not refresh: HTTP 401 Unauthorized: session expired', stateIsError: true });

    expired = 'other json';
    await page.waitForFunction("document.getElementById('state').textContent === \"could not refresh: the answer was not the live view's JSON (HTTP 200)\"", { timeout: 5_000 });

    expired = 'no';
    await page.waitForFunction("document.getElementById('state').textContent.startsWith('updated')", { timeout: 5_000 });
    expect(scriptErrors).toEqual([]);
  });
});
