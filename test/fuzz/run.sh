#!/usr/bin/env bash
# Fuzz with libFuzzer + AddressSanitizer + UBSan; needs clang-14.
#   test/fuzz/run.sh [seconds] [detect|json]     (default: 60 detect)
# detect: the value detectors (src/detect.c);
# json:   the external verifier's JSON reading and canonical writing
#         (verifier/json.c on yajl, verifier/canonical.c), seeded with the
#         inputs of test/vectors/json.tsv, rows.tsv and json_invalid.tsv; its oracle is a
#         second, simple canonical writer in fuzz_json.c.
# Inputs are at most max_len bytes; a run using more than 256 MB (RSS, or
# one malloc) is a finding: the verifier must not amplify what it reads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
target=${2:-detect}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
mkdir -p "$out/corpus"
case "$target" in
detect)
    PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    inc=$("$PG_CONFIG" --includedir-server)
    clang "${flags[@]}" -I"$root/src" -I"$inc" "$here/fuzz_detect.c" "$root/src/detect.c" \
        "$("$PG_CONFIG" --pkglibdir)/libpgport.a" -o "$out/fuzz"
    cp "$here"/seeds/* "$out/corpus/"
    maxlen=512
    ;;
json)
    v="$root/verifier"
    clang "${flags[@]}" -I"$v" "$here/fuzz_json.c" "$v/json.c" "$v/canonical.c" "$v/util.c" \
        $(pkg-config --libs yajl 2>/dev/null || echo -lyajl) -o "$out/fuzz"
    n=0
    for f in json.tsv rows.tsv; do
        col=1; [ "$f" = rows.tsv ] && col=2
        grep -v '^#' "$root/test/vectors/$f" | cut -f"$col" | while IFS= read -r line; do
            n=$((n + 1)); printf '%s' "$line" > "$out/corpus/$f.$n"
        done
    done
    # and the texts both must refuse, numbers near numeric's limits among them
    grep '^text' "$root/test/vectors/json_invalid.tsv" | cut -f2 | while IFS= read -r line; do
        n=$((n + 1)); printf '%s' "$line" > "$out/corpus/invalid.$n"
    done
    maxlen=4096
    ;;
*)
    echo "usage: $0 [seconds] [detect|json]" >&2
    exit 2
    ;;
esac
"$out/fuzz" -max_total_time="$secs" -max_len="$maxlen" -rss_limit_mb=256 -print_final_stats=1 "$out/corpus"
