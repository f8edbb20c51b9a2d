#!/usr/bin/env python3
"""What a message crossing shards costs: a fresh `natrix --shards 2` per run, one
publisher and one subscriber (jsgen core-pubsub, nats.go), and a request/reply run
(natrix-bench reqrep, 1 requester, 1 responder). The kernel's SO_REUSEPORT hash puts
each connection on a shard; a run is classed as "same shard" or "across shards" by
the server's per-thread CPU (/proc/PID/task): across shards, both shard threads work.
Runs go on until each class has --per-class runs (or --max-runs), servers alternating
with nats-server 2.9.10. Reports medians per class: rate, server CPU per message,
request/reply p50, and the across/same ratio of CPU per message.

With --compare DIR, a second natrix build (DIR/natrix) runs beside the first in every
round, its classes labelled with DIR: an A/B of two builds in the same sitting.

Usage: perf/cross_shard.py [--per-class 5] [--max-runs 40] [--msgs 2000000] [--bins DIR]
                           [--compare DIR]
Needs target/release/natrix and natrix-bench (cargo build --release) and
perf/out/bin/jsgen (perf/gen/build.sh)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from route_ingress import thread_ticks  # noqa: E402
from run import Server  # noqa: E402

BINS = os.path.join(os.path.dirname(HERE), "target", "release")
JSGEN = os.path.join(HERE, "out", "bin", "jsgen")
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
# Across shards, the less busy shard thread does at least this share of the busier's work.
CROSS_SHARE_MIN = 0.25


def classify(spread):
    shards = sorted(v for k, v in spread.items() if k.startswith("shard"))
    if len(shards) < 2 or shards[-1] == 0:
        return "n/a"
    return "across shards" if shards[0] / shards[-1] >= CROSS_SHARE_MIN else "same shard"


def measured(server, cmd):
    before = thread_ticks(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    after = thread_ticks(server.proc.pid)
    if out.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {out.stdout}{out.stderr}")
    return out.stdout, {k: after.get(k, 0) - before.get(k, 0) for k in after}


def pubsub(server, args):
    stdout, spread = measured(server, [
        JSGEN, "-mode", "core-pubsub", "-url", f"nats://127.0.0.1:{server.port}",
        "-n", str(args.msgs), "-size", str(args.size), "-server-pid", str(server.proc.pid)])
    r = json.loads(stdout.strip().splitlines()[-1])
    return spread, {"rate": r["rate"], "cpu_us_per_msg": r["server_cpu_us"] / r["msgs"]}


def reqrep(server, args, bins):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        _, spread = measured(server, [
            os.path.join(bins, "natrix-bench"), "reqrep", "--pub", "1", "--sub", "1",
            "--duration", f"{args.reqrep_secs}s", "--size", str(args.size),
            "--server", f"nats://127.0.0.1:{server.port}", "--no-progress", "--json", out.name])
        with open(out.name) as f:
            r = json.load(f)
    ticks = sum(spread.values())
    return spread, {"p50_us": r["latency"]["p50_us"], "requests_per_sec": r["published"] / r["seconds"],
                    "cpu_us_per_request": ticks * TICK_US / max(r["published"], 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--max-runs", type=int, default=40)
    ap.add_argument("--msgs", type=int, default=2_000_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reqrep-secs", type=int, default=3)
    ap.add_argument("--bins", default=BINS, help="the folder holding natrix and natrix-bench")
    ap.add_argument("--scenarios", default="pubsub,reqrep")
    ap.add_argument("--compare", help="another folder holding a natrix build to run beside")
    args = ap.parse_args()
    # (label, kind, folder of its natrix) of every server a round runs
    servers = [("natrix", "natrix", args.bins)]
    if args.compare:
        servers.append((f"natrix ({args.compare})", "natrix", args.compare))
    servers.append(("nats-server", "nats-server", args.bins))
    results = {}  # (scenario, server class) -> list of metric dicts
    for scenario in args.scenarios.split(","):
        for run in range(args.max_runs):
            for label, kind, bins in servers:
                with Server(kind, bins, 2) as server:
                    if scenario == "pubsub":
                        spread, metrics = pubsub(server, args)
                    else:
                        spread, metrics = reqrep(server, args, args.bins)
                cls = f"{label}: {classify(spread)}" if kind == "natrix" else "nats-server"
                results.setdefault((scenario, cls), []).append(metrics)
                print(f"{scenario} run {run + 1} {label}: {cls} {metrics} {spread}", flush=True)
            counts = [len(results.get((scenario, f"{label}: {c}"), []))
                      for label, kind, _ in servers if kind == "natrix"
                      for c in ("same shard", "across shards")]
            if min(counts) >= args.per_class:
                break
    print("\n| scenario | where | runs | " + " | ".join(["metric (median)"] * 3) + " |")
    print("|---|---|---|---|---|---|")
    for (scenario, cls), runs in sorted(results.items()):
        keys = runs[0].keys()
        cells = [f"{k} {statistics.median(r[k] for r in runs):,.3f}" for k in keys]
        print(f"| {scenario} | {cls} | {len(runs)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
