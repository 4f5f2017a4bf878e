#!/usr/bin/env bash
# `ferry upload --parallel N` of one random file to the embedded store and
# to the scale-out layout (PostgreSQL + a Garage bucket, data_fsync on),
# rounds alternating in one run, each after a sync. PostgreSQL and Garage
# are started as scripts/test starts them (Garage built once into the
# tools cache).
#
# Usage: bench/scaleout-upload.sh [SIZE_MIB] [PARALLEL] [ROUNDS]   (defaults: 1024 8 3)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
parallel=${2:-8}
rounds=${3:-3}
bytes=$((size_mib * 1024 * 1024))
tools=${FERRY_TEST_TOOLS:-$HOME/.cache/ferry-test-tools}
source scripts/lib/tools.sh
install_python_tools "$tools"

cargo build --release --quiet --bin ferry
ferry=target/release/ferry
work=$(mktemp -d "${BENCH_DIR:-$PWD/target}/bench.XXXXXX")
source scripts/lib/common.sh
source scripts/lib/postgres.sh
source scripts/lib/garage.sh
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; stop_garage; stop_postgres; rm -rf "$work"' EXIT
start_postgres
install_garage "$tools"
start_garage
allow_browsers "$venv/bin/python"
psql "$FERRY_TEST_POSTGRES_URL" -qc "CREATE DATABASE bench"
database_url="${FERRY_TEST_POSTGRES_URL%/*}/bench"

head -c "$bytes" /dev/urandom > "$work/source.bin"

# Starts a server on $1 with the remaining arguments; sets $url and $key.
serve() {
  local dir=$1; shift
  key=$($ferry admin --data-dir "$dir" "$@" org create bench >/dev/null &&
        $ferry admin --data-dir "$dir" "$@" key create --org bench)
  FERRY_LOG=warn $ferry serve --listen 127.0.0.1:0 --data-dir "$dir" --deletion-grace 0 --janitor-interval 1 \
    "$@" $storage > "$dir.stdout" &
  pids+=($!)
  until grep -q "listening on" "$dir.stdout" 2>/dev/null; do sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$dir.stdout" | head -1)
}
storage=
serve "$work/embedded"
embedded_url=$url embedded_key=$key
export FERRY_S3_ENDPOINT=$FERRY_TEST_S3_ENDPOINT FERRY_S3_REGION=$FERRY_TEST_S3_REGION
export FERRY_S3_ACCESS_KEY_ID=$FERRY_TEST_S3_ACCESS_KEY_ID FERRY_S3_SECRET_ACCESS_KEY=$FERRY_TEST_S3_SECRET_ACCESS_KEY
storage="--storage s3://$FERRY_TEST_S3_BUCKET/bench/"
serve "$work/scaleout" --database-url "$database_url"
scaleout_url=$url scaleout_key=$key

now() { date +%s.%N; }
upload() { # label url key
  sync
  local s e
  s=$(now)
  FERRY_URL=$2 FERRY_API_KEY=$3 FERRY_STATE_DIR="$work/state" \
    $ferry upload --quiet --parallel "$parallel" --name "$1.bin" "$work/source.bin"
  e=$(now)
  awk -v l="$1" -v s="$s" -v e="$e" -v b="$bytes" 'BEGIN { printf "%s %.3f %.1f\n", l, e - s, b / (e - s) / 1048576 }'
  FERRY_URL=$2 FERRY_API_KEY=$3 $ferry rm "$1.bin" > /dev/null
}
: > "$work/results"
for round in $(seq "$rounds"); do
  upload embedded "$embedded_url" "$embedded_key" >> "$work/results"
  upload scaleout "$scaleout_url" "$scaleout_key" >> "$work/results"
done
echo "$size_mib MiB, --parallel $parallel, $rounds rounds (seconds, MiB/s):"
cat "$work/results"
for what in embedded scaleout; do
  grep "^$what " "$work/results" | sort -k2 -n | awk -v w="$what" '{ a[NR] = $0 } END {
    split(a[int((NR + 1) / 2)], m, " "); printf "median %-9s %s s  %s MiB/s\n", w, m[2], m[3] }'
done
