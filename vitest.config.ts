import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: 'tsconfig.json' },
    testTimeout: 20_000,
    // One file at a time: worker-pool and end-to-end tests measure the machine's idle CPU and
    // the event loop's delay, which tests in other files running alongside would disturb.
    fileParallelism: false,
  },
});
