#!/usr/bin/env python3
"""Cluster fault harness: real server processes, a seeded nemesis, a checked history.

Module map (perf/faults/):
  main.py      this file: the command line, one run end to end, a campaign of runs
  cluster.py   node configs, node processes (start, kill -9, SIGSTOP/SIGCONT, stop by
               pid), JetStream requests (stream create/info, leader)
  proxy.py     the TCP proxies between nodes, one per ordered pair, that cut links
  nemesis.py   the fault kinds, one fault at a time, seeded
  workload.py  the paced publish workload and its history (acked / failed / unknown)
  readback.py  reading the stream through each replica as leader; /jsz per node
  checker.py   history + replica contents -> counts and violations
  selftest.py  fabricated histories that each check must fail

Commands (from the repository root):
  python3 perf/faults/main.py run --server natrix --fault kill_leader --seed 1
  python3 perf/faults/main.py campaign --servers natrix,nats-server --seeds 1-20
  python3 perf/faults/main.py selftest
  python3 perf/faults/main.py summary perf/out/faults-long-*.jsonl

A run: fresh store dirs, 3 (or 5) nodes, an R3 (or R5) stream, the workload, warm-up,
`--cycles` faults of one kind (each: inject, hold, heal, wait for a leader), a tail of
publishing after the last heal, the workload stopped, every replica read back, the
check. It prints ONE JSON line and exits 0 if no check failed, 1 on a violation, 2 when
the run itself could not be done (a node would not start, no stream...). A run's
directory (configs, node logs, history.jsonl, result.json) is kept when it fails.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from checker import check  # noqa: E402
from cluster import Cluster, Ports, kill_leftovers  # noqa: E402
from nemesis import KINDS, Nemesis  # noqa: E402
from proxy import Mesh  # noqa: E402
import readback  # noqa: E402
from workload import Workload  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))


def default_work_dir():
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), "natrix-faults")


def server_binary(args):
    if args.server == "natrix":
        return os.path.abspath(args.natrix or os.path.join(ROOT, "target", "release", "natrix"))
    return shutil.which("nats-server") or "nats-server"


async def run_once(args, log):
    rng = random.Random(f"{args.fault}:{args.seed}:{args.nodes}")
    ports = Ports(args.port_base)
    run_dir = args.run_dir
    binary = server_binary(args)
    mesh = Mesh(args.nodes, ports.proxy, ports.cluster)
    cluster = Cluster(args.nodes, binary, run_dir, ports)
    workload = None
    result = {"server": args.server, "fault": args.fault, "seed": args.seed,
              "nodes": args.nodes}
    t_begin = time.monotonic()
    try:
        await mesh.start()
        cluster.start_all()
        deadline = time.monotonic() + 30
        for node in cluster.nodes:
            if not await cluster.wait_monitoring(node, deadline):
                raise RuntimeError(f"{node.name} not up within 30 s")
        await cluster.connect_admin()
        log("phase: nodes up")
        await cluster.create_stream(args.nodes, 60)
        if not await cluster.wait_leader(30):
            raise RuntimeError("no stream leader within 30 s of creating it")
        log("phase: stream has a leader")
        tag = f"{args.server[:2]}{args.seed}{args.fault[:3]}"
        workload = Workload(cluster.nodes, tag, args.rate, args.timeout, args.retry_after,
                            random.Random(rng.random()))
        await workload.connect()
        load = asyncio.ensure_future(workload.run())
        nemesis = Nemesis(args.fault, cluster, mesh, rng, workload.now, log,
                          (args.hold_min, args.hold_max), args.flips)
        await asyncio.sleep(args.warmup)
        for _ in range(args.cycles):
            await nemesis.cycle()
            leader = await cluster.wait_leader(args.recover_bound)
            nemesis.event("leader after heal", leader=leader)
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        healed_at = workload.now()
        leader = await cluster.wait_leader(args.recover_bound)
        await asyncio.sleep(args.tail)
        await workload.stop(args.timeout * 2 + (args.retry_after or 0) + 1)
        await load
        acked_after = workload.acked_after(healed_at)
        log("phase: workload stopped")
        await readback.wait_quiet(cluster, 15)
        upto = ((await cluster.stream_info(timeout=2.0)) or {}).get("state", {}).get("last_seq")

        async def probe(node_i, timeout):
            await workload.probe(cluster.admin[node_i], node_i, timeout)

        reads, read_last = {}, {}
        for node in cluster.nodes:
            reads[node.name], read_last[node.name] = await readback.read_replica(
                cluster, mesh, node, args.read_bound, log, probe)
        log("phase: replicas read")
        jsz = await readback.jsz_states(cluster, 15)
        log("phase: /jsz read")
        history = [r.as_dict() for r in workload.records]
        out = check(history, reads, jsz, leader, acked_after, upto, read_last)
        result.update(out)
        result["answers"] = answer_counts(history)
        result["events"] = nemesis.events
        with open(os.path.join(run_dir, "history.jsonl"), "w") as f:
            for h in history:
                f.write(json.dumps(h) + "\n")
        with open(os.path.join(run_dir, "reads.json"), "w") as f:
            json.dump(reads, f)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        result["ok"] = False
    finally:
        if workload is not None and workload.running:
            try:
                await workload.stop(1)
            except Exception:
                pass
        await cluster.close_admin()
        cluster.stop_all()
        await mesh.close()
    result["secs"] = round(time.monotonic() - t_begin, 1)
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump(result, f)
    return result


def answer_counts(history):
    """The most common (outcome, error) of publish attempts, e.g. "failed: no responders"."""
    c = Counter(f"{a[3]}: {a[5]}" if a[5] else a[3] for h in history for a in h["attempts"])
    return dict(c.most_common(4))


def cmd_run(args):
    args.run_dir = args.run_dir or os.path.join(
        args.work_dir, f"{args.server}-{args.fault}-{args.seed}")
    shutil.rmtree(args.run_dir, ignore_errors=True)
    os.makedirs(args.run_dir)
    logf = open(os.path.join(args.run_dir, "harness.log"), "a") if not args.verbose else None

    def log(line):
        text = f"[{time.strftime('%H:%M:%S')}] {line}"
        if logf:
            logf.write(text + "\n")
            logf.flush()
        else:
            print(text, file=sys.stderr)

    result = asyncio.run(run_once(args, log))
    short = {k: v for k, v in result.items() if k not in ("events", "details", "jsz")}
    if not result.get("ok"):
        short["run_dir"] = args.run_dir
        short["details"] = result.get("details", [])[:5]
    print(json.dumps(short), flush=True)
    if result.get("ok") and not args.keep and not result.get("failed_present"):
        shutil.rmtree(args.run_dir, ignore_errors=True)
    if "error" in result:
        return 2
    return 0 if result["ok"] else 1


def seeds(spec):
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


RUN_OPTS = ["nodes", "rate", "timeout", "retry_after", "warmup", "cycles", "hold_min",
            "hold_max", "tail", "flips", "recover_bound", "read_bound", "port_base",
            "work_dir"]


def cmd_campaign(args):
    kinds = KINDS if args.kinds == "all" else args.kinds.split(",")
    servers = args.servers.split(",")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    out = open(args.out, "a") if args.out else None
    rows = defaultdict(lambda: defaultdict(int))
    failures = []
    t0 = time.monotonic()
    for kind in kinds:
        for seed in seeds(args.seeds):
            for server in servers:
                cmd = [sys.executable, os.path.abspath(__file__), "run", "--server", server,
                       "--fault", kind, "--seed", str(seed)]
                if args.natrix:
                    cmd += ["--natrix", args.natrix]
                for opt in RUN_OPTS:
                    v = getattr(args, opt)
                    if v is not None:
                        cmd += [f"--{opt.replace('_', '-')}", str(v)]
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True,
                                       timeout=args.run_timeout)
                    line = (p.stdout.strip().splitlines() or ["{}"])[-1]
                    res = json.loads(line)
                except subprocess.TimeoutExpired:
                    run_dir = os.path.join(args.work_dir or default_work_dir(),
                                           f"{server}-{kind}-{seed}")
                    killed = kill_leftovers(run_dir)
                    res = {"server": server, "fault": kind, "seed": seed, "ok": False,
                           "error": f"run exceeded {args.run_timeout} s; nodes killed:"
                                    f" {killed}"}
                except json.JSONDecodeError:
                    res = {"server": server, "fault": kind, "seed": seed, "ok": False,
                           "error": f"no JSON line: {p.stderr[-300:]}"}
                print(json.dumps(res), flush=True)
                if out:
                    out.write(json.dumps(res) + "\n")
                    out.flush()
                add_row(rows, res)
                if not res.get("ok"):
                    failures.append((server, kind, seed, res.get("violations"),
                                     res.get("error")))
    print(summary_table(rows), file=sys.stderr)
    print(f"campaign: {len(failures)} failed runs in {time.monotonic() - t0:.0f} s",
          file=sys.stderr)
    for f in failures:
        print(f"  failed: {f}", file=sys.stderr)
    return 0 if not failures else 1


def add_row(rows, res):
    r = rows[(res.get("server"), res.get("fault"))]
    r["runs"] += 1
    for key in ("acked", "lost", "duplicated", "divergent", "unknown", "unknown_present",
                "failed_present", "foreign", "unread", "jsz_mismatch", "no_leader"):
        r[key] += int(res.get(key) or 0)
    r["errors"] += 1 if "error" in res else 0
    r["failed_runs"] += 0 if res.get("ok") else 1


def cmd_summary(args):
    """The table of JSON lines files (a campaign's --out), one row per server and kind;
    a later line for the same (server, fault, seed) replaces an earlier one."""
    last = {}
    for path in args.files:
        with open(path) as f:
            for line in f:
                if line.strip():
                    res = json.loads(line)
                    last[(res.get("server"), res.get("fault"), res.get("seed"))] = res
    rows = defaultdict(lambda: defaultdict(int))
    for res in last.values():
        add_row(rows, res)
    print(summary_table(rows))
    return 0


def summary_table(rows):
    cols = ["runs", "acked", "lost", "duplicated", "divergent", "unknown",
            "unknown_present", "failed_present", "foreign", "unread", "jsz_mismatch",
            "no_leader", "errors", "failed_runs"]
    lines = ["| server | fault | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for (server, kind), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {server} | {kind} | " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def add_run_opts(p, campaign):
    d = (lambda v: None) if campaign else (lambda v: v)
    p.add_argument("--natrix", help="natrix binary (default target/release/natrix)")
    p.add_argument("--nodes", type=int, default=d(3), choices=[3, 5])
    p.add_argument("--rate", type=float, default=d(50.0), help="publishes per second")
    p.add_argument("--timeout", type=float, default=d(2.0), help="publish timeout, s")
    p.add_argument("--retry-after", type=float, default=d(0.5),
                   help="resend an unknown publish once (same Msg-Id) after this")
    p.add_argument("--warmup", type=float, default=d(1.5))
    p.add_argument("--cycles", type=int, default=d(1), help="faults per run")
    p.add_argument("--hold-min", type=float, default=d(2.0))
    p.add_argument("--hold-max", type=float, default=d(5.0))
    p.add_argument("--tail", type=float, default=d(2.0),
                   help="seconds of publishing after the last heal")
    p.add_argument("--flips", type=int, default=d(16), help="bits flipped per node")
    p.add_argument("--recover-bound", type=float, default=d(30.0))
    p.add_argument("--read-bound", type=float, default=d(60.0),
                   help="seconds to make a replica leader and read it")
    p.add_argument("--port-base", type=int, default=d(27100),
                   help="ports from here, below the ephemeral range (32768-) where the"
                   " kernel picks the local ports of outgoing connections")
    p.add_argument("--work-dir", default=d(default_work_dir()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one run")
    r.add_argument("--server", choices=["natrix", "nats-server"], default="natrix")
    r.add_argument("--fault", choices=KINDS, required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--run-dir")
    r.add_argument("--keep", action="store_true", help="keep the run dir when it passes")
    r.add_argument("--verbose", action="store_true", help="harness log to stderr")
    add_run_opts(r, False)
    c = sub.add_parser("campaign", help="runs for every kind x seed x server")
    c.add_argument("--servers", default="natrix")
    c.add_argument("--kinds", default="all", help=f"all or a list of {','.join(KINDS)}")
    c.add_argument("--seeds", default="1-3", help="e.g. 1-20 or 1,4,9")
    c.add_argument("--out", help="append each run's JSON line to this file")
    c.add_argument("--run-timeout", type=int, default=240)
    add_run_opts(c, True)
    sub.add_parser("selftest", help="the checker against fabricated histories")
    sm = sub.add_parser("summary", help="the table of campaigns' --out files")
    sm.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.cmd == "summary":
        return cmd_summary(args)
    if args.cmd == "run":
        return cmd_run(args)
    if args.cmd == "campaign":
        return cmd_campaign(args)
    import selftest
    return selftest.main()


if __name__ == "__main__":
    raise SystemExit(main())
