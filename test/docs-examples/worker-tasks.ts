/**
 * The worker tasks of docs/testing.md's examples. Worker threads import this module (from
 * TypeScript source, through tsx) to find them, so importing it has no effect.
 */
import { workerTask } from '../../src/index.js';

/** Turns a user's avatar into image bytes; a worker thread gets it from its setup module. */
export class ImageCodec {
  encode(userId: string): Uint8Array {
    return new TextEncoder().encode(`avatar of ${userId}`);
  }
}

export const renderAvatar = workerTask(import.meta.url, { name: 'renderAvatar', inject: [ImageCodec] }, (codec: ImageCodec, userId: string) => ({
  bytes: codec.encode(userId).byteLength,
}));

export const sumBytes = workerTask(import.meta.url, { name: 'sumBytes' }, (bytes: Uint8Array) => ({
  sum: bytes.reduce((total, byte) => total + byte, 0),
  length: bytes.length,
}));
