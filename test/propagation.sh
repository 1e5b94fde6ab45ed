#!/bin/sh
# Two demo instances and an OpenTelemetry peer (see propagation.py).
exec /usr/bin/python3 "${top_srcdir:-.}/test/propagation.py"
