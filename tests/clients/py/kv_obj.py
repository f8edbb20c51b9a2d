"""KV and object-store scenario through nats-py's high-level JetStream API.

Usage: python3 kv_obj.py nats://127.0.0.1:4222
Buckets get REPLICAS replicas (environment, default 1).
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import base64
import hashlib
import os
import sys
import traceback

import nats
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError


REPLICAS = int(os.environ.get("REPLICAS", "1"))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def expect_raises(exc, what, coro):
    try:
        await coro
    except exc:
        return
    raise AssertionError(f"{what}: expected {exc.__name__}, got success")


async def kv_scenario(js, bucket):
    kv = await js.create_key_value(bucket=bucket, history=5, replicas=REPLICAS)
    r1 = await kv.put("a", b"1")
    await kv.put("b", b"2")
    e = await kv.get("a")
    check(e.value == b"1" and e.revision == r1, f"get a: {e.value!r} rev {e.revision}, want b'1' rev {r1}")

    r2 = await kv.update("a", b"3", last=r1)
    check(r2 > r1, f"update a: revision {r2} not after {r1}")
    await expect_raises(KeyWrongLastSequenceError, "update a with stale revision", kv.update("a", b"x", last=r1))
    await expect_raises(KeyWrongLastSequenceError, "create of existing key b", kv.create("b", b"x"))
    await kv.create("c", b"new")
    check((await kv.get("c")).value == b"new", "get c after create")

    for v in (b"4", b"5", b"6", b"7"):
        await kv.put("a", v)
    hist = await kv.history("a")
    vals = [h.value for h in hist]
    revs = [h.revision for h in hist]
    check(vals == [b"3", b"4", b"5", b"6", b"7"], f"history of a: {vals}")
    check(revs == sorted(revs) and len(set(revs)) == 5, f"history revisions not increasing: {revs}")

    await kv.delete("a")
    await expect_raises(KeyNotFoundError, "get a after delete", kv.get("a"))
    await kv.purge("b")
    await expect_raises(KeyNotFoundError, "get b after purge", kv.get("b"))
    keys = await kv.keys()
    check(sorted(keys) == ["c"], f"keys: {keys}, want ['c']")

    w = await kv.watchall()
    initial = {}
    while (e := await w.updates(timeout=5)) is not None:
        if e.operation is None:  # a live value (deletes/purges show up with their op)
            initial[e.key] = e.value
    check(initial == {"c": b"new"}, f"watch initial values: {initial}")
    await kv.put("d", b"live")
    e = await w.updates(timeout=5)
    check(e.key == "d" and e.value == b"live" and e.operation is None, f"watch live put: {e}")
    await kv.delete("d")
    e = await w.updates(timeout=5)
    check(e.key == "d" and e.operation == "DEL", f"watch live delete: {e}")
    await w.stop()

    check(await js.delete_key_value(bucket), "delete bucket")
    await expect_raises(NotFoundError, "bind to deleted bucket", js.key_value(bucket))


async def obj_scenario(js, bucket):
    obs = await js.create_object_store(
        bucket, config=nats.js.api.ObjectStoreConfig(replicas=REPLICAS)
    )
    data = os.urandom(10 * 1024 * 1024 + 123)
    sha = hashlib.sha256(data).digest()
    info = await obs.put("big", data)
    check(info.chunks and info.chunks > 1, f"put big: chunks {info.chunks}, want several")

    info = await obs.get_info("big")
    check(info.size == len(data), f"info size {info.size}, want {len(data)}")
    want_digest = "SHA-256=" + base64.urlsafe_b64encode(sha).decode()
    check(info.digest == want_digest, f"info digest {info.digest}, want {want_digest}")

    res = await obs.get("big")
    check(hashlib.sha256(res.data).digest() == sha, f"get big: {len(res.data)} bytes, content differs")

    names = [i.name for i in await obs.list(ignore_deletes=True)]
    check(names == ["big"], f"list: {names}")
    await obs.put("small", b"hello")
    await obs.delete("big")
    names = [i.name for i in await obs.list(ignore_deletes=True)]
    check(names == ["small"], f"list after delete: {names}")
    check((await obs.get("small")).data == b"hello", "get small")

    check(await js.delete_object_store(bucket), "delete store")


async def main(url):
    nc = await nats.connect(url)
    js = nc.jetstream()
    tag = os.urandom(4).hex()
    try:
        await kv_scenario(js, f"py_kv_{tag}")
        await obj_scenario(js, f"py_obj_{tag}")
    finally:
        await nc.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
    except Exception as e:
        here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
        where = f" (line {here[-1].lineno}: {here[-1].line})" if here else ""
        print(f"nats-py: {type(e).__name__}: {e}{where}", file=sys.stderr)
        sys.exit(1)
