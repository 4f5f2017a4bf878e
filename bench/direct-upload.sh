#!/usr/bin/env bash
# One direct-to-cloud upload of a random file through the embedded store,
# next to `dd ... conv=fdatasync` of the same file on the same disk, in the
# same run. Prints both rates and the complete call's latency.
#
# Usage: bench/direct-upload.sh [SIZE_MIB] [PARALLEL]   (defaults: 1024 8)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
parallel=${2:-8}

cargo build --release --quiet --bin ferry --example bench_upload
work=$(mktemp -d "${BENCH_DIR:-$PWD/target}/bench.XXXXXX")
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/source.bin"
sync

echo "dd if=source of=copy bs=8M conv=fdatasync:"
dd if="$work/source.bin" of="$work/dd-copy.bin" bs=8M conv=fdatasync 2>&1 | tail -1
rm -f "$work/dd-copy.bin"

key=$(target/release/ferry admin --data-dir "$work/data" org create bench >/dev/null &&
      target/release/ferry admin --data-dir "$work/data" key create --org bench)
FERRY_LOG=warn target/release/ferry serve --listen 127.0.0.1:0 --data-dir "$work/data" > "$work/stdout" &
server=$!
until grep -q "listening on" "$work/stdout" 2>/dev/null; do sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/stdout" | head -1)

echo "ferry direct-to-cloud upload, $parallel parts in flight:"
target/release/examples/bench_upload "$url" "$key" "$work/source.bin" "$parallel"
