#!/bin/sh
# Integration tests of the demo in --mode thread-per-connection (see integration.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/integration.py" thread-per-connection
