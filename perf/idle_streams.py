#!/usr/bin/env python3
"""Idle replicated streams: what N idle R3 streams cost each node of a 3-node JetStream
cluster, natrix beside nats-server 2.9.10, servers alternating per round.

Each round and server: a fresh loopback cluster (js_bench.py's configs: server_name,
cluster block, jetstream store_dir per node), `jsgen -mode scale-streams -streams N
-replicas 3 -n 1` on node n1 (creates the streams and publishes one message to each),
a settle of --settle seconds, then each node's utime+stime (/proc/PID/stat) over --secs
seconds, in percent of one core. The issue's target: under 2 % of a core per node for
1,000 idle R3 streams.

Usage: perf/gen/build.sh && python3 perf/idle_streams.py [--streams 1000] [--rounds 3]
       [--secs 30] [--servers natrix,nats-server-2.9.10] [--json FILE]"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from js_bench import Nodes, cpu_ticks, servers, version  # noqa: E402

TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")


def per_node_percent(pids, secs):
    before = [cpu_ticks(p) for p in pids]
    time.sleep(secs)
    after = [cpu_ticks(p) for p in pids]
    return [100.0 * (a - b) / TICKS_PER_SEC / secs for a, b in zip(after, before)]


def one_round(a, server):
    with tempfile.TemporaryDirectory(prefix="idle-streams-") as workdir:
        nodes = Nodes(server, 3, workdir)
        try:
            nodes.ready(timeout=60)
            t0 = time.time()
            res = subprocess.run(
                [a.gen, "-url", f"nats://127.0.0.1:{nodes.port}", "-mode", "scale-streams",
                 "-streams", str(a.streams), "-replicas", "3", "-n", "1"],
                capture_output=True, text=True, timeout=a.timeout)
            created_secs = time.time() - t0
            if res.returncode != 0:
                raise RuntimeError(f"jsgen exit {res.returncode}: {res.stdout[-300:]} "
                                   f"{res.stderr[-300:]}")
            gen = json.loads(res.stdout.strip().splitlines()[-1])
            time.sleep(a.settle)
            if nodes.dead():
                raise RuntimeError(nodes.dead())
            pct = per_node_percent(nodes.pids, a.secs)
            return {"server": server.name, "streams": a.streams, "create_secs": created_secs,
                    "account_streams": gen.get("account_streams"), "node_pct": pct}
        finally:
            nodes.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=30)
    ap.add_argument("--settle", type=int, default=10)
    ap.add_argument("--timeout", type=int, default=600, help="seconds for the streams' creation")
    ap.add_argument("--servers", default="natrix,nats-server-2.9.10")
    ap.add_argument("--json")
    ap.add_argument("--gen", default=os.path.join(HERE, "out", "bin", "jsgen"))
    ap.add_argument("--nats29", default="nats-server")
    ap.add_argument("--nats215", default=os.path.join(HERE, "out", "venv", "bin", "nats-server"))
    ap.add_argument("--natrix", default=os.path.join(os.path.dirname(HERE), "target", "release",
                                                     "natrix"))
    a = ap.parse_args()
    table = servers(a)
    names = a.servers.split(",")
    runs = {n: [] for n in names}
    out = open(a.json, "a") if a.json else None
    for rnd in range(1, a.rounds + 1):
        for name in names:
            rec = one_round(a, table[name])
            rec["round"] = rnd
            runs[name].append(rec)
            print(f"round {rnd} {name}: nodes "
                  f"{', '.join(f'{p:.2f} %' for p in rec['node_pct'])} of a core "
                  f"(streams created in {rec['create_secs']:.1f} s)", flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
    print(f"\n{a.streams} idle R3 streams on a 3-node loopback cluster, {a.secs} s after a "
          f"{a.settle} s settle, {a.rounds} rounds; " +
          "; ".join(f"{n}: {version(table[n].binary)}" for n in names) + "\n")
    print("| server | busiest node, median of rounds | all nodes, median | streams created in |")
    print("|---|---|---|---|")
    for name in names:
        busiest = statistics.median(max(r["node_pct"]) for r in runs[name])
        every = statistics.median(p for r in runs[name] for p in r["node_pct"])
        create = statistics.median(r["create_secs"] for r in runs[name])
        print(f"| {name} | {busiest:.2f} % of a core | {every:.2f} % | {create:.1f} s |")


if __name__ == "__main__":
    main()
