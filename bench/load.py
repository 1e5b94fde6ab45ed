#!/usr/bin/python3
"""bench/load.py - bare MHD against mhdctx, side by side, in paired rounds.

For each threading mode, all servers (bare, mhdctx --log none|access|app, "none"
echoing the id) run at once, pinned to CPU 1; wrk, pinned to CPU 0, loads them in
turn. Every round starts fresh processes; within a round, passes load each server for
a short slice next to a slice of bare MHD (before it or after it, in turn), in a
shuffled order, and the ratio is taken between those two adjacent slices: on this kind
of VM the same process drifts by 10-30% within ten seconds, less within two. A pair in
which the hypervisor gave more than 2% of either CPU to other guests (/proc/stat's
steal) is measured again, once; rows say how many pairs stayed above it. The table
shows medians over all passes. Server CPU time per request comes from
/proc/PID/task/*/schedstat, or /proc/PID/stat where threads come and go (the steady
figure; requests/s is noisier because wrk nearly saturates its core).

The Node peer (bench/node/express-als.js, Express + AsyncLocalStorage as in the seed
article) runs beside the C servers in the epoll round when bench/node/node_modules exists
(bench/node/install.sh).

With --think-ms N each of wrk's connections waits N ms after every answer before it
sends the next request (wrk's Lua delay()): the servers are then loaded well below
what they can serve, where the latency a client sees is not dominated by the queue
that builds up in front of a saturated CPU.

usage: load.py [--rounds N] [--passes P] [--seconds S]
               [--modes epoll,pool,thread-per-connection] [--servers app,access,...]
               [--think-ms N] [--json FILE]
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("top_builddir", ".")
SRC = os.environ.get("top_srcdir", ".")


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


# The host's share of a slice: time the hypervisor gave to others while our two CPUs
# wanted to run (/proc/stat's steal). Seen on this kind of VM: none for half an hour,
# then about half of every second; a slice taken in such a stretch measures the neighbours.
STEAL_LIMIT = 0.02  # of either CPU's time in a slice; a pair above it is measured again
PAIR_TRIES = 2      # at most this many measurements of one pair


def steal_ns():
    """Steal time so far of CPU 0 (wrk) and CPU 1 (the servers)."""
    stolen = {}
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] in ("cpu0", "cpu1"):
                stolen[fields[0]] = int(fields[8]) * TICK_NS
    return stolen.get("cpu0", 0), stolen.get("cpu1", 0)


def start(cmd):
    cmd = ["taskset", "-c", "1"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("%s did not start" % " ".join(cmd))
    return proc, json.loads(line)["port"]


def server_cmd(kind, mode, options, log_file):
    """The command line of one server: a C hello server or the Node peer."""
    if kind == "node":
        return ["node", os.path.join(SRC, "bench", "node", "express-als.js"), "--port", "0",
                "--log-file", log_file] + options
    return [os.path.join(BUILD, "bench", kind), "--port", "0", "--mode", mode,
            "--log-file", log_file] + options


def node_peer_ready():
    return (shutil.which("node") is not None and
            os.path.isdir(os.path.join(SRC, "bench", "node", "node_modules")))


# wrk's Lua script for --think-ms: the pause, in ms, after every answer on a connection
THINK_SCRIPT = None


def use_think_time(work, ms):
    global THINK_SCRIPT
    THINK_SCRIPT = os.path.join(work, "think.lua")
    with open(THINK_SCRIPT, "w") as f:
        f.write("function delay() return %d end\n" % ms)


def wrk(port, seconds, with_id):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c50", "-d%ds" % seconds, "--latency",
           "http://127.0.0.1:%d/" % port]
    if with_id:
        cmd[5:5] = ["-H", "X-Request-Id: bench-0123456789abcdef"]
    if THINK_SCRIPT:
        cmd[5:5] = ["-s", THINK_SCRIPT]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    # A slice with error answers, or none at all, measures a broken server: stop there
    # rather than average it in. Socket errors (wrk's timeouts) are counted per row.
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if requests == 0 or bad:
        raise RuntimeError("wrk on port %d: %d requests, %s non-2xx answers"
                           % (port, requests, bad.group(1) if bad else "no"))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0

    def latency(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    return requests, latency("50"), latency("99"), socket_errors


def measure(proc, port, seconds, with_id):
    before, stolen_before = cpu_ns(proc.pid), steal_ns()
    t0 = time.monotonic()
    requests, p50, p99, socket_errors = wrk(port, seconds, with_id)
    elapsed = time.monotonic() - t0
    used = cpu_ns(proc.pid) - before
    stolen = max(after - was for after, was in zip(steal_ns(), stolen_before))
    return {"rps": requests / elapsed, "cpu_us": used / 1000 / max(requests, 1),
            "p50": p50, "p99": p99, "socket_errors": socket_errors,
            "steal": stolen / (elapsed * 1e9)}


def pair_steal(pair):
    """The larger share of a CPU the host took in either slice of a pair."""
    return max(slice_["steal"] for slice_ in pair)


def disturbed(pair):
    return pair_steal(pair) > STEAL_LIMIT


# (name, program, options): bare MHD first, the baseline of every ratio. The mhdctx
# servers answer with bare MHD's shared response; "echo" is "none" echoing the request
# id, which takes a response per request (MHD 0.9 keeps headers on the response).
C_SERVERS = [("bare", "hello-bare", ["--log", "none"]),
             ("none", "hello-mhdctx", ["--log", "none"]),
             ("echo", "hello-mhdctx", ["--log", "none", "--echo-id", "yes"]),
             ("access", "hello-mhdctx", ["--log", "access"]),
             ("app", "hello-mhdctx", ["--log", "app"])]
# The seed article's Express + AsyncLocalStorage app: no line, and the same two lines
# per request as mhdctx's "app" (access line + handler line). Node is single-threaded:
# it runs with the epoll round only.
# A second bare MHD process, loaded and paired like every other server: its ratio to bare
# is what this machine and this pairing give for two identical servers, the yardstick
# for every other row (an ideal run shows 1.00).
CONTROL = ("bare-again", "hello-bare", ["--log", "none"])
# Bare MHD busy for 1 us more per request (about what "app" adds on the machine of the
# README's run): what that much more CPU alone does to throughput and latency, whoever
# spends it. Where a row misses its p99 target, this row tells whether any server as
# costly misses it too.
SPIN = ("bare-spin", "hello-bare", ["--log", "none", "--spin-ns", "1000"])
NODE_SERVERS = [("express-none", "node", ["--log", "none"]),
                ("express-app", "node", ["--log", "app"])]
# Every server in table order; Node's only with the epoll round (see above).
ALL_SERVERS = C_SERVERS[:1] + [CONTROL, SPIN] + C_SERVERS[1:] + NODE_SERVERS

ROW = "%-22s %-13s %-4s %9s %7s %9s %7s %5s %8s %8s %7s"


def print_rows(mode, with_id, servers, pairs, results):
    """@pairs: per server, (its slice, bare MHD's adjacent slice) pairs."""
    for name, _, _ in servers:
        ratio = lambda key: statistics.median(x[key] / b[key] for x, b in pairs[name])
        med = lambda key: statistics.median(x[key] for x, _ in pairs[name])
        row = {"mode": mode, "server": name, "incoming_id": with_id, "rps": med("rps"),
               "rps_x": ratio("rps"), "cpu_us": med("cpu_us"), "cpu_x": ratio("cpu_us"),
               "p50_us": med("p50"), "p99_us": med("p99"), "p99_x": ratio("p99"),
               # the share of its CPU the server was busy: where it nears 1, requests
               # queue and the tail grows steeply with any work added
               "busy": statistics.median(x["cpu_us"] * x["rps"] / 1e6
                                         for x, _ in pairs[name]),
               "pairs": len(pairs[name]),
               # each pass's ratio, in pass order: peers compare pass by pass
               "rps_x_each": [x["rps"] / b["rps"] for x, b in pairs[name]],
               "socket_errors": sum(x["socket_errors"] for x, _ in pairs[name]),
               "disturbed_pairs": sum(disturbed(pair) for pair in pairs[name]),
               "steal_max": max(pair_steal(pair) for pair in pairs[name])}
        results.append(row)
        print(ROW % (mode, name, "yes" if with_id else "no", "%.0f" % row["rps"],
                     "%.2f" % row["rps_x"], "%.2f" % row["cpu_us"], "%.2f" % row["cpu_x"],
                     "%.2f" % row["busy"], "%.0f" % row["p50_us"], "%.0f" % row["p99_us"],
                     "%.2f" % row["p99_x"]))
        if row["disturbed_pairs"] and name != "bare":
            print("  %s: %d of %d pairs kept with the host stealing more than %.0f%% of a "
                  "CPU (up to %.0f%%) after %d tries each"
                  % (name, row["disturbed_pairs"], row["pairs"], STEAL_LIMIT * 100,
                     row["steal_max"] * 100, PAIR_TRIES))
        if row["socket_errors"]:
            print("  %s: %d wrk socket errors (timeouts, resets) over its slices"
                  % (name, row["socket_errors"]))
        sys.stdout.flush()


def measure_pair(procs, name, seconds, with_id, bare_first):
    """One server's slice and bare MHD's adjacent one, measured again (both) where the
    host took more than STEAL_LIMIT of a CPU in either: the same for every server, and
    a pair is only ever compared within itself."""
    for _ in range(PAIR_TRIES):
        if bare_first:
            bare = measure(*procs["bare"], seconds, with_id)
            other = measure(*procs[name], seconds, with_id)
        else:
            other = measure(*procs[name], seconds, with_id)
            bare = measure(*procs["bare"], seconds, with_id)
        if not disturbed((other, bare)):
            break
    return other, bare


def run_pass(procs, others, seconds, with_id, pairs, shuffle):
    """Every server once, each next to a slice of bare MHD (before it or after it, in
    turn), in a shuffled order."""
    shuffle.shuffle(others)
    for k, name in enumerate(others):
        other, bare = measure_pair(procs, name, seconds, with_id, k % 2 == 0)
        pairs[(name, with_id)].append((other, bare))
        pairs[("bare", with_id)].append((bare, bare))


def run_mode(mode, servers, args, work, results):
    """Each round starts fresh server processes (a process's own luck - where its
    memory landed, what it shares a cache with - must not follow one server through
    every round) and warms each up. Then, pass after pass, wrk loads every server for
    one slice next to a slice of bare MHD, without and with an incoming id: a ratio
    compares two adjacent slices."""
    pairs = {(name, with_id): [] for name, _, _ in servers for with_id in (False, True)}
    others = [name for name, _, _ in servers if name != "bare"]
    shuffle = random.Random(1)
    for _ in range(args.rounds):
        procs = {}
        try:
            for name, kind, options in servers:
                procs[name] = start(server_cmd(kind, mode, options,
                                               os.path.join(work, "%s.log" % name)))
            for name, _, _ in servers:  # warm-up: caches, allocator, JIT
                wrk(procs[name][1], 1, False)
            for _ in range(args.passes):
                for with_id in (False, True):
                    run_pass(procs, others, args.seconds, with_id, pairs, shuffle)
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait()
            for name, _, _ in servers:  # gigabytes of access lines otherwise
                try:
                    os.unlink(os.path.join(work, "%s.log" % name))
                except OSError:
                    pass
    for with_id in (False, True):
        print_rows(mode, with_id, servers,
                   {name: pairs[(name, with_id)] for name, _, _ in servers}, results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=1)
    ap.add_argument("--modes", default="epoll,pool,thread-per-connection")
    ap.add_argument("--servers", help="only these servers beside bare MHD (comma-separated "
                    "names from the table), for a shorter run looking at a few rows")
    ap.add_argument("--think-ms", type=int, default=0, help="each connection's pause after "
                    "every answer (wrk's Lua delay()), to load the servers below saturation")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    if args.think_ms < 0:
        ap.error("--think-ms must be 0 or more")
    keep = set(args.servers.split(",")) if args.servers else None
    unknown = (keep or set()) - {name for name, _, _ in ALL_SERVERS}
    if unknown:
        ap.error("unknown server(s): %s" % ",".join(sorted(unknown)))
    node = node_peer_ready()
    paced = (", each connection pausing %d ms after every answer (below saturation)"
             % args.think_ms if args.think_ms else "")
    print("load: wrk -t1 -c50%s on CPU 0, servers on CPU 1; %d rounds of fresh processes "
          "warmed up for 1 s, %d passes each loading every server for %d s next to a "
          "slice of bare MHD (both measured again, up to %d tries, where the host stole "
          "more than %.0f%% of a CPU in either); medians over passes of the ratio between "
          "adjacent slices; busy: the share of CPU 1 the server used"
          % (paced, args.rounds, args.passes, args.seconds, PAIR_TRIES, STEAL_LIMIT * 100))
    if not node:
        print("node peer not available (bench/node/install.sh): Express rows left out")
    print(ROW % ("mode", "server", "id", "req/s", "x bare", "cpu us/r", "x bare", "busy",
                 "p50 us", "p99 us", "x bare"))
    results = []
    with tempfile.TemporaryDirectory(prefix="mhdctx-bench-") as work:
        if args.think_ms:
            use_think_time(work, args.think_ms)
        for mode in args.modes.split(","):
            servers = [s for s in ALL_SERVERS
                       if (s[1] != "node" or (node and mode == "epoll")) and
                       (keep is None or s[0] == "bare" or s[0] in keep)]
            run_mode(mode, servers, args, work, results)
    peers = {(r["server"], r["incoming_id"]): r for r in results if r["mode"] == "epoll"}
    for with_id in (False, True):
        app, express = peers.get(("app", with_id)), peers.get(("express-app", with_id))
        if app and express:
            # Paired as every other ratio: in each pass both were loaded next to a slice
            # of bare MHD, and the ratio of those two ratios cancels the pass's drift.
            each = [a / e for a, e in zip(app["rps_x_each"], express["rps_x_each"])]
            print("epoll, id %s: mhdctx app serves %.1fx the requests/s of Express + "
                  "AsyncLocalStorage with the same two lines (median over %d passes, "
                  "%.1f-%.1fx)" % ("yes" if with_id else "no", statistics.median(each),
                                  len(each), min(each), max(each)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
