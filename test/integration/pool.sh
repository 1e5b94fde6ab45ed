#!/bin/sh
# Integration tests of the demo in --mode pool (see integration.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/integration.py" pool
