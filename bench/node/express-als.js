// express-als.js - the seed article's Express + AsyncLocalStorage app, reduced to the
// benchmark's route: the Node peer of bench/hello.c (hello-mhdctx).
//
//   --port N             listen port on 127.0.0.1, 0 = ephemeral (default 0)
//   --log none|access|app  none: context only; access: one access line per finished
//                        request (status, duration, as pino-http's autoLogging); app:
//                        the access line plus one line from the handler - the same
//                        lines as bench/hello-mhdctx, written with pino from the
//                        store's fields (default none)
//   --log-file PATH      where --log app writes (default /dev/null)
//   --mode M             accepted and ignored (Node has one event loop), so that
//                        bench/load.py starts it as it starts the C servers
//
// As in the article: one module-level AsyncLocalStorage; a middleware runs next() inside
// asyncLocalStorage.run() with a Map per request holding requestId (X-Request-Id or
// crypto.randomUUID()), startTime (performance.now()) and userId (null: no auth here).
// The logger reads the store at log time (pino's mixin), not from an argument.
// As in the article, every response carries X-Request-Id (hello-mhdctx's "app" mode
// answers with bare MHD's shared response, without it: one res.set() per request that
// Express does and mhdctx does not). Express's own defaults (ETag, X-Powered-By) are left
// as they are: this is the article's app, not a tuned one.
// The log file gets pino's buffered destination, the peer of the batched writer that
// hello-mhdctx uses in bench/load.py: lines collected until 4 KiB (pino's best, see
// bench/micro.py), then written off the event loop (sonic-boom's minLength, sync: false).
//
// First stdout line: {"port":N}. SIGTERM or SIGINT stop it (exit 0).
import { AsyncLocalStorage } from 'node:async_hooks';
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import express from 'express';
import pino from 'pino';

function usage(message) {
  process.stderr.write(`express-als: ${message}\n` +
    'usage: node express-als.js [--port N] [--log none|access|app] [--log-file PATH] [--mode M]\n');
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      log: { type: 'string', default: 'none' },
      'log-file': { type: 'string', default: '/dev/null' },
      mode: { type: 'string' },
    },
  }).values;
} catch (err) {
  usage(err.message);
}
const port = Number(args.port);
if (!/^\d+$/.test(args.port) || port > 65535) usage(`bad --port ${args.port}`);
if (!['none', 'access', 'app'].includes(args.log)) usage(`bad --log ${args.log}`);

// context.js
const asyncLocalStorage = new AsyncLocalStorage();
const getRequestContext = () => asyncLocalStorage.getStore();

// logger.js: pino, enriched from the store at log time.
const destination = args.log !== 'none'
  ? pino.destination({ dest: args['log-file'], sync: false, minLength: 4096 })
  : null;
const logger = destination && pino({
  base: null, // no pid/hostname: the lines carry what mhdctx's lines carry
  messageKey: 'message',
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
  mixin() {
    const ctx = getRequestContext();
    return ctx ? { request_id: ctx.get('requestId'), user_id: ctx.get('userId') } : {};
  },
}, destination);

// app.js
const app = express();
app.use((req, res, next) => {
  const store = new Map();
  store.set('requestId', req.get('x-request-id') ?? crypto.randomUUID());
  store.set('startTime', performance.now());
  store.set('userId', null); // populated later by auth middleware
  res.set('X-Request-Id', store.get('requestId'));
  if (logger) {
    res.on('finish', () => {
      asyncLocalStorage.run(store, () => {
        logger.info({ method: req.method, path: req.path, status: res.statusCode,
          duration_ms: performance.now() - store.get('startTime') }, 'request completed');
      });
    });
  }
  asyncLocalStorage.run(store, () => {
    next();
  });
});

app.get('/', (req, res) => {
  if (logger && args.log === 'app') logger.info('saying hello');
  res.type('text/plain').send('hello, world');
});

const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
server.on('error', (err) => {
  process.stderr.write(`express-als: ${err.message}\n`);
  process.exit(1);
});

function stop() {
  server.close(() => {
    if (destination) destination.flushSync();
    process.exit(0);
  });
  server.closeAllConnections(); // keep-alive clients would hold close() open
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
