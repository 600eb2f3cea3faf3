//! `etcdctl` (Debian's etcd-client 3.4) against one capstan member: the KV, txn, watch,
//! lease, cluster and maintenance commands people type, their output formats, the error
//! messages etcd gives, request limits, garbage on the client port, and durability
//! across SIGTERM and SIGKILL restarts.
//!
//! Every test starts its own member on its own ports, so they run in parallel.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{
    base64_decode, current_revision, endpoint_status, etcdctl, etcdctl_err, etcdctl_input,
    etcdctl_input_ok, etcdctl_json, etcdctl_ok, event_kv, event_prev_kv, event_type, http_get,
    json_i64, json_kvs, json_u64, lease_id_from_grant, need_etcdctl, nonempty_lines, output_text,
    wait_for, Cluster, EtcdctlWatch, JsonKv, WAIT,
};

/// The one key-value of `get <key> -w json`, or `None` when the key does not exist.
fn get_kv(ep: &str, key: &str) -> Option<JsonKv> {
    let resp = etcdctl_json(ep, &["get", key]);
    let mut kvs = json_kvs(&resp);
    assert!(kvs.len() <= 1, "get {key} returned {} kvs", kvs.len());
    kvs.pop()
}

/// The keys that `get <args> --keys-only` prints, in order.
fn keys(ep: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.push("--keys-only");
    nonempty_lines(&etcdctl_ok(ep, &all))
}

/// The store revision after a `put`, read back from the key's `mod_revision`.
fn put_rev(ep: &str, key: &str, value: &str) -> i64 {
    assert_eq!(etcdctl_ok(ep, &["put", key, value]), "OK\n");
    get_kv(ep, key)
        .unwrap_or_else(|| panic!("{key} missing right after put"))
        .mod_revision
}

fn lease_hex_to_i64(hex: &str) -> i64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("lease id {hex:?} is not hex: {e}"))
        as i64
}

#[test]
fn put_get_delete_and_json_fields() {
    if !need_etcdctl("put_get_delete_and_json_fields") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    assert_eq!(etcdctl_ok(ep, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(etcdctl_ok(ep, &["get", "foo"]), "foo\nbar\n");
    assert_eq!(
        etcdctl_ok(ep, &["get", "foo", "--print-value-only"]),
        "bar\n"
    );
    assert_eq!(etcdctl_ok(ep, &["get", "missing"]), "");

    // JSON: keys and values are base64, int64 fields are numbers, zeros are omitted.
    let resp = etcdctl_json(ep, &["get", "foo"]);
    assert_eq!(json_i64(&resp, "count"), 1, "{resp}");
    let header = &resp["header"];
    assert_ne!(json_u64(header, "cluster_id"), 0, "cluster_id in {resp}");
    assert_ne!(json_u64(header, "member_id"), 0, "member_id in {resp}");
    assert!(json_u64(header, "raft_term") >= 1, "raft_term in {resp}");
    let kv = &json_kvs(&resp)[0];
    let rev1 = kv.mod_revision;
    assert_eq!(
        kv,
        &JsonKv {
            key: "foo".into(),
            value: "bar".into(),
            create_revision: rev1,
            mod_revision: rev1,
            version: 1,
            lease: 0,
        }
    );
    assert_eq!(json_i64(header, "revision"), rev1);
    assert_eq!(
        base64_decode(resp["kvs"][0]["key"].as_str().unwrap_or("")),
        b"foo"
    );

    // An overwrite bumps mod_revision and version, keeps create_revision.
    assert_eq!(etcdctl_ok(ep, &["put", "foo", "baz"]), "OK\n");
    let kv2 = get_kv(ep, "foo").expect("foo exists");
    assert_eq!(
        (
            kv2.value.as_str(),
            kv2.create_revision,
            kv2.mod_revision,
            kv2.version
        ),
        ("baz", rev1, rev1 + 1, 2)
    );

    // Reads at an old revision see the old value.
    let at_rev1 = format!("--rev={rev1}");
    assert_eq!(
        etcdctl_ok(ep, &["get", "foo", &at_rev1, "--print-value-only"]),
        "bar\n"
    );

    // Delete prints the number of deleted keys; a deleted key is gone, its history not.
    assert_eq!(etcdctl_ok(ep, &["del", "foo"]), "1\n");
    assert_eq!(etcdctl_ok(ep, &["del", "foo"]), "0\n");
    assert!(get_kv(ep, "foo").is_none());
    assert_eq!(
        etcdctl_ok(ep, &["get", "foo", &at_rev1, "--print-value-only"]),
        "bar\n"
    );
    // A put after a delete starts a new generation: version 1, new create_revision.
    assert_eq!(etcdctl_ok(ep, &["put", "foo", "again"]), "OK\n");
    let kv3 = get_kv(ep, "foo").expect("foo exists again");
    assert_eq!(kv3.version, 1);
    assert_eq!(kv3.create_revision, rev1 + 3);
    assert_eq!(kv3.mod_revision, rev1 + 3);

    // A value with spaces and a 300-byte key round-trip.
    let long_key = "k".repeat(300);
    assert_eq!(
        etcdctl_ok(ep, &["put", &long_key, "a value with spaces"]),
        "OK\n"
    );
    assert_eq!(
        etcdctl_ok(ep, &["get", &long_key, "--print-value-only"]),
        "a value with spaces\n"
    );
}

#[test]
fn range_options_and_sorting() {
    if !need_etcdctl("range_options_and_sorting") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    // Creation order b, c, a; then b is modified again (version 2, newest mod_revision).
    let rev_b1 = put_rev(ep, "r/b", "v1");
    put_rev(ep, "r/c", "v2");
    put_rev(ep, "r/a", "v3");
    let last = put_rev(ep, "r/b", "v4");
    put_rev(ep, "s/other", "x"); // outside the prefix

    assert_eq!(keys(ep, &["r/", "--prefix"]), ["r/a", "r/b", "r/c"]);
    assert_eq!(
        nonempty_lines(&etcdctl_ok(ep, &["get", "r/", "--prefix"])),
        ["r/a", "v3", "r/b", "v4", "r/c", "v2"]
    );
    assert_eq!(
        etcdctl_ok(ep, &["get", "r/", "--prefix", "--print-value-only"]),
        "v3\nv4\nv2\n"
    );
    assert_eq!(
        keys(ep, &["r/a", "r/c"]),
        ["r/a", "r/b"],
        "[key, range_end)"
    );
    assert_eq!(keys(ep, &["r/b", "--from-key"]), ["r/b", "r/c", "s/other"]);
    assert_eq!(keys(ep, &["r/", "--prefix", "--limit=2"]), ["r/a", "r/b"]);

    let limited = etcdctl_json(ep, &["get", "r/", "--prefix", "--limit=2"]);
    assert_eq!(json_kvs(&limited).len(), 2);
    assert_eq!(
        json_i64(&limited, "count"),
        3,
        "count ignores the limit: {limited}"
    );
    assert_eq!(limited["more"], serde_json::Value::Bool(true), "{limited}");

    let sorted = |target: &str, order: &str| {
        keys(
            ep,
            &[
                "r/",
                "--prefix",
                &format!("--sort-by={target}"),
                &format!("--order={order}"),
            ],
        )
    };
    assert_eq!(sorted("KEY", "ASCEND"), ["r/a", "r/b", "r/c"]);
    assert_eq!(sorted("KEY", "DESCEND"), ["r/c", "r/b", "r/a"]);
    assert_eq!(sorted("CREATE", "ASCEND"), ["r/b", "r/c", "r/a"]);
    assert_eq!(sorted("CREATE", "DESCEND"), ["r/a", "r/c", "r/b"]);
    assert_eq!(sorted("MODIFY", "ASCEND"), ["r/c", "r/a", "r/b"]);
    assert_eq!(sorted("MODIFY", "DESCEND"), ["r/b", "r/a", "r/c"]);
    assert_eq!(sorted("VALUE", "ASCEND"), ["r/c", "r/a", "r/b"]);
    assert_eq!(sorted("VALUE", "DESCEND"), ["r/b", "r/a", "r/c"]);
    // r/a and r/c tie on version 1: only the position of r/b (version 2) is fixed.
    assert_eq!(sorted("VERSION", "DESCEND")[0], "r/b");
    assert_eq!(sorted("VERSION", "ASCEND")[2], "r/b");
    // Sort applies before the limit.
    assert_eq!(
        keys(
            ep,
            &[
                "r/",
                "--prefix",
                "--sort-by=MODIFY",
                "--order=DESCEND",
                "--limit=1"
            ]
        ),
        ["r/b"]
    );

    // --rev: the prefix as it was right after the first put of r/b.
    let old = etcdctl_json(ep, &["get", "r/", "--prefix", &format!("--rev={rev_b1}")]);
    let old_kvs = json_kvs(&old);
    assert_eq!(old_kvs.len(), 1, "{old}");
    assert_eq!(
        (old_kvs[0].key.as_str(), old_kvs[0].value.as_str()),
        ("r/b", "v1")
    );
    // The header of a read at an old revision still carries the current revision.
    assert!(json_i64(&old["header"], "revision") > last, "{old}");

    // --keys-only in JSON leaves values out.
    let ko = etcdctl_json(ep, &["get", "r/", "--prefix", "--keys-only"]);
    for kv in json_kvs(&ko) {
        assert_eq!(kv.value, "", "keys-only returned a value: {ko}");
    }
    // --consistency=s (serializable) reads from the member's local state.
    assert_eq!(
        etcdctl_ok(ep, &["get", "r/a", "--consistency=s", "--print-value-only"]),
        "v3\n"
    );
}

#[test]
fn put_and_delete_options() {
    if !need_etcdctl("put_and_delete_options") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    assert_eq!(etcdctl_ok(ep, &["put", "p", "v1"]), "OK\n");
    assert_eq!(
        etcdctl_ok(ep, &["put", "p", "v2", "--prev-kv"]),
        "OK\np\nv1\n"
    );
    let before = get_kv(ep, "p").expect("p exists");

    // --ignore-value keeps the value but is still a write.
    assert_eq!(etcdctl_ok(ep, &["put", "p", "--ignore-value"]), "OK\n");
    let after = get_kv(ep, "p").expect("p exists");
    assert_eq!(after.value, "v2");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.mod_revision, before.mod_revision + 1);
    etcdctl_err(ep, &["put", "nokey", "--ignore-value"], "key not found");

    // --lease attaches a lease, --ignore-lease keeps it across a put.
    let grant = etcdctl_ok(ep, &["lease", "grant", "60"]);
    let lease = lease_id_from_grant(&grant);
    assert_eq!(
        etcdctl_ok(ep, &["put", "p", "v3", &format!("--lease={lease}")]),
        "OK\n"
    );
    assert_eq!(get_kv(ep, "p").expect("p").lease, lease_hex_to_i64(&lease));
    assert_eq!(
        etcdctl_ok(ep, &["put", "p", "v4", "--ignore-lease"]),
        "OK\n"
    );
    let kept = get_kv(ep, "p").expect("p");
    assert_eq!(
        (kept.value.as_str(), kept.lease),
        ("v4", lease_hex_to_i64(&lease))
    );
    // A plain put detaches the lease.
    assert_eq!(etcdctl_ok(ep, &["put", "p", "v5"]), "OK\n");
    assert_eq!(get_kv(ep, "p").expect("p").lease, 0);

    // del --prev-kv prints the count, then the deleted pairs.
    assert_eq!(etcdctl_ok(ep, &["del", "p", "--prev-kv"]), "1\np\nv5\n");

    for k in ["d/1", "d/2", "d/3", "e"] {
        assert_eq!(etcdctl_ok(ep, &["put", k, "x"]), "OK\n");
    }
    assert_eq!(etcdctl_ok(ep, &["del", "d/", "--prefix"]), "3\n");
    assert!(keys(ep, &["d/", "--prefix"]).is_empty());
    assert_eq!(keys(ep, &["e"]), ["e"]);

    for k in ["z1", "z2", "z3"] {
        assert_eq!(etcdctl_ok(ep, &["put", k, "x"]), "OK\n");
    }
    assert_eq!(etcdctl_ok(ep, &["del", "z2", "--from-key"]), "2\n");
    assert_eq!(keys(ep, &["z", "--prefix"]), ["z1"]);
    // Range delete [z1, z2).
    assert_eq!(etcdctl_ok(ep, &["del", "z1", "z2"]), "1\n");
}

#[test]
fn txn_takes_both_branches() {
    if !need_etcdctl("txn_takes_both_branches") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    assert_eq!(etcdctl_ok(ep, &["put", "t", "v1"]), "OK\n");

    // etcdctl's txn reads: compares, blank line, success ops, blank line, failure ops,
    // blank line.
    let out = etcdctl_input_ok(
        ep,
        &["txn"],
        "mod(\"t\") > \"0\"\n\nput t v2\n\nput t v3\n\n",
    );
    assert_eq!(nonempty_lines(&out), ["SUCCESS", "OK"], "{out:?}");
    assert_eq!(etcdctl_ok(ep, &["get", "t", "--print-value-only"]), "v2\n");

    let out = etcdctl_input_ok(
        ep,
        &["txn"],
        "value(\"t\") = \"nope\"\n\nput t bad\n\nput t v3\nget t\n\n",
    );
    assert_eq!(
        nonempty_lines(&out),
        ["FAILURE", "OK", "t", "v3"],
        "{out:?}"
    );

    // Several compares, all true; the success branch reads its own write.
    let kv = get_kv(ep, "t").expect("t");
    let input = format!(
        "version(\"t\") = \"{}\"\ncreate(\"t\") = \"{}\"\nmod(\"t\") = \"{}\"\nval(\"t\") = \"v3\"\n\nput t v4\nget t\nput u 1\n\nput t bad\n\n",
        kv.version, kv.create_revision, kv.mod_revision
    );
    let json = {
        let out = etcdctl_input(ep, &["txn", "-w", "json"], &input);
        assert!(out.status.success(), "txn -w json: {}", output_text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("txn -w json printed no JSON ({e}): {}", output_text(&out)))
    };
    assert_eq!(json["succeeded"], serde_json::Value::Bool(true), "{json}");
    let responses = json["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 3, "{json}");
    let txn_rev = json_i64(&json["header"], "revision");
    assert_eq!(
        txn_rev,
        kv.mod_revision + 1,
        "one txn is one revision: {json}"
    );
    let range = &responses[1]["Response"]["ResponseRange"];
    assert_eq!(json_kvs(range)[0].value, "v4", "{json}");
    // Both puts of the txn share its revision.
    assert_eq!(get_kv(ep, "u").expect("u").mod_revision, txn_rev);
    assert_eq!(get_kv(ep, "t").expect("t").mod_revision, txn_rev);

    // A compare on a missing key: its version and revisions are 0.
    let out = etcdctl_input_ok(
        ep,
        &["txn"],
        "version(\"nokey\") = \"0\"\n\nput nokey 1\n\n\n",
    );
    assert_eq!(nonempty_lines(&out), ["SUCCESS", "OK"]);

    // Delete inside a txn.
    let out = etcdctl_input_ok(ep, &["txn"], "\ndel u\n\n\n");
    assert_eq!(nonempty_lines(&out), ["SUCCESS", "1"]);
    assert!(get_kv(ep, "u").is_none());

    // Duplicate keys in one txn are rejected.
    let out = etcdctl_input(ep, &["txn"], "\nput a 1\nput a 2\n\n\n");
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("duplicate key given in txn request"),
        "{}",
        output_text(&out)
    );

    // --max-txn-ops defaults to 128: 128 ops pass, 129 are refused.
    let ops = |n: usize| -> String {
        let mut s = String::from("\n");
        for i in 0..n {
            s.push_str(&format!("put many/{i} x\n"));
        }
        s.push_str("\n\n");
        s
    };
    let out = etcdctl_input_ok(ep, &["txn"], &ops(128));
    assert_eq!(nonempty_lines(&out)[0], "SUCCESS");
    let out = etcdctl_input(ep, &["txn"], &ops(129));
    assert!(!out.status.success(), "129 ops: {}", output_text(&out));
    assert!(
        output_text(&out).contains("too many operations in txn request"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn watch_prints_puts_and_deletes() {
    if !need_etcdctl("watch_prints_puts_and_deletes") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    // From the next revision: the events arrive whether the watch is registered before
    // or after the writes.
    let next = current_revision(ep) + 1;
    let mut w = EtcdctlWatch::spawn(ep, &["w/", "--prefix", &format!("--rev={next}")]);
    assert_eq!(etcdctl_ok(ep, &["put", "w/1", "a"]), "OK\n");
    assert_eq!(etcdctl_ok(ep, &["put", "w/1", "b"]), "OK\n");
    assert_eq!(etcdctl_ok(ep, &["del", "w/1"]), "1\n");
    assert_eq!(etcdctl_ok(ep, &["put", "other", "x"]), "OK\n");
    assert_eq!(etcdctl_ok(ep, &["put", "w/2", "c"]), "OK\n");
    assert_eq!(
        w.lines(12, WAIT),
        ["PUT", "w/1", "a", "PUT", "w/1", "b", "DELETE", "w/1", "", "PUT", "w/2", "c"]
    );
    drop(w);

    // A live watch without --rev: write a marker until the watch shows it, then the
    // next write must follow it.
    let mut live = EtcdctlWatch::spawn(ep, &["live/", "--prefix"]);
    wait_for("the live watch to see a marker write", WAIT, || {
        assert_eq!(etcdctl_ok(ep, &["put", "live/marker", "m"]), "OK\n");
        live.next_line(Duration::from_millis(500))
            .filter(|l| l == "PUT")
    });
    assert_eq!(etcdctl_ok(ep, &["put", "live/x", "1"]), "OK\n");
    // Skip the rest of the marker events (each PUT is three lines: type, key, value).
    let mut found = false;
    for _ in 0..200 {
        let line = live.lines(1, WAIT).remove(0);
        if line == "live/x" {
            assert_eq!(live.lines(1, WAIT), ["1"]);
            found = true;
            break;
        }
        assert!(
            ["PUT", "live/marker", "m"].contains(&line.as_str()),
            "unexpected watch line {line:?}"
        );
    }
    assert!(found, "the write after the marker never arrived");
}

#[test]
fn watch_replays_history_with_prev_kv() {
    if !need_etcdctl("watch_replays_history_with_prev_kv") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    let first = put_rev(ep, "h", "1");
    put_rev(ep, "h", "2");
    assert_eq!(etcdctl_ok(ep, &["del", "h"]), "1\n");
    put_rev(ep, "h", "3");

    // History from an old revision, in JSON, with previous values.
    let mut w = EtcdctlWatch::spawn(
        ep,
        &["h", &format!("--rev={first}"), "--prev-kv", "-w", "json"],
    );
    let events = w.json_events(4, WAIT);
    assert_eq!(events.len(), 4, "{events:?}");
    let types: Vec<&str> = events.iter().map(event_type).collect();
    assert_eq!(types, ["PUT", "PUT", "DELETE", "PUT"]);
    let revs: Vec<i64> = events.iter().map(|e| event_kv(e).mod_revision).collect();
    assert_eq!(revs, [first, first + 1, first + 2, first + 3]);
    let values: Vec<String> = events.iter().map(|e| event_kv(e).value).collect();
    assert_eq!(values, ["1", "2", "", "3"]);
    let versions: Vec<i64> = events.iter().map(|e| event_kv(e).version).collect();
    assert_eq!(versions, [1, 2, 0, 1]);
    let prev: Vec<Option<String>> = events
        .iter()
        .map(|e| event_prev_kv(e).map(|kv| kv.value))
        .collect();
    assert_eq!(
        prev,
        [None, Some("1".to_owned()), Some("2".to_owned()), None],
        "prev_kv of each event"
    );
    // The replay continues live.
    put_rev(ep, "h", "4");
    let more = w.json_events(1, WAIT);
    assert_eq!(event_kv(&more[0]).value, "4");
    assert_eq!(
        event_prev_kv(&more[0]).map(|kv| kv.value),
        Some("3".to_owned())
    );
    assert!(
        w.drain_json_events(Duration::from_millis(300), Duration::from_secs(2))
            .is_empty(),
        "no duplicate events"
    );
}

#[test]
fn compaction_discards_history() {
    if !need_etcdctl("compaction_discards_history") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    let r1 = put_rev(ep, "c", "v1");
    let r2 = put_rev(ep, "c", "v2");
    put_rev(ep, "c", "v3");

    assert_eq!(
        etcdctl_ok(ep, &["compaction", &r2.to_string()]),
        format!("compacted revision {r2}\n")
    );
    etcdctl_err(
        ep,
        &["get", "c", &format!("--rev={r1}")],
        "required revision has been compacted",
    );
    // The compaction revision itself stays readable.
    assert_eq!(
        etcdctl_ok(
            ep,
            &["get", "c", &format!("--rev={r2}"), "--print-value-only"]
        ),
        "v2\n"
    );
    // Compacting again at or below the compacted revision fails; so does the future.
    etcdctl_err(ep, &["compaction", &r1.to_string()], "compacted");
    etcdctl_err(ep, &["compaction", "1000000"], "future revision");

    // A watch from a compacted revision is canceled with the compaction error
    // (etcdctl prints "watch was canceled (etcdserver: mvcc: required revision has
    // been compacted)" and exits).
    let out = etcdctl(ep, &["watch", "c", &format!("--rev={r1}")]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("compacted"),
        "{}",
        output_text(&out)
    );
    // In JSON the cancel carries the compact revision.
    let out = etcdctl(ep, &["watch", "c", &format!("--rev={r1}"), "-w", "json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let resp: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no JSON from a canceled watch ({e}): {}", output_text(&out)));
    assert_eq!(json_i64(&resp, "CompactRevision"), r2, "{resp}");
    assert_eq!(resp["Canceled"], serde_json::Value::Bool(true), "{resp}");

    // From the compaction revision on, history is still there.
    let mut w = EtcdctlWatch::spawn(ep, &["c", &format!("--rev={r2}"), "-w", "json"]);
    let values: Vec<String> = w
        .json_events(2, WAIT)
        .iter()
        .map(|e| event_kv(e).value)
        .collect();
    assert_eq!(values, ["v2", "v3"]);
}

#[test]
fn lease_commands() {
    if !need_etcdctl("lease_commands") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    let grant = etcdctl_ok(ep, &["lease", "grant", "60"]);
    assert!(grant.ends_with("granted with TTL(60s)\n"), "{grant:?}");
    let id = lease_id_from_grant(&grant);
    let other = lease_id_from_grant(&etcdctl_ok(ep, &["lease", "grant", "60"]));
    assert_ne!(id, other, "lease ids are unique");

    let list = etcdctl_ok(ep, &["lease", "list"]);
    assert!(list.starts_with("found 2 leases\n"), "{list:?}");
    assert!(list.lines().any(|l| l == id), "{id} not in {list:?}");

    for k in ["lk1", "lk2"] {
        assert_eq!(
            etcdctl_ok(ep, &["put", k, "v", &format!("--lease={id}")]),
            "OK\n"
        );
    }
    let ttl = etcdctl_ok(ep, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("granted with TTL(60s)"), "{ttl:?}");
    // etcd lists attached keys in no particular order.
    assert!(
        ttl.contains("attached keys([lk1 lk2])") || ttl.contains("attached keys([lk2 lk1])"),
        "{ttl:?}"
    );
    let ttl_json = etcdctl_json(ep, &["lease", "timetolive", &id, "--keys"]);
    let remaining = json_i64(&ttl_json, "ttl");
    assert!(
        (1..=60).contains(&remaining),
        "remaining ttl {remaining}: {ttl_json}"
    );
    assert_eq!(json_i64(&ttl_json, "granted-ttl"), 60, "{ttl_json}");
    assert_eq!(
        json_i64(&ttl_json, "id"),
        lease_hex_to_i64(&id),
        "{ttl_json}"
    );
    let mut attached: Vec<String> = ttl_json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| String::from_utf8_lossy(&base64_decode(k.as_str().unwrap_or(""))).into_owned())
        .collect();
    attached.sort();
    assert_eq!(attached, ["lk1", "lk2"]);

    assert_eq!(
        etcdctl_ok(ep, &["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );

    assert_eq!(
        etcdctl_ok(ep, &["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert!(
        keys(ep, &["lk", "--prefix"]).is_empty(),
        "revoke deletes attached keys"
    );
    assert_eq!(
        etcdctl_ok(ep, &["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    etcdctl_err(ep, &["lease", "revoke", &id], "requested lease not found");
    etcdctl_err(
        ep,
        &["lease", "keep-alive", "--once", &id],
        "requested lease not found",
    );
    let list = etcdctl_ok(ep, &["lease", "list"]);
    assert!(list.starts_with("found 1 leases\n"), "{list:?}");
}

#[test]
fn lease_expires_and_deletes_its_keys() {
    if !need_etcdctl("lease_expires_and_deletes_its_keys") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    let id = lease_id_from_grant(&etcdctl_ok(ep, &["lease", "grant", "2"]));
    assert_eq!(
        etcdctl_ok(ep, &["put", "short", "v", &format!("--lease={id}")]),
        "OK\n"
    );
    let rev = current_revision(ep);
    let mut w = EtcdctlWatch::spawn(ep, &["short", &format!("--rev={}", rev + 1), "-w", "json"]);
    wait_for(
        "the key of a 2 s lease to disappear",
        Duration::from_secs(10),
        || get_kv(ep, "short").is_none().then_some(()),
    );
    // The expiry is a delete event like any other.
    let events = w.json_events(1, WAIT);
    assert_eq!(event_type(&events[0]), "DELETE");
    assert_eq!(
        etcdctl_ok(ep, &["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
}

#[test]
fn member_endpoint_metrics_and_health() {
    if !need_etcdctl("member_endpoint_metrics_and_health") {
        return;
    }
    let c = Cluster::start(1);
    let m = &c.members[0];
    let ep = m.client_url.as_str();

    let list = etcdctl_ok(ep, &["member", "list"]);
    let fields: Vec<&str> = list.trim_end().split(", ").collect();
    assert_eq!(fields.len(), 6, "{list:?}");
    assert_eq!(
        &fields[1..],
        ["started", "m0", m.peer_url.as_str(), ep, "false"]
    );

    let json = etcdctl_json(ep, &["member", "list"]);
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{json}");
    let member = &members[0];
    assert_eq!(member["name"], "m0");
    assert_eq!(member["peerURLs"], serde_json::json!([m.peer_url]));
    assert_eq!(member["clientURLs"], serde_json::json!([ep]));
    let id = json_u64(member, "ID");
    assert_ne!(id, 0);
    assert_eq!(
        format!("{id:x}"),
        fields[0].trim_start_matches('0'),
        "hex id in text"
    );
    assert_ne!(json_u64(&json["header"], "cluster_id"), 0);

    let status = endpoint_status(ep).expect("endpoint status");
    assert_eq!(status.member_id, id);
    assert_eq!(status.leader, id, "a single member leads");
    assert!(
        status.raft_term >= 1 && status.raft_index >= 1,
        "{status:?}"
    );
    let text = etcdctl_ok(ep, &["endpoint", "status"]);
    assert!(text.starts_with(ep), "{text:?}");
    assert!(text.contains(&format!("{id:x}")), "{text:?}");

    // etcdctl 3.4 prints the health verdict on stderr.
    let health = etcdctl(ep, &["endpoint", "health"]);
    assert!(health.status.success(), "{}", output_text(&health));
    assert!(
        output_text(&health).contains("is healthy"),
        "{}",
        output_text(&health)
    );

    let (code, body) = http_get(m.metrics_addr(), "/health").expect("GET /health");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("true"), "/health body: {body:?}");
    let (code, body) = http_get(m.metrics_addr(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    let has_leader = body
        .lines()
        .find_map(|l| l.strip_prefix("etcd_server_has_leader "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(
        has_leader,
        Some(1.0),
        "/metrics lacks `etcd_server_has_leader 1`:\n{body:.2000}"
    );
}

#[test]
fn errors_carry_etcd_messages() {
    if !need_etcdctl("errors_carry_etcd_messages") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    etcdctl_err(
        ep,
        &["put", "k", "v", "--lease=1234"],
        "requested lease not found",
    );
    etcdctl_err(
        ep,
        &["lease", "revoke", "1234"],
        "requested lease not found",
    );
    etcdctl_err(
        ep,
        &["get", "k", "--rev=1000000"],
        "required revision is a future revision",
    );
    etcdctl_err(ep, &["put", "", "v"], "key is not provided");
    // The member keeps serving after every one of them.
    assert_eq!(etcdctl_ok(ep, &["put", "k", "v"]), "OK\n");
}

#[test]
fn request_limits_are_enforced() {
    if !need_etcdctl("request_limits_are_enforced") {
        return;
    }
    let mut c = Cluster::start_with(1, &["--max-request-bytes", "1024", "--max-txn-ops", "4"]);
    let ep = c.endpoints();
    let ep = ep.as_str();

    let big = "x".repeat(2000);
    etcdctl_err(ep, &["put", "big", &big], "request is too large");
    assert_eq!(etcdctl_ok(ep, &["put", "small", &"y".repeat(500)]), "OK\n");
    assert!(get_kv(ep, "big").is_none());

    let ops = |n: usize| -> String {
        let mut s = String::from("\n");
        for i in 0..n {
            s.push_str(&format!("put t/{i} x\n"));
        }
        s.push_str("\n\n");
        s
    };
    let out = etcdctl_input_ok(ep, &["txn"], &ops(4));
    assert_eq!(nonempty_lines(&out)[0], "SUCCESS");
    let out = etcdctl_input(ep, &["txn"], &ops(5));
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("too many operations in txn request"),
        "{}",
        output_text(&out)
    );

    c.assert_alive(0);
    assert_eq!(
        etcdctl_ok(ep, &["get", "small", "--print-value-only"]),
        format!("{}\n", "y".repeat(500))
    );
}

#[test]
fn garbage_on_the_client_port_does_not_hurt() {
    if !need_etcdctl("garbage_on_the_client_port_does_not_hurt") {
        return;
    }
    let mut c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();
    let addr = c.members[0].client_addr().to_owned();
    assert_eq!(etcdctl_ok(ep, &["put", "g", "before"]), "OK\n");

    let payloads: [&[u8]; 5] = [
        b"\x00\x01\x02\x03garbage\xff\xfe\xfd\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        // A valid HTTP/2 preface, then a frame header that claims a huge frame.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x01\x00\x00\x00\x00\x01",
        // The preface, then a HEADERS frame with a broken HPACK block.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x05\x01\x05\x00\x00\x00\x01\xff\xff\xff\xff\xff",
        b"",
    ];
    for payload in payloads {
        let mut s =
            TcpStream::connect(addr.as_str()).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("set read timeout");
        let _ = s.write_all(payload);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink); // whatever the member answers, or the timeout
    }
    // A connection that stays open and silent must not block others.
    let idle = TcpStream::connect(addr.as_str()).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    // Many bytes of noise in one go.
    {
        let mut s =
            TcpStream::connect(addr.as_str()).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_write_timeout(Some(Duration::from_secs(2)))
            .expect("set write timeout");
        let noise: Vec<u8> = (0..256 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = s.write_all(&noise);
    }

    c.assert_alive(0);
    assert_eq!(
        etcdctl_ok(ep, &["get", "g", "--print-value-only"]),
        "before\n"
    );
    assert_eq!(etcdctl_ok(ep, &["put", "g", "after"]), "OK\n");
    assert_eq!(
        etcdctl_ok(ep, &["get", "g", "--print-value-only"]),
        "after\n"
    );
    drop(idle);
}

#[test]
fn data_survives_sigterm_and_sigkill_restarts() {
    if !need_etcdctl("data_survives_sigterm_and_sigkill_restarts") {
        return;
    }
    let mut c = Cluster::start(1);
    let ep = c.endpoints();
    let ep = ep.as_str();

    for i in 0..100 {
        assert_eq!(
            etcdctl_ok(ep, &["put", &format!("d/{i:03}"), &format!("v{i}")]),
            "OK\n"
        );
    }
    let before = etcdctl_json(ep, &["get", "d/", "--prefix"]);
    let before_kvs = json_kvs(&before);
    assert_eq!(before_kvs.len(), 100);
    let rev = json_i64(&before["header"], "revision");
    let ids = endpoint_status(ep).expect("status before restart");

    let status = c.stop(0);
    if !common::against_reference_etcd() {
        // etcd re-raises SIGTERM and dies of it; capstan exits cleanly.
        assert!(
            status.success(),
            "SIGTERM must end the member with exit 0, got {status}"
        );
    }
    c.restart(0);

    let after = etcdctl_json(ep, &["get", "d/", "--prefix"]);
    assert_eq!(
        json_kvs(&after),
        before_kvs,
        "every key, value and revision is back"
    );
    assert_eq!(json_i64(&after["header"], "revision"), rev);
    assert_eq!(
        json_u64(&after["header"], "cluster_id"),
        json_u64(&before["header"], "cluster_id"),
        "the cluster ID is stable"
    );
    let ids_after = endpoint_status(ep).expect("status after restart");
    assert_eq!(
        ids_after.member_id, ids.member_id,
        "the member ID is stable"
    );
    assert_eq!(put_rev(ep, "d/next", "x"), rev + 1, "revisions continue");

    // Acknowledged writes survive SIGKILL too.
    for i in 100..110 {
        assert_eq!(
            etcdctl_ok(ep, &["put", &format!("d/{i:03}"), &format!("v{i}")]),
            "OK\n"
        );
    }
    c.kill(0);
    c.restart(0);
    let keys_after = keys(ep, &["d/", "--prefix"]);
    assert_eq!(keys_after.len(), 111, "{keys_after:?}");
    assert_eq!(
        etcdctl_ok(ep, &["get", "d/109", "--print-value-only"]),
        "v109\n"
    );
    assert_eq!(
        put_rev(ep, "d/last", "x"),
        rev + 12,
        "revisions continue after SIGKILL"
    );
}
