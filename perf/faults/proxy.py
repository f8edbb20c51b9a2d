"""TCP proxies between cluster nodes, one per ordered pair (i -> j).

Node i's route to node j goes through the proxy `(i, j)`, which forwards to j's cluster
port. A partition cuts links: every connection of a cut pair (both directions) is closed
and new ones are accepted and closed at once until the link is healed. Both servers then
see their route drop, as with a crashed peer, and keep re-dialing their configured
routes, which reach the other side again once the link heals.
"""

import asyncio


class Link:
    """One proxy: listens on `port`, forwards to `target_port` on the loopback."""

    def __init__(self, src, dst, port, target_port):
        self.src, self.dst = src, dst
        self.port, self.target_port = port, target_port
        self.cut = False
        self.server = None
        self.conns = set()  # (reader-side writer, upstream writer) pairs' writers

    async def start(self):
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader, writer):
        if self.cut:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), 2.0)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        if self.cut:  # cut while dialing
            writer.close()
            up_w.close()
            return
        pair = (writer, up_w)
        self.conns.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self.conns.discard(pair)
            writer.close()
            up_w.close()

    def set_cut(self, cut):
        self.cut = cut
        if cut:
            for a, b in list(self.conns):
                for w in (a, b):
                    # abort: no graceful FIN handshake that could deliver buffered bytes
                    w.transport.abort()
            self.conns.clear()

    async def close(self):
        self.set_cut(True)
        if self.server:
            self.server.close()
            await self.server.wait_closed()


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.CancelledError, ConnectionError):
        pass
    finally:
        writer.close()


class Mesh:
    """All the links of an n-node cluster; `proxy_port(i, j)` is i's route to j."""

    def __init__(self, n, proxy_port, cluster_port):
        self.n = n
        self.links = {(i, j): Link(i, j, proxy_port(i, j), cluster_port(j))
                      for i in range(n) for j in range(n) if i != j}

    async def start(self):
        for link in self.links.values():
            await link.start()

    def partition(self, groups):
        """Cuts every link between nodes of different groups (a list of sets);
        a node in no group keeps all its links (a bridge)."""
        where = {}
        for g, members in enumerate(groups):
            for m in members:
                where[m] = g
        for (i, j), link in self.links.items():
            if i in where and j in where and where[i] != where[j]:
                link.set_cut(True)

    def cut_pairs(self, pairs):
        for i, j in pairs:
            self.links[(i, j)].set_cut(True)
            self.links[(j, i)].set_cut(True)

    def heal(self):
        for link in self.links.values():
            link.cut = False

    def cut_count(self):
        return sum(1 for link in self.links.values() if link.cut)

    async def close(self):
        for link in self.links.values():
            await link.close()
