#!/usr/bin/env bash
# Durable ingest of a random file into the embedded store, next to
# `dd ... conv=fdatasync` of the same file on the same disk, in the same
# run: rounds alternate dd, a minimal uploader (which also times the
# complete call) and `ferry upload`, each after a `sync`, deleting what
# the round wrote. This disk's speed drifts within a run, hence the
# alternation and the medians.
#
# Usage: bench/direct-upload.sh [SIZE_MIB] [PARALLEL] [ROUNDS]   (defaults: 1024 8 3)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
parallel=${2:-8}
rounds=${3:-3}
bytes=$((size_mib * 1024 * 1024))

cargo build --release --quiet --bin ferry --example bench_upload
work=$(mktemp -d "${BENCH_DIR:-$PWD/target}/bench.XXXXXX")
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

head -c "$bytes" /dev/urandom > "$work/source.bin"
ferry=target/release/ferry
key=$($ferry admin --data-dir "$work/data" org create bench >/dev/null &&
      $ferry admin --data-dir "$work/data" key create --org bench)
FERRY_LOG=warn $ferry serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --deletion-grace 0 --janitor-interval 1 > "$work/stdout" &
server=$!
until grep -q "listening on" "$work/stdout" 2>/dev/null; do sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/stdout" | head -1)
export FERRY_URL="$url" FERRY_API_KEY="$key" FERRY_STATE_DIR="$work/state"

now() { date +%s.%N; }
rate() { awk -v s="$1" -v e="$2" -v b="$bytes" 'BEGIN { printf "%.3f %.1f", e - s, b / (e - s) / 1048576 }'; }

: > "$work/results"
for round in $(seq "$rounds"); do
  sync; s=$(now); dd if="$work/source.bin" of="$work/dd-copy.bin" bs=8M conv=fdatasync status=none; e=$(now)
  echo "dd $(rate "$s" "$e")" >> "$work/results"; rm -f "$work/dd-copy.bin"

  sync; s=$(now)
  out=$(target/release/examples/bench_upload "$url" "$key" "$work/source.bin" "$parallel")
  e=$(now)
  echo "uploader $(rate "$s" "$e") $(echo "$out" | grep -o '"complete_ms": [0-9.]*' | grep -o '[0-9.]*$')" >> "$work/results"
  $ferry rm bench.bin > /dev/null

  sync; s=$(now); $ferry upload --quiet --parallel "$parallel" --name cli.bin "$work/source.bin"; e=$(now)
  echo "ferry-upload $(rate "$s" "$e")" >> "$work/results"
  $ferry rm cli.bin > /dev/null
done

echo "$size_mib MiB, $parallel parts in flight, $rounds rounds (seconds, MiB/s; complete ms):"
cat "$work/results"
for what in dd uploader ferry-upload; do
  grep "^$what " "$work/results" | sort -k2 -n | awk -v w="$what" '{ a[NR] = $0 } END {
    split(a[int((NR + 1) / 2)], m, " "); printf "median %-13s %s s  %s MiB/s%s\n", w, m[2], m[3], (m[4] ? "  complete " m[4] " ms" : "") }'
done
