"""The nemesis: one fault at a time, chosen and timed by the run's seeded RNG.

Kinds (n = 3 or 5 nodes; a minority is 1 of 3 or 2 of 5):
  kill_random         kill -9 of a random node, restarted after the hold
  kill_leader         kill -9 of the stream's leader, restarted after the hold
  kill_all            kill -9 of every node at once, all restarted after the hold
  pause_leader        SIGSTOP of the stream's leader, SIGCONT after the hold
  pause_random        SIGSTOP of a random node, SIGCONT after the hold
  partition_leader    the stream's leader cut off from every other node
  partition_minority  a random minority cut off from the rest
  partition_bridge    two halves that cannot reach each other, one node reaching both
  bitflip             a random minority killed (-9); while down, random bits flipped in
                      its stream's segment files (in their data: not in the zeros a
                      preallocated file ends with); restarted
  truncate            a random minority killed (-9); while down, its newest segment file
                      cut short by 1 byte to half of its data; restarted

Segment files: natrix `<store>/jetstream/$G/streams/<stream>/msgs/*.seg`, nats-server
`<store>/jetstream/$G/streams/<stream>/msgs/*.blk`.
"""

import asyncio
import glob
import os
import time

from cluster import STREAM

KINDS = ["kill_random", "kill_leader", "kill_all", "pause_leader", "pause_random",
         "partition_leader", "partition_minority", "partition_bridge", "bitflip",
         "truncate"]


def segment_files(node):
    base = os.path.join(node.store_dir, "jetstream", "$G", "streams", STREAM, "msgs")
    return sorted(glob.glob(os.path.join(base, "*.seg")) + glob.glob(os.path.join(base, "*.blk")))


def data_end(path):
    """The length of a file without its trailing zero bytes: natrix preallocates its
    segments (64 MiB), so faults aimed past the last record would touch nothing."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        end = size
        while end > 0:
            start = max(0, end - (1 << 20))
            f.seek(start)
            chunk = f.read(end - start).rstrip(b"\0")
            if chunk:
                return start + len(chunk)
            end = start
    return 0


def flip_bits(files, count, rng):
    """Flips `count` random bits in the files' data (up to data_end), files weighted by
    their data's length; returns [(file, offset, bit)]."""
    sizes = [(f, data_end(f)) for f in files]
    sizes = [(f, s) for f, s in sizes if s > 0]
    total = sum(s for _, s in sizes)
    done = []
    if not total:
        return done
    for _ in range(count):
        pos = rng.randrange(total)
        for f, s in sizes:
            if pos < s:
                bit = rng.randrange(8)
                with open(f, "r+b") as fh:
                    fh.seek(pos)
                    b = fh.read(1)[0]
                    fh.seek(pos)
                    fh.write(bytes([b ^ (1 << bit)]))
                done.append((os.path.basename(f), pos, bit))
                break
            pos -= s
    return done


def truncate_newest(files, rng):
    """Cuts the newest file with data short by 1 byte to half its data; returns
    (file, size, data length, new size)."""
    files = [f for f in files if data_end(f) > 0]
    if not files:
        return None
    newest = max(files, key=lambda f: (os.path.getmtime(f), f))
    size, end = os.path.getsize(newest), data_end(newest)
    cut = rng.randint(1, max(1, end // 2))
    os.truncate(newest, end - cut)
    return (os.path.basename(newest), size, end, end - cut)


class Nemesis:
    def __init__(self, kind, cluster, mesh, rng, clock, log, hold, flips):
        assert kind in KINDS, kind
        self.kind, self.cluster, self.mesh, self.rng = kind, cluster, mesh, rng
        self.clock, self.log = clock, log
        self.hold = hold  # (min, max) seconds
        self.flips = flips
        self.events = []

    def event(self, what, **kw):
        e = {"t": self.clock(), "event": what, **kw}
        self.events.append(e)
        self.log(f"nemesis {e}")

    def n(self):
        return len(self.cluster.nodes)

    def minority(self):
        k = (self.n() - 1) // 2
        return self.rng.sample(self.cluster.nodes, k)

    async def leader_node(self):
        name = await self.cluster.wait_leader(10)
        node = self.cluster.by_name(name) if name else None
        if node is None:
            node = self.rng.choice(self.cluster.nodes)
            self.event("no leader found; a random node instead", node=node.name)
        return node

    async def restart(self, nodes):
        for node in nodes:
            node.start()
        deadline = time.monotonic() + 30
        for node in nodes:
            if not await self.cluster.wait_monitoring(node, deadline):
                raise RuntimeError(f"{node.name} did not start within 30 s")

    async def cycle(self):
        """Injects one fault, holds it, heals it."""
        hold = self.rng.uniform(*self.hold)
        k = self.kind
        # draw everything random up front, so the same seed makes the same choices
        rnd = self.rng.choice(self.cluster.nodes)
        minority = self.minority()
        order = self.rng.sample(self.cluster.nodes, self.n())
        if k == "kill_random" or k == "kill_leader":
            node = rnd if k == "kill_random" else await self.leader_node()
            node.kill9()
            self.event("kill9", node=node.name)
            await asyncio.sleep(hold)
            await self.restart([node])
            self.event("restarted", node=node.name)
        elif k == "kill_all":
            for node in self.cluster.nodes:
                node.kill9()
            self.event("kill9 all")
            await asyncio.sleep(hold)
            await self.restart(self.cluster.nodes)
            self.event("restarted all")
        elif k in ("pause_leader", "pause_random"):
            node = rnd if k == "pause_random" else await self.leader_node()
            node.pause()
            self.event("SIGSTOP", node=node.name)
            await asyncio.sleep(hold)
            node.resume()
            self.event("SIGCONT", node=node.name)
        elif k.startswith("partition_"):
            if k == "partition_leader":
                alone = [await self.leader_node()]
            elif k == "partition_minority":
                alone = minority
            else:
                alone = None
            if alone is not None:
                a = {x.i for x in alone}
                groups = [a, {x.i for x in self.cluster.nodes} - a]
            else:
                bridge, rest = order[0], order[1:]
                half = len(rest) // 2
                groups = [{x.i for x in rest[:half]}, {x.i for x in rest[half:]}]
            self.mesh.partition(groups)
            self.event("partition", groups=[sorted(self.cluster.nodes[i].name for i in g)
                                            for g in groups])
            await asyncio.sleep(hold)
            self.mesh.heal()
            self.event("heal")
        elif k in ("bitflip", "truncate"):
            for node in minority:
                node.kill9()
            self.event("kill9", nodes=[x.name for x in minority])
            await asyncio.sleep(hold)
            for node in minority:
                files = segment_files(node)
                if k == "bitflip":
                    done = flip_bits(files, self.flips, self.rng)
                    self.event("bitflip", node=node.name, files=len(files), flips=done)
                else:
                    done = truncate_newest(files, self.rng)
                    self.event("truncate", node=node.name, files=len(files), cut=done)
            await self.restart(minority)
            self.event("restarted", nodes=[x.name for x in minority])
