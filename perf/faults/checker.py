"""The checker: a publish history and what each replica holds -> counts and violations.

Input (plain data, so that the self-test can fabricate it):
- history: one dict per message, {"payload", "outcome", "attempts": [[node, t0, t1,
  outcome, seq, error], ...]}; outcome acked / failed / unknown
- reads: replica name -> {seq: payload} as read through that replica as stream leader,
  or None when it could not be made leader (unread)
- jsz: replica name -> [messages, first_seq, last_seq] from its /jsz, or None
- leader: the stream's leader after healing (None: none within the bound)
- acked_after_heal: publishes acked after the last heal
- upto: the stream's last sequence once the workload stopped and the stream was quiet.
  Read-back may add probe messages after it (to move leadership), so replicas read
  earlier lack them: replicas are compared up to `upto`, and a message acked beyond it
  is looked for only on replicas read after it (read_last: replica -> the stream's last
  sequence when it was read, at least the message's own)

Checks (each a violation when its count is not 0):
- lost        acked messages not at the sequence a PubAck named, on some replica
- duplicated  payloads stored at more than one sequence, on some replica
- foreign     stored payloads the workload never sent (e.g. a corrupt record served)
- divergent   replicas whose (seq -> payload) map differs from the majority's
- unread      replicas that could not be read back
- jsz_mismatch  replicas whose /jsz messages/first/last differ, or that lack the stream
- no_leader   no stream leader after healing, or no publish acked after it
- failed_present  publishes answered with an error (all attempts) whose payload is
              stored: an error must mean "not stored", or a client that trusts it and
              publishes again (with a new Msg-Id) stores the message twice
"""

from collections import Counter

VIOLATIONS = ["lost", "duplicated", "foreign", "divergent", "unread", "jsz_mismatch",
              "no_leader", "failed_present"]


def check(history, reads, jsz, leader, acked_after_heal, upto=None, read_last=None):
    counts = Counter(h["outcome"] for h in history)
    out = {"messages": len(history), "acked": counts["acked"], "failed": counts["failed"],
           "unknown": counts["unknown"]}
    readable = {name: m for name, m in reads.items() if m is not None}
    out["unread"] = len(reads) - len(readable)
    if upto is None:
        upto = max((max(m, default=0) for m in readable.values()), default=0)
    compared = {name: {s: p for s, p in m.items() if s <= upto}
                for name, m in readable.items()}

    # The majority map (ties: the first replica read, the leader after healing).
    keyed = Counter()
    first_seen = {}
    for name, m in compared.items():
        key = tuple(sorted(m.items()))
        keyed[key] += 1
        first_seen.setdefault(key, name)
    reference = {}
    if keyed:
        best = max(keyed.items(), key=lambda kv: (kv[1], -list(first_seen).index(kv[0])))
        reference = dict(best[0])
    out["divergent"] = sum(1 for m in compared.values() if m != reference)

    payloads = {h["payload"] for h in history}
    lost, lost_on = set(), Counter()
    details = []
    for h in history:
        seqs = {a[4] for a in h["attempts"] if a[3] == "acked"}
        for seq in seqs:
            for name, m in readable.items():
                last = (read_last or {}).get(name)
                if seq > upto and seq > (last if last is not None else max(m, default=0)):
                    continue  # added after this replica was read
                if m.get(seq) != h["payload"]:
                    lost.add(h["payload"])
                    lost_on[name] += 1
                    if len(details) < 10:
                        details.append(f"lost: acked seq {seq} {h['payload']!r} on {name}:"
                                       f" {m.get(seq)!r}")
    out["lost"] = len(lost)
    out["lost_on"] = dict(lost_on)

    dup, foreign = set(), set()
    for name, m in readable.items():
        c = Counter(m.values())
        for p, n in c.items():
            if n > 1:
                dup.add(p)
                if len(details) < 10:
                    seqs = sorted(s for s, q in m.items() if q == p)
                    details.append(f"duplicated: {p!r} at {seqs} on {name}")
            if p not in payloads:
                foreign.add(p)
                if len(details) < 10:
                    details.append(f"foreign: {p!r} on {name}")
    out["duplicated"] = len(dup)
    out["foreign"] = len(foreign)

    stored = set(reference.values()) | {p for m in readable.values() for p in m.values()}
    out["unknown_present"] = sum(1 for h in history
                                 if h["outcome"] == "unknown" and h["payload"] in stored)
    out["failed_present"] = sum(1 for h in history
                                if h["outcome"] == "failed" and h["payload"] in stored)
    out["stored"] = len(reference)

    states = {name: (tuple(s) if s is not None else None) for name, s in jsz.items()}
    distinct = set(states.values())
    out["jsz_mismatch"] = 0 if len(distinct) <= 1 and None not in distinct else 1
    out["jsz"] = {name: list(s) if s else None for name, s in states.items()}

    out["leader"] = leader
    out["acked_after_heal"] = acked_after_heal
    out["no_leader"] = 0 if leader and acked_after_heal > 0 else 1

    out["violations"] = [v for v in VIOLATIONS if out[v]]
    out["ok"] = not out["violations"]
    out["details"] = details
    return out
