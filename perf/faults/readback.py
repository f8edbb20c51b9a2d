"""Reading the stream back from every replica, black-box, the same way on both servers.

For each replica in turn: `$JS.API.STREAM.LEADER.STEPDOWN.<stream>` until STREAM.INFO's
`cluster.leader` is that replica, or if step-downs do not reach it, a probe message
that makes it the most caught-up replica (see make_leader; bounded: a replica that never
leads is reported unread), then every sequence from first to last by `$JS.API.STREAM.MSG.GET.<stream>`
(answered by the leader), then STREAM.INFO again: if the leader changed meanwhile, the
replica is read again. And each node's `/jsz?accounts=1&streams=1` state, polled until
all agree (bounded).
"""

import asyncio
import base64
import json
import time

from cluster import STREAM


async def _leader_info(cluster, via):
    info = await cluster.stream_info(via, timeout=2.0)
    if not info:
        return None, None
    return info.get("cluster", {}).get("leader"), info.get("state", {})


async def _wait_new_leader(cluster, via, old, bound):
    t = time.monotonic() + bound
    while time.monotonic() < t:
        now, _ = await _leader_info(cluster, via)
        if now and now != old:
            return now
        await asyncio.sleep(0.1)
    return None


async def make_leader(cluster, mesh, target, bound, log, probe):
    """Makes `target` the stream's leader; True if it leads within `bound`.

    First `STREAM.LEADER.STEPDOWN` (nats-server hands leadership to a random current
    replica). A server may pick the same replica every time: natrix hands it to the most
    caught-up one, ties broken by a fixed order, and after a leader's loss its replicas
    campaign in a fixed order too, so some replica may never lead by step-downs or
    failovers. After four step-downs that did not reach the target, the target is made
    the most caught-up: every other replica but the leader is cut off through the
    proxies, one probe message is published through the target (recorded in the history
    like any other), and the leader is stepped down (3 nodes: before healing, the leader
    and the target being a quorum; 5 nodes: right after healing, the probe having
    reached only the target)."""
    deadline = time.monotonic() + bound
    via = target.i
    misses = 0
    while time.monotonic() < deadline:
        leader, _ = await _leader_info(cluster, via)
        if leader == target.name:
            return True
        if not leader:
            await asyncio.sleep(0.2)
            continue
        if misses < 4:
            await cluster.request(via, f"$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}", None, 2.0)
            await _wait_new_leader(cluster, via, leader, min(5, deadline - time.monotonic()))
            misses += 1
            continue
        old = cluster.by_name(leader)
        n = len(cluster.nodes)
        mesh.partition([{old.i, target.i}] + [{x.i} for x in cluster.nodes
                                                if x.i not in (old.i, target.i)])
        await probe(target.i, 2.0 if n == 3 else 0.5)
        if n != 3:
            mesh.heal()
        await cluster.request(via, f"$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}", None, 2.0)
        now = await _wait_new_leader(cluster, via, leader, min(10, deadline - time.monotonic()))
        mesh.heal()
        log(f"readback: probe through {target.name}, {leader} stepped down: {now}")
        misses = 0
    info = await cluster.stream_info(timeout=2.0)
    log(f"readback: {target.name} did not become leader within {bound:.0f} s; stream"
        f" cluster info: {json.dumps((info or {}).get('cluster'))}")
    return False


async def read_all(cluster, via, first, last, concurrency=32):
    """seq -> payload for first..last through node `via`; a sequence the leader says it
    does not have (10037, no message found) is absent; any other error is retried and
    then kept as "<error: ...>" in `errors`."""
    nc = cluster.admin[via]
    sem = asyncio.Semaphore(concurrency)
    out, errors = {}, {}

    async def get(seq):
        async with sem:
            err = None
            for attempt in range(3):
                try:
                    msg = await nc.request(f"$JS.API.STREAM.MSG.GET.{STREAM}",
                                           json.dumps({"seq": seq}).encode(), timeout=2.0)
                    body = json.loads(msg.data)
                    if "message" in body:
                        out[seq] = base64.b64decode(body["message"].get("data", "")).decode(
                            "utf-8", "replace")
                        return
                    e = body.get("error", {})
                    if e.get("err_code") == 10037:
                        return
                    err = f"{e.get('err_code')} {e.get('description')}"
                except Exception as e:
                    err = repr(e)
                await asyncio.sleep(0.2 * (attempt + 1))
            errors[seq] = f"<error: {err}>"

    await asyncio.gather(*(get(s) for s in range(first, last + 1)))
    return out, errors


async def read_replica(cluster, mesh, node, bound, log, probe):
    """(seq -> payload, last seq) read through the replica as leader; (None, None) if it
    never led within `bound`. Sequences that kept failing to read hold "<error: ...>"."""
    deadline = time.monotonic() + bound
    last_try = None
    while time.monotonic() < deadline:
        if not await make_leader(cluster, mesh, node, max(1.0, deadline - time.monotonic()), log,
                                 probe):
            break
        leader, state = await _leader_info(cluster, node.i)
        if leader != node.name:
            continue
        first, last = state.get("first_seq", 0), state.get("last_seq", 0)
        msgs, errors = await read_all(cluster, node.i, max(first, 1), last)
        after, state2 = await _leader_info(cluster, node.i)
        if after == node.name and state2.get("last_seq") == last:
            if not errors:
                return msgs, last
            last_try = ({**msgs, **errors}, last)
            log(f"readback: {node.name}: {len(errors)} sequences failed to read, e.g."
                f" {next(iter(errors.items()))}")
        else:
            log(f"readback: {node.name} again (leader now {after},"
                f" last {last} -> {state2.get('last_seq') if state2 else None})")
        await asyncio.sleep(0.5)
    if last_try is not None:
        return last_try
    log(f"readback: {node.name} not read within {bound} s")
    return None, None


def _jsz_state(node):
    try:
        j = node.http_json("/jsz?accounts=1&streams=1", timeout=2.0)
    except Exception:
        return None
    for acc in j.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s.get("name") == STREAM:
                st = s.get("state", {})
                return [st.get("messages"), st.get("first_seq"), st.get("last_seq")]
    return None


async def jsz_states(cluster, bound):
    """Every node's /jsz state of the stream, polled until they agree (bounded)."""
    deadline = time.monotonic() + bound
    while True:
        states = {}
        for node in cluster.nodes:
            states[node.name] = await asyncio.to_thread(_jsz_state, node)
        vals = {tuple(v) if v else None for v in states.values()}
        if (len(vals) == 1 and None not in vals) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.3)


async def wait_quiet(cluster, bound):
    """Waits until the stream's last sequence stays put for a second (bounded)."""
    deadline = time.monotonic() + bound
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        info = await cluster.stream_info(timeout=1.0)
        cur = (info or {}).get("state", {}).get("last_seq")
        if cur != last:
            last, since = cur, time.monotonic()
        elif cur is not None and time.monotonic() - since >= 1.0:
            return True
        await asyncio.sleep(0.2)
    return False
