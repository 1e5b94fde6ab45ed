#!/usr/bin/python3
"""bench/instructions.py - instructions per request, counted by callgrind: the figure of
the load table that no neighbour on the machine can move.

Times on a shared 2-core VM drift by 10% within seconds; the instructions a request
executes in user space do not. Each server (bare MHD, hello-mhdctx --log
none|access|app and "none" echoing the id, epoll mode) runs under `valgrind --tool=callgrind` twice, serving
N1 and then N2 keep-alive requests on one connection; (Ir(N2) - Ir(N1)) / (N2 - N1) is
the cost of one request with start-up and shutdown cancelled out. The kernel's share
(system calls: recv, send, epoll_wait, the batched writer's write) is not counted:
the load table's CPU time has it.

usage: instructions.py [--requests N1,N2] [--json FILE]
Needs top_builddir in the environment (make bench sets it) and valgrind.
"""
import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from load import C_SERVERS as SERVERS  # the load table's servers, bare MHD first

BUILD = os.environ.get("top_builddir", ".")


def send_requests(port, n, with_id):
    """n requests, one after the other, on one keep-alive connection."""
    request = (b"GET / HTTP/1.1\r\nHost: bench\r\n" +
               (b"X-Request-Id: bench-0123456789abcdef\r\n" if with_id else b"") + b"\r\n")
    with socket.create_connection(("127.0.0.1", port)) as s:
        pending = b""
        for _ in range(n):
            s.sendall(request)
            while b"hello, world" not in pending:
                data = s.recv(65536)
                if not data:
                    raise RuntimeError("server closed the connection")
                pending += data
            pending = pending.split(b"hello, world", 1)[1]


def total_instructions(program, options, n, with_id, work):
    """Ir of a whole run of @program serving @n requests."""
    out = os.path.join(work, "callgrind.out")
    for old in glob.glob(out + "*"):
        os.unlink(old)
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out + ".%p",
           os.path.join(BUILD, "bench", program), "--port", "0", "--mode", "epoll",
           "--log-file", os.path.join(work, "access.log")] + options
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        port = json.loads(proc.stdout.readline())["port"]
        send_requests(port, n, with_id)
    finally:
        proc.terminate()
        proc.wait()
    total = 0
    for path in glob.glob(out + ".*"):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    if total == 0:
        raise RuntimeError("no callgrind totals for %s" % program)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", default="1000,3000")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    n1, n2 = (int(x) for x in args.requests.split(","))
    print("instructions per request (callgrind, user space only, epoll mode): "
          "(Ir of %d requests - Ir of %d) / %d" % (n2, n1, n2 - n1))
    row = "%-8s %-4s %12s %8s %10s"
    print(row % ("server", "id", "Ir/request", "x bare", "added"))
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mhdctx-ir-") as work:
        for with_id in (False, True):
            bare = None
            for name, program, options in SERVERS:
                per_request = (total_instructions(program, options, n2, with_id, work) -
                               total_instructions(program, options, n1, with_id, work)) / (n2 - n1)
                bare = bare or per_request
                results.append({"server": name, "incoming_id": with_id,
                                "ir_per_request": per_request, "x_bare": per_request / bare,
                                "added": per_request - bare})
                print(row % (name, "yes" if with_id else "no", "%.0f" % per_request,
                             "%.3f" % (per_request / bare), "%+.0f" % (per_request - bare)))
                sys.stdout.flush()
    print("(%.0f s)" % (time.monotonic() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
