#!/usr/bin/env python3
"""Idle cost: the CPU a server with no clients uses, natrix (per shard count) beside
nats-server 2.9.10, alternating, from /proc/PID/stat (utime+stime) over --secs seconds
after a settle. Cases: a core server, a JetStream server (store in a temp folder), and
each node of an idle 3-node cluster (routes only).

Usage: perf/idle.py [--secs 30] [--rounds 3] [--shards 1,2,4] [--bins DIR]
Needs target/release/natrix (cargo build --release)."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import Cluster, free_port, wait_port  # noqa: E402

BINS = os.path.join(os.path.dirname(HERE), "target", "release")
SETTLE_SECS = 3
TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def percent_of_core(pids, secs):
    """Each process's CPU over `secs`, in percent of one core."""
    time.sleep(SETTLE_SECS)
    before = [cpu_ticks(p) for p in pids]
    time.sleep(secs)
    after = [cpu_ticks(p) for p in pids]
    return [100.0 * (a - b) / TICKS_PER_SEC / secs for a, b in zip(after, before)]


def server_cmd(kind, bins, shards, port, store):
    cmd = ([os.path.join(bins, "natrix"), "--shards", str(shards)] if kind == "natrix"
           else ["nats-server"])
    cmd += ["-a", "127.0.0.1", "-p", str(port)]
    if store:
        cmd += ["-js", "-sd", store]
    return cmd


def single(kind, bins, shards, secs, jetstream):
    with tempfile.TemporaryDirectory() as store:
        port = free_port()
        proc = subprocess.Popen(server_cmd(kind, bins, shards, port, store if jetstream else None),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            return percent_of_core([proc.pid], secs)[0]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cluster(kind, bins, shards, secs):
    with Cluster(kind, bins, shards) as cl:
        return max(percent_of_core([n["proc"].pid for n in cl.nodes], secs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--bins", default=BINS, help="the folder holding the natrix binary")
    args = ap.parse_args()
    servers = [("natrix", int(s)) for s in args.shards.split(",")] + [("nats-server", 1)]
    cases = {
        "core server": lambda k, s: single(k, args.bins, s, args.secs, False),
        "JetStream server": lambda k, s: single(k, args.bins, s, args.secs, True),
        "3-node cluster, busiest node": lambda k, s: cluster(k, args.bins, s, args.secs),
    }
    print(f"| case | {' | '.join(k if k != 'natrix' else f'natrix --shards {s}' for k, s in servers)} |")
    print(f"|---|{'---|' * len(servers)}")
    for name, measure in cases.items():
        results = {srv: [] for srv in servers}
        for _ in range(args.rounds):
            for kind, shards in servers:
                results[(kind, shards)].append(measure(kind, shards))
        cells = [f"{statistics.median(results[srv]):.2f} %" for srv in servers]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
