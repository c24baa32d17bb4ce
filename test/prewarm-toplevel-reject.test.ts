/** pool: { prewarm: true } with a task module whose top level leaves a promise that rejects, handled by nothing. */
import { expect, it } from 'vitest';
import { quadruplesAfterAll } from './fixtures/toplevel-rejects.js';
import { expectPrewarmToStop } from './prewarm-toplevel.js';

it("stops prewarming once a callback a task module's top level set up has ended 3 idle threads with a rejection nothing handled, saying it was a rejection", async () => {
  expect(quadruplesAfterAll.name).toBe('quadruplesAfterAll');
  await expectPrewarmToStop(
    (message) =>
      message === "a worker thread ended, running no task: top-level rejection (a promise nothing handled rejected with it, in a callback no task could be named for: one a task module's top level set up); it is replaced",
  );
});
