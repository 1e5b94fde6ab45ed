#!/usr/bin/python3
"""Slowloris-style clients against the demo with a 1 s idle timeout (--timeout 1).

usage: slow_clients.py [MODE...]   (default: every mode)

In each mode, at the same time: clients that send half a request line, half the
headers, or the headers and part of a body, then stall; clients that send the same and
then close; a client that drips a request slower than a whole request could take, but
never idle for a second; an idle keep-alive connection after a request. Meanwhile normal
GETs must be answered at once. Checks: MHD closes every stalled connection after the
timeout (not before, not much later); the access log has outcome "timeout" and status 0
for each stalled request that had a context (its request line was read) and nothing for
those that did not; "client_abort" for the clients that closed; the drip and the
keep-alive request "completed"; exactly the expected access lines (no context left
behind). After SIGTERM the demo exits 0 with an empty stderr (under valgrind: no leak,
so every context was freed) and every log line is JSON.
Exit status: 0 pass, 1 fail.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawhttp import (Checks, run_modes, ACCESS, SLOW, Client, Demo, Hang, Malformed, access_lines,  # noqa: E402
                     check_log, get)

TIMEOUT = 1  # the demo's --timeout, seconds
STALLED = 5  # stalled clients of each kind


def stall(port, data, out, key):
    """Sends DATA and waits: OUT[KEY] = (response or None, seconds until the server
    closed, error)."""
    t0 = time.time()
    try:
        c = Client(port, timeout=TIMEOUT + 5)
        c.send(data)
        t0 = time.time()
        resp = c.read()
        if resp is not None:
            c.at_eof()
        out[key] = (resp, time.time() - t0, None)
        c.close()
    except (Hang, Malformed, OSError) as e:
        out[key] = (None, time.time() - t0, e)


def leave(port, data):
    """Sends DATA, waits a little (so that MHD reads it before the FIN), closes."""
    c = Client(port)
    c.send(data)
    time.sleep(0.2)
    c.close()


def drip(port, data, pieces, pause, out):
    """Sends DATA in PIECES, PAUSE seconds apart (each pause under the timeout)."""
    t0 = time.time()
    try:
        c = Client(port, timeout=TIMEOUT + 5)
        step = (len(data) + pieces - 1) // pieces
        for n in range(0, len(data), step):
            c.send(data[n:n + step])
            time.sleep(pause)
        out["drip"] = (c.read(), time.time() - t0, None)
        c.close()
    except (Hang, Malformed, OSError) as e:
        out["drip"] = (None, time.time() - t0, e)


def keep_alive_idle(port, out):
    """One request on a keep-alive connection, then idle: closed after the timeout."""
    try:
        c = Client(port, timeout=TIMEOUT + 5)
        c.send(b"GET /users/1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: sc-keepalive\r\n\r\n")
        resp = c.read()
        t0 = time.time()
        closed = c.at_eof()
        out["keepalive"] = (resp, time.time() - t0, None if closed else "data after response")
        c.close()
    except (Hang, Malformed, OSError) as e:
        out["keepalive"] = (None, 0, e)


def run_mode(mode, workdir):
    t = Checks("slow-clients %s" % mode)
    t0 = time.time()
    demo = Demo(mode, workdir, ["--timeout", str(TIMEOUT)])
    port = demo.port
    out = {}
    threads = []

    def start(fn, *args):
        th = threading.Thread(target=fn, args=args)
        th.start()
        threads.append(th)

    for n in range(STALLED):
        start(stall, port, b"GET /sc/halfline-%d HT" % n, out, "halfline-%d" % n)
        start(stall, port, b"GET /sc/halfhdr-%d HTTP/1.1\r\nHost: x\r\nX-Request-Id: sc-h%d\r\n"
              b"X-Fo" % (n, n), out, "halfhdr-%d" % n)
        start(stall, port, b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: sc-midbody-%d\r\n"
              b"Content-Length: 100\r\n\r\n0123456789" % n, out, "midbody-%d" % n)
    start(stall, port, b"", out, "silent")
    start(leave, port, b"GET /sc/abort-hdr HTTP/1.1\r\nHost: x\r\nX-Fo")
    start(leave, port, b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: sc-abort-body\r\n"
          b"Content-Length: 100\r\n\r\n0123456789")
    start(drip, port, b"GET /users/7 HTTP/1.1\r\nHost: x\r\nX-Request-Id: sc-drip\r\n"
          b"Connection: close\r\n\r\n", 6, TIMEOUT * 0.5, out)
    start(keep_alive_idle, port, out)

    # The server keeps serving while the slow clients hold their connections.
    time.sleep(0.2)
    slow = []
    for n in range(5):
        s0 = time.time()
        try:
            resp = get(port, "/users/42", ["X-Request-Id: sc-served-%d" % n])
            took = time.time() - s0
            if not (resp and resp.status == 200 and took < 0.5 * SLOW):
                slow.append((n, resp, took))
        except (Hang, Malformed, OSError) as e:
            slow.append((n, e))
        time.sleep(0.1)
    t.check("normal GETs answered at once while %d clients stall" % (3 * STALLED + 1),
            not slow, slow)
    for th in threads:
        th.join(30 * SLOW)

    low, high = TIMEOUT * 0.8, TIMEOUT + 2.5 * SLOW
    for kind in ("halfline", "halfhdr", "midbody"):
        results = [out.get("%s-%d" % (kind, n)) for n in range(STALLED)]
        bad = [r for r in results if r is None or r[0] is not None or r[2] is not None or
               not low <= r[1] <= high]
        took = [r[1] for r in results if r]
        t.check("%s: closed without a response after %.1f..%.1f s (took %.2f..%.2f s)"
                % (kind, low, high, min(took or [0]), max(took or [0])),
                not bad, [(r[0], round(r[1], 2), r[2]) if r else r for r in results])
    r = out.get("silent")
    t.check("a connection that sends nothing: closed after the timeout",
            r and r[0] is None and r[2] is None and low <= r[1] <= high, r)
    r = out.get("drip")
    t.check("a request dripped over %.1f s (never idle %d s) is answered" % (3 * TIMEOUT, TIMEOUT),
            r and r[2] is None and r[0] and r[0].status == 200 and r[1] > TIMEOUT, r)
    r = out.get("keepalive")
    t.check("an idle keep-alive connection: answered, then closed after the timeout",
            r and r[2] is None and r[0] and r[0].status == 200 and low <= r[1] <= high, r)
    resp = get(port, "/", ["X-Request-Id: sc-after"])
    t.check("a normal GET afterwards", resp and resp.status == 200, resp)

    code, took = demo.stop()
    t.check("exit 0 on SIGTERM (under valgrind: no error, no leak)", code == 0,
            "exit %s after %.1f s: %s" % (code, took, demo.stderr()[-3000:]))
    t.check("nothing on stderr", demo.stderr() == "", demo.stderr()[-3000:])
    raw = demo.raw_log()
    problems = check_log(raw)
    t.check("every log line is JSON without raw control bytes", not problems, problems[:5])
    acc = access_lines(demo.lines())

    def lines_for(pred):
        return [l for l in acc if pred(l)]

    for n in range(STALLED):
        got = lines_for(lambda l: l.get("path") == "/sc/halfhdr-%d" % n)
        t.check("half headers %d: one access line, outcome timeout, status 0, no method" % n,
                len(got) == 1 and got[0].get("outcome") == "timeout" and
                got[0].get("status") == 0 and got[0].get("method") == "", got)
        got = lines_for(lambda l: l.get("request_id") == "sc-midbody-%d" % n)
        t.check("mid-body stall %d: one access line, outcome timeout, status 0" % n,
                len(got) == 1 and got[0].get("outcome") == "timeout" and
                got[0].get("status") == 0 and got[0].get("method") == "POST" and
                got[0].get("path") == "/echo", got)
    got = lines_for(lambda l: "halfline" in l.get("path", ""))
    t.check("half request lines: no context, no access line", not got, got)
    got = lines_for(lambda l: l.get("path") == "/sc/abort-hdr")
    t.check("client closing mid-headers: outcome client_abort, status 0",
            len(got) == 1 and got[0].get("outcome") == "client_abort" and
            got[0].get("status") == 0, got)
    got = lines_for(lambda l: l.get("request_id") == "sc-abort-body")
    t.check("client closing mid-body: outcome client_abort, status 0",
            len(got) == 1 and got[0].get("outcome") == "client_abort" and
            got[0].get("status") == 0, got)
    for rid in ["sc-drip", "sc-keepalive", "sc-after"] + ["sc-served-%d" % n for n in range(5)]:
        got = lines_for(lambda l: l.get("request_id") == rid)
        t.check("%s: one access line, completed" % rid,
                len(got) == 1 and got[0].get("outcome") == "completed" and
                got[0].get("status") == 200, got)
    expected = 2 * STALLED + 2 + 3 + 5
    t.check("exactly %d access lines: one per request that had a context" % expected,
            len(acc) == expected, [(l.get("path"), l.get("outcome")) for l in acc])
    t.check("every access line is a request line (ACCESS message)",
            all(l.get("message") == ACCESS for l in acc))
    print("slow-clients %s: %d checks passed, %d failed (%.1f s)"
          % (mode, t.passed, t.failed, time.time() - t0))
    return t.failed == 0


def main():
    return run_modes(run_mode, "mhdctx-sc-", __doc__)


if __name__ == "__main__":
    sys.exit(main())
