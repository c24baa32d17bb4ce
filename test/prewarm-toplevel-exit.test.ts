/** pool: { prewarm: true } with a task module whose top level leaves a timer that calls process.exit(). */
import { expect, it } from 'vitest';
import { triplesAfterAll } from './fixtures/toplevel-exits.js';
import { expectPrewarmToStop } from './prewarm-toplevel.js';

it("stops prewarming once a callback a task module's top level set up has ended 3 idle threads with process.exit(), saying so (threads were replaced and ended for ever, silently)", async () => {
  expect(triplesAfterAll.name).toBe('triplesAfterAll');
  await expectPrewarmToStop((message) => message === "a worker thread ended, running no task: process.exit(7) in a callback no task could be named for (one a task module's top level set up); it is replaced");
});
