#!/usr/bin/python3
"""bench/instructions.py - instructions per request, counted by callgrind: the figure of
the load table that no neighbour on the machine can move.

Times on a shared 2-core VM drift by 10% within seconds; the instructions a request
executes in user space do not. Each server of the load table (bare MHD, hello-mhdctx
--log none|access|app and "none" echoing the id; epoll mode) runs under
`valgrind --tool=callgrind` twice, serving N1 and then N2 keep-alive requests on one connection; (Ir(N2) - Ir(N1)) / (N2 - N1) is
the cost of one request with start-up and shutdown cancelled out. The kernel's share
(system calls: recv, send, epoll_wait, the batched writer's write) is not counted:
the load table's CPU time has it.

Most of bare MHD's count is one memset: MHD 0.9 clears the connection's memory pool
after every request with `rep stosb`, which callgrind counts as one instruction per
byte although the CPU clears 32 or more bytes per cycle. The table shows that memset
apart and takes the ratio to bare MHD on the rest: the instructions that cost time one
by one.

usage: instructions.py [--requests N1,N2] [--json FILE]
Needs top_builddir in the environment (make bench sets it) and valgrind.
"""
import argparse
import glob
import json
import os
import re
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


MEMSET = re.compile(r"^\s*([\d,]+) .*:__memset_\w+ ", re.M)


def memset_instructions(path):
    """Ir spent in libc's memset (inclusive), as callgrind_annotate reports it."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--auto=no",
                          "--threshold=100", path], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, check=True).stdout
    return sum(int(m.group(1).replace(",", "")) for m in MEMSET.finditer(out))


def total_instructions(program, options, n, with_id, work):
    """(Ir, Ir in memset) of a whole run of @program serving @n requests."""
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
    total, memset = 0, 0
    for path in glob.glob(out + ".*"):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")) and int(line.split()[1]) > total:
                    total, memset = int(line.split()[1]), memset_instructions(path)
    if total == 0:
        raise RuntimeError("no callgrind totals for %s" % program)
    return total, memset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", default="1000,3000")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    n1, n2 = (int(x) for x in args.requests.split(","))
    print("instructions per request (callgrind, user space only, epoll mode): "
          "(Ir of %d requests - Ir of %d) / %d" % (n2, n1, n2 - n1))
    row = "%-8s %-4s %12s %8s %12s %8s %10s"
    print(row % ("server", "id", "Ir/request", "memset", "without it", "x bare", "added"))
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mhdctx-ir-") as work:
        for with_id in (False, True):
            bare = None
            for name, program, options in SERVERS:
                (ir2, memset2), (ir1, memset1) = (
                    total_instructions(program, options, n, with_id, work) for n in (n2, n1))
                per_request = (ir2 - ir1) / (n2 - n1)
                memset = (memset2 - memset1) / (n2 - n1)
                rest = per_request - memset
                bare = bare or rest
                results.append({"server": name, "incoming_id": with_id,
                                "ir_per_request": per_request, "memset": memset,
                                "without_memset": rest, "x_bare": rest / bare,
                                "added": rest - bare})
                print(row % (name, "yes" if with_id else "no", "%.0f" % per_request,
                             "%.0f" % memset, "%.0f" % rest, "%.3f" % (rest / bare),
                             "%+.0f" % (rest - bare)))
                sys.stdout.flush()
    print("(%.0f s)" % (time.monotonic() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
