#!/usr/bin/env python3
"""Drive a capstan member with the PyPI `etcd3` client (python-etcd3 0.12).

Usage: test_etcd3.py HOST:PORT

Run by tests/python_etcd3.rs against a member it started. Every check raises on failure;
the script exits 0 only when all of them passed, and non-zero with the failing check's
name and message otherwise. Every wait is bounded.
"""

import queue
import sys
import time
import traceback

import etcd3
import etcd3.events

# Key prefix for this run, so the script never collides with other data.
P = "/py/"
WAIT = 10.0  # seconds: the bound of every wait in this script


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def test_kv(c):
    r1 = c.put(P + "a", b"1")
    check(r1.header.revision > 0, "put returns a header with a revision")
    value, meta = c.get(P + "a")
    eq(value, b"1", "get after put")
    eq(meta.key, (P + "a").encode(), "metadata key")
    eq(meta.version, 1, "version after first put")
    eq(meta.create_revision, r1.header.revision, "create_revision is the put's revision")
    eq(meta.mod_revision, r1.header.revision, "mod_revision is the put's revision")

    r2 = c.put(P + "a", b"2", prev_kv=True)
    eq(r2.prev_kv.value, b"1", "put prev_kv returns the old value")
    value, meta = c.get(P + "a")
    eq(value, b"2", "get after overwrite")
    eq(meta.version, 2, "version after second put")
    eq(meta.create_revision, r1.header.revision, "create_revision survives overwrite")
    eq(meta.mod_revision, r2.header.revision, "mod_revision follows the overwrite")

    eq(c.get(P + "missing"), (None, None), "get of a missing key")

    for i in range(5):
        c.put(f"{P}list/{i}", str(i))
    got = [(m.key.decode(), v.decode()) for v, m in c.get_prefix(P + "list/")]
    eq(got, [(f"{P}list/{i}", str(i)) for i in range(5)], "get_prefix in key order")
    got = [v.decode() for v, _ in c.get_prefix(P + "list/", sort_order="descend")]
    eq(got, [str(i) for i in reversed(range(5))], "get_prefix sorted descending")

    check(c.put_if_not_exists(P + "new", "x"), "put_if_not_exists on a new key succeeds")
    check(not c.put_if_not_exists(P + "new", "y"), "put_if_not_exists on an existing key fails")
    check(c.replace(P + "new", "x", "z"), "replace with the right old value succeeds")
    check(not c.replace(P + "new", "x", "w"), "replace with a wrong old value fails")
    eq(c.get(P + "new")[0], b"z", "value after replace")

    check(c.delete(P + "a"), "delete of an existing key reports a deletion")
    check(not c.delete(P + "a"), "delete of a missing key reports none")
    eq(c.get(P + "a"), (None, None), "get after delete")
    resp = c.delete_prefix(P + "list/")
    eq(resp.deleted, 5, "delete_prefix count")
    eq(list(c.get_prefix(P + "list/")), [], "get_prefix after delete_prefix")


def test_transactions(c):
    c.put(P + "txn", "v1")
    t = c.transactions
    ok, responses = c.transaction(
        compare=[t.value(P + "txn") == "v1", t.version(P + "txn") > 0],
        success=[t.put(P + "txn", "v2"), t.get(P + "txn")],
        failure=[t.put(P + "txn", "bad")],
    )
    check(ok, "txn with true compares takes the success branch")
    eq(len(responses), 2, "success branch response count")
    eq(responses[1][0][0], b"v2", "get inside the txn sees the put before it")

    ok, responses = c.transaction(
        compare=[t.value(P + "txn") == "v1"],
        success=[t.put(P + "txn", "bad")],
        failure=[t.put(P + "txn", "v3"), t.get(P + "txn")],
    )
    check(not ok, "txn with a false compare takes the failure branch")
    eq(responses[1][0][0], b"v3", "failure branch applied")
    eq(c.get(P + "txn")[0], b"v3", "value after the failure branch")

    _, meta = c.get(P + "txn")
    ok, _ = c.transaction(
        compare=[t.mod(P + "txn") == meta.mod_revision, t.create(P + "txn") < meta.mod_revision + 1],
        success=[t.delete(P + "txn")],
        failure=[],
    )
    check(ok, "compare on mod and create revision")
    eq(c.get(P + "txn"), (None, None), "delete inside txn")


def test_leases(c):
    lease = c.lease(60)
    check(lease.id != 0, "lease grant returns an id")
    eq(lease.ttl, 60, "granted ttl")
    c.put(P + "leased", "v", lease=lease)
    _, meta = c.get(P + "leased")
    eq(meta.lease_id, lease.id, "key carries its lease")
    remaining = lease.remaining_ttl
    check(0 < remaining <= 60, f"remaining ttl in (0, 60], got {remaining}")
    eq(lease.granted_ttl, 60, "granted ttl from time-to-live")
    eq([bytes(k) for k in lease.keys], [(P + "leased").encode()], "keys attached to the lease")
    responses = lease.refresh()
    check(len(responses) == 1 and responses[0].TTL == 60, f"keep-alive renews to 60 s: {responses}")
    lease.revoke()
    eq(c.get(P + "leased"), (None, None), "revoking a lease deletes its keys")
    check(lease.remaining_ttl == -1, "revoked lease reports ttl -1")

    # A short lease expires by itself and takes its key with it.
    short = c.lease(2)
    c.put(P + "short", "v", lease=short)
    deadline = time.monotonic() + WAIT
    while c.get(P + "short") != (None, None):
        check(time.monotonic() < deadline, f"a 2 s lease still holds its key after {WAIT} s")
        time.sleep(0.2)


def next_item(q, what):
    try:
        item = q.get(timeout=WAIT)
    except queue.Empty:
        raise AssertionError(f"{what}: nothing arrived within {WAIT} s")
    if isinstance(item, Exception):
        raise AssertionError(f"{what}: watch failed: {item!r}")
    return item


def test_watch(c):
    # Callback watch on a prefix, created before the writes.
    q = queue.Queue()
    watch_id = c.add_watch_prefix_callback(P + "w/", q.put)
    start = c.put(P + "w/1", "a").header.revision
    c.put(P + "w/1", "b")
    c.delete(P + "w/1")
    events = []
    while len(events) < 3:
        events.extend(next_item(q, "prefix watch callback").events)
    eq([type(e) for e in events],
       [etcd3.events.PutEvent, etcd3.events.PutEvent, etcd3.events.DeleteEvent],
       "event types")
    eq([e.key for e in events], [(P + "w/1").encode()] * 3, "event keys")
    eq([e.value for e in events[:2]], [b"a", b"b"], "event values")
    eq([e.mod_revision for e in events], [start, start + 1, start + 2], "event revisions")
    c.cancel_watch(watch_id)

    # Iterator watch from an old revision replays history, with prev_kv.
    it, cancel = c.watch(P + "w/1", start_revision=start, prev_kv=True)
    got = []
    deadline = time.monotonic() + WAIT
    for ev in it:
        got.append(ev)
        if len(got) == 3 or time.monotonic() > deadline:
            break
    cancel()
    eq(len(got), 3, "replayed events")
    eq(got[1].prev_value, b"a", "prev_kv on the replayed overwrite")
    eq(got[2].prev_value, b"b", "prev_kv on the replayed delete")

    # watch_once with a timeout.
    rev = c.put(P + "w/once", "x").header.revision
    ev = c.watch_once(P + "w/once", timeout=WAIT, start_revision=rev)
    eq(ev.value, b"x", "watch_once value")


def test_cluster_calls(c):
    members = list(c.members)
    eq(len(members), 1, "member count")
    m = members[0]
    check(m.id != 0, "member id is set")
    check(m.name, "member name is set")
    check(len(m.peer_urls) >= 1 and len(m.client_urls) >= 1, f"member urls: {m}")
    st = c.status()
    check(st.leader is not None, "status names a leader among the members")
    eq(st.leader.id, m.id, "single member leads itself")
    check(st.raft_index > 0, "raft index is positive")
    check(st.raft_term > 0, "raft term is positive")
    check(st.version, "status carries a version string")

    rev = c.put(P + "compact", "1").header.revision
    c.put(P + "compact", "2")
    c.compact(rev + 1)
    # python-etcd3 hands the compaction error to the watch callback as a value.
    try:
        resp = c.watch_once_response(P + "compact", timeout=WAIT, start_revision=rev)
    except etcd3.exceptions.RevisionCompactedError as e:
        resp = e
    check(isinstance(resp, etcd3.exceptions.RevisionCompactedError),
          f"watching a compacted revision must fail with RevisionCompactedError, got {resp!r}")
    check(resp.compacted_revision >= rev + 1, f"compacted revision {resp.compacted_revision}")


def main():
    if len(sys.argv) != 2 or ":" not in sys.argv[1]:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    c = etcd3.client(host=host, port=int(port), timeout=WAIT)
    c.delete_prefix(P)  # a clean slate when the script is rerun against the same member
    tests = [test_kv, test_transactions, test_leases, test_watch, test_cluster_calls]
    failed = 0
    for t in tests:
        started = time.monotonic()
        try:
            t(c)
            print(f"ok   {t.__name__} ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception as e:  # report every failure, then carry on with the next test
            failed += 1
            print(f"FAIL {t.__name__}: {e}", flush=True)
            traceback.print_exc()
    # No c.close(): python-etcd3's watch thread would log a spurious traceback; exit ends it.
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
