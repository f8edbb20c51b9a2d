#!/usr/bin/env python3
"""Route ingress: 3-node clusters (natrix and nats-server alternating, a fresh cluster per
run), -pubs publishers on the second server each sending to its own subject, as many
subscribers on the third; every message crosses one route. jsgen (nats.go) generates the
load. Reports the rate, the receiving server's CPU per message, and for natrix how that
CPU was spread over its shards' threads (from /proc/PID/task).

Usage: perf/route_ingress.py [--rounds 5] [--msgs 2000000] [--pubs 4] [--shards N] [--bins DIR]
Needs target/release/natrix (cargo build --release) and perf/out/bin/jsgen
(perf/gen/build.sh)."""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import Cluster  # noqa: E402

ROOT = os.path.dirname(HERE)
JSGEN = os.path.join(HERE, "out", "bin", "jsgen")
BINS = os.path.join(ROOT, "target", "release")


def thread_ticks(pid):
    """utime+stime per thread name; natrix's shard threads are named shard-N-*."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        m = re.match(r"shard-(\d+)", name)
        key = f"shard {m.group(1)}" if m else "other"
        ticks[key] = ticks.get(key, 0) + int(fields[11]) + int(fields[12])
    return ticks


def one_run(kind, args):
    with Cluster(kind, args.bins, args.shards) as cl:
        receiver = cl.nodes[2]["proc"].pid
        before = thread_ticks(receiver)
        out = subprocess.run(
            [JSGEN, "-mode", "core-route", "-url", cl.url(1), "-sub-url", cl.url(2),
             "-pubs", str(args.pubs), "-n", str(args.msgs), "-size", str(args.size),
             "-server-pid", str(receiver)],
            capture_output=True, text=True, timeout=600)
        after = thread_ticks(receiver)
    if out.returncode != 0:
        raise RuntimeError(f"jsgen failed: {out.stdout}{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    spread = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return r, spread


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--msgs", type=int, default=2_000_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pubs", type=int, default=4)
    ap.add_argument("--shards", type=int, default=os.cpu_count())
    ap.add_argument("--bins", default=BINS, help="the folder holding the natrix binary")
    args = ap.parse_args()
    runs = {"natrix": [], "nats-server": []}
    failures = {"natrix": 0, "nats-server": 0}
    for i in range(args.rounds):
        for kind in ("natrix", "nats-server"):
            try:
                r, spread = one_run(kind, args)
            except RuntimeError as e:
                print(f"round {i + 1} {kind}: FAILED: {e}", flush=True)
                failures[kind] += 1
                continue
            cpu_per_msg = r["server_cpu_us"] / r["msgs"]
            runs[kind].append((r["rate"], cpu_per_msg, spread))
            shown = ", ".join(f"{k} {v / 100:.2f} s" for k, v in sorted(spread.items()))
            print(f"round {i + 1} {kind}: {r['rate']:,.0f} msg/s, receiver "
                  f"{cpu_per_msg:.2f} µs CPU/msg; receiver threads: {shown}", flush=True)
    print()
    for kind, rs in runs.items():
        rate = statistics.median(x[0] for x in rs)
        cpu = statistics.median(x[1] for x in rs)
        print(f"{kind}: median {rate:,.0f} msg/s, receiver {cpu:.2f} µs CPU/msg "
              f"({len(rs)} runs, {failures[kind]} failed)")
    n, s = (statistics.median(x[0] for x in runs[k]) for k in ("natrix", "nats-server"))
    nc, sc = (statistics.median(x[1] for x in runs[k]) for k in ("natrix", "nats-server"))
    print(f"natrix / nats-server: {n / s:.2f}x the rate at {nc / sc:.2f}x the receiver's CPU "
          "per message")


if __name__ == "__main__":
    main()
