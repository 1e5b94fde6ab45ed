#!/bin/sh
# From a fresh Debian machine to a running demo on port 8080:
#   ./scripts/demo.sh            (then: curl -i localhost:8080/users/7)
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
exec make run
