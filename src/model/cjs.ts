/**
 * CommonJS dependencies loaded with `require` rather than `import`. Node's ESM loader first
 * scans a CommonJS module for its exports (cjs-module-lexer) and wraps it; `require` does not.
 * Every fresh worker thread paid that for reflect-metadata and tsyringe: 15–30 ms each of its
 * start, most of a cold first burst's lag behind raw Piscina (docs/benchmarks.md, target 4).
 */
import { createRequire } from 'node:module';

/** `require`, relative to this package. */
export const requireCjs: NodeJS.Require = createRequire(import.meta.url);

/** Installs the `Reflect` metadata polyfill that tsyringe's decorators need (once; later calls are free). */
export function loadReflectMetadata(): void {
  requireCjs('reflect-metadata');
}
