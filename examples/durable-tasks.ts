/**
 * The durable example's tasks (see durable.ts): charging an invoice and mailing its receipt.
 * Producers and workers import the same definitions; only the workers run them, so only the
 * workers register what they inject.
 *
 * The outside world (a payment provider, a mail relay) is stood in for by `SideEffects`: every
 * call a task makes is counted in a Redis hash, one field per job, outside the process that makes
 * it, so that a job run twice, or never, shows even when its worker is killed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { injectable } from 'tsyringe';
import { defineTask } from 'tsyringe-background';

/** The Redis hash that counts the side effects, field by job (`charge:inv-0042`, `receipt:inv-0042`). */
export const EFFECTS_KEY = 'durable-example:effects';
/** The same count per worker process: `${EFFECTS_KEY}:<pid>`. */
export const effectsKeyOf = (pid: number): string => `${EFFECTS_KEY}:${pid}`;

export interface Invoice {
  readonly id: string;
  readonly customer: string;
  readonly amountCents: number;
}

/** Counts each call to the outside world in Redis; registered by the worker processes with `useValue`. */
export class SideEffects {
  constructor(readonly redis: Redis) {}

  async record(key: string): Promise<void> {
    await this.redis.multi().hincrby(EFFECTS_KEY, key, 1).hincrby(effectsKeyOf(process.pid), key, 1).exec();
  }
}

/** The payment provider's client. */
@injectable()
export class PaymentGateway {
  constructor(private readonly effects: SideEffects) {}

  async charge(invoice: Invoice): Promise<string> {
    await this.effects.record(`charge:${invoice.id}`);
    return `ch_${invoice.id}`;
  }
}

/** The mail relay's client. */
@injectable()
export class Mailer {
  constructor(private readonly effects: SideEffects) {}

  async sendReceipt(invoice: Invoice): Promise<void> {
    await this.effects.record(`receipt:${invoice.id}`);
  }
}

/**
 * Charges an invoice: durable on its definition, so every `add()` of it is a job in Redis. The
 * charge is made half-way through about 20 ms of work (looking the invoice up, then writing the
 * ledger), so that a worker killed mid-job may have charged already: run again, the job charges
 * twice unless the provider is given an idempotency key (docs/durable.md#idempotency).
 */
export const chargeInvoice = defineTask({ name: 'chargeInvoice', inject: [PaymentGateway], durable: true, retries: 3 }, async (payments, invoice: Invoice) => {
  await sleep(10);
  const chargeId = await payments.charge(invoice);
  await sleep(10);
  return { chargeId };
});

/** Mails an invoice's receipt: not durable on its definition; the producer adds it with `bg.with({ durable: true })`. */
export const sendReceipt = defineTask({ name: 'sendReceipt', inject: [Mailer], retries: 3 }, async (mailer, invoice: Invoice) => {
  await sleep(10);
  await mailer.sendReceipt(invoice);
  await sleep(10);
});
