#!/bin/sh
# bench/node/install.sh - installs the Node peers' modules (express, pino; exact versions
# from package-lock.json) into bench/node/node_modules with `npm ci`, once.
#
# Exit 0 and node_modules present: the peers can run. Exit 0 with a "peer not available"
# line and no node_modules: node or npm is missing or too old, the directory is read-only,
# or npm ci failed (offline); the benchmark reports the peer as not available.
set -u
here=$(cd "$(dirname "$0")" && pwd)
unavailable() {
    echo "node peer not available: $1"
    exit 0
}
command -v node >/dev/null 2>&1 || unavailable "node is not installed"
command -v npm >/dev/null 2>&1 || unavailable "npm is not installed"
# 18, not 20: thread-stream 4, in the lockfile through pino, declares node >= 20, but
# pino starts one only for a transport, which the peers do not use. Debian 12's node 18.20.4
# ran all three peers (pino-bench, als-bench, express-als with its log file) with these
# modules; npm ci only warns (EBADENGINE) about a declared engine.
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
[ "${major:-0}" -ge 18 ] 2>/dev/null || unavailable "node $(node --version) is older than 18"
[ -d "$here/node_modules" ] && exit 0
[ -w "$here" ] || unavailable "$here is not writable"
echo "bench/node: npm ci (express, pino)"
if ! (cd "$here" && npm ci --no-audit --no-fund --silent); then
    rm -rf "$here/node_modules"
    unavailable "npm ci failed in $here"
fi
