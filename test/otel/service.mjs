// An OpenTelemetry-instrumented peer of the demo, for the interop test. It uses the
// OpenTelemetry API and the W3CTraceContextPropagator of @opentelemetry/core, the
// propagator every OpenTelemetry JS SDK installs by default.
//
//   GET /call?target=URL  starts a trace (as an SDK's root span would), injects it into
//                         a call to the demo at URL, answers {trace_id, span_id, status}
//   GET /users/1          (the demo calls this through --upstream) extracts the incoming
//                         context and answers what it found: {trace_id, parent_span_id,
//                         sampled, tracestate, request_id}
// First stdout line: {"port": N}.
import http from 'node:http';
import crypto from 'node:crypto';
import { context, propagation, trace, TraceFlags } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

propagation.setGlobalPropagator(new W3CTraceContextPropagator());

const getter = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key.toLowerCase()],
};

function callDemo(target, res) {
  const spanContext = {
    traceId: crypto.randomBytes(16).toString('hex'),
    spanId: crypto.randomBytes(8).toString('hex'),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: false,
  };
  const active = trace.setSpanContext(context.active(), spanContext);
  const headers = {};
  propagation.inject(active, headers);
  http.get(target, { headers }, (answer) => {
    answer.resume();
    answer.on('end', () => {
      res.end(JSON.stringify({
        trace_id: spanContext.traceId,
        span_id: spanContext.spanId,
        status: answer.statusCode,
        request_id: answer.headers['x-request-id'],
      }));
    });
  }).on('error', (e) => { res.statusCode = 502; res.end(JSON.stringify({ error: e.message })); });
}

function reportExtracted(req, res) {
  const extracted = propagation.extract(context.active(), req.headers, getter);
  const sc = trace.getSpanContext(extracted);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({
    trace_id: sc ? sc.traceId : null,
    parent_span_id: sc ? sc.spanId : null,
    sampled: sc ? (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED : null,
    request_id: req.headers['x-request-id'] ?? null,
  }));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/call') return callDemo(url.searchParams.get('target'), res);
  if (url.pathname === '/users/1') return reportExtracted(req, res);
  res.statusCode = 404;
  res.end('{}');
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
