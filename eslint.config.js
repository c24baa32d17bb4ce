// @ts-check
import { readdirSync } from 'node:fs';
import { posix } from 'node:path';
import eslint from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const nodeProtocol = {
  regex: '^(assert|buffer|child_process|crypto|events|fs|http|net|os|path|perf_hooks|stream|timers|url|util|worker_threads)(/.*)?$',
  message: 'Use the node: protocol.',
};

/**
 * The layers of src/, lowest first, and the modules of each in the order they may import one
 * another: a module imports only modules listed before it (in its own layer or a lower one),
 * type-only imports included, so src/ can have no import circle. docs/architecture.md explains
 * the layers. A new module goes into this list where it belongs; lint fails until it does.
 */
const layers = {
  model: ['cjs', 'soon', 'own-context', 'timing', 'limits', 'checks', 'handle', 'events', 'ids', 'logger', 'errors', 'context', 'task-options', 'cron-times', 'call-options', 'options', 'task', 'worker-task', 'runner'],
  worker: ['wire', 'start-marks', 'clone', 'thread'],
  engine: ['lane', 'deadlines', 'records', 'task-run', 'periodic', 'scope', 'pool', 'application'],
  di: ['container', 'in-process-runner'],
  '.': ['tasks', 'group', 'background', 'shutdown', 'observe', 'graceful', 'index'],
  adapters: ['request-scope', 'live-view', 'express', 'fastify', 'hono', 'opentelemetry', 'bullmq-jobs', 'bullmq-handle', 'bullmq-producer', 'bullmq-workers', 'bullmq', 'dashboard', 'express-dashboard', 'fastify-dashboard', 'hono-dashboard'],
};
/** Layers that must not know tsyringe: the engine runs tasks, whoever resolved them. */
const withoutTsyringe = ['engine'];
/** Layers that use the library as its users do: through index.ts and the facade, never the layers below. */
const publicOnly = ['adapters'];
/**
 * The web frameworks and the one adapter that may import each: nothing else in src/ imports a
 * framework, so the root entry loads none and each entry point loads only its own.
 */
const frameworks = {
  'adapters/express': ['express'],
  'adapters/fastify': ['fastify', 'fastify-plugin'],
  'adapters/hono': ['hono', '@hono/node-server'],
  'adapters/opentelemetry': ['@opentelemetry/api'],
  // The durable backend's parts, and its entry point.
  'adapters/bullmq-jobs': ['bullmq', 'ioredis'],
  'adapters/bullmq-handle': ['bullmq', 'ioredis'],
  'adapters/bullmq-producer': ['bullmq', 'ioredis'],
  'adapters/bullmq-workers': ['bullmq', 'ioredis'],
  'adapters/bullmq': ['bullmq', 'ioredis'],
  // The dashboards: bull-board's core in one module, each framework's bull-board adapter in its
  // own entry point (with its framework, which is shared with that framework's adapter).
  'adapters/dashboard': ['@bull-board/api'],
  'adapters/express-dashboard': ['@bull-board/express', 'express'],
  'adapters/fastify-dashboard': ['@bull-board/fastify', 'fastify'],
  'adapters/hono-dashboard': ['@bull-board/hono', 'hono', '@hono/node-server'],
};
const frameworkPattern = (path) => {
  const own = frameworks[path] ?? [];
  const others = Object.entries(frameworks).flatMap(([owner, names]) => (owner === path ? [] : names.filter((name) => !own.includes(name))));
  return {
    regex: `^(${others.map((name) => name.replace(/\./g, '\\$&')).join('|')})(/.*)?$`,
    message: path in frameworks ? `src/${path}.ts imports only its own framework.` : 'Only its own adapter in src/adapters/ imports a web framework.',
  };
};

const modules = Object.entries(layers).flatMap(([layer, names]) => names.map((name) => ({ layer, path: posix.join(layer, name) })));
const listed = new Set(modules.map((m) => `${m.path}.ts`));
const unlisted = readdirSync('src', { recursive: true, encoding: 'utf8' })
  .map((file) => file.split('\\').join('/'))
  .filter((file) => file.endsWith('.ts') && !listed.has(file));
if (unlisted.length > 0) throw new Error(`eslint.config.js: add ${unlisted.join(', ')} to \`layers\` (src/ modules and the order they import one another)`);

const layerRules = modules.map((module, i) => {
  const later = modules.slice(i).map((other) => {
    const spec = posix.relative(posix.dirname(module.path), other.path);
    return {
      name: `${spec.startsWith('.') ? spec : `./${spec}`}.js`,
      message: `${module.path}.ts may import only modules listed before it in eslint.config.js \`layers\` (${other.path} is not): layers import downward, and nothing imports its owner.`,
    };
  });
  if (withoutTsyringe.includes(module.layer)) later.push({ name: 'tsyringe', message: `src/${module.layer}/ knows nothing of tsyringe: the di/ layer above it does.` });
  const patterns = [nodeProtocol, frameworkPattern(module.path)];
  if (publicOnly.includes(module.layer)) {
    // Except the lowest layer's leaf modules, which import nothing of the library: the checks, the
    // logger's helpers, the microtask no fake timers take and the late-aware deadline, the same for
    // every caller (twins of them drifted apart).
    patterns.push({
      regex: '^\\.\\./(?!model/(checks|logger|soon|own-context|timing)\\.js$)(model|worker|engine|di)/',
      message: `src/${module.layer}/ uses the library through ../index.js and the facade modules, as its users do (and ../model/checks.js, ../model/logger.js, ../model/soon.js, ../model/own-context.js, ../model/timing.js).`,
    });
  }
  return {
    files: [`src/${module.path}.ts`],
    rules: { 'no-restricted-imports': ['error', { paths: later, patterns }] },
  };
});

export default defineConfig(
  { ignores: ['dist/', 'examples/dist/', 'coverage/', 'scratch/', 'node_modules/'] },
  eslint.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-extraneous-class': 'off',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      'no-restricted-imports': ['error', { patterns: [nodeProtocol] }],
    },
  },
  ...layerRules,
  {
    // Tests use async functions without await on purpose: `async` is what puts a task in the
    // event-loop lane. They also throw non-Errors on purpose, to test how those are reported.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/only-throw-error': 'off',
    },
  },
  {
    // Type tests hold lines that must not compile, each under @ts-expect-error.
    files: ['test/**/*.test-d.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
);
