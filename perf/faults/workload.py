"""The publish workload: paced, unique payloads, a `Nats-Msg-Id` each, every attempt recorded.

Publish k goes to node k mod n through that node's own client (so most publishes cross
a route to the stream's leader). Each is recorded with its outcome:

- acked    a PubAck came back: its stream sequence (and `duplicate`)
- failed   an error came back (a JetStream error, no responders): the server says it did
           not store it
- unknown  no answer within the timeout, or the connection went away

An unknown publish is sent once more after `retry_after` seconds with the SAME payload and
Msg-Id (never a new one): a deliberate test of de-duplication, not a blind retry. Both
attempts are in the history; the message's outcome is the last attempt's.
"""

import asyncio
import json
import time

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from cluster import STREAM, quiet


class Record:
    __slots__ = ("k", "msg_id", "payload", "attempts", "outcome", "seq", "duplicate",
                 "error", "t0", "t1")

    def __init__(self, k, msg_id, payload):
        self.k, self.msg_id, self.payload = k, msg_id, payload
        self.attempts = []  # (node, t0, t1, outcome, seq, error)
        self.outcome = None
        self.seq = None
        self.duplicate = False
        self.error = None
        self.t0 = self.t1 = None

    def settle(self):
        """acked if any attempt was (at its sequence), else unknown if any attempt was
        (it may have landed), else failed."""
        outs = [a[3] for a in self.attempts]
        acked = [a for a in self.attempts if a[3] == "acked"]
        if acked:
            self.outcome, self.seq = "acked", acked[0][4]
        elif "unknown" in outs:
            self.outcome = "unknown"
        elif outs:
            self.outcome = "failed"
        self.error = next((a[5] for a in reversed(self.attempts) if a[5]), None)
        if self.attempts:
            self.t0, self.t1 = self.attempts[0][1], self.attempts[-1][2]

    def as_dict(self):
        return {"k": self.k, "msg_id": self.msg_id, "payload": self.payload,
                "outcome": self.outcome, "seq": self.seq, "duplicate": self.duplicate,
                "error": self.error, "attempts": self.attempts}


class Workload:
    def __init__(self, nodes, run_tag, rate, timeout, retry_after, rng):
        self.nodes = nodes
        self.tag = run_tag
        self.rate = rate
        self.timeout = timeout
        self.retry_after = retry_after
        self.rng = rng
        self.clients = {}
        self.records = []
        self.tasks = set()
        self.running = False
        self.t_start = time.monotonic()

    async def connect(self):
        for node in self.nodes:
            self.clients[node.i] = await nats.connect(
                servers=[node.url], allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=0.2, connect_timeout=2, error_cb=quiet, name=f"load-{node.name}")

    def now(self):
        return round(time.monotonic() - self.t_start, 4)

    async def _send(self, node_i, rec, nc=None, timeout=None):
        nc = nc or self.clients[node_i]
        t0 = self.now()
        seq, dup, err = None, False, None
        try:
            if not nc.is_connected:
                raise ConnectionError("not connected")
            msg = await nc.request(f"faults.{rec.k % 16}", rec.payload.encode(),
                                   timeout=timeout or self.timeout,
                                   headers={"Nats-Msg-Id": rec.msg_id})
            body = json.loads(msg.data)
            if "error" in body:
                outcome, err = "failed", body["error"].get("description", str(body["error"]))
            elif body.get("stream") == STREAM and "seq" in body:
                outcome, seq, dup = "acked", body["seq"], bool(body.get("duplicate"))
            else:
                outcome, err = "unknown", f"unexpected answer {msg.data[:100]!r}"
        except NoRespondersError:
            outcome, err = "failed", "no responders"
        except (NatsTimeout, asyncio.TimeoutError):
            outcome, err = "unknown", "timeout"
        except Exception as e:  # connection closed, reconnecting, ...
            outcome, err = "unknown", f"{type(e).__name__}: {e}"[:120]
        rec.attempts.append([node_i, t0, self.now(), outcome, seq, err])
        rec.settle()
        if outcome == "acked":
            rec.duplicate = rec.duplicate or dup
        return outcome

    async def _publish(self, rec):
        node_i = rec.k % len(self.nodes)
        outcome = await self._send(node_i, rec)
        if outcome == "unknown" and self.retry_after is not None and self.running:
            await asyncio.sleep(self.retry_after)
            # same payload, same Msg-Id, through another node
            await self._send((node_i + 1) % len(self.nodes), rec)

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self):
        """Publishes at `rate` per second until `stop()`."""
        self.running = True
        period = 1.0 / self.rate
        next_t = time.monotonic()
        k = 0
        while self.running:
            rec = Record(k, f"{self.tag}-{k}", f"{self.tag}:{k}:{self.rng.getrandbits(32):08x}")
            self.records.append(rec)
            self._spawn(self._publish(rec))
            k += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_t = time.monotonic()  # behind: do not burst to catch up
                await asyncio.sleep(0)

    async def probe(self, nc, node_i, timeout):
        """One more message through `nc` (read-back's leader moves), recorded like the rest."""
        k = len(self.records)
        rec = Record(k, f"{self.tag}-{k}", f"{self.tag}:probe{k}:{self.rng.getrandbits(32):08x}")
        self.records.append(rec)
        await self._send(node_i, rec, nc=nc, timeout=timeout)

    def acked_after(self, t):
        return sum(1 for r in self.records for a in r.attempts
                   if a[3] == "acked" and a[1] >= t)

    async def stop(self, bound):
        """Stops publishing, waits (bounded) for answers in flight, closes the clients."""
        self.running = False
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=bound)
        for t in list(self.tasks):
            t.cancel()
        for nc in self.clients.values():
            try:
                await asyncio.wait_for(nc.close(), 3)
            except Exception:
                pass
        for rec in self.records:
            if rec.outcome is None:
                rec.outcome, rec.error = "unknown", "not answered when the run ended"
