"""The cluster under test: node configs, the node processes, and JetStream requests.

Each node gets a config as the JetStream clustering docs write it (`server_name`,
`listen`, `http`, `jetstream { store_dir }`, `cluster { name, listen, routes }`), its
routes to the other nodes through the proxies of `proxy.Mesh` and its own route direct.
`advertise` names a port nothing listens on, so no server dials a gossiped route around
the proxies; `no_advertise` keeps the clients on the node they were given.

natrix and nats-server take the same file. Every process is started here and stopped
here by pid (SIGCONT first, for one that was paused), also when the run fails; each
node's pid is also in `<run dir>/<node>/pid`, for `kill_leftovers` when a run itself
is killed.
"""

import asyncio
import json
import os
import signal
import time
import urllib.request

import nats

STREAM = "FAULTS"
SUBJECTS = ["faults.>"]


async def quiet(_err):
    """nats-py error callback: connection errors are expected here (nodes die)."""


class Ports:
    """Ports of one run, from a base: clients, cluster, monitoring, proxies."""

    def __init__(self, base):
        self.base = base

    def client(self, i):
        return self.base + i

    def cluster(self, i):
        return self.base + 10 + i

    def http(self, i):
        return self.base + 20 + i

    def dead(self, i):  # advertised route address; nothing listens there
        return self.base + 30 + i

    def proxy(self, i, j):
        return self.base + 40 + i * 10 + j


def node_name(i):
    return f"n{i + 1}"


def config_text(i, n, ports, store_dir):
    routes = []
    for j in range(n):
        port = ports.cluster(j) if j == i else ports.proxy(i, j)
        routes.append(f"    nats-route://127.0.0.1:{port}")
    return "\n".join([
        f"server_name: {node_name(i)}",
        f"listen: 127.0.0.1:{ports.client(i)}",
        f"http: 127.0.0.1:{ports.http(i)}",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "}",
        "cluster {",
        "  name: faults",
        f"  listen: 127.0.0.1:{ports.cluster(i)}",
        f'  advertise: "127.0.0.1:{ports.dead(i)}"',
        "  no_advertise: true",
        "  routes: [",
        *routes,
        "  ]",
        "}",
        "",
    ])


class Node:
    def __init__(self, i, n, binary, run_dir, ports):
        self.i, self.name = i, node_name(i)
        self.binary = binary
        self.ports = ports
        self.dir = os.path.join(run_dir, self.name)
        self.store_dir = os.path.join(self.dir, "store")
        self.conf = os.path.join(self.dir, "node.conf")
        self.log = os.path.join(self.dir, "node.log")
        os.makedirs(self.store_dir, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(config_text(i, n, ports, self.store_dir))
        self.proc = None
        self.paused = False
        self.starts = 0

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.ports.client(self.i)}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        import subprocess
        assert not self.alive()
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"\n=== start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen([self.binary, "-c", self.conf], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        with open(os.path.join(self.dir, "pid"), "w") as f:
            f.write(f"{self.proc.pid}\n")
        self.paused = False

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill9(self):
        if self.alive():
            if self.paused:
                os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.paused = False

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self):
        """End of run: SIGTERM, then SIGKILL after 5 s."""
        if not self.alive():
            return
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def http_json(self, path, timeout=1.0):
        url = f"http://127.0.0.1:{self.ports.http(self.i)}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())


def kill_leftovers(run_dir):
    """SIGCONT + SIGKILL of the nodes a killed run left (pid files whose process still
    runs with a config of that run dir); returns the pids killed."""
    killed = []
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        try:
            with open(os.path.join(run_dir, name, "pid")) as f:
                pid = int(f.read())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if os.path.join(run_dir, name, "node.conf").encode() not in f.read():
                    continue
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (OSError, ValueError):
            pass
    return killed


class Cluster:
    def __init__(self, n, binary, run_dir, ports):
        self.ports = ports
        self.nodes = [Node(i, n, binary, run_dir, ports) for i in range(n)]
        self.admin = {}  # node index -> nats client used for requests

    def by_name(self, name):
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def start_all(self):
        for node in self.nodes:
            if not node.alive():
                node.start()

    def stop_all(self):
        for node in self.nodes:
            try:
                node.stop()
            except Exception:
                pass

    async def wait_monitoring(self, node, deadline):
        while time.monotonic() < deadline:
            if not node.alive():
                raise RuntimeError(f"{node.name} exited: see {node.log}")
            try:
                await asyncio.to_thread(node.http_json, "/varz", 0.5)
                return True
            except Exception:
                await asyncio.sleep(0.1)
        return False

    async def connect_admin(self):
        for node in self.nodes:
            self.admin[node.i] = await nats.connect(
                servers=[node.url], allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=0.2, connect_timeout=2, error_cb=quiet, name=f"admin-{node.name}")

    async def close_admin(self):
        for nc in self.admin.values():
            try:
                await asyncio.wait_for(nc.close(), 3)
            except Exception:
                pass
        self.admin.clear()

    async def request(self, node_i, subject, body, timeout=1.0):
        """A JetStream API request through node_i; the decoded answer, or None."""
        nc = self.admin.get(node_i)
        if nc is None or not nc.is_connected:
            return None
        try:
            msg = await nc.request(subject, json.dumps(body).encode() if body is not None
                                   else b"", timeout=timeout)
            return json.loads(msg.data) if msg.data else None
        except Exception:
            return None

    def live(self):
        return [n for n in self.nodes if n.alive() and not n.paused]

    async def stream_info(self, node_i=None, timeout=1.0):
        order = [node_i] if node_i is not None else [n.i for n in self.live()]
        for i in order:
            info = await self.request(i, f"$JS.API.STREAM.INFO.{STREAM}", None, timeout)
            if info and "error" not in info:
                return info
        return None

    async def leader(self, timeout=1.0):
        info = await self.stream_info(timeout=timeout)
        leader = (info or {}).get("cluster", {}).get("leader")
        return leader or None

    async def wait_leader(self, bound):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            leader = await self.leader()
            if leader:
                return leader
            await asyncio.sleep(0.2)
        return None

    async def create_stream(self, replicas, bound):
        cfg = {"name": STREAM, "subjects": SUBJECTS, "num_replicas": replicas,
               "storage": "file", "duplicate_window": 120_000_000_000}
        deadline = time.monotonic() + bound
        last = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                r = await self.request(node.i, f"$JS.API.STREAM.CREATE.{STREAM}", cfg, 2.0)
                last = r
                if r and "error" not in r:
                    return r
            await asyncio.sleep(0.3)
        raise RuntimeError(f"stream not created within {bound} s: {last}")
