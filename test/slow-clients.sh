#!/bin/sh
# Slowloris-style clients against the demo in every mode (see slow_clients.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/slow_clients.py"
