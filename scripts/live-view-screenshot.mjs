// Writes docs/live-view.png: the live view (Express adapter, built dist/) in headless Chromium,
// 1000×600, while tasks run, wait and end. Run: npm run build && node scripts/live-view-screenshot.mjs
// Chromium: CHROMIUM_PATH, or Debian's /usr/bin/chromium.
import 'reflect-metadata';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import express from 'express';
import puppeteer from 'puppeteer-core';
import { container } from 'tsyringe';
import { liveView } from '../dist/adapters/express.js';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext } from '../dist/index.js';

const output = fileURLToPath(new URL('../docs/live-view.png', import.meta.url));
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

const app = container.createChildContainer();
app.register(BackgroundOptions, { useValue: { root: true, concurrency: 3, logger: quiet } });
const bg = app.resolve(Background);

let release;
const held = new Promise((resolve) => (release = resolve));
const started = [];
/** A task that reports its progress, then waits until the screenshot is taken. */
const working = (name, fraction, message) => {
  let began;
  started.push(new Promise((resolve) => (began = resolve)));
  return defineTask({ name, inject: [TaskContext] }, async (ctx) => {
    ctx.progress(fraction, message);
    began();
    await held;
  });
};
const quick = (name, outcome = async () => undefined) => defineTask({ name }, outcome);

for (const to of ['ada@example.com', 'alan@example.com', 'grace@example.com']) await bg.add(quick('sendWelcome'), to).result();
await bg
  .add(
    quick('chargeCard', async () => {
      throw Object.assign(new Error('card declined (insufficient funds)'), { code: 'E_DECLINED' });
    }),
  )
  .result()
  .catch(() => undefined);
await bg
  .with({ timeoutMs: 5 })
  .add(defineTask({ name: 'fetchExchangeRates', inject: [TaskContext] }, (ctx) => new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)))))
  .result()
  .catch(() => undefined);
bg.add(working('importRows', 0.62, 'rows 6 200 of 10 000'));
bg.add(working('resizeImages', 0.25, 'image 1 of 4'));
bg.add(working('syncInventory', 0.9, 'page 9 of 10'));
await Promise.all(started);
bg.add(quick('sendDigest'));
bg.with({ priority: 'low' }).add(quick('reindexSearch'));
bg.with({ delayMs: 3_600_000 }).add(quick('sendReminder'));

const server = express().use('/background', liveView({ container: app })).listen(0, '127.0.0.1');
await once(server, 'listening');
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 600 });
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  await page.goto(`http://127.0.0.1:${server.address().port}/background/`);
  await page.waitForFunction('Number(document.body.dataset.refreshes ?? 0) > 0');
  // The clock in the header, fixed so that the image does not change with every run.
  await page.evaluate(`document.getElementById('state').textContent = 'updated 10:42:07'`);
  await page.screenshot({ path: output });
  console.log(`wrote ${output}`);
} finally {
  await browser.close();
  server.closeAllConnections();
  server.close();
  release();
  await shutdown({ container: app });
}
