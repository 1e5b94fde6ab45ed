#!/usr/bin/python3
"""bench/load.py - bare MHD against mhdctx, side by side, in paired rounds.

For each threading mode, all servers (bare, mhdctx --log none|access|app) run at once,
pinned to CPU 1; wrk, pinned to CPU 0, loads them in turn, round after round, so that
drift hits every server alike. Per round each server's figures are divided by bare
MHD's of the same round; the table shows medians over rounds. Server CPU time per
request comes from /proc/PID/task/*/schedstat, or /proc/PID/stat where threads come and
go (the steady figure; requests/s is noisier because wrk nearly saturates its core).

usage: load.py [--rounds N] [--seconds S] [--modes epoll,pool,thread-per-connection]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("top_builddir", ".")


TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid):
    """Server CPU time: the live threads' schedstat (ns resolution), plus what threads
    that already ended used (in thread-per-connection mode a connection's thread exits
    when wrk closes it, and takes its schedstat with it). /proc/PID/stat's utime+stime
    count those too, at clock-tick resolution: take the larger of the two."""
    live = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                live += int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended between listdir and open
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return max(live, ticks * TICK_NS)


def start(binary, mode, log, log_file):
    cmd = ["taskset", "-c", "1", os.path.join(BUILD, "bench", binary), "--port", "0",
           "--mode", mode, "--log", log, "--log-file", log_file]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = json.loads(proc.stdout.readline())["port"]
    return proc, port


def wrk(port, seconds, with_id):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c50", "-d%ds" % seconds, "--latency",
           "http://127.0.0.1:%d/" % port]
    if with_id:
        cmd[5:5] = ["-H", "X-Request-Id: bench-0123456789abcdef"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def latency(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    return requests, latency("50"), latency("99")


def measure(proc, port, seconds, with_id):
    before = cpu_ns(proc.pid)
    t0 = time.monotonic()
    requests, p50, p99 = wrk(port, seconds, with_id)
    elapsed = time.monotonic() - t0
    used = cpu_ns(proc.pid) - before
    return {"rps": requests / elapsed, "cpu_us": used / 1000 / max(requests, 1),
            "p50": p50, "p99": p99}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--modes", default="epoll,pool,thread-per-connection")
    args = ap.parse_args()
    servers = [("bare", "hello-bare", "none"), ("none", "hello-mhdctx", "none"),
               ("access", "hello-mhdctx", "access"), ("app", "hello-mhdctx", "app")]
    print("load: wrk -t1 -c50 on CPU 0, servers on CPU 1, %d rounds x %d s, medians"
          % (args.rounds, args.seconds))
    print("%-22s %-7s %-6s %10s %8s %9s %9s %9s %8s %8s" %
          ("mode", "server", "id", "req/s", "x bare", "cpu us/r", "x bare", "p50 us",
           "p99 us", "x bare"))
    with tempfile.TemporaryDirectory(prefix="mhdctx-bench-") as work:
        for mode in args.modes.split(","):
            procs = {}
            try:
                for name, binary, log in servers:
                    procs[name] = start(binary, mode, log, os.path.join(work, name + ".log"))
                for with_id in (False, True):
                    rounds = {name: [] for name, _, _ in servers}
                    for _ in range(args.rounds):
                        for name, _, _ in servers:
                            rounds[name].append(measure(*procs[name], args.seconds, with_id))
                    for name, _, _ in servers:
                        ratio = lambda key: statistics.median(
                            r[key] / b[key] for r, b in zip(rounds[name], rounds["bare"]))
                        med = lambda key: statistics.median(r[key] for r in rounds[name])
                        print("%-22s %-7s %-6s %10.0f %8.2f %9.2f %9.2f %9.0f %8.0f %8.2f" % (
                            mode, name, "yes" if with_id else "no", med("rps"), ratio("rps"),
                            med("cpu_us"), ratio("cpu_us"), med("p50"), med("p99"),
                            ratio("p99")))
            finally:
                for proc, _ in procs.values():
                    proc.terminate()
                    proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
