#!/usr/bin/python3
"""SIGTERM while requests are in flight, in every mode.

usage: shutdown.py [MODE...]   (default: every mode)

The demo runs with two workers. In flight when the signal comes: two GET /slow?ms=5000
(x10 under valgrind; the first in its SQL statement, the second waiting for the
database connection of the slow statements), three GET /async
queued behind them on the worker pool, and a POST /echo whose body is half sent; plus an
idle keep-alive connection whose request was answered before. Then SIGTERM by PID.
Checks: the demo exits 0 within a few seconds (it does not finish 10 s of queued work
first); every in-flight client sees its connection closed (no hang); each in-flight
request has exactly one access line with outcome "shutdown" and status 0 (but see the
upload in thread-per-connection mode below); the request answered before has
"completed"; the work of each worker request logs "work cancelled" with its request id;
"stopping" and then "stopped" (the last line) are logged; every log line is JSON without
raw control bytes; stderr is empty (under the valgrind wrapper: no error, no leak).
Exit status: 0 pass, 1 fail.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawhttp import (Checks, run_modes, SLOW, Client, Demo, Hang, Malformed, access_lines,  # noqa: E402
                     check_log, get)

EXIT_WITHIN = 3.0  # seconds from SIGTERM to exit (times SLOW under valgrind)


def in_flight(port, rid, data, out):
    """Sends DATA and reads until the server answers or closes: OUT[RID] = (response or
    None, time of the close, error)."""
    try:
        c = Client(port, timeout=30)
        c.send(data)
        resp = c.read()
        if resp is not None:
            c.at_eof()
        out[rid] = (resp, time.time(), None)
        c.close()
    except (Hang, Malformed, OSError) as e:
        out[rid] = (None, time.time(), e)


def run_mode(mode, workdir):
    t = Checks("shutdown %s" % mode)
    t0 = time.time()
    demo = Demo(mode, workdir, ["--workers", "2"])
    port = demo.port
    resp = get(port, "/users/7", ["X-Request-Id: sd-before"])
    t.check("a request before the stop", resp and resp.status == 200, resp)
    idle = Client(port, timeout=30)
    idle.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: sd-idle\r\n\r\n")
    resp = idle.read()
    t.check("an idle keep-alive connection", resp and resp.status == 200, resp)

    out = {}
    requests = {}
    for n in (1, 2):
        # Longer than the wait before the signal (the statement ends on time): 5 s, or
        # 50 s under valgrind, whose wait is 7 s; the stop cuts it short either way.
        requests["sd-slow-%d" % n] = "GET /slow?ms=%d HTTP/1.1\r\nHost: x\r\n" % (5000 * SLOW)
    for n in (1, 2, 3):
        requests["sd-async-%d" % n] = "GET /async HTTP/1.1\r\nHost: x\r\n"
    requests["sd-upload"] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
    threads = []
    for rid, head in requests.items():
        data = ("%sX-Request-Id: %s\r\n\r\n" % (head, rid)).encode()
        if rid == "sd-upload":
            data += b"u" * 500
        th = threading.Thread(target=in_flight, args=(port, rid, data, out))
        th.start()
        threads.append(th)
        if rid.startswith("sd-slow"):
            time.sleep(0.1 * SLOW)  # slow-1 takes the database first
    time.sleep(0.5 * SLOW)  # every request is in (its handler has run)
    t.check("nothing answered before the signal", not out, out)

    stop_at = time.time()
    code, took = demo.stop(timeout=60 * SLOW)
    t.check("exit 0 within %.0f s of SIGTERM" % (EXIT_WITHIN * SLOW),
            code == 0 and took <= EXIT_WITHIN * SLOW, "exit %s after %.1f s" % (code, took))
    t.check("nothing on stderr (valgrind: no error, no leak)", demo.stderr() == "",
            demo.stderr()[-3000:])
    for th in threads:
        th.join(10 * SLOW)
    hung = [rid for rid in requests if rid not in out]
    t.check("every in-flight client sees the end of its connection", not hung, hung)
    for rid, (resp, closed_at, err) in sorted(out.items()):
        t.check("%s: connection closed within %.0f s of SIGTERM, no partial response"
                % (rid, EXIT_WITHIN * SLOW), err is None and resp is None and
                closed_at - stop_at <= EXIT_WITHIN * SLOW,
                (resp, round(closed_at - stop_at, 2), err))
    t.check("the idle keep-alive connection is closed", idle.at_eof())
    idle.close()

    raw = demo.raw_log()
    problems = check_log(raw)
    t.check("every log line is JSON without raw control bytes", not problems, problems[:5])
    lines = demo.lines()
    acc = access_lines(lines)
    for rid in requests:
        got = [l for l in acc if l.get("request_id") == rid]
        # In thread-per-connection mode MHD 0.9.75 reports the upload it cuts on a stop
        # as a client abort; mhdctx_middleware_stopping() makes the library say
        # "shutdown" for every request that ends unanswered during the stop.
        t.check("%s: one access line, outcome shutdown, status 0" % rid,
                len(got) == 1 and got[0].get("outcome") == "shutdown" and
                got[0].get("status") == 0, got)
    for rid in requests:
        if rid.startswith(("sd-slow", "sd-async")):
            got = [l for l in lines if l.get("request_id") == rid and
                   l.get("message") == "work cancelled: the server is stopping"]
            t.check("%s: its work was cancelled, logged with its id" % rid, len(got) == 1, got)
    for rid in ("sd-before", "sd-idle"):
        got = [l for l in acc if l.get("request_id") == rid]
        t.check("%s: one access line, completed" % rid,
                len(got) == 1 and got[0].get("outcome") == "completed", got)
    t.check("no other access line", len(acc) == len(requests) + 2,
            [(l.get("request_id"), l.get("outcome")) for l in acc])
    messages = [l.get("message") for l in lines]
    t.check("\"stopping\" then \"stopped\" last", "stopping" in messages and
            messages[-1] == "stopped", messages[-3:])
    print("shutdown %s: %d checks passed, %d failed (exit after %.2f s; %.1f s in all)"
          % (mode, t.passed, t.failed, took, time.time() - t0))
    return t.failed == 0


def main():
    return run_modes(run_mode, "mhdctx-sd-", __doc__)


if __name__ == "__main__":
    sys.exit(main())
