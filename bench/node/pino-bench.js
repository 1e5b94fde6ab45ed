// pino-bench.js - pino's cost per line with a request's context bound: the Node peer of
// mhdctx's logger figures.
//
// usage: node pino-bench.js --dest PATH --lines N [--min-length BYTES]
//
// A child logger carries the six context fields of bench/micro.c's lines, with the same
// values (request_id, trace_id, span_id, trace_flags, user_id, tenant_id), as a
// request-scoped pino logger does; each line adds the ISO time
// (pino.stdTimeFunctions.isoTime), the level, the same message and one call field. Lines
// go to PATH through pino.destination({dest, sync: true}): one write(2) per line, as
// mhdctx's synchronous sink writes. With --min-length, pino's own buffering, the peer
// of mhdctx's batched writer: the destination collects lines until it holds BYTES, then
// writes them in one write(2) of up to twice that (sonic-boom's minLength and maxWrite;
// its asynchronous mode is slower in a loop that never yields, and its buffer grows
// without bound there).
// Prints {"lines":N,"seconds":S,"lines_per_s":R}.
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import pino from 'pino';

function usage(message) {
  process.stderr.write(`pino-bench: ${message}\n` +
    'usage: node pino-bench.js --dest PATH --lines N [--min-length BYTES]\n');
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      dest: { type: 'string' },
      lines: { type: 'string', default: '1000000' },
      'min-length': { type: 'string', default: '0' },
    },
  }).values;
} catch (err) {
  usage(err.message);
}
if (!args.dest) usage('--dest is required');
if (!/^\d+$/.test(args.lines)) usage(`bad --lines ${args.lines}`);
if (!/^\d+$/.test(args['min-length'])) usage(`bad --min-length ${args['min-length']}`);
const lines = Number(args.lines);
const minLength = Number(args['min-length']);

const destination = pino.destination({
  dest: args.dest, sync: true, minLength, maxWrite: Math.max(2 * minLength, 16384),
});
const logger = pino({
  base: null, // no pid/hostname: the lines carry what mhdctx's lines carry
  messageKey: 'message',
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
}, destination);
const request = logger.child({
  request_id: crypto.randomUUID(),
  trace_id: crypto.randomBytes(16).toString('hex'),
  span_id: crypto.randomBytes(8).toString('hex'),
  trace_flags: '01',
  user_id: '42',
  tenant_id: 'acme',
});

const t0 = process.hrtime.bigint();
for (let i = 0; i < lines; i++) {
  request.info({ n: i }, 'user loaded');
}
destination.flushSync();
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(JSON.stringify({
  lines,
  seconds: Number(seconds.toFixed(6)),
  lines_per_s: Math.round(lines / seconds),
}) + '\n');
