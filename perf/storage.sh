#!/usr/bin/env bash
# Storage benchmark: the disk's own sequential O_DIRECT ceiling (fio), then
# storage-bench (its own O_DIRECT ceiling in the same run, durable append
# throughput with group commit at 128 B and 1 KiB, one durable commit's
# latency, reopen time of a 4 GiB log).
# Usage: perf/storage.sh [DIR] [TOTAL_MIB] [REOPEN_GIB]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/tmp/natrix-storage-bench}
TOTAL_MIB=${2:-1024}
REOPEN_GIB=${3:-4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
mkdir -p "$DIR"
if ! command -v fio >/dev/null; then
    apt-get update -qq && apt-get install -y -qq fio >/dev/null
fi
echo "== machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "== fio: sequential write, O_DIRECT, 1 MiB blocks, io_uring, queue depth 8, ${TOTAL_MIB} MiB, fdatasync at end"
fio --name=seqwrite --directory="$DIR" --rw=write --bs=1M --direct=1 --ioengine=io_uring \
    --iodepth=8 --size="${TOTAL_MIB}M" --end_fsync=1 --fallocate=native --unlink=1 \
    --output-format=normal | grep -E "WRITE:|write:"
echo "== fio: the log's pattern: sequential write, O_DIRECT, 1 MiB blocks, io_uring, queue depth 8, fdatasync every 4 MiB"
fio --name=groupcommit --directory="$DIR" --rw=write --bs=1M --direct=1 --ioengine=io_uring \
    --iodepth=8 --size="${TOTAL_MIB}M" --fdatasync=4 --fallocate=native --unlink=1 \
    --output-format=normal | grep -E "WRITE:|write:"
echo "== fio: 4 KiB write + fdatasync, one at a time (serial commit floor)"
fio --name=synclat --directory="$DIR" --rw=write --bs=4k --direct=1 --ioengine=psync \
    --fdatasync=1 --size=16M --unlink=1 --output-format=normal | grep -E "WRITE:|sync.*percentiles|50.00th|99.00th" | head -6
echo "== storage-bench"
cargo build --release -q -p natrix-storage --bin storage-bench
"$CARGO_TARGET_DIR/release/storage-bench" --dir "$DIR" --total-mib "$TOTAL_MIB" --reopen-gib "$REOPEN_GIB" 2>&1 | grep -v "iopoll"
rm -rf "$DIR"
