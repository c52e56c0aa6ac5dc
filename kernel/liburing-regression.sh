#!/usr/bin/env bash
# liburing's own test suite (Debian's liburing source, built static) run in a microvm on
# the patched kernel and on the stock 6.12 kernel. Fails if a test that passes on stock
# fails on the patched kernel. Slow under TCG (tens of minutes); not part of CI.
#
# usage: kernel/liburing-regression.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/uring-getdents/liburing}
mkdir -p "$out"
src="$out/src"

if [ ! -x "$src/test/nop.t" ]; then
    if ! ls "$out"/liburing_*.orig.tar.gz >/dev/null 2>&1; then
        if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/; then
            [ "$(id -u)" = 0 ] || { echo "need a deb-src entry; run as root or add one" >&2; exit 2; }
            printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                > /etc/apt/sources.list.d/uring-getdents-src.sources
            apt-get update -qq
        fi
        (cd "$out" && apt-get source --download-only liburing)
    fi
    rm -rf "$src" && mkdir -p "$src"
    tar -xzf "$out"/liburing_*.orig.tar.gz -C "$src" --strip-components=1
    (cd "$src" && ./configure >/dev/null && make -s -C src -j"$(nproc)" >/dev/null \
        && make -s -C test -j"$(nproc)" LDFLAGS=-static >/dev/null 2>&1)
fi

# Each test runs from a writable scratch directory with a per-test timeout.
guest_loop='cd /tmp; for t in /liburing/*.t; do
    timeout 120 "$t" >/tmp/last.out 2>&1; rc=$?
    echo "$(basename "$t") $rc"
done'

for kernel in stock patched; do
    flag=(); [ "$kernel" = stock ] && flag=(--stock)
    echo "== liburing tests on the $kernel kernel" >&2
    cargo run -q -p host-runner --bin run-in-vm -- "${flag[@]}" --no-src --mem 1024 --timeout 7200 \
        --disk "$src/test:/liburing" sh -c "$guest_loop" > "$out/results.$kernel"
done

# Status 0 passes, 77 (T_EXIT_SKIP) skips; anything else fails.
verdict() { awk '{ s = ($2 == 0) ? "pass" : ($2 == 77) ? "skip" : "FAIL(" $2 ")"; print $1, s }' "$1"; }
join <(verdict "$out/results.stock" | sort) <(verdict "$out/results.patched" | sort) > "$out/compare"
printf '%-40s %-10s %s\n' test stock patched
cat "$out/compare" | awk '{ printf "%-40s %-10s %s\n", $1, $2, $3 }'
regressions=$(awk '$2 == "pass" && $3 != "pass"' "$out/compare")
echo
awk '{ s[$2]++; p[$3]++ } END { for (k in s) printf "stock %s: %d\n", k, s[k]; for (k in p) printf "patched %s: %d\n", k, p[k] }' "$out/compare" | sort
if [ -n "$regressions" ]; then
    echo "REGRESSIONS (pass on stock, not on patched):"
    echo "$regressions"
    exit 1
fi
echo "no regressions: every test that passes on stock passes on the patched kernel"
