/**
 * TSDoc on the package's public API, as people's editors show it: scripts/check-tsdoc.mjs reads
 * the built `.d.ts` of every entry point (`npm test` builds dist/ first) and lists every exported
 * symbol and public member without a comment of its own.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../scripts/check-tsdoc.mjs', import.meta.url));

/** Runs the check on the package in `dir` (this repository without one): its exit code and the lines it printed. */
function check(dir?: string): Promise<{ code: number; gaps: string[]; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, dir === undefined ? [script] : [script, dir], { timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, gaps: stdout.split('\n').filter((line) => line !== ''), stderr });
    });
  });
}

let made: string | undefined;
afterEach(async () => {
  if (made !== undefined) await rm(made, { recursive: true, force: true });
  made = undefined;
});

/** A package in a temporary directory: its package.json and the files given. */
async function fixturePackage(files: Record<string, string>): Promise<string> {
  made = await mkdtemp(join(tmpdir(), 'tsdoc-check-'));
  const exports = { '.': { types: './types/index.d.ts' }, './more': { types: './types/more.d.ts' }, './package.json': './package.json' };
  await writeFile(join(made, 'package.json'), JSON.stringify({ name: 'fixture', type: 'module', exports }));
  await mkdir(join(made, 'types'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(made, 'types', name), text);
  return made;
}

it('every export of every entry point, and every public member of theirs, has TSDoc of its own', async () => {
  const { code, gaps, stderr } = await check();
  expect(gaps).toEqual([]);
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
});

it('the check lists what has no TSDoc of its own, per entry point, and skips what is not public or not ours', async () => {
  const dir = await fixturePackage({
    'index.d.ts': `
/** Documented. */
export interface Options {
  /** Documented. */
  readonly a: number;
  readonly b: string;
  /** The first overload. */
  on(event: 'x', listener: () => void): void;
  on(event: 'y', listener: () => void): void;
  /** A type literal: its members are public too. */
  readonly nested:
    | {
        /** Documented. */
        readonly c: number;
        readonly d: number;
      }
    | undefined;
  /** On the line of the brace, a comment is not the member's: TypeScript, and so editors, do not show it. */
  readonly inline: { /** Not its own. */ readonly e: number };
  /** @internal */
  readonly hidden: true;
}
export interface Bare {
  x: number;
}
/** An error: what it inherits from Error (name, message, stack, cause) is not ours. */
export declare class FixtureError extends Error {
  #private;
  /** Documented. */
  readonly code: string;
  readonly attempt: number;
  private secret;
  /** A getter's comment covers its setter. */
  get value(): number;
  set value(value: number);
  static make(): FixtureError;
  [Symbol.dispose](): void;
  /** Documented. */
  constructor(message: string, attempt: number);
}
/** Documented. */
export declare enum Level {
  /** Documented. */
  Low = 0,
  High = 1
}
/** Each member of a union is read. */
export type Event =
  | {
      /** Documented. */
      readonly type: 'a';
    }
  | { readonly type: 'b'; readonly at: number };
declare global {
  namespace Fixture {
    interface Request {
      /** Documented. */
      scope: string;
      other: number;
    }
  }
}
`,
    'more.d.ts': `
export { Options } from './index.js';
`,
  });
  const { code, gaps } = await check(dir);
  expect(gaps).toEqual([
    'fixture: Options.b',
    'fixture: Options.on',
    'fixture: Options.nested.d',
    'fixture: Options.inline.e',
    'fixture: Bare',
    'fixture: Bare.x',
    'fixture: FixtureError.attempt',
    'fixture: FixtureError.[Symbol.dispose]',
    'fixture: FixtureError.make',
    'fixture: Level.High',
    'fixture: Event.type',
    'fixture: Event.at',
    'fixture/more: Options.b',
    'fixture/more: Options.on',
    'fixture/more: Options.nested.d',
    'fixture/more: Options.inline.e',
    'types/index.d.ts: Fixture.Request.other',
  ]);
  expect(code).toBe(1);
});

it('the check says to build first when an entry point has no .d.ts', async () => {
  const dir = await fixturePackage({ 'index.d.ts': '/** Documented. */\nexport declare const a: number;\n' });
  const { code, stderr } = await check(dir);
  expect(stderr).toContain('no ./types/more.d.ts; build first');
  expect(code).toBe(2);
});
