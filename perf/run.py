#!/usr/bin/env python3
"""Runs natrix-bench scenarios against natrix and nats-server alternately (a fresh
server for every run), takes medians, and writes perf/RESULTS.md's core section and
perf/plots/*.png. Called by perf/bench.sh, which installs and builds first."""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
PLOTS = os.path.join(HERE, "plots")
SECTION = "## Core (natrix-bench)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(5) == b"INFO ":
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server not ready")


class Server:
    """One server on loopback; `nats` is the nats-server binary (another version's)."""

    def __init__(self, kind, bins, cores, nats="nats-server"):
        self.kind = kind
        self.port = free_port()
        if kind == "natrix":
            self.cmd = [os.path.join(bins, "natrix"), "--shards", str(cores),
                        "-a", "127.0.0.1", "-p", str(self.port)]
        else:
            self.cmd = [nats, "-a", "127.0.0.1", "-p", str(self.port)]

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def shown_cmd(self):
        cmd = list(self.cmd)
        cmd[0] = os.path.basename(cmd[0])
        return " ".join(cmd).replace(str(self.port), "PORT")


def http_json(port, path, timeout=1.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def peers_routed(routez):
    """How many other servers a /routez shows routes to (nats-server 2.10+ counts each
    connection of a route pool in num_routes)."""
    routes = routez.get("routes") or []
    ids = {r.get("remote_id") for r in routes}
    return len(ids) if routes and None not in ids else routez.get("num_routes")


class Cluster:
    """A cluster of `size` servers on loopback (cluster name `bench`): a seed, and the
    others with the seed as their only route; ready once every server's /routez shows
    a route to each of the others."""

    def __init__(self, kind, bins, cores, size=3, nats="nats-server"):
        self.kind = kind
        self.nodes = []
        seed = None
        for i in range(size):
            port, cport, hport = free_port(), free_port(), free_port()
            if kind == "natrix":
                cmd = [os.path.join(bins, "natrix"), "--shards", str(cores)]
            else:
                cmd = [nats]
            cmd += ["-a", "127.0.0.1", "-p", str(port), "-m", str(hport),
                    "-cluster", f"nats://127.0.0.1:{cport}", "--cluster_name", "bench"]
            if seed is None:
                seed = cport
            else:
                cmd += ["-routes", f"nats://127.0.0.1:{seed}"]
            self.nodes.append({"port": port, "cport": cport, "hport": hport, "cmd": cmd})

    def __enter__(self):
        try:
            for n in self.nodes:
                n["proc"] = subprocess.Popen(n["cmd"], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            for n in self.nodes:
                wait_port(n["port"], n["proc"])
            want = len(self.nodes) - 1
            deadline = time.time() + 30
            pending = list(self.nodes)
            while pending:
                if time.time() > deadline:
                    raise RuntimeError(f"{self.kind} cluster: full mesh not formed")
                n = pending[0]
                if n["proc"].poll() is not None:
                    raise RuntimeError(f"server exited with {n['proc'].returncode}")
                try:
                    if peers_routed(http_json(n["hport"], "/routez")) == want:
                        pending.pop(0)
                        continue
                except (OSError, ValueError, IndexError):
                    pass
                time.sleep(0.02)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for n in self.nodes:
            if "proc" in n:
                n["proc"].terminate()
        for n in self.nodes:
            if "proc" in n:
                try:
                    n["proc"].wait(timeout=10)
                except subprocess.TimeoutExpired:
                    n["proc"].kill()
                    n["proc"].wait()

    def url(self, i):
        return f"nats://127.0.0.1:{self.nodes[i]['port']}"

    def shown_cmd(self):
        names = ["SEED", "B", "C"]
        out = []
        for i, n in enumerate(self.nodes):
            cmd = list(n["cmd"])
            cmd[0] = os.path.basename(cmd[0])
            text = " ".join(cmd).replace(f":{n['cport']}", f":C_{names[i]}")
            text = text.replace(f":{self.nodes[0]['cport']}", ":C_SEED")
            text = text.replace(f"-p {n['port']}", f"-p P_{names[i]}")
            text = text.replace(f"-m {n['hport']}", f"-m H_{names[i]}")
            out.append(text)
        return out


# The route scenario: the publisher on the cluster's second server, the subscriber on
# its third; every message crosses one route.
ROUTE_PUB, ROUTE_SUB = 1, 2


def scenarios(seconds):
    d = f"{seconds}s"
    # name, natrix-bench args, metric, unit, higher is better
    return [
        ("core 1:1, 16 B", ["pubsub", "--size", "16", "--duration", d], "sub_rate", "msgs/s", True),
        ("core 1:1, 128 B", ["pubsub", "--size", "128", "--duration", d], "sub_rate", "msgs/s", True),
        ("core 1:1, 1 KiB", ["pubsub", "--size", "1024", "--duration", d], "sub_rate", "msgs/s", True),
        ("fan-out 1:4, 128 B (deliveries)", ["fanout", "--sub", "4", "--size", "128", "--duration", d],
         "sub_rate", "msgs/s", True),
        ("route 1:1, 128 B, 3-node cluster", ["pubsub", "--size", "128", "--duration", d, "CLUSTER"],
         "sub_rate", "msgs/s", True),
        ("publish only, 16 B", ["pub", "--size", "16", "--duration", d], "pub_rate", "msgs/s", True),
        ("request/reply, 128 B: p50 round trip", ["reqrep", "--size", "128", "--duration", d],
         "p50", "µs", False),
        ("request/reply, 128 B: p99 round trip", None, "p99", "µs", False),
        ("request/reply, 128 B: requests", None, "pub_rate", "req/s", True),
        ("1,000 idle connections: server memory per connection",
         ["idle", "--conns", "1000", "--duration", "1s"], "mem", "bytes", False),
    ]


def metric(report, name):
    if name == "sub_rate":
        return report["subscribe"]["msgs_per_sec"]
    if name == "pub_rate":
        return report["publish"]["msgs_per_sec"]
    if name in ("p50", "p90", "p99", "p999"):
        return report["latency"][f"{name}_us"]
    if name == "mem":
        return report["idle"]["server_bytes_per_conn"]
    raise KeyError(name)


def clustered(args):
    return args[-1] == "CLUSTER"


def bench(bins, args, server, out_json):
    if clustered(args):
        where = ["--pub-server", server.url(ROUTE_PUB), "--sub-server", server.url(ROUTE_SUB)]
        args = args[:-1]
    else:
        where = ["--server", f"nats://127.0.0.1:{server.port}"]
    cmd = [os.path.join(bins, "natrix-bench")] + args + where + ["--no-progress", "--json", out_json]
    if args[0] == "idle":
        cmd += ["--server-pid", str(server.proc.pid)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        # A run that lost messages or lost a client is kept out of the medians and counted.
        sys.stderr.write(done.stdout + done.stderr)
        return None
    with open(out_json) as f:
        return json.load(f)


def ceiling(bins, runs, seconds, workdir):
    """natrix-bench publishing into its own discarding sink."""
    rates = {16: [], 128: []}
    for size in rates:
        for run in range(runs):
            port = free_port()
            sink = subprocess.Popen([os.path.join(bins, "natrix-bench"), "sink", "--port", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                sink.stderr.readline()
                out = os.path.join(workdir, f"sink-{size}-{run}.json")
                cmd = [os.path.join(bins, "natrix-bench"), "pub", "--size", str(size), "--duration",
                       f"{seconds}s", "--server", f"127.0.0.1:{port}", "--no-progress", "--json", out]
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                with open(out) as f:
                    rates[size].append(json.load(f)["publish"]["msgs_per_sec"])
            finally:
                sink.terminate()
                sink.wait()
    return {size: statistics.median(r) for size, r in rates.items()}


def fmt(value, unit):
    if unit in ("msgs/s", "req/s"):
        return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"
    if unit == "µs":
        return f"{value:.0f} µs"
    if unit == "bytes":
        return f"{value / 1024:.1f} KiB"
    return f"{value:.1f}"


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def plots(rows, latencies):
    os.makedirs(PLOTS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tp = os.path.join(tmp, "tp.dat")
        with open(tp, "w") as f:
            for name, unit, nx, ns in rows:
                if unit == "msgs/s":
                    label = name.replace(" (deliveries)", "").replace(",", "")
                    f.write(f'"{label}" {nx / 1e6:.4f} {ns / 1e6:.4f}\n')
        gnuplot(f"""
set terminal pngcairo size 1000,520 font ",10"
set output "{PLOTS}/throughput.png"
set title "Core throughput (median of runs; higher is better)"
set ylabel "million msgs/s"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top left
set offsets graph 0, graph 0, graph 0.15, 0
set xtics rotate by -15
plot "{tp}" using 2:xtic(1) title "natrix", "" using 3 title "nats-server 2.9"
""")
        lat = os.path.join(tmp, "lat.dat")
        with open(lat, "w") as f:
            for p in ("p50", "p90", "p99", "p999"):
                f.write(f'"{p.replace("p999", "p99.9")}" {latencies["natrix"][p]:.1f} '
                        f'{latencies["nats-server"][p]:.1f}\n')
        gnuplot(f"""
set terminal pngcairo size 800,480 font ",10"
set output "{PLOTS}/latency.png"
set title "Request/reply round trip, 128 B, one request in flight (median of runs; lower is better)"
set ylabel "µs (log scale)"
set logscale y
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top left
plot "{lat}" using 2:xtic(1) title "natrix", "" using 3 title "nats-server 2.9"
""")


def write_section(text):
    """Replaces the section in place (the other sections keep their order), or appends it."""
    old = open(RESULTS).read() if os.path.exists(RESULTS) else "# Performance results\n"
    start = old.find(SECTION + "\n")
    if start >= 0:
        nxt = old.find("\n## ", start + len(SECTION))
        rest = old[nxt + 1:] if nxt >= 0 else ""
        new = old[:start] + text.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    with open(RESULTS, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2)
    a = ap.parse_args()
    seconds = int(a.seconds) if a.seconds == int(a.seconds) else a.seconds
    cores = os.cpu_count() or 1
    workdir = tempfile.mkdtemp(prefix="natrix-perf-")
    started = time.time()
    load_before = loadavg()
    table = scenarios(seconds)
    values = {}  # (scenario args, server) -> reports of the runs that succeeded
    failures = {}  # (scenario args, server) -> runs that failed
    commands = {}
    shown = {}
    shown_cluster = {}
    for name, args, *_ in table:
        if args is None:
            continue
        for run in range(a.runs):
            order = ["natrix", "nats-server"] if run % 2 == 0 else ["nats-server", "natrix"]
            for kind in order:
                make = Cluster if clustered(args) else Server
                with make(kind, a.bin, cores) as server:
                    out = os.path.join(workdir, f"{len(values)}-{kind}-{run}.json")
                    report = bench(a.bin, args, server, out)
                    if report is None:
                        failures.setdefault((tuple(args), kind), []).append(run + 1)
                    else:
                        values.setdefault((tuple(args), kind), []).append(report)
                    (shown_cluster if clustered(args) else shown)[kind] = server.shown_cmd()
                print(f"{name} run {run + 1} {kind}: done", file=sys.stderr)
        if clustered(args):
            commands[tuple(args)] = ("natrix-bench " + " ".join(args[:-1]) +
                                     " --pub-server nats://127.0.0.1:P_B --sub-server nats://127.0.0.1:P_C")
        else:
            commands[tuple(args)] = "natrix-bench " + " ".join(args) + " --server nats://127.0.0.1:PORT" + (
                " --server-pid PID" if args[0] == "idle" else "")
    sink = ceiling(a.bin, a.runs, seconds, workdir)
    rows, lines = [], []
    last_args = None
    latencies = {}
    for name, args, m, unit, higher in table:
        args = args or last_args
        last_args = args
        med = {}
        for kind in ("natrix", "nats-server"):
            runs = values.get((tuple(args), kind), [])
            med[kind] = statistics.median(metric(r, m) for r in runs) if runs else float("nan")
        ratio = med["natrix"] / med["nats-server"] if higher else med["nats-server"] / med["natrix"]
        rows.append((name, unit, med["natrix"], med["nats-server"]))
        failed = "".join(
            f" ({kind}: run {', '.join(map(str, failures[(tuple(args), kind)]))} failed)"
            for kind in ("natrix", "nats-server") if (tuple(args), kind) in failures)
        lines.append(f"| {name}{failed} | {fmt(med['natrix'], unit)} | {fmt(med['nats-server'], unit)} | "
                     f"**{ratio:.2f}×** |")
        if args[0] == "reqrep" and not latencies:
            for kind in ("natrix", "nats-server"):
                latencies[kind] = {p: statistics.median(metric(r, p) for r in values[(tuple(args), kind)])
                                   for p in ("p50", "p90", "p99", "p999")}
    plots(rows, latencies)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    natrix_v = version([os.path.join(a.bin, "natrix"), "--version"])
    nats_v = version(["nats-server", "--version"])
    bench_v = version([os.path.join(a.bin, "natrix-bench"), "--version"])
    loss = sum(r["lost"] for reports in values.values() for r in reports)
    text = [SECTION, "",
            f"Command: `perf/bench.sh {a.runs} {seconds}` (release builds). Machine: {cores} cores "
            f"({cpu_model()}), kernel {platform.release()}, {now}; the machine is shared with other "
            "developers building, so only same-run ratios mean anything.",
            f"Versions: {natrix_v}; {nats_v}; {bench_v}. Load average (1, 5, 15 min) before the "
            f"runs: {load_before}; after: {loadavg()} (on {cores} cores; other developers' builds "
            "count here).",
            f"Servers, one at a time, a fresh process for every run, on loopback: `{shown.get('natrix')}` and "
            f"`{shown.get('nats-server')}` (GOMAXPROCS = {cores}). Each figure is the median of {a.runs} runs; "
            "in each run the two servers go one after the other, in alternating order.",
            "Ratio: natrix's advantage (natrix ÷ nats-server for rates, nats-server ÷ natrix for "
            "latency and memory): above 1 means natrix is better.",
            "",
            "| scenario | natrix | nats-server | ratio |",
            "|---|---|---|---|"] + lines + [
            "",
            f"Messages lost in the runs counted: {loss}. Throughput is what the subscribers received "
            "(for fan-out: deliveries to all 4 subscribers together); the publisher keeps at most "
            "4 MiB unanswered by PONG and pauses while more than 32 MiB (payload plus 48 B a message) "
            "is published but not yet received by every subscriber (`--inflight`, the default), so that "
            "neither server reaches its 64 MiB slow-consumer limit. A run that lost messages or a client "
            "is left out of the medians and named in the table.",
            "Route scenario: a 3-node cluster on loopback, started fresh for every run (three "
            "processes of the same server, a seed and two servers with the seed as their route); "
            "the run starts once every server's `/routez` shows `num_routes` 2, and the "
            "publisher (on the second server) waits until the subscriber (on the third) answers "
            "a probe through the cluster, so that no message goes out before the subscriber's "
            "interest has arrived; every message crosses one route. Throughput is what the "
            "subscriber received. The nodes:",
            "",
            "```"] + shown_cluster.get("natrix", []) + [""] + shown_cluster.get("nats-server", []) + [
            "```",
            "",
            f"natrix-bench's own ceiling, publishing into its discarding sink (`natrix-bench sink`, "
            f"`natrix-bench pub --duration {seconds}s`), median of {a.runs}: "
            f"**{fmt(sink[16], 'msgs/s')} msgs/s at 16 B**, {fmt(sink[128], 'msgs/s')} msgs/s at 128 B.",
            "",
            "Exact commands (PORT and PID are the server's):", ""]
    for args, cmd in commands.items():
        text.append(f"- `{cmd}`")
    text += ["", "Plots: `perf/plots/throughput.png`, `perf/plots/latency.png`.",
             "", f"(Harness wall time: {time.time() - started:.0f} s.)"]
    write_section("\n".join(text))
    print("\n".join(text))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
