/** The worker of the raw-Piscina baselines: the same work as tasks.mjs, without the library. */
import { spin } from './work.mjs';

export default function run({ kind, iterations }) {
  return kind === 'busy' ? spin(iterations) : 0;
}
