#!/bin/sh
# SIGTERM with requests in flight, in every mode (see shutdown.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/shutdown.py"
