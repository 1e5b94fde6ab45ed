#!/usr/bin/python3
"""bench/micro.py - the micro-benchmarks of bench/micro.c next to their Node peers,
measured in the same run: reading the current context, generating an id, one log line
with six context fields (to /dev/null and to a file, pino with the same fields to the
same destination), SQL tagging, and heap allocations per request.

usage: micro.py [--quick] [--json FILE]
Needs top_builddir/top_srcdir in the environment (make bench sets them). The Node rows
need bench/node/node_modules (bench/node/install.sh); without them they are left out.
"""
import argparse
import json
import os
import shutil
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


def pino_lines_per_s(dest, lines):
    result = run_json_lines(["taskset", "-c", "1", "node",
                             os.path.join(NODE_DIR, "pino-bench.js"), "--dest", dest,
                             "--lines", str(lines)])
    return result[0]["lines_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    ours = run_json_lines(["taskset", "-c", "1", os.path.join(BUILD, "bench", "micro")] +
                          (["--quick"] if args.quick else []))
    by = {}
    for r in ours:
        key = r["bench"] if r["bench"] != "log" else "log %s %s" % (r["dest"], r["sink"])
        by[key] = r
    node = {}
    if node_ready():
        als = run_json_lines(["taskset", "-c", "1", "node",
                              os.path.join(NODE_DIR, "als-bench.js")])[0]
        node["current"] = als["get_store_ns"]
        node["uuid"] = als["random_uuid_ns"]
        lines = 1000000 // 200 + 1 if args.quick else 1000000  # as many as bench/micro.c
        with tempfile.NamedTemporaryFile(prefix="mhdctx-pino-") as f:
            node["log /dev/null"] = pino_lines_per_s("/dev/null", lines)
            node["log file"] = pino_lines_per_s(f.name, lines)
    else:
        print("node peer not available (bench/node/install.sh): Node columns left out")

    print("micro: pinned to CPU 1 (the batched writer's thread shares it); node: pino "
          "with a synchronous destination, one write per line; ratio: mhdctx's advantage")
    row = "%-40s %17s %17s %8s"
    print(row % ("figure", "mhdctx", "node", "ratio"))

    def show(name, value, unit, peer=None, higher_is_better=False):
        mine = "%.2f %s" % (value, unit) if value < 100 else "%.0f %s" % (value, unit)
        other = ("%.2f %s" % (peer, unit) if peer < 100 else "%.0f %s" % (peer, unit)) \
            if peer else "-"
        ratio = "-"
        if peer:
            ratio = "%.2fx" % (value / peer if higher_is_better else peer / value)
        print(row % (name, mine, other, ratio))

    show("current context (node: getStore)", by["current"]["ns"], "ns",
         node.get("current"))
    show("UUID v4 id (node: randomUUID)", by["uuid"]["ns"], "ns", node.get("uuid"))
    for dest in ("/dev/null", "file"):
        for sink in ("sync", "async"):
            r = by["log %s %s" % (dest, sink)]
            show("log line, %s, %s" % (dest, "batched" if sink == "async"
                                        else "write per line"),
                 r["lines_per_s"], "lines/s", node.get("log " + dest), True)
    show("SQL tag (sqlcommenter, into a buffer)", by["sql_tag"]["ns"], "ns")
    a = by["allocations"]
    print("heap allocations per request: bare MHD %.2f; added by mhdctx: library %.2f "
          "(%.2f with an incoming id), with the id header %.2f (MHD's response and header), "
          "the id header and the access line %.2f"
          % (a["bare"], a["library"], a["library_incoming_id"], a["with_id_header"],
             a["with_id_header_and_access_line"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mhdctx": ours, "node": node}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
