#!/usr/bin/env bash
# Fuzz the value detectors (src/detect.c) with libFuzzer + AddressSanitizer.
# Usage: test/fuzz/run.sh [seconds]   (default 60); needs clang-14.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
inc=$("$PG_CONFIG" --includedir-server)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/src" -I"$inc" "$here/fuzz_detect.c" "$root/src/detect.c" \
    "$("$PG_CONFIG" --pkglibdir)/libpgport.a" -o "$out/fuzz_detect"
mkdir -p "$out/corpus"
cp "$here"/seeds/* "$out/corpus/"
"$out/fuzz_detect" -max_total_time="$secs" -max_len=512 -print_final_stats=1 "$out/corpus"
