/**
 * The worker threads' setup module (`pool.setupModule` in server.ts): each worker thread calls
 * its default export once, with the thread's own container, before its first task. Register
 * here what worker tasks inject; the main thread's registrations are not visible in a worker.
 */
import type { DependencyContainer } from 'tsyringe';
import { AvatarConfig } from './cpu-tasks.js';

export default function setup(scope: DependencyContainer): void {
  scope.register(AvatarConfig, { useValue: new AvatarConfig(5, 20_000) }); // ~25 ms of CPU each
}
