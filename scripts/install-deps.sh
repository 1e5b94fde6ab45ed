#!/bin/sh
# Installs what mhdctx needs to build, run its demo and run its tests (Debian 12).
# Run as root (or through sudo). Idempotent.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake libtool pkg-config \
    libmicrohttpd-dev libjansson-dev uuid-dev \
    check libsubunit-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev postgresql \
    curl locales python3 python3-aiohttp valgrind ca-certificates clang clang-format libclang-rt-14-dev wrk >/dev/null
# The OpenTelemetry interop test runs a small Node.js peer; the machine image usually
# has Node.js and npm already.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
