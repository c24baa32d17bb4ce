/**
 * The code under test of docs/testing.md's first example (`../src/signup.js` there): a mailer
 * and the task that uses it. The test replaces the mailer with a fake.
 */
import { defineTask } from '../../src/index.js';

/** Stands in for an SMTP client: the tests never reach it. */
export class Mailer {
  async send(to: string): Promise<void> {
    throw new Error(`no SMTP server here: the test should have faked the mailer (to ${to})`);
  }
}

export const sendWelcome = defineTask({ name: 'sendWelcome', inject: [Mailer] }, (mailer: Mailer, to: string) => mailer.send(to));
