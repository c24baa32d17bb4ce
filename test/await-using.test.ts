import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const nativeAwaitUsing = Number(process.versions.node.split('.')[0]) >= 24;

// A user's module: `await using` on a request scope, against the built package (`npm test`
// builds it first).
const source = `
import 'reflect-metadata';
import { container } from 'tsyringe';
import { Background } from ${JSON.stringify(dist)};

const done = [];
{
  await using bg = container.createChildContainer().resolve(Background);
  bg.add(async () => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    done.push('task');
  });
  done.push('block');
}
done.push('after');
console.log(JSON.stringify(done));
`;

async function runModule(code: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
  return JSON.parse(stdout) as string[];
}

describe('await using', () => {
  it('drains the scope when compiled by tsc for Node 20 (down-levelled)', async () => {
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'] },
    });
    expect(outputText).not.toContain('await using');
    await expect(runModule(outputText)).resolves.toEqual(['block', 'task', 'after']);
  });

  it.runIf(nativeAwaitUsing)('drains the scope with native `await using` (Node 24+)', async () => {
    await expect(runModule(source)).resolves.toEqual(['block', 'task', 'after']);
  });
});
