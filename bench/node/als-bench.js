// als-bench.js - what the article calls negligible, measured: ns per
// AsyncLocalStorage#getStore() (inside run(), the store a logger reads), ns per
// AsyncLocalStorage#run() (entering a request's context, the middleware's cost), and ns
// per crypto.randomUUID() (the request id; Node serves it from a cached entropy pool).
// No dependencies. usage: node als-bench.js [--iterations N]
// Prints {"get_store_ns":..,"run_ns":..,"random_uuid_ns":..,"iterations":N}: the best of
// five timed runs of N calls each, after a warm-up run.
import { AsyncLocalStorage } from 'node:async_hooks';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '2000000' } } });
const n = Number(values.iterations);
if (!Number.isInteger(n) || n <= 0) {
  process.stderr.write('usage: node als-bench.js [--iterations N]\n');
  process.exit(2);
}

const als = new AsyncLocalStorage();
let sink = 0; // consumed results, so that no call is optimized away

function getStoreLoop() {
  for (let i = 0; i < n; i++) if (als.getStore() !== undefined) sink++;
}
function runLoop() {
  const store = new Map([['k', 1]]);
  for (let i = 0; i < n; i++) sink += als.run(store, () => 1);
}
function uuidLoop() {
  for (let i = 0; i < n; i++) sink += crypto.randomUUID().length;
}

// Best of five after a warm-up: the floor is the steady cost, the rest is noise
// (another process on the core, a GC pause).
function nsPerCall(loop) {
  loop();
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    loop();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  return Number(best.toFixed(2));
}

const result = {};
als.run(new Map([['k', 1]]), () => {
  result.get_store_ns = nsPerCall(getStoreLoop);
});
result.run_ns = nsPerCall(runLoop);
result.random_uuid_ns = nsPerCall(uuidLoop);
result.iterations = n;
if (sink === 0) process.stderr.write('unreachable\n');
process.stdout.write(JSON.stringify(result) + '\n');
