//! Cluster membership through `etcdctl member add/promote/update/remove`: a learner joins
//! and catches up, is promoted; a member added as a voter joins and takes part in quorum;
//! the leader is removed and stops itself; and every bad request gets etcd's error while
//! the cluster keeps serving.
//!
//! Every test starts its own cluster on its own ports, so they run in parallel.

mod common;

use common::{
    etcdctl_err, etcdctl_json, etcdctl_ok, json_u64, need_etcdctl, nonempty_lines, wait_for,
    Cluster, WAIT,
};

/// `(id, name, is_learner)` of every member, as member `ep` lists them.
fn members(ep: &str) -> Vec<(u64, String, bool)> {
    let json = etcdctl_json(ep, &["member", "list"]);
    let mut out: Vec<(u64, String, bool)> = json["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {json}"))
        .iter()
        .map(|m| {
            (
                json_u64(m, "ID"),
                m["name"].as_str().unwrap_or("").to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn values(ep: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["get", prefix, "--prefix", "--print-value-only"];
    args.extend_from_slice(extra);
    nonempty_lines(&etcdctl_ok(ep, &args))
}

#[test]
fn learner_joins_is_promoted_and_the_removed_leader_stops() {
    if !need_etcdctl("learner_joins_is_promoted_and_the_removed_leader_stops") {
        return;
    }
    let mut c = Cluster::start(1);
    for i in 0..50 {
        etcdctl_ok(
            c.endpoint(0),
            &["put", &format!("/m/{i:02}"), &format!("v{i}")],
        );
    }
    let want: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();

    // A learner joins, receives everything, and is listed as a learner.
    let l = c.add_member(true);
    let learner_id = c.member_id(l);
    wait_for("the learner to catch up", WAIT, || {
        (values(c.endpoint(l), "/m/", &["--consistency=s"]) == want).then_some(())
    });
    let listed = members(c.endpoint(0));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.contains(&(learner_id, "m1".into(), true)),
        "{listed:?}"
    );
    // Linearizable reads and writes through the learner work (forwarded to the leader).
    etcdctl_ok(c.endpoint(l), &["put", "/m/through-learner", "x"]);
    assert_eq!(values(c.endpoint(l), "/m/through-learner", &[]), vec!["x"]);

    // Promote it; promoting a voter is refused with etcd's error.
    let hex = format!("{learner_id:x}");
    etcdctl_ok(c.endpoint(0), &["member", "promote", &hex]);
    assert!(members(c.endpoint(0))
        .iter()
        .all(|(_, _, learner)| !learner));
    etcdctl_err(
        c.endpoint(0),
        &["member", "promote", &hex],
        "can only promote a learner member",
    );

    // A member added as a voter joins as a learner and is promoted once it has
    // caught up.
    let v = c.add_member(false);
    wait_for("the new member to be promoted", WAIT, || {
        let listed = members(c.endpoint(v));
        (listed.len() == 3 && listed.iter().all(|(_, _, learner)| !learner)).then_some(())
    });

    // It votes: with the first member killed, the two others elect a leader and commit.
    let first_id = c.member_id(0);
    c.kill(0);
    wait_for("a write without the first member", WAIT, || {
        common::etcdctl(&c.live_endpoints(), &["put", "/m/quorum", "two-of-three"])
            .status
            .success()
            .then_some(())
    });
    c.restart(0);

    // Remove the leader: it stops itself, the others elect a new leader and keep serving.
    let leader = c.wait_leader(WAIT);
    let leader_id = c.member_id(leader);
    let other = (0..3).find(|&i| i != leader).unwrap_or(0);
    etcdctl_ok(
        c.endpoint(other),
        &["member", "remove", &format!("{leader_id:x}")],
    );
    let status = c.wait_exit(leader, WAIT);
    assert!(status.success(), "the removed leader exited with {status}");
    let listed = members(c.endpoint(other));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(!listed.iter().any(|(id, _, _)| *id == leader_id));
    etcdctl_ok(c.endpoint(other), &["put", "/m/after-removal", "ok"]);
    for i in (0..3).filter(|&i| i != leader) {
        wait_for("the survivors to agree", WAIT, || {
            (values(c.endpoint(i), "/m/after-removal", &["--consistency=s"]) == vec!["ok"])
                .then_some(())
        });
    }
    // All 50 original keys survived the whole sequence.
    let survivor = c.endpoint(other).to_string();
    let all = values(&survivor, "/m/", &[]);
    for v in &want {
        assert!(all.contains(v), "{v} lost: {all:?}");
    }
    let _ = first_id;

    // The removed member refuses to start on its old data.
    c.spawn_member(leader);
    let status = c.wait_exit(leader, WAIT);
    assert!(!status.success(), "a removed member started again");
    assert!(
        c.members[leader].log_tail(400).contains("removed"),
        "{}",
        c.members[leader].log_tail(400)
    );
}

#[test]
fn bad_membership_requests_get_clear_errors_and_change_nothing() {
    if !need_etcdctl("bad_membership_requests_get_clear_errors_and_change_nothing") {
        return;
    }
    let mut c = Cluster::start(1);
    let ep = c.endpoint(0).to_string();
    let before = members(&ep);
    let me = format!("{:x}", c.member_id(0));

    // The last voting member cannot be removed.
    etcdctl_err(
        &ep,
        &["member", "remove", &me],
        "not enough started members",
    );
    // Unknown ids.
    etcdctl_err(&ep, &["member", "remove", "1234"], "member not found");
    etcdctl_err(&ep, &["member", "promote", "1234"], "member not found");
    etcdctl_err(
        &ep,
        &["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"],
        "member not found",
    );
    // A peer URL that is taken.
    let taken = format!("--peer-urls={}", c.members[0].peer_url);
    etcdctl_err(
        &ep,
        &["member", "add", "dup", &taken],
        "Peer URLs already exists",
    );
    // Updating a member to its own URL is fine.
    etcdctl_ok(&ep, &["member", "update", &me, &taken]);
    assert_eq!(members(&ep), before);

    // A learner that is removed stops itself.
    let l = c.add_member(true);
    etcdctl_ok(&ep, &["member", "remove", &format!("{:x}", c.member_id(l))]);
    let status = c.wait_exit(l, WAIT);
    assert!(status.success(), "the removed learner exited with {status}");
    assert_eq!(members(&ep), before);

    // A member that was never added cannot join.
    let ghost = c.spawn_unadded("ghost");
    let status = c.wait_exit(ghost, WAIT);
    assert!(!status.success(), "an unadded member started");
    let log = c.members[ghost].log_tail(400);
    assert!(log.contains("has no member with peer URL"), "{log}");

    // A joining member whose name is in use is refused.
    let dup = c.join("m0", true);
    let status = c.wait_exit(dup, WAIT);
    assert!(!status.success(), "a member with a duplicate name started");
    let log = c.members[dup].log_tail(400);
    assert!(log.contains("already used"), "{log}");

    // The cluster still serves; only the unstarted learner was added.
    etcdctl_ok(&ep, &["put", "/still", "serving"]);
    assert_eq!(values(&ep, "/still", &[]), vec!["serving"]);
    assert_eq!(members(&ep).len(), 2);
}

#[test]
fn a_member_of_another_cluster_is_refused_and_nothing_is_damaged() {
    if !need_etcdctl("a_member_of_another_cluster_is_refused_and_nothing_is_damaged") {
        return;
    }
    let a = Cluster::start(1);
    let b = Cluster::start(1);
    etcdctl_ok(a.endpoint(0), &["put", "/who", "a"]);
    etcdctl_ok(b.endpoint(0), &["put", "/who", "b"]);
    // Cluster A adds "a learner" that is really cluster B's member: A's leader sends
    // it Raft traffic, which B refuses because it carries another cluster id.
    let url = format!("--peer-urls={}", b.members[0].peer_url);
    etcdctl_ok(
        a.endpoint(0),
        &["member", "add", "intruder", &url, "--learner"],
    );
    wait_for("B to refuse A's traffic", WAIT, || {
        b.members[0]
            .log_tail(400)
            .contains("refused a peer request from another cluster")
            .then_some(())
    });
    assert_eq!(members(b.endpoint(0)).len(), 1);
    assert_eq!(values(b.endpoint(0), "/who", &[]), vec!["b"]);
    assert_eq!(values(a.endpoint(0), "/who", &[]), vec!["a"]);
    etcdctl_ok(a.endpoint(0), &["put", "/who", "still a"]);
}

#[test]
fn a_data_dir_of_another_member_is_refused() {
    if !need_etcdctl("a_data_dir_of_another_member_is_refused") {
        return;
    }
    let mut a = Cluster::start(1);
    etcdctl_ok(a.endpoint(0), &["put", "/who", "a"]);
    assert!(a.stop(0).success());
    let mut b = Cluster::start(1);
    assert!(b.stop(0).success());
    // B's member is started on a copy of A's data dir.
    std::fs::remove_dir_all(&b.members[0].data_dir).unwrap_or_else(|e| panic!("{e}"));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a.members[0].data_dir)
        .arg(&b.members[0].data_dir)
        .status();
    assert!(copied.is_ok_and(|s| s.success()));
    b.spawn_member(0);
    let status = b.wait_exit(0, WAIT);
    assert!(
        !status.success(),
        "a member started on another member's data dir"
    );
    let log = b.members[0].log_tail(400);
    assert!(log.contains("belongs to member"), "{log}");
    // A's own data is untouched.
    a.restart(0);
    assert_eq!(values(a.endpoint(0), "/who", &[]), vec!["a"]);
}
