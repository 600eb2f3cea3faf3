//! `etcdctl` against a 3-member capstan cluster: membership, writes through followers,
//! linearizable and serializable reads on every member, watches on followers, and a
//! leader failure: a new leader is elected, no acknowledged write is lost, the watch
//! on a survivor misses nothing and repeats nothing, and the killed member catches up.
//!
//! Every test starts its own cluster on its own ports, so they run in parallel.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    current_revision, endpoint_status, etcdctl, etcdctl_json, etcdctl_ok, event_kv, json_kvs,
    json_u64, need_etcdctl, nonempty_lines, output_text, wait_for, Cluster, EtcdctlWatch, WAIT,
};

/// The keys that `get <prefix> --prefix --keys-only <extra>` prints.
fn keys(ep: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["get", prefix, "--prefix", "--keys-only"];
    args.extend_from_slice(extra);
    nonempty_lines(&etcdctl_ok(ep, &args))
}

#[test]
fn three_members_replicate_and_serve_everywhere() {
    if !need_etcdctl("three_members_replicate_and_serve_everywhere") {
        return;
    }
    let c = Cluster::start(3);
    let all = c.endpoints();

    // Every member reports the same three members, with their names and URLs.
    let mut cluster_ids = BTreeSet::new();
    let mut member_ids = BTreeSet::new();
    for (i, m) in c.members.iter().enumerate() {
        let json = etcdctl_json(&m.client_url, &["member", "list"]);
        cluster_ids.insert(json_u64(&json["header"], "cluster_id"));
        let members = json["members"].as_array().expect("members");
        assert_eq!(members.len(), 3, "member list on m{i}: {json}");
        let mut seen: Vec<(String, String, String)> = members
            .iter()
            .map(|member| {
                member_ids.insert(json_u64(member, "ID"));
                (
                    member["name"].as_str().unwrap_or("").to_owned(),
                    member["peerURLs"][0].as_str().unwrap_or("").to_owned(),
                    member["clientURLs"][0].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        seen.sort();
        let want: Vec<(String, String, String)> = c
            .members
            .iter()
            .map(|m| (m.name.clone(), m.peer_url.clone(), m.client_url.clone()))
            .collect();
        assert_eq!(seen, want, "member list on m{i}");
    }
    assert_eq!(cluster_ids.len(), 1, "one cluster id: {cluster_ids:?}");
    assert!(!cluster_ids.contains(&0));
    assert_eq!(
        member_ids.len(),
        3,
        "three distinct member ids: {member_ids:?}"
    );
    let text = etcdctl_ok(&all, &["member", "list"]);
    assert_eq!(text.lines().count(), 3, "{text:?}");

    let leader = c.wait_leader(WAIT);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A watch on a follower, from the next revision.
    let next = current_revision(&all) + 1;
    let mut watch = EtcdctlWatch::spawn(
        c.endpoint(other),
        &["rep/", "--prefix", &format!("--rev={next}"), "-w", "json"],
    );

    // Writes through a follower are forwarded to the leader.
    for i in 0..10 {
        assert_eq!(
            etcdctl_ok(c.endpoint(follower), &["put", &format!("rep/{i:02}"), "f"]),
            "OK\n"
        );
    }
    // Writes through the leader.
    for i in 10..15 {
        assert_eq!(
            etcdctl_ok(c.endpoint(leader), &["put", &format!("rep/{i:02}"), "l"]),
            "OK\n"
        );
    }
    let want: Vec<String> = (0..15).map(|i| format!("rep/{i:02}")).collect();

    // Linearizable reads (the default) see every acknowledged write on every member.
    for i in [leader, follower, other] {
        assert_eq!(
            keys(c.endpoint(i), "rep/", &[]),
            want,
            "linearizable read on m{i}"
        );
    }
    // Serializable reads see them too, eventually.
    for i in 0..3 {
        wait_for(&format!("serializable read on m{i}"), WAIT, || {
            (keys(c.endpoint(i), "rep/", &["--consistency=s"]) == want).then_some(())
        });
    }

    // The watch on the follower saw every write, in revision order, once.
    let events = watch.json_events(15, WAIT);
    let got: Vec<String> = events.iter().map(|e| event_kv(e).key).collect();
    assert_eq!(got, want);
    let revs: Vec<i64> = events.iter().map(|e| event_kv(e).mod_revision).collect();
    assert!(
        revs.windows(2).all(|w| w[1] == w[0] + 1),
        "revisions {revs:?}"
    );
    assert_eq!(revs[0], next);

    // Every member agrees on the leader, the term and, eventually, the revision.
    let leader_id = endpoint_status(c.endpoint(leader))
        .expect("leader status")
        .member_id;
    wait_for("every member to report the same revision", WAIT, || {
        let statuses: Vec<_> = (0..3)
            .filter_map(|i| endpoint_status(c.endpoint(i)))
            .collect();
        let agreed = statuses.len() == 3
            && statuses.iter().all(|s| s.leader == leader_id)
            && statuses
                .iter()
                .all(|s| s.raft_term == statuses[0].raft_term)
            && statuses.iter().all(|s| s.revision == next + 14);
        agreed.then_some(())
    });
}

#[test]
fn leader_failure_loses_no_acknowledged_write() {
    if !need_etcdctl("leader_failure_loses_no_acknowledged_write") {
        return;
    }
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(WAIT);
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    let survivors = format!("{},{}", c.endpoint(f1), c.endpoint(f2));

    let start = current_revision(&c.endpoints()) + 1;
    let f1_endpoint = c.endpoint(f1).to_owned();
    let spawn_watch = |rev: i64| {
        let from = format!("--rev={rev}");
        EtcdctlWatch::spawn(&f1_endpoint, &["fo/", "--prefix", &from, "-w", "json"])
    };
    let mut watch = spawn_watch(start);

    let mut acked = Vec::new();
    for i in 0..10 {
        let key = format!("fo/{i:04}");
        assert_eq!(etcdctl_ok(c.endpoint(leader), &["put", &key, "v"]), "OK\n");
        acked.push(key);
    }

    c.kill(leader);
    let killed_at = Instant::now();

    // Keep writing through the survivors until ten writes succeed after the kill. Every
    // attempt writes a new key, so each key has exactly one event.
    let mut next_key = 10;
    let mut after_kill = 0;
    let mut failures = Vec::new();
    while after_kill < 10 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(40),
            "fewer than 10 writes succeeded within 40 s of killing the leader; failures: {failures:?}"
        );
        let key = format!("fo/{next_key:04}");
        next_key += 1;
        let out = etcdctl(&survivors, &["put", &key, "v", "--command-timeout=3s"]);
        if out.status.success() {
            acked.push(key);
            after_kill += 1;
        } else {
            failures.push(output_text(&out));
            thread::sleep(Duration::from_millis(200));
        }
    }
    let new_leader = c.wait_leader(WAIT);
    assert_ne!(new_leader, leader, "the killed member cannot lead");
    eprintln!(
        "new leader m{new_leader} serving writes {:?} after the kill ({} writes failed meanwhile)",
        killed_at.elapsed(),
        failures.len()
    );

    // Every acknowledged write is there (writes that failed may or may not be).
    let store_json = etcdctl_json(&survivors, &["get", "fo/", "--prefix"]);
    let store: BTreeMap<String, i64> = json_kvs(&store_json)
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    for key in &acked {
        assert!(store.contains_key(key), "acknowledged write {key} is lost");
    }

    // The watch on the surviving follower delivers every write exactly once: either
    // it keeps going across the election, or we re-establish it from the last revision
    // it showed. Either way its events must equal the store's history of fo/.
    let mut seen: Vec<(String, i64)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut restarts = 0;
    while seen.len() < store.len() {
        assert!(
            Instant::now() < deadline,
            "the watch delivered {} of {} events within {WAIT:?}: {seen:?}; stderr: {}",
            seen.len(),
            store.len(),
            watch.stderr()
        );
        match watch.next_line(Duration::from_millis(500)) {
            Some(line) => {
                let Ok(resp) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("watch printed a non-JSON line: {line:?}");
                    continue;
                };
                for event in resp["Events"].as_array().cloned().unwrap_or_default() {
                    let kv = event_kv(&event);
                    seen.push((kv.key, kv.mod_revision));
                }
            }
            None if watch.has_exited() => {
                restarts += 1;
                assert!(restarts <= 5, "the watch keeps exiting: {}", watch.stderr());
                let from = seen.last().map_or(start, |(_, rev)| rev + 1);
                eprintln!(
                    "watch exited ({}); re-establishing from {from}",
                    watch.stderr()
                );
                watch = spawn_watch(from);
            }
            None => {}
        }
    }
    let revs: Vec<i64> = seen.iter().map(|(_, rev)| *rev).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "watch revisions repeat or go back: {revs:?}"
    );
    let from_watch: BTreeMap<String, i64> = seen.into_iter().collect();
    assert_eq!(
        from_watch, store,
        "the watch's events and the store disagree"
    );
    assert!(
        watch
            .drain_json_events(Duration::from_millis(300), Duration::from_secs(2))
            .is_empty(),
        "the watch delivered events beyond the store's history"
    );

    // The killed member comes back and catches up.
    c.restart(leader);
    assert_eq!(etcdctl_ok(&survivors, &["put", "fo/final", "done"]), "OK\n");
    let final_rev = current_revision(&survivors);
    let back = c.endpoint(leader).to_owned();
    wait_for("the restarted member to catch up", WAIT, || {
        let resp = etcdctl_json(&back, &["get", "fo/final", "--consistency=s"]);
        let kvs = json_kvs(&resp);
        (kvs.len() == 1 && kvs[0].value == "done" && kvs[0].mod_revision == final_rev).then_some(())
    });
    let caught_up = keys(&back, "fo/", &["--consistency=s"]);
    assert_eq!(caught_up.len(), store.len() + 1, "{caught_up:?}");
    // It serves writes and linearizable reads again.
    assert_eq!(
        etcdctl_ok(&back, &["put", "fo/from-restarted", "x"]),
        "OK\n"
    );
    assert_eq!(
        etcdctl_ok(
            &survivors,
            &["get", "fo/from-restarted", "--print-value-only"]
        ),
        "x\n"
    );
    c.wait_leader(WAIT);
}

#[test]
fn leases_do_not_expire_early_because_of_an_election() {
    if !need_etcdctl("leases_do_not_expire_early_because_of_an_election") {
        return;
    }
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(WAIT);
    let survivor = (leader + 1) % 3;
    let ep = c.endpoint(survivor).to_string();
    let lease = common::lease_id_from_grant(&etcdctl_ok(&ep, &["lease", "grant", "6"]));
    etcdctl_ok(&ep, &["put", "/lease/k", "v", &format!("--lease={lease}")]);
    let granted = Instant::now();
    thread::sleep(Duration::from_secs(3));
    c.kill(leader);
    let killed = Instant::now();
    c.wait_leader(WAIT);
    // The new leader gives the lease its whole TTL again (plus an election timeout),
    // counted from its election: 6 s after the kill at the earliest. Looking before
    // then, the key must be there, even though the original TTL may have run out.
    let look = killed + Duration::from_millis(4500);
    if let Some(wait) = look.checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }
    if Instant::now() < killed + Duration::from_secs(6) {
        assert!(granted.elapsed() > Duration::from_secs(6));
        assert_eq!(keys(&ep, "/lease/", &[]), vec!["/lease/k"], "expired early");
    }
    // Without keep-alives it does expire, on every member alike.
    wait_for("the lease to expire", WAIT, || {
        keys(&ep, "/lease/", &[]).is_empty().then_some(())
    });
    let ttl = etcdctl_ok(&ep, &["lease", "timetolive", &lease]);
    assert!(ttl.contains("already expired"), "{ttl}");
}
