#!/usr/bin/env bash
# Side-by-side core benchmark: natrix and nats-server, one at a time, alternately, on
# loopback, with the same natrix-bench scenarios; medians of RUNS runs go into the
# "## Core (natrix-bench)" section of perf/RESULTS.md, plots into perf/plots/.
# Usage: perf/bench.sh [RUNS] [SECONDS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
need_apt() { ! command -v "$1" >/dev/null; }
if need_apt nats-server || need_apt gnuplot; then
    apt-get update -qq
    need_apt nats-server && apt-get install -y -qq nats-server >/dev/null
    need_apt gnuplot && apt-get install -y -qq gnuplot-nox >/dev/null
fi
cargo build --release -q -p natrix --bin natrix
cargo build --release -q -p natrix-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 perf/run.py --bin "$CARGO_TARGET_DIR/release" --runs "$RUNS" --seconds "$SECONDS_PER_RUN"
