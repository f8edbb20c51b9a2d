#!/usr/bin/env python3
"""Every answer to publishes sent to a paused stream leader (the failed_present finding).

A 3-node cluster (the harness' configs and proxies), an R3 stream, background publishes
through the two other nodes; the stream's leader is SIGSTOPped, 30 publishes (each its
own reply subject and Msg-Id) are sent through a client on it, it is SIGCONTed 1 s after
the last one; every answer to each is printed, then which of them the stream holds.
Run from the repository root:

    python3 perf/faults/stale_leader.py [--server natrix|nats-server] [--port-base N]

With natrix a publish may get two answers: the woken ex-leader's error (10051
NotLeader) and, a few ms later, the new leader's PubAck; a client takes the first.
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import nats  # noqa: E402

import readback  # noqa: E402
from cluster import Cluster, Ports, quiet  # noqa: E402
from proxy import Mesh  # noqa: E402


async def main(args):
    ports = Ports(args.port_base)
    d = tempfile.mkdtemp(prefix="stale-leader-")
    binary = (os.path.abspath(os.path.join(HERE, "..", "..", "target", "release", "natrix"))
              if args.server == "natrix" else shutil.which("nats-server"))
    mesh = Mesh(3, ports.proxy, ports.cluster)
    c = Cluster(3, binary, d, ports)
    clients = []
    try:
        await mesh.start()
        c.start_all()
        for n in c.nodes:
            await c.wait_monitoring(n, time.monotonic() + 20)
        await c.connect_admin()
        await c.create_stream(3, 30)
        leader = c.by_name(await c.wait_leader(20))
        others = [n for n in c.nodes if n is not leader]
        bg = [await nats.connect(servers=[n.url], error_cb=quiet) for n in others]
        nc = await nats.connect(servers=[leader.url], error_cb=quiet)
        clients = bg + [nc]
        answers = {}
        t0 = time.monotonic()

        async def on_answer(m):
            answers.setdefault(m.subject, []).append(
                (round(time.monotonic() - t0, 3), m.data.decode()[:100]))

        await nc.subscribe("ans.>", cb=on_answer)
        await nc.flush()
        stop = asyncio.Event()

        async def load():
            k = 0
            while not stop.is_set():
                for b in bg:
                    await b.publish("faults.bg", f"bg{k}".encode(), reply=f"bgans.{k}")
                    k += 1
                await asyncio.sleep(0.02)

        task = asyncio.ensure_future(load())
        for k in range(10):  # the leader's own client publishes before the pause, too
            await nc.publish("faults.x", f"a{k}".encode(), reply=f"ans.a{k}")
            await asyncio.sleep(0.05)
        leader.pause()
        print(f"leader {leader.name} SIGSTOP at {time.monotonic() - t0:.3f}")
        for k in range(30):
            await nc.publish("faults.x", f"p{k}".encode(), reply=f"ans.p{k}",
                             headers={"Nats-Msg-Id": f"p{k}"})
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        leader.resume()
        print(f"SIGCONT at {time.monotonic() - t0:.3f}")
        await asyncio.sleep(4)
        stop.set()
        await task
        last = (await c.stream_info())["state"]["last_seq"]
        msgs, _ = await readback.read_all(c, others[0].i, 1, last)
        stored = {p: s for s, p in msgs.items()}
        bad = 0
        for k in range(30):
            got = answers.get(f"ans.p{k}", [])
            first_is_error = bool(got) and '"error"' in got[0][1]
            if first_is_error and f"p{k}" in stored:
                bad += 1
            print(f"p{k}: stored at {stored.get(f'p{k}')}; answers {got}")
        print(f"{bad} of 30 answered first with an error yet stored")
        return 1 if bad else 0
    finally:
        for x in clients:
            await x.close()
        await c.close_admin()
        c.stop_all()
        await mesh.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=["natrix", "nats-server"], default="natrix")
    ap.add_argument("--port-base", type=int, default=27900)
    raise SystemExit(asyncio.run(main(ap.parse_args())))
