#!/bin/sh
# Bad input against the demo in --mode thread-per-connection (see bad_input.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/bad_input.py" thread-per-connection
