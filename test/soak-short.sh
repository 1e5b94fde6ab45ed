#!/bin/sh
# The soak test (test/soak.py) cut to about 15 s for make check: 12 s of mixed traffic,
# the demo's idle timeout at 3 s so that the uploads it never sees abandoned (ABANDONED in
# soak.py) are closed before the last sample. The ~20 000 requests after its warm-up are
# too few for soak.py's 1 MiB RSS rule to tell a one-allocation-per-request leak (32+
# bytes each) from the allocator settling (up to +/-700 KiB measured), so the cut allows
# 2 MiB: it catches gross leaks, lost fds, threads and access lines; make soak runs the
# full one (180 s, 400 000+ requests, 1 MiB).
exec /usr/bin/python3 "${top_srcdir:-.}/test/soak.py" --seconds "${SOAK_SHORT_SECONDS:-12}" \
    --warmup 4 --demo-timeout 3 --max-rss-growth-kib 2048
