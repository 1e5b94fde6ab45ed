#!/usr/bin/python3
"""bench/micro.py - the micro-benchmarks of bench/micro.c next to their Node peers,
measured in the same run: reading the current context, generating an id, one log line
with six context fields (to /dev/null and to a file, pino with the same fields to the
same destination: one write per line beside ours, and with pino's own 4 KiB buffer
beside our batched writer), SQL tagging, and heap allocations per request.

usage: micro.py [--quick] [--rounds N] [--json FILE]
Each round runs bench/micro and then the Node peers, so that the machine's drift (on a
VM, tens of percent within a minute for file writes) hits both alike; the table shows
the median over rounds of each figure and of each round's ratio, and the ratio's range.
Needs top_builddir/top_srcdir in the environment (make bench sets them). The Node rows
need bench/node/node_modules (bench/node/install.sh); without them they are left out.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

BUILD = os.environ.get("top_builddir", ".")
SRC = os.environ.get("top_srcdir", ".")
NODE_DIR = os.path.join(SRC, "bench", "node")


def run_json_lines(cmd):
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def node_ready():
    return shutil.which("node") and os.path.isdir(os.path.join(NODE_DIR, "node_modules"))


# pino's buffered destination (sonic-boom's minLength) for the peer of our batched writer,
# at pino's best: measured here with 300,000 lines to /dev/null, 0 (a write per line)
# 194,000 lines/s, 1 KiB 345,000, 4 KiB 378,000, 8 KiB 342,000, 16 KiB 263,000, 32 KiB
# 189,000, 64 KiB 116,000 (sonic-boom joins the buffered lines as one string, a cost that
# grows with it). Ours writes slices of up to 64 KiB.
PINO_BUFFER = 4096


def pino_lines_per_s(dest, lines, min_length=0):
    result = run_json_lines(["taskset", "-c", "1", "node",
                             os.path.join(NODE_DIR, "pino-bench.js"), "--dest", dest,
                             "--lines", str(lines), "--min-length", str(min_length)])
    return result[0]["lines_per_s"]


def one_round(quick):
    """One run of bench/micro and of the Node peers: ({figure: record}, {figure: value})."""
    ours = run_json_lines(["taskset", "-c", "1", os.path.join(BUILD, "bench", "micro")] +
                          (["--quick"] if quick else []))
    by = {}
    for r in ours:
        key = r["bench"] if r["bench"] != "log" else "log %s %s" % (r["dest"], r["sink"])
        if r.get("dropped"):  # a dropped line would count in lines/s without being written
            raise SystemExit("micro: %s dropped %d lines" % (key, r["dropped"]))
        by[key] = r
    node = {}
    if node_ready():
        als = run_json_lines(["taskset", "-c", "1", "node",
                              os.path.join(NODE_DIR, "als-bench.js")])[0]
        node["current"] = als["get_store_ns"]
        node["uuid"] = als["random_uuid_ns"]
        lines = 1000000 // 200 + 1 if quick else 1000000  # as many as bench/micro.c
        for sink, buffer in (("sync", 0), ("async", PINO_BUFFER)):
            node["log /dev/null " + sink] = pino_lines_per_s("/dev/null", lines, buffer)
            with tempfile.NamedTemporaryFile(prefix="mhdctx-pino-") as f:
                node["log file " + sink] = pino_lines_per_s(f.name, lines, buffer)
    return by, node


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None, help="default 5, 1 with --quick")
    ap.add_argument("--json")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    runs = [one_round(args.quick) for _ in range(rounds)]
    if not runs[0][1]:
        print("node peer not available (bench/node/install.sh): Node columns left out")

    print("micro: pinned to CPU 1 (the batched writer's thread shares it); node: pino "
          "with a synchronous destination, one write per line beside ours, lines "
          "buffered to %d bytes (minLength) beside our batched writer; %d round(s), each "
          "figure and ratio the median over rounds; ratio: mhdctx's advantage"
          % (PINO_BUFFER, rounds))
    row = "%-40s %17s %17s %8s %13s"
    print(row % ("figure", "mhdctx", "node", "ratio", "ratio range"))

    def number(value, unit):
        return "%.2f %s" % (value, unit) if value < 100 else "%.0f %s" % (value, unit)

    def show(name, mine, peer_key=None, higher_is_better=False):
        """mine(by) -> (value, unit): one figure of ours, beside a Node figure."""
        values = [mine(by)[0] for by, _ in runs]
        unit = mine(runs[0][0])[1]
        peers = [node[peer_key] for _, node in runs if peer_key in node]
        ratio = other = spread = "-"
        if peers:
            ratios = [(v / p if higher_is_better else p / v)
                      for v, p in zip(values, peers)]
            other = number(statistics.median(peers), unit)
            ratio = "%.2fx" % statistics.median(ratios)
            spread = "%.2f-%.2fx" % (min(ratios), max(ratios))
        print(row % (name, number(statistics.median(values), unit), other, ratio, spread))

    show("current context (node: getStore)", lambda by: (by["current"]["ns"], "ns"),
         "current")
    show("UUID v4 id (node: randomUUID)", lambda by: (by["uuid"]["ns"], "ns"), "uuid")
    for dest in ("/dev/null", "file"):
        for sink in ("sync", "async"):
            key = "log %s %s" % (dest, sink)
            show("log line, %s, %s" % (dest, "batched" if sink == "async"
                                        else "write per line"),
                 lambda by, key=key: (by[key]["lines_per_s"], "lines/s"), key, True)
    show("SQL tag (sqlcommenter, into a buffer)", lambda by: (by["sql_tag"]["ns"], "ns"))
    a = runs[-1][0]["allocations"]  # counted, not timed: every round counts the same
    print("heap allocations per request: bare MHD %.2f; added by mhdctx: library %.2f "
          "(%.2f with an incoming id), with the id header %.2f (MHD's response and header), "
          "the id header and the access line %.2f"
          % (a["bare"], a["library"], a["library_incoming_id"], a["with_id_header"],
             a["with_id_header_and_access_line"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"mhdctx": list(by.values()), "node": node} for by, node in runs],
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
