#!/usr/bin/python3
"""Propagation across services: two demo instances (/fanout), and an OpenTelemetry
peer (test/otel/service.mjs, the W3C propagator of @opentelemetry/core) on both sides.

Exit status: 0 pass, 1 fail, 77 skip (node/npm missing, unless MHDCTX_REQUIRE_OTEL=1:
then the OpenTelemetry part fails instead of skipping).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from integration import Demo, Checks  # noqa: E402  (same harness as the integration tests)


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers), json.loads(r.read())


def lines_of(demo, message, **fields):
    return [l for l in demo.lines() if l.get("message") == message and
            all(l.get(k) == v for k, v in fields.items())]


def test_two_instances(t, workdir):
    down = Demo("epoll", os.path.join(workdir, "down"))
    up = Demo("epoll", os.path.join(workdir, "up"), ["--upstream", down.base])
    try:
        status, hdrs, body = get(up.base + "/fanout", {"X-Request-Id": "prop-fanout-1"})
    finally:
        up.stop()
        down.stop()
    t.check("fanout answers with both sides' ids", status == 200 and
            body["request_id"] == "prop-fanout-1" and
            body["upstream"]["request_id"] == "prop-fanout-1", body)
    up_access = lines_of(up, "request completed", request_id="prop-fanout-1")[0]
    out = lines_of(up, "outgoing request completed", request_id="prop-fanout-1")[0]
    down_lines = [l for l in down.lines() if l.get("request_id") == "prop-fanout-1"]
    down_access = lines_of(down, "request completed", request_id="prop-fanout-1")[0]
    t.check("the outgoing call is a client span child of the server span",
            out["parent_span_id"] == up_access["span_id"] and
            out["span_id"] != up_access["span_id"], (out, up_access))
    t.check("downstream lines carry the upstream trace id", down_lines and
            all(l["trace_id"] == up_access["trace_id"] for l in down_lines), down_lines)
    t.check("downstream access line's parent is the upstream client span",
            down_access["parent_span_id"] == out["span_id"], (down_access, out))
    t.check("outgoing line: method, url without query, status, duration",
            out["method"] == "GET" and out["url"] == down.base + "/users/1" and
            out["status"] == 200 and out["duration_ms"] >= 0, out)
    print("two-instance /fanout log lines:")
    for l in [out, up_access, down_access]:
        print("  " + json.dumps(l))


def start_otel_service(workdir):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otel")
    cache = os.path.join(os.environ.get("top_builddir", "."), "test", "otel-modules")
    if not os.path.isdir(os.path.join(cache, "node_modules")):
        os.makedirs(cache, exist_ok=True)
        for f in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(here, f), cache)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=cache,
                       check=True, timeout=600)
    script = os.path.join(cache, "service.mjs")
    shutil.copy(os.path.join(here, "service.mjs"), script)
    proc = subprocess.Popen(["node", script], stdout=subprocess.PIPE, text=True)
    port = json.loads(proc.stdout.readline())["port"]
    return proc, "http://127.0.0.1:%d" % port


def test_otel(t, workdir):
    node, base = start_otel_service(workdir)
    demo = Demo("epoll", os.path.join(workdir, "otel-demo"), ["--upstream", base])
    try:
        # 1. An OpenTelemetry service calls the demo: the demo continues its trace.
        status, hdrs, sent = get(base + "/call?target=" + demo.base + "/users/1")
        # 2. The demo calls the OpenTelemetry service: it continues the demo's trace.
        status2, hdrs2, fan = get(demo.base + "/fanout", {"X-Request-Id": "prop-otel-out"})
    finally:
        demo.stop()
        node.terminate()
        node.wait(timeout=10)
    rid = sent["request_id"]
    access = lines_of(demo, "request completed", request_id=rid)
    t.check("demo continues the OpenTelemetry trace (same trace id on its lines)",
            access and access[0]["trace_id"] == sent["trace_id"] and
            all(l["trace_id"] == sent["trace_id"] for l in demo.lines()
                if l.get("request_id") == rid), (sent, access))
    t.check("demo's server span has the OpenTelemetry span as parent",
            access and access[0]["parent_span_id"] == sent["span_id"], access)
    out = lines_of(demo, "outgoing request completed", request_id="prop-otel-out")
    extracted = fan.get("upstream") or {}
    t.check("OpenTelemetry extracts the demo's trace id",
            extracted.get("trace_id") == fan["trace_id"], fan)
    t.check("OpenTelemetry sees the demo's client span as parent",
            out and extracted.get("parent_span_id") == out[0]["span_id"], (extracted, out))
    t.check("sampled flag and request id reach the OpenTelemetry service",
            extracted.get("sampled") is True and extracted.get("request_id") == "prop-otel-out",
            extracted)


def built_with(feature):
    config = os.path.join(os.environ.get("top_builddir", "."), "config.h")
    with open(config) as f:
        return ("#define %s 1" % feature) in f.read()


def main():
    if not built_with("MHDCTX_HAVE_CURL"):
        print("built without libcurl: no outgoing calls to test")
        return 1 if os.environ.get("MHDCTX_REQUIRE_OTEL") == "1" else 77
    t = Checks("propagation")
    with tempfile.TemporaryDirectory(prefix="mhdctx-prop-") as workdir:
        test_two_instances(t, workdir)
        if shutil.which("node") and shutil.which("npm"):
            test_otel(t, workdir)
        elif os.environ.get("MHDCTX_REQUIRE_OTEL") == "1":
            t.check("node and npm are installed for the OpenTelemetry interop test", False)
        else:
            print("node/npm missing: OpenTelemetry interop skipped")
            print("%d passed, %d failed" % (t.passed, t.failed))
            return 77
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
