#!/usr/bin/env python3
"""Runs the README's commands in a fresh clone, as a new user would.

- "Run a server": the command, then a JetStream round trip against it (nats-py),
  and its store folder where the README says.
- "Install": `cargo install --path .` (into a temporary root, through
  CARGO_INSTALL_ROOT) and `natrix --version` from PATH.
- "A cluster": the three `natrix` lines, then a message published on one server
  reaches a subscriber on another.

The test command ("Run the tests") is the one .ci/run runs itself; this checks it
is the same. Every process started here is stopped by its process group.
Usage: .ci/readme_check.py  (CARGO_TARGET_DIR is pointed at the checkout's target/
so dependencies are not built twice.)
"""

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import nats
import nats.errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT_S = 600  # the first `cargo run` builds natrix in the clone
started = []


def section_blocks(readme, heading):
    """The ```sh blocks between `heading` and the next heading of its level."""
    level = heading.split(" ")[0]
    body = readme.split("\n" + heading + "\n", 1)[1]
    body = re.split(r"\n" + re.escape(level) + r" ", body, maxsplit=1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def commands(block):
    """Shell lines of a block, comments cut, `&` dropped (we background them)."""
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line.rstrip("&").strip())
    return out


def start(cmd, cwd, env):
    print(f"readme: $ {cmd}", flush=True)
    p = subprocess.Popen(cmd, shell=True, cwd=cwd, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(cwd, f"log-{len(started)}.txt"), "w"))
    started.append(p)
    return p


def run(cmd, cwd, env):
    print(f"readme: $ {cmd}", flush=True)
    subprocess.run(cmd, shell=True, cwd=cwd, env=env, check=True)


def stop_all():
    for p in started:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in started:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    started.clear()


def wait_http(url, timeout_s):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for p in started:
            if p.poll() is not None:
                sys.exit(f"readme: a command exited ({p.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"readme: {url} did not answer within {timeout_s} s")


async def quiet(_error):
    pass  # a server still starting refuses connections: retried below


async def connect_when_up(url, timeout_s):
    deadline = time.time() + timeout_s
    while True:
        try:
            return await nats.connect(url, allow_reconnect=False, connect_timeout=2,
                                      error_cb=quiet)
        except Exception:
            if time.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def jetstream_round_trip():
    nc = await connect_when_up("nats://127.0.0.1:4222", 30)
    js = nc.jetstream()
    await js.add_stream(name="README", subjects=["readme.>"])
    ack = await js.publish("readme.hello", b"hello")
    assert ack.seq == 1, ack
    await nc.close()


async def replicated_round_trip():
    """An R3 stream created through one node of the JetStream cluster example takes a
    publish through another."""
    nc = await connect_when_up("nats://127.0.0.1:14222", 30)
    deadline = time.time() + 30
    while True:
        try:
            await nc.request("$JS.API.INFO", b"", timeout=1)
            break
        except Exception:
            if time.time() > deadline:
                raise
            await asyncio.sleep(0.2)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="ORDERS", subjects=["orders.>"], num_replicas=3)
    other = await connect_when_up("nats://127.0.0.1:24222", 30)
    # Until the new stream's leader has taken its subjects and the interest has
    # crossed the routes, a publish may find no responder or time out (a loaded CI
    # machine): sent again with the same Msg-Id, as a client would, it is stored once.
    deadline = time.time() + 30
    while True:
        try:
            ack = await other.jetstream(timeout=5).publish(
                "orders.new", b"hello", headers={"Nats-Msg-Id": "readme-1"})
            break
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if time.time() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert ack.stream == "ORDERS" and ack.seq == 1, ack
    info = await js.stream_info("ORDERS")
    assert info.cluster.leader and len(info.cluster.replicas) == 2, info.cluster
    await other.close()
    await nc.close()


async def across_the_cluster():
    sub_nc = await connect_when_up("nats://127.0.0.1:6222", 30)
    pub_nc = await connect_when_up("nats://127.0.0.1:5222", 30)
    sub = await sub_nc.subscribe("readme.cluster")
    await sub_nc.flush()
    deadline = time.time() + 30
    while True:
        await pub_nc.publish("readme.cluster", b"hi")
        try:
            msg = await sub.next_msg(timeout=0.5)
            assert msg.data == b"hi"
            break
        except nats.errors.TimeoutError:
            if time.time() > deadline:
                raise
    await sub_nc.close()
    await pub_nc.close()


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    work = tempfile.mkdtemp(prefix="natrix-readme-")
    # Always the same place, so that a second run reuses the first one's build.
    clone = os.path.join(target, "readme-clone")
    subprocess.run(["rm", "-rf", clone], check=True)
    subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
    readme = open(os.path.join(clone, "README.md")).read()
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = target
    env["CARGO_INSTALL_ROOT"] = os.path.join(work, "root")
    env["PATH"] = os.path.join(work, "root", "bin") + os.pathsep + env["PATH"]
    try:
        tests = commands(section_blocks(readme, "## Run the tests")[0])
        ci = open(os.path.join(ROOT, ".ci", "run")).read()
        assert tests and all(t in ci for t in tests), f"README test command {tests} is not .ci/run's"

        [server] = commands(section_blocks(readme, "## Run a server")[0])
        start(server, clone, env)
        port = re.search(r"-m (\d+)", server).group(1)
        wait_http(f"http://127.0.0.1:{port}/healthz", WAIT_S)
        asyncio.run(jetstream_round_trip())
        store = re.search(r"-sd (\S+)", server).group(1)
        assert os.path.isdir(os.path.join(clone, store)), f"no store at {store}"
        stop_all()

        for line in commands(section_blocks(readme, "## Install")[0]):
            if line.startswith("export "):
                continue  # PATH is set above, to the temporary install root
            run(line, clone, env)

        cluster = [c for c in commands(section_blocks(readme, "## A cluster")[0])]
        for line in cluster:
            assert shlex.split(line)[0] == "natrix", line
            start(line, clone, env)
        asyncio.run(across_the_cluster())
        stop_all()

        js_cluster = [c for c in commands(section_blocks(readme, "### Clustered JetStream")[0])
                      if shlex.split(c)[0] == "natrix"]
        assert len(js_cluster) == 3, js_cluster
        for line in js_cluster:
            start(line.rstrip("& "), clone, env)
        asyncio.run(replicated_round_trip())
        stop_all()
        print("readme: every command ran as the README says")
    finally:
        stop_all()
        subprocess.run(["rm", "-rf", work, clone])


if __name__ == "__main__":
    main()
