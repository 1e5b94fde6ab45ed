#!/bin/sh
# Every symbol the shared library exports starts with mhdctx_ (no internals leak), and
# every function the header marks MHDCTX_EXPORT is exported.
lib="${top_builddir:-.}/.libs/libmhdctx.so"
headers="${top_srcdir:-.}/include/mhdctx.h"
# An adapter's header counts when the library was built with it.
for adapter in curl sqlite pq; do
    if nm -D --defined-only "$lib" 2>/dev/null | grep -q "mhdctx_${adapter}_"; then
        headers="$headers ${top_srcdir:-.}/include/mhdctx_${adapter}.h"
    fi
done
command -v nm >/dev/null 2>&1 || { echo "nm not found: skipping"; exit 77; }
[ -f "$lib" ] || { echo "no $lib (static-only build): skipping"; exit 77; }
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort)
leaked=$(printf '%s\n' "$exported" | grep -v '^mhdctx_[a-z]' || true)
if [ -n "$leaked" ]; then
    echo "symbols outside the mhdctx_ namespace are exported:"; echo "$leaked"; exit 1
fi
declared=$(cat $headers | tr '\n' ' ' | grep -o 'MHDCTX_EXPORT [^(]*(' |
           grep -o 'mhdctx_[a-z0-9_]* *($' | tr -d '( ' | sort -u)
missing=$(printf '%s\n' "$declared" | while read -r fn; do
    printf '%s\n' "$exported" | grep -qx "$fn" || echo "$fn"; done)
if [ -n "$missing" ]; then
    echo "declared in a public header but not exported:"; echo "$missing"; exit 1
fi
echo "$(printf '%s\n' "$declared" | wc -l) declared functions exported, nothing else"
