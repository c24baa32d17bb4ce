import { container, inject, injectable } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { Background, TaskDependencyError } from '../src/index.js';
import { freshApp } from './helpers.js';

@injectable()
class UsesBackground {
  constructor(@inject(Background) readonly bg: Background) {}
}

describe('resolving Background', () => {
  it('resolves from the global container with no registration step, once per container', () => {
    const bg = container.resolve(Background);
    expect(bg).toBeInstanceOf(Background);
    expect(container.resolve(Background)).toBe(bg);
  });

  it('gives each child container its own instance, and grandchildren theirs', () => {
    const root = container.resolve(Background);
    const child = container.createChildContainer();
    const grandchild = child.createChildContainer();
    const a = child.resolve(Background);
    const b = grandchild.resolve(Background);
    expect(a).not.toBe(root);
    expect(b).not.toBe(a);
    expect(child.resolve(Background)).toBe(a);
    expect(grandchild.resolve(Background)).toBe(b);
  });

  it("injects the child's own instance into a class resolved from that child", () => {
    const child = freshApp().createChildContainer();
    const service = child.resolve(UsesBackground);
    expect(service.bg).toBe(child.resolve(Background));
    expect(child.createChildContainer().resolve(UsesBackground).bg).not.toBe(service.bg);
  });

  it('injects by type, through decorator metadata, as user code writes it', () => {
    @injectable()
    class ByType {
      constructor(readonly bg: Background) {}
    }
    const child = container.createChildContainer();
    expect(child.resolve(ByType).bg).toBe(child.resolve(Background));
  });

  it('says what is missing when a class task has constructor parameters and no decorator metadata (tsx, esbuild)', () => {
    // What tsx or esbuild compile from `@injectable() class ReindexUser { constructor(readonly search: SearchClient) {} … }`:
    // the decorator runs, but no design:paramtypes is written, so tsyringe knows no parameters.
    class ReindexUser {
      constructor(readonly search: unknown) {}
      run(): void {}
    }
    injectable()(ReindexUser);
    expect(Reflect.getMetadata('design:paramtypes', ReindexUser)).toBeUndefined();
    const bg = freshApp().createChildContainer().resolve(Background);
    let thrown: unknown;
    try {
      bg.add(ReindexUser);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TaskDependencyError);
    expect(thrown).toMatchObject({
      code: 'ERR_TASK_DEPENDENCY',
      position: undefined,
      parameter: undefined,
      token: undefined,
      message:
        'Cannot add task "ReindexUser": tsyringe knows no constructor parameters of ReindexUser: it needs @injectable(), and either decorator metadata ' +
        '(emitDecoratorMetadata in tsconfig; tsx and esbuild emit none) or @inject(token) on each parameter',
    });
    expect((thrown as Error).cause).toBeInstanceOf(Error);
    expect(((thrown as Error).cause as Error).message).toBe('TypeInfo not known for "ReindexUser"');
    expect(bg.pending).toBe(0);
  });

  it('runs tasks in the scope that resolved it', async () => {
    const scope = freshApp().createChildContainer();
    const bg = scope.resolve(UsesBackground).bg;
    await expect(bg.add(async () => 'ran').result()).resolves.toBe('ran');
    expect(bg.pending).toBe(0);
  });
});
