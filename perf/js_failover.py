#!/usr/bin/env python3
"""Fail-over time of an R3 stream: the three-node example (configs/jetstream), its
stream leader killed (-9), and the time until a publish through a survivor is
acknowledged again.

Each round starts the three servers afresh in a temporary directory, creates an R3
stream, publishes 20 messages, kills the stream's leader, then publishes through a
survivor every 50 ms (100 ms timeout each) until one is acknowledged. Servers alternate
per round when both are given. Run from the repository root:

    python3 perf/js_failover.py --rounds 5 --server target/release/natrix --server nats-server

Prints one line per round and the median per server.
"""

import argparse
import asyncio
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


async def one_round(binary):
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
        survivor = next(n for n in PORTS if n != leader)
        other = await nats.connect(f"nats://127.0.0.1:{PORTS[survivor]}", error_cb=quiet)
        ojs = other.jetstream(timeout=0.1)
        begun = time.monotonic()
        procs[leader].send_signal(signal.SIGKILL)
        while True:
            try:
                await ojs.publish("failover.x", b"after")
                took = time.monotonic() - begun
                break
            except Exception:
                if time.monotonic() - begun > 60:
                    raise RuntimeError("no publish acknowledged within 60 s")
                await asyncio.sleep(0.05)
        await other.close()
        await nc.close()
        return took
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


async def main(args):
    times = {s: [] for s in args.server}
    for r in range(args.rounds):
        for server in args.server:
            binary = os.path.abspath(server) if os.sep in server else shutil.which(server)
            took = await one_round(binary)
            times[server].append(took)
            print(f"round {r + 1} {server}: {took * 1000:.0f} ms", flush=True)
    for server, ts in times.items():
        print(f"{server}: median {statistics.median(ts) * 1000:.0f} ms over {len(ts)} rounds"
              f" (min {min(ts) * 1000:.0f}, max {max(ts) * 1000:.0f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", action="append", required=True,
                    help="a natrix binary or nats-server (repeat to alternate)")
    ap.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(ap.parse_args()))
