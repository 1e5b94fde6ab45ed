#!/bin/sh
# Integration tests of the demo in --mode epoll (see integration.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/integration.py" epoll
