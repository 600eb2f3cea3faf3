//! Maintenance flows through `etcdctl`: snapshot save and `capstan snapshot restore`
//! into a new cluster, the NOSPACE alarm and its disarming, automatic compaction, and a
//! member that fell behind the purged log catching up by InstallSnapshot.
//!
//! Every test starts its own cluster on its own ports, so they run in parallel.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{
    etcdctl, etcdctl_err, etcdctl_json, etcdctl_ok, http_get, json_i64, json_u64, need_etcdctl,
    nonempty_lines, output_text, run_bounded, server_command_for, wait_for, Cluster, WAIT,
};

fn hash_kv(ep: &str, rev: i64) -> u64 {
    let json = etcdctl_json(ep, &["endpoint", "hashkv", &format!("--rev={rev}")]);
    json_u64(&json[0]["HashKV"], "hash")
}

fn revision(ep: &str) -> i64 {
    json_i64(&etcdctl_json(ep, &["get", "/"])["header"], "revision")
}

/// A value of a counter or gauge in a member's `/metrics`.
fn metric(addr: &str, name: &str) -> f64 {
    let (status, body) = http_get(addr, "/metrics").unwrap_or_else(|e| panic!("/metrics: {e}"));
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn snapshot_save_then_restore_into_a_new_three_member_cluster() {
    if !need_etcdctl("snapshot_save_then_restore_into_a_new_three_member_cluster") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoint(0).to_string();
    for i in 0..200 {
        etcdctl_ok(
            &ep,
            &["put", &format!("/s/{:03}", i % 50), &format!("v{i}")],
        );
    }
    etcdctl_ok(&ep, &["del", "/s/049"]);
    let rev = revision(&ep);
    let want = etcdctl_ok(&ep, &["get", "/s/", "--prefix"]);

    let file = c.dir().join("backup.db");
    let file_arg = file.to_string_lossy().into_owned();
    let out = etcdctl_ok(&ep, &["snapshot", "save", &file_arg]);
    assert!(out.contains("Snapshot saved at"), "{out}");

    // `capstan snapshot status` checks the file and reports its revision.
    let mut cmd = server_command_for("snapshot");
    cmd.args(["status", &file_arg, "-w", "json"]);
    let out = run_bounded(cmd, None, WAIT);
    assert!(out.status.success(), "{}", output_text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    assert_eq!(json_i64(&status, "revision"), rev);

    // Three new members restored from the file serve the same data at the same
    // revision, agree on the hash, and form a cluster of their own.
    let r = Cluster::restore_from(&file, 3);
    let old_cluster = json_u64(
        &etcdctl_json(&ep, &["member", "list"])["header"],
        "cluster_id",
    );
    let new_cluster = json_u64(
        &etcdctl_json(r.endpoint(0), &["member", "list"])["header"],
        "cluster_id",
    );
    assert_ne!(old_cluster, new_cluster);
    for i in 0..3 {
        assert_eq!(
            etcdctl_ok(r.endpoint(i), &["get", "/s/", "--prefix"]),
            want,
            "member {i}"
        );
        assert_eq!(revision(r.endpoint(i)), rev, "member {i}");
    }
    let hashes: BTreeSet<u64> = (0..3).map(|i| hash_kv(r.endpoint(i), rev)).collect();
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    assert_eq!(hashes.into_iter().next(), Some(hash_kv(&ep, rev)));
    // History before the snapshot is there too, and new writes continue the revisions.
    assert_eq!(
        nonempty_lines(&etcdctl_ok(
            r.endpoint(1),
            &[
                "get",
                "/s/000",
                "--print-value-only",
                &format!("--rev={}", rev - 50)
            ]
        ))
        .len(),
        1
    );
    let put = etcdctl_json(r.endpoint(2), &["put", "/s/new", "x"]);
    assert_eq!(json_i64(&put["header"], "revision"), rev + 1);
}

#[test]
fn corrupt_snapshots_and_used_data_dirs_are_refused() {
    if !need_etcdctl("corrupt_snapshots_and_used_data_dirs_are_refused") {
        return;
    }
    let c = Cluster::start(1);
    let ep = c.endpoint(0).to_string();
    for i in 0..20 {
        etcdctl_ok(&ep, &["put", &format!("/c/{i}"), "some value"]);
    }
    let file = c.dir().join("good.db");
    etcdctl_ok(&ep, &["snapshot", "save", &file.to_string_lossy()]);
    let mut bytes = fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    let bad = c.dir().join("bad.db");
    fs::write(&bad, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let truncated = c.dir().join("short.db");
    fs::write(&truncated, &bytes[..mid]).unwrap_or_else(|e| panic!("{e}"));

    let restore = |file: &std::path::Path, dir: &std::path::Path| {
        let mut cmd = server_command_for("snapshot");
        cmd.arg("restore")
            .arg(file)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--name",
                "x",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:1",
            ])
            .args(["--initial-cluster", "x=http://127.0.0.1:1"]);
        run_bounded(cmd, None, WAIT)
    };
    for (file, what) in [(&bad, "corrupt"), (&truncated, "corrupt")] {
        let dir = c.dir().join(format!("restore-{what}"));
        let out = restore(file, &dir);
        assert!(!out.status.success(), "restored {}", file.display());
        assert!(output_text(&out).contains(what), "{}", output_text(&out));
        assert!(!dir.exists(), "a failed restore left {}", dir.display());
    }
    // Not a snapshot at all.
    let out = restore(&c.members[0].log_path, &c.dir().join("restore-log"));
    assert!(
        output_text(&out).contains("not a capstan snapshot"),
        "{}",
        output_text(&out)
    );
    // A data dir in use is never overwritten.
    let out = restore(&file, &c.members[0].data_dir);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("not empty"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        nonempty_lines(&etcdctl_ok(&ep, &["get", "/c/", "--prefix", "--keys-only"])).len(),
        20
    );
}

#[test]
fn nospace_alarm_refuses_writes_until_compaction_defrag_and_disarm() {
    if !need_etcdctl("nospace_alarm_refuses_writes_until_compaction_defrag_and_disarm") {
        return;
    }
    let c = Cluster::start_with(
        1,
        &["--quota-backend-bytes", "3000000", "--snapshot-count", "20"],
    );
    let ep = c.endpoint(0).to_string();
    let big = "x".repeat(60 * 1024);
    let mut refused = None;
    let mut written = BTreeSet::new();
    for i in 0..400 {
        let key = format!("/big/{}", i % 10);
        let out = etcdctl(&ep, &["put", &key, &big]);
        if !out.status.success() {
            refused = Some(output_text(&out));
            break;
        }
        written.insert(key);
    }
    let refused = refused.expect("writes were never refused above the quota");
    assert!(refused.contains("database space exceeded"), "{refused}");

    // The alarm is raised and listed; reads and deletes still work, puts do not.
    wait_for("the NOSPACE alarm", WAIT, || {
        etcdctl_ok(&ep, &["alarm", "list"])
            .contains("alarm:NOSPACE")
            .then_some(())
    });
    assert_eq!(
        nonempty_lines(&etcdctl_ok(
            &ep,
            &["get", "/big/", "--prefix", "--keys-only"]
        ))
        .len(),
        written.len()
    );
    etcdctl_err(&ep, &["put", "/small", "1"], "database space exceeded");
    etcdctl_err(&ep, &["lease", "grant", "60"], "database space exceeded");
    etcdctl_ok(&ep, &["del", "/big/", "--prefix"]);
    etcdctl_err(&ep, &["put", "/small", "1"], "database space exceeded");

    // Compact, defragment, disarm: writes are accepted again.
    let rev = revision(&ep);
    etcdctl_ok(&ep, &["compaction", &rev.to_string(), "--physical"]);
    etcdctl_ok(&ep, &["defrag"]);
    wait_for("the database to shrink below the quota", WAIT, || {
        (metric(
            c.members[0].metrics_addr(),
            "etcd_mvcc_db_total_size_in_bytes",
        ) < 3e6)
            .then_some(())
    });
    etcdctl_ok(&ep, &["alarm", "disarm"]);
    assert!(!etcdctl_ok(&ep, &["alarm", "list"]).contains("NOSPACE"));
    etcdctl_ok(&ep, &["put", "/small", "1"]);
}

#[test]
fn periodic_auto_compaction_compacts_old_history() {
    if !need_etcdctl("periodic_auto_compaction_compacts_old_history") {
        return;
    }
    let c = Cluster::start_with(
        1,
        &[
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "2s",
        ],
    );
    let ep = c.endpoint(0).to_string();
    etcdctl_ok(&ep, &["put", "/a", "1"]);
    let first = revision(&ep);
    etcdctl_ok(&ep, &["put", "/a", "2"]);
    // Keep writing so there is new history; the first revision gets compacted away.
    let compacted = wait_for("an automatic compaction", WAIT, || {
        etcdctl_ok(&ep, &["put", "/a", "more"]);
        let out = etcdctl(&ep, &["get", "/a", &format!("--rev={first}")]);
        (!out.status.success()).then(|| output_text(&out))
    });
    assert!(
        compacted.contains("required revision has been compacted"),
        "{compacted}"
    );
    assert!(
        metric(
            c.members[0].metrics_addr(),
            "etcd_debugging_mvcc_compact_revision"
        ) >= first as f64
    );
    // The latest value is of course still there.
    assert_eq!(
        nonempty_lines(&etcdctl_ok(&ep, &["get", "/a", "--print-value-only"])),
        vec!["more"]
    );
}

#[test]
fn member_behind_the_purged_log_catches_up_by_snapshot() {
    if !need_etcdctl("member_behind_the_purged_log_catches_up_by_snapshot") {
        return;
    }
    let mut c = Cluster::start_with(3, &["--snapshot-count", "50"]);
    let leader = c.wait_leader(WAIT);
    let behind = (leader + 1) % 3;
    c.kill(behind);
    let live = c.live_endpoints();
    // Each etcdctl put is its own log entry: 300 entries, six snapshots' worth.
    for i in 0..300 {
        etcdctl_ok(
            &live,
            &["put", &format!("/p/{:03}", i % 100), &format!("v{i}")],
        );
    }
    let rev = revision(&live);
    let installs_before = 0.0;
    c.restart(behind);
    let ep = c.endpoint(behind).to_string();
    wait_for("the restarted member to catch up", WAIT, || {
        (revision_serializable(&ep) >= rev).then_some(())
    });
    assert!(
        metric(
            c.members[behind].metrics_addr(),
            "capstan_snapshot_installs_total"
        ) > installs_before,
        "the member caught up without a snapshot"
    );
    let hashes: BTreeSet<u64> = (0..3).map(|i| hash_kv(c.endpoint(i), rev)).collect();
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    // The log of every member stays bounded: snapshots are pruned to one file.
    for m in &c.members {
        let snaps = fs::read_dir(m.data_dir.join("snap"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
                    .count()
            })
            .unwrap_or(0);
        assert!(snaps <= 1, "{} keeps {snaps} snapshot files", m.name);
    }
}

fn revision_serializable(ep: &str) -> i64 {
    json_i64(
        &etcdctl_json(ep, &["get", "/", "--consistency=s"])["header"],
        "revision",
    )
}

#[test]
fn watch_on_a_member_that_installs_a_snapshot_misses_nothing() {
    if !need_etcdctl("watch_on_a_member_that_installs_a_snapshot_misses_nothing") {
        return;
    }
    // Found by the fault runs: revisions a member applies by installing a snapshot
    // from the leader never reached the watchers already synced on that member.
    let c = Cluster::start_with(3, &["--snapshot-count", "50"]);
    let leader = c.wait_leader(WAIT);
    let behind = (leader + 1) % 3;
    let start = revision(&c.endpoints()) + 1;
    let mut watch = common::EtcdctlWatch::spawn(
        c.endpoint(behind),
        &["/w/", "--prefix", &format!("--rev={start}"), "-w", "json"],
    );
    etcdctl_ok(c.endpoint(leader), &["put", "/w/first", "0"]);
    assert_eq!(watch.json_events(1, WAIT).len(), 1);

    // Freeze the member (its watch connection stays open) while the others write
    // and purge their logs, then let it go: it catches up by snapshot.
    let pid = c.members[behind].pid().expect("running").to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(stop.is_ok_and(|s| s.success()));
    let others = format!("{},{}", c.endpoint(leader), c.endpoint((leader + 2) % 3));
    for i in 0..300 {
        etcdctl_ok(&others, &["put", &format!("/w/{i:03}"), &format!("v{i}")]);
    }
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert!(cont.is_ok_and(|s| s.success()));
    let events = watch.json_events(300, WAIT);
    let revs: Vec<i64> = events
        .iter()
        .map(|e| common::event_kv(e).mod_revision)
        .collect();
    let want: Vec<i64> = (start + 1..start + 301).collect();
    assert_eq!(revs, want, "the watch skipped or repeated revisions");
    assert!(
        metric(
            c.members[behind].metrics_addr(),
            "capstan_snapshot_installs_total"
        ) >= 1.0,
        "the member caught up without a snapshot; the test did not test anything"
    );
}
