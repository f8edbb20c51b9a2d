"""Self-test of the checker: a clean fabricated history passes, and each fabricated fault
(a lost ack, an ack at the wrong sequence, a payload twice, a foreign payload, a divergent
replica, an unreadable replica, /jsz that disagree, no leader, an error answer for a message that
was stored) fails exactly its check.

    python3 perf/faults/main.py selftest
"""

import copy

from checker import check


def _clean():
    history, stored = [], {}
    seq = 0
    for k in range(20):
        payload = f"t:{k}"
        if k % 5 == 3:  # failed: not stored
            history.append({"payload": payload, "outcome": "failed",
                            "attempts": [[0, 0, 0, "failed", None, "err"]]})
            continue
        seq += 1
        stored[seq] = payload
        if k % 5 == 4:  # unknown that landed
            history.append({"payload": payload, "outcome": "unknown",
                            "attempts": [[0, 0, 1, "unknown", None, "timeout"]]})
        else:
            history.append({"payload": payload, "outcome": "acked",
                            "attempts": [[0, 0, 0, "acked", seq, None]]})
    reads = {n: dict(stored) for n in ("n1", "n2", "n3")}
    jsz = {n: [len(stored), 1, seq] for n in ("n1", "n2", "n3")}
    return history, reads, jsz


def _case(name, mutate, expect):
    history, reads, jsz = _clean()
    args = {"history": history, "reads": reads, "jsz": jsz, "leader": "n1",
            "acked_after_heal": 3, "upto": None,
            "read_last": None}
    mutate(args)
    got = check(**args)
    ok = got["violations"] == expect
    print(f"{'ok  ' if ok else 'FAIL'} {name}: violations {got['violations']}"
          f" (expected {expect})")
    return ok


def _lost(a):
    for r in a["reads"].values():
        del r[1]


def _wrong_seq(a):
    # the acked payload of seq 2 stored at seq 2 on no replica, at a new seq instead
    for r in a["reads"].values():
        p = r.pop(2)
        r[100] = p


def _dup(a):
    for r in a["reads"].values():
        r[101] = r[1]


def _foreign(a):
    for r in a["reads"].values():
        r[102] = "never sent"


def _divergent(a):
    r = a["reads"]["n3"]
    r[max(r)] = "t:x"  # an unacked sequence holding another payload on one replica
    a["history"].append({"payload": "t:x", "outcome": "unknown",
                         "attempts": [[0, 0, 1, "unknown", None, "timeout"]]})


def _unread(a):
    a["reads"]["n2"] = None


def _jsz(a):
    a["jsz"]["n2"] = [1, 1, 1]


def _no_leader(a):
    a["leader"] = None


def _no_ack_after_heal(a):
    a["acked_after_heal"] = 0


def _lost_on_minority(a):
    del a["reads"]["n3"][1]


def _failed_present(a):
    r = a["reads"]
    for m in r.values():
        m[max(m) + 1] = "t:3"  # k=3 was answered with an error


def _probe_after_first_read(a):
    # read-back added an acked probe at seq upto+1 after n1 was read: not a violation
    a["history"].append({"payload": "probe", "outcome": "acked",
                         "attempts": [[1, 0, 0, "acked", 17, None]]})
    a["reads"]["n2"][17] = "probe"
    a["reads"]["n3"][17] = "probe"
    a["upto"] = 16
    a["read_last"] = {"n1": 16, "n2": 17, "n3": 17}


def _probe_lost(a):
    _probe_after_first_read(a)
    del a["reads"]["n3"][17]


def main():
    results = [
        _case("clean history", lambda a: None, []),
        _case("acked message missing", _lost, ["lost"]),
        _case("acked message at another sequence", _wrong_seq, ["lost"]),
        _case("payload stored twice", _dup, ["duplicated"]),
        _case("payload never sent", _foreign, ["foreign"]),
        _case("one replica differs (unacked seq)", _divergent, ["divergent"]),
        _case("acked message missing on one replica", _lost_on_minority,
              ["lost", "divergent"]),
        _case("replica not readable", _unread, ["unread"]),
        _case("/jsz differ", _jsz, ["jsz_mismatch"]),
        _case("no leader after healing", _no_leader, ["no_leader"]),
        _case("no publish acked after healing", _no_ack_after_heal, ["no_leader"]),
        _case("error answered, message stored", _failed_present, ["failed_present"]),
        _case("probe after the first replica's read", _probe_after_first_read, []),
        _case("probe missing on a replica read after it", _probe_lost, ["lost"]),
    ]
    print(f"selftest: {sum(results)}/{len(results)} cases as expected")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
