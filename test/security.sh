#!/bin/sh
# Security checks of the demo: no secret in any log line, no outgoing call to a URL the
# client chose, edge mode (see security.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/security.py"
