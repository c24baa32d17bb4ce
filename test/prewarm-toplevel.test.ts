/** pool: { prewarm: true } with a task module whose top level leaves a timer that throws. */
import { expect, it } from 'vitest';
import { doublesAfterAll } from './fixtures/toplevel-throws.js';
import { expectPrewarmToStop } from './prewarm-toplevel.js';

it("stops prewarming once a callback a task module's top level set up has ended 3 idle threads, saying so (threads were replaced and ended for ever)", async () => {
  expect(doublesAfterAll.name).toBe('doublesAfterAll');
  await expectPrewarmToStop((message) => message.startsWith('a worker thread ended, running no task: top-level timer boom (thrown by a callback'));
});
