/** The setup module of docs/testing.md's pool-per-file example: what the worker tasks inject, once per worker thread. */
import { Lifecycle, type DependencyContainer } from 'tsyringe';
import { ImageCodec } from './worker-tasks.js';

export default function setup(scope: DependencyContainer): void {
  scope.register(ImageCodec, ImageCodec, { lifecycle: Lifecycle.ContainerScoped });
}
