#!/usr/bin/env python3
"""Fail-over time of an R3 stream: the three-node example (configs/jetstream), its
stream leader killed (-9), and the time until a publish through a survivor is
acknowledged again; then the survivors' CPU per message over 1,000 synchronous
publishes.

Each round starts the three servers afresh in a temporary directory, creates an R3
stream, publishes 20 messages, kills the stream's leader, then publishes through a
survivor every 50 ms (100 ms ack wait each) until one is acknowledged, then makes
1,000 synchronous 128-byte publishes; the survivors' utime+stime (/proc/PID/stat) over
those, per message. Two clients do it: nats-py (in this script) and jsgen's js-failover
mode (perf/gen, on nats.go, built by perf/gen/build.sh), each on its own fresh cluster.
Servers alternate per round. Run from the repository root:

    perf/gen/build.sh
    python3 perf/js_failover.py --rounds 5 --server target/release/natrix --server nats-server

Prints one line per round and client, and the medians.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

import nats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [os.path.join(ROOT, "configs", "jetstream", f"n{i}.conf") for i in (1, 2, 3)]
PORTS = {"n1": 14222, "n2": 24222, "n3": 34222}
JSGEN = os.path.join(ROOT, "perf", "out", "bin", "jsgen")
AFTER_MSGS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


async def quiet(_error):
    pass


async def wait_js(nc, deadline):
    while True:
        try:
            reply = await nc.request("$JS.API.INFO", b"", timeout=1)
            if b'"error"' not in reply.data:
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("no meta leader")
        await asyncio.sleep(0.2)


async def fail_over_with_nats_py(url, leader_proc, survivors):
    """Kills the leader, times the first acknowledged publish, then the survivors' CPU
    per message over AFTER_MSGS synchronous publishes."""
    other = await nats.connect(url, error_cb=quiet)
    ojs = other.jetstream(timeout=0.1)
    begun = time.monotonic()
    leader_proc.send_signal(signal.SIGKILL)
    while True:
        try:
            await ojs.publish("failover.x", b"after")
            took = time.monotonic() - begun
            break
        except Exception:
            if time.monotonic() - begun > 60:
                raise RuntimeError("no publish acknowledged within 60 s")
            await asyncio.sleep(0.05)
    sjs = other.jetstream(timeout=5)
    before = cpu_ticks(survivors)
    for _ in range(AFTER_MSGS):
        await sjs.publish("failover.x", b"x" * 128)
    cpu_us = (cpu_ticks(survivors) - before) * 1e6 / CLK_TCK
    await other.close()
    return took, cpu_us / AFTER_MSGS


def fail_over_with_nats_go(url, leader_proc, survivors):
    out = subprocess.run(
        [JSGEN, "-mode", "js-failover", "-url", url, "-kill-pid", str(leader_proc.pid),
         "-server-pid", ",".join(map(str, survivors)), "-n", str(AFTER_MSGS),
         "-size", "128", "-timeout", "90s"],
        capture_output=True, text=True, check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return rec["failover_ms"] / 1000, rec["server_cpu_us"] / rec["msgs"]


async def one_round(binary, client):
    work = tempfile.mkdtemp(prefix="js-failover-")
    procs = {}
    try:
        for name, conf in zip(PORTS, CONFIGS):
            log = open(os.path.join(work, f"{name}.log"), "w")
            procs[name] = subprocess.Popen([binary, "-c", conf], cwd=work,
                                           stdout=log, stderr=subprocess.STDOUT)
        await asyncio.sleep(0.5)
        nc = await nats.connect(f"nats://127.0.0.1:{PORTS['n1']}", error_cb=quiet,
                                connect_timeout=5, max_reconnect_attempts=-1)
        await wait_js(nc, time.monotonic() + 30)
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="FAILOVER", subjects=["failover.>"], num_replicas=3)
        for _ in range(20):
            await js.publish("failover.x", b"before")
        leader = (await js.stream_info("FAILOVER")).cluster.leader
        await nc.close()
        survivor = next(n for n in PORTS if n != leader)
        url = f"nats://127.0.0.1:{PORTS[survivor]}"
        survivors = [p.pid for n, p in procs.items() if n != leader]
        if client == "nats.go":
            return fail_over_with_nats_go(url, procs[leader], survivors)
        return await fail_over_with_nats_py(url, procs[leader], survivors)
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


async def main(args):
    clients = ["nats-py", "nats.go"]
    results = {(s, c): [] for s in args.server for c in clients}
    for r in range(args.rounds):
        for server in args.server:
            binary = os.path.abspath(server) if os.sep in server else shutil.which(server)
            for client in clients:
                took, cpu = await one_round(binary, client)
                results[(server, client)].append((took, cpu))
                print(f"round {r + 1} {server} {client}: fail-over {took * 1000:.0f} ms, "
                      f"survivors' CPU {cpu:.0f} µs/msg after it", flush=True)
    for (server, client), rs in results.items():
        took = [t for t, _ in rs]
        cpu = [c for _, c in rs]
        print(f"{server} {client}: fail-over median {statistics.median(took) * 1000:.0f} ms "
              f"(min {min(took) * 1000:.0f}, max {max(took) * 1000:.0f}); survivors' CPU "
              f"median {statistics.median(cpu):.0f} µs/msg over {AFTER_MSGS} sync publishes; "
              f"{len(rs)} rounds")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", action="append", required=True,
                    help="a natrix binary or nats-server (repeat to alternate)")
    ap.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(ap.parse_args()))
