/**
 * What the three live view examples of docs/frameworks.md share: the stand-in for the
 * application's authentication, and a look at a mounted view while a task of the application
 * runs. `liveView()` without options shows the global container's application, so the task goes
 * there (and is let finish; the application stays open, as an application's does).
 */
import { container } from 'tsyringe';
import { Background, defineTask, TaskContext } from '../../../src/index.js';

/** The `authorization` header the stand-in `requireAdmin` of each example lets through. */
export const adminToken = 'Bearer admin';

/** Reports 40 % and says so, then waits for its gate. */
const importRows = defineTask({ name: 'importRows', inject: [TaskContext] }, async (ctx, reported: () => void, gate: Promise<void>) => {
  ctx.progress(0.4, 'rows 40 of 100');
  reported();
  await gate;
});

/**
 * Adds `importRows` to the global application, holds it at 40 %, and reads what the view at
 * `base` (its mount point, without a trailing slash) answers: the page and `api/stats` without
 * the login and with it, and the task by id. Then lets the task finish.
 */
export async function lookAtLiveView(base: string) {
  let reported!: () => void;
  let open!: () => void;
  const progressed = new Promise<void>((resolve) => (reported = resolve));
  const gate = new Promise<void>((resolve) => (open = resolve));
  const handle = container.resolve(Background).add(importRows, reported, gate);
  try {
    await progressed;
    const get = (path: string, authorization?: string) => fetch(base + path, { headers: authorization === undefined ? {} : { authorization } });
    const page = await get('/', adminToken);
    const stats = (await (await get('/api/stats', adminToken)).json()) as Record<string, unknown>;
    return {
      withoutLogin: [(await get('/')).status, (await get('/api/stats')).status],
      page: `${page.status} ${page.headers.get('content-type')}`,
      stats: { running: stats.running, queued: stats.queued },
      task: await (await get(`/api/tasks/${handle.id}`, adminToken)).json(),
      id: handle.id,
    };
  } finally {
    open();
    await handle.result();
  }
}
