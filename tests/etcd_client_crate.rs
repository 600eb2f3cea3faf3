//! The Rust `etcd-client` crate (0.21) against capstan, as a second client independent
//! of etcdctl: KV with every range option, transactions on value / version / revisions
//! with both branches, watch streams (start revision, prev_kv, several watches on one
//! stream, cancel, compaction), leases (grant with and without an ID, keep-alive stream,
//! time-to-live, list, revoke, expiry), member list and status on one member and on a
//! 3-member cluster, and the gRPC codes and messages of etcd's errors.
//!
//! These tests need no etcdctl. Every test starts its own members on its own ports.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{Cluster, WAIT};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, EventType, GetOptions,
    GetResponse, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};

/// Awaits `fut`, panicking when it takes longer than `WAIT`.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not complete within {WAIT:?}"),
    }
}

/// Awaits an etcd call, panicking on an error or after `WAIT`.
async fn call<T>(what: &str, fut: impl Future<Output = Result<T, Error>>) -> T {
    match within(what, fut).await {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Awaits an etcd call that must fail with a gRPC status; returns (code, message),
/// the code as its name (e.g. `NotFound`).
async fn call_err<T>(what: &str, fut: impl Future<Output = Result<T, Error>>) -> (String, String) {
    match within(what, fut).await {
        Ok(_) => panic!("{what} should have failed"),
        Err(Error::GRpcStatus(status)) => {
            (format!("{:?}", status.code()), status.message().to_owned())
        }
        Err(e) => panic!("{what} failed without a gRPC status: {e}"),
    }
}

async fn connect(url: &str) -> Client {
    call(&format!("connect to {url}"), Client::connect([url], None)).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// (key, value) of every kv of a range response.
fn pairs(resp: &GetResponse) -> Vec<(String, String)> {
    resp.kvs()
        .iter()
        .map(|kv| (text(kv.key()), text(kv.value())))
        .collect()
}

fn keys_of(resp: &GetResponse) -> Vec<String> {
    resp.kvs().iter().map(|kv| text(kv.key())).collect()
}

/// The revision a put was applied at.
async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let resp = call(&format!("put {key}"), client.put(key, value, None)).await;
    resp.header().expect("put response header").revision()
}

/// One event, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    kind: EventType,
    key: String,
    value: String,
    mod_revision: i64,
    prev_value: Option<String>,
}

fn events_of(resp: &WatchResponse) -> Vec<Ev> {
    resp.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event kv");
            Ev {
                kind: e.event_type(),
                key: text(kv.key()),
                value: text(kv.value()),
                mod_revision: kv.mod_revision(),
                prev_value: e.prev_kv().map(|p| text(p.value())),
            }
        })
        .collect()
}

async fn next_response(stream: &mut WatchStream) -> WatchResponse {
    call("watch stream message", stream.message())
        .await
        .expect("the watch stream ended")
}

/// Reads responses until `n` events arrived (for any watch on the stream).
async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<(i64, Ev)> {
    let mut got = Vec::new();
    while got.len() < n {
        let resp = next_response(stream).await;
        assert!(
            !resp.canceled(),
            "watch {} canceled: {resp:?}",
            resp.watch_id()
        );
        let id = resp.watch_id();
        got.extend(events_of(&resp).into_iter().map(|e| (id, e)));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_delete() {
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;

    let rev1 = put(&mut client, "k", "v1").await;
    let resp = call("get k", client.get("k", None)).await;
    assert_eq!(resp.count(), 1);
    assert!(!resp.more());
    let kv = &resp.kvs()[0];
    assert_eq!(
        (text(kv.key()), text(kv.value())),
        ("k".into(), "v1".into())
    );
    assert_eq!(kv.key_str().expect("utf-8 key"), "k");
    assert_eq!(
        (
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
            kv.lease()
        ),
        (rev1, rev1, 1, 0)
    );
    let header = resp.header().expect("header");
    assert_eq!(header.revision(), rev1);
    assert_ne!(header.cluster_id(), 0);
    assert_ne!(header.member_id(), 0);
    assert!(header.raft_term() >= 1);

    let resp = call(
        "put k with prev_kv",
        client.put("k", "v2", Some(PutOptions::new().with_prev_key())),
    )
    .await;
    assert_eq!(resp.header().expect("header").revision(), rev1 + 1);
    let prev = resp.prev_key().expect("prev_kv");
    assert_eq!((text(prev.value()), prev.version()), ("v1".into(), 1));

    // ignore_value keeps the value, ignore_lease the lease.
    call(
        "put k ignore_value",
        client.put("k", "", Some(PutOptions::new().with_ignore_value())),
    )
    .await;
    let resp = call("get k", client.get("k", None)).await;
    assert_eq!(text(resp.kvs()[0].value()), "v2");
    assert_eq!(resp.kvs()[0].version(), 3);

    assert!(call("get missing", client.get("missing", None))
        .await
        .kvs()
        .is_empty());

    let resp = call(
        "delete k with prev_kv",
        client.delete("k", Some(DeleteOptions::new().with_prev_key())),
    )
    .await;
    assert_eq!(resp.deleted(), 1);
    assert_eq!(text(resp.prev_kvs()[0].value()), "v2");
    assert_eq!(
        call("delete k again", client.delete("k", None))
            .await
            .deleted(),
        0
    );
    assert_eq!(call("get k", client.get("k", None)).await.count(), 0);
    // History is still readable at the old revision.
    let old = call(
        "get k at rev1",
        client.get("k", Some(GetOptions::new().with_revision(rev1))),
    )
    .await;
    assert_eq!(pairs(&old), [("k".to_owned(), "v1".to_owned())]);

    for k in ["d/1", "d/2", "d/3", "e"] {
        put(&mut client, k, "x").await;
    }
    let resp = call(
        "delete prefix d/",
        client.delete("d/", Some(DeleteOptions::new().with_prefix())),
    )
    .await;
    assert_eq!(resp.deleted(), 3);
    let resp = call(
        "delete [e, f)",
        client.delete("e", Some(DeleteOptions::new().with_range("f"))),
    )
    .await;
    assert_eq!(resp.deleted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compares_and_branches() {
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;

    let created_at = put(&mut client, "t", "v1").await;
    let modified_at = put(&mut client, "t", "v2").await;

    // All four compare targets true: the success branch, with a read of its own write.
    let txn = Txn::new()
        .when([
            Compare::value("t", CompareOp::Equal, "v2"),
            Compare::version("t", CompareOp::Equal, 2),
            Compare::create_revision("t", CompareOp::Equal, created_at),
            Compare::mod_revision("t", CompareOp::Greater, created_at),
        ])
        .and_then([
            TxnOp::put("t", "v3", None),
            TxnOp::get("t", None),
            TxnOp::put("u", "1", None),
        ])
        .or_else([TxnOp::put("t", "wrong", None)]);
    let resp = call("txn (true)", client.txn(txn)).await;
    assert!(resp.succeeded());
    let txn_rev = resp.header().expect("header").revision();
    assert_eq!(txn_rev, modified_at + 1, "one txn, one revision");
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 3);
    match &ops[1] {
        TxnOpResponse::Get(get) => assert_eq!(pairs(get), [("t".to_owned(), "v3".to_owned())]),
        other => panic!("expected a range response, got {other:?}"),
    }
    assert!(matches!(ops[0], TxnOpResponse::Put(_)));

    // One false compare: the else branch, with a delete and a nested txn.
    let txn = Txn::new()
        .when([
            Compare::value("t", CompareOp::Equal, "v3"),
            Compare::version("t", CompareOp::Less, 2),
        ])
        .and_then([TxnOp::put("t", "wrong", None)])
        .or_else([
            TxnOp::delete("u", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::txn(
                Txn::new()
                    .when([Compare::value("t", CompareOp::NotEqual, "zzz")])
                    .and_then([TxnOp::put("nested", "yes", None)]),
            ),
        ]);
    let resp = call("txn (false)", client.txn(txn)).await;
    assert!(!resp.succeeded());
    let ops = resp.op_responses();
    match &ops[0] {
        TxnOpResponse::Delete(del) => {
            assert_eq!(del.deleted(), 1);
            assert_eq!(text(del.prev_kvs()[0].value()), "1");
        }
        other => panic!("expected a delete response, got {other:?}"),
    }
    match &ops[1] {
        TxnOpResponse::Txn(inner) => assert!(inner.succeeded()),
        other => panic!("expected a txn response, got {other:?}"),
    }
    let t = call("get t", client.get("t", None)).await;
    assert_eq!(
        text(t.kvs()[0].value()),
        "v3",
        "the success branch did not run"
    );
    assert_eq!(call("get u", client.get("u", None)).await.count(), 0);
    assert_eq!(
        pairs(&call("get nested", client.get("nested", None)).await),
        [("nested".to_owned(), "yes".to_owned())]
    );

    // Compares on a missing key: version, create and mod revision are 0.
    let txn = Txn::new()
        .when([
            Compare::version("nokey", CompareOp::Equal, 0),
            Compare::create_revision("nokey", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put("nokey", "created", None)]);
    assert!(call("txn on a missing key", client.txn(txn))
        .await
        .succeeded());

    // Compare over a range: every key of the prefix must match.
    put(&mut client, "r/1", "same").await;
    put(&mut client, "r/2", "same").await;
    let txn = Txn::new()
        .when([Compare::value("r/", CompareOp::Equal, "same").with_prefix()])
        .and_then([TxnOp::put("range-ok", "1", None)]);
    assert!(call("txn range compare", client.txn(txn)).await.succeeded());
    put(&mut client, "r/3", "different").await;
    let txn = Txn::new()
        .when([Compare::value("r/", CompareOp::Equal, "same").with_prefix()])
        .and_then([TxnOp::put("range-ok", "2", None)]);
    assert!(!call("txn range compare", client.txn(txn)).await.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_options() {
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;

    // Created in the order c, a, e, b, d; b is then modified (version 2).
    let mut created = Vec::new();
    for (k, v) in [
        ("r/c", "3"),
        ("r/a", "5"),
        ("r/e", "1"),
        ("r/b", "4"),
        ("r/d", "2"),
    ] {
        created.push(put(&mut client, k, v).await);
    }
    let b2 = put(&mut client, "r/b", "6").await;
    put(&mut client, "zz", "outside").await;
    let prefix = || GetOptions::new().with_prefix();

    let all = call("prefix", client.get("r/", Some(prefix()))).await;
    assert_eq!(keys_of(&all), ["r/a", "r/b", "r/c", "r/d", "r/e"]);
    assert_eq!(all.count(), 5);

    let limited = call("limit", client.get("r/", Some(prefix().with_limit(2)))).await;
    assert_eq!(keys_of(&limited), ["r/a", "r/b"]);
    assert!(limited.more());
    assert_eq!(limited.count(), 5);

    let range = call(
        "range",
        client.get("r/a", Some(GetOptions::new().with_range("r/c"))),
    )
    .await;
    assert_eq!(keys_of(&range), ["r/a", "r/b"]);
    let from = call(
        "from key",
        client.get("r/d", Some(GetOptions::new().with_from_key())),
    )
    .await;
    assert_eq!(keys_of(&from), ["r/d", "r/e", "zz"]);
    let every = call(
        "all keys",
        client.get("", Some(GetOptions::new().with_all_keys())),
    )
    .await;
    assert_eq!(every.count(), 6);

    let sorted = |target, order| prefix().with_sort(target, order);
    let resp = call(
        "sort",
        client.get("r/", Some(sorted(SortTarget::Key, SortOrder::Descend))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/e", "r/d", "r/c", "r/b", "r/a"]);
    let resp = call(
        "sort",
        client.get("r/", Some(sorted(SortTarget::Value, SortOrder::Ascend))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/e", "r/d", "r/c", "r/a", "r/b"]);
    let resp = call(
        "sort",
        client.get("r/", Some(sorted(SortTarget::Create, SortOrder::Ascend))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/c", "r/a", "r/e", "r/b", "r/d"]);
    let resp = call(
        "sort",
        client.get("r/", Some(sorted(SortTarget::Mod, SortOrder::Descend))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/b", "r/d", "r/e", "r/a", "r/c"]);
    let resp = call(
        "sort",
        client.get("r/", Some(sorted(SortTarget::Version, SortOrder::Descend))),
    )
    .await;
    assert_eq!(keys_of(&resp)[0], "r/b");
    let resp = call(
        "sort then limit",
        client.get(
            "r/",
            Some(sorted(SortTarget::Value, SortOrder::Descend).with_limit(1)),
        ),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/b"]);

    let resp = call(
        "keys only",
        client.get("r/", Some(prefix().with_keys_only())),
    )
    .await;
    assert_eq!(resp.kvs().len(), 5);
    assert!(resp.kvs().iter().all(|kv| kv.value().is_empty()));
    let resp = call(
        "count only",
        client.get("r/", Some(prefix().with_count_only())),
    )
    .await;
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 5);

    // Revision filters: created[2] is r/e's create revision.
    let resp = call(
        "min mod revision",
        client.get("r/", Some(prefix().with_min_mod_revision(created[3]))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/b", "r/d"]);
    let resp = call(
        "max mod revision",
        client.get("r/", Some(prefix().with_max_mod_revision(created[1]))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/a", "r/c"]);
    let resp = call(
        "min create revision",
        client.get("r/", Some(prefix().with_min_create_revision(created[2]))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/b", "r/d", "r/e"]);
    let resp = call(
        "max create revision",
        client.get("r/", Some(prefix().with_max_create_revision(created[0]))),
    )
    .await;
    assert_eq!(keys_of(&resp), ["r/c"]);

    // A past revision: r/b had its first value and r/d did not exist yet.
    let resp = call(
        "at a past revision",
        client.get("r/", Some(prefix().with_revision(created[3]))),
    )
    .await;
    assert_eq!(
        pairs(&resp),
        [
            ("r/a".to_owned(), "5".to_owned()),
            ("r/b".to_owned(), "4".to_owned()),
            ("r/c".to_owned(), "3".to_owned()),
            ("r/e".to_owned(), "1".to_owned()),
        ]
    );
    let resp = call(
        "serializable",
        client.get("r/b", Some(GetOptions::new().with_serializable())),
    )
    .await;
    assert_eq!(resp.kvs()[0].mod_revision(), b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams() {
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;

    let r0 = put(&mut client, "w/a", "1").await;
    put(&mut client, "w/a", "2").await;
    call("delete w/a", client.delete("w/a", None)).await;
    put(&mut client, "w/b", "3").await;

    // From an old revision, with previous values: the history, then live events.
    let mut stream = call(
        "watch w/",
        client.watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(r0)
                    .with_prev_key(),
            ),
        ),
    )
    .await;
    let history = next_events(&mut stream, 4).await;
    let first_id = history[0].0;
    assert!(
        history.iter().all(|(id, _)| *id == first_id),
        "one watch, one ID: {history:?}"
    );
    let history: Vec<Ev> = history.into_iter().map(|(_, e)| e).collect();
    let ev = |kind, key: &str, value: &str, rev, prev: Option<&str>| Ev {
        kind,
        key: key.to_owned(),
        value: value.to_owned(),
        mod_revision: rev,
        prev_value: prev.map(str::to_owned),
    };
    assert_eq!(
        history,
        [
            ev(EventType::Put, "w/a", "1", r0, None),
            ev(EventType::Put, "w/a", "2", r0 + 1, Some("1")),
            ev(EventType::Delete, "w/a", "", r0 + 2, Some("2")),
            ev(EventType::Put, "w/b", "3", r0 + 3, None),
        ]
    );
    let r4 = put(&mut client, "w/c", "4").await;
    let live = next_events(&mut stream, 1).await;
    assert_eq!(live, [(first_id, ev(EventType::Put, "w/c", "4", r4, None))]);

    // A second watch on the same stream gets its own ID. (Every watch here starts at an
    // explicit revision, so no write can slip in before the server registers it.)
    call(
        "second watch",
        stream.watch("x", Some(WatchOptions::new().with_start_revision(r4 + 1))),
    )
    .await;
    let rx = put(&mut client, "x", "1").await;
    let got = next_events(&mut stream, 1).await;
    let second_id = got[0].0;
    assert_ne!(second_id, first_id);
    assert_eq!(got[0].1, ev(EventType::Put, "x", "1", rx, None));

    // Cancel the first: the server confirms, and its events stop.
    call("cancel", stream.cancel(first_id)).await;
    loop {
        let resp = next_response(&mut stream).await;
        assert!(
            resp.events().is_empty() || resp.watch_id() != first_id,
            "events on the first watch while canceling: {resp:?}"
        );
        if resp.canceled() {
            assert_eq!(resp.watch_id(), first_id);
            break;
        }
    }
    put(&mut client, "w/after-cancel", "5").await;
    let rx2 = put(&mut client, "x", "2").await;
    let got = next_events(&mut stream, 1).await;
    assert_eq!(
        got,
        [(second_id, ev(EventType::Put, "x", "2", rx2, None))],
        "only the remaining watch delivers"
    );

    // A watch on a single key from the current revision + 1 sees the next write only.
    let mut single = call(
        "watch key",
        client.watch(
            "solo",
            Some(WatchOptions::new().with_start_revision(rx2 + 1)),
        ),
    )
    .await;
    put(&mut client, "solo-not", "x").await;
    let r_solo = put(&mut client, "solo", "y").await;
    let got = next_events(&mut single, 1).await;
    assert_eq!(got[0].1, ev(EventType::Put, "solo", "y", r_solo, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_compacted_watch() {
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;

    let r1 = put(&mut client, "c", "1").await;
    let r2 = put(&mut client, "c", "2").await;
    let r3 = put(&mut client, "c", "3").await;
    call("compact", client.compact(r2, None)).await;

    let (code, message) = call_err(
        "get at a compacted revision",
        client.get("c", Some(GetOptions::new().with_revision(r1))),
    )
    .await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "OutOfRange",
            "etcdserver: mvcc: required revision has been compacted"
        )
    );
    let at_r2 = call(
        "get at r2",
        client.get("c", Some(GetOptions::new().with_revision(r2))),
    )
    .await;
    assert_eq!(text(at_r2.kvs()[0].value()), "2");

    // A watch from before the compaction is canceled with the compact revision.
    let mut stream = call(
        "watch from r1",
        client.watch("c", Some(WatchOptions::new().with_start_revision(r1))),
    )
    .await;
    loop {
        let resp = next_response(&mut stream).await;
        assert!(
            resp.events().is_empty(),
            "events from a compacted revision: {resp:?}"
        );
        if resp.compact_revision() != 0 {
            assert_eq!(resp.compact_revision(), r2, "{resp:?}");
            assert!(resp.canceled(), "{resp:?}");
            break;
        }
        assert!(
            !resp.canceled(),
            "canceled without a compact revision: {resp:?}"
        );
    }

    // From the compaction revision itself, history is complete.
    let mut stream = call(
        "watch from r2",
        client.watch("c", Some(WatchOptions::new().with_start_revision(r2))),
    )
    .await;
    let values: Vec<String> = next_events(&mut stream, 2)
        .await
        .into_iter()
        .map(|(_, e)| e.value)
        .collect();
    assert_eq!(values, ["2", "3"]);

    // Compacting at or below the compacted revision fails; a physical compaction works.
    let (code, message) = call_err("compact again", client.compact(r1, None)).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "OutOfRange",
            "etcdserver: mvcc: required revision has been compacted"
        )
    );
    call(
        "physical compact",
        client.compact(r3, Some(CompactionOptions::new().with_physical())),
    )
    .await;
    let (code, message) = call_err("compact the future", client.compact(r3 + 100, None)).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "OutOfRange",
            "etcdserver: mvcc: required revision is a future revision"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases() {
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;

    let grant = call("grant", client.lease_grant(60, None)).await;
    let id = grant.id();
    assert_ne!(id, 0);
    assert_eq!(grant.ttl(), 60);
    assert_eq!(grant.error(), "");

    call(
        "put with lease",
        client.put("lk", "v", Some(PutOptions::new().with_lease(id))),
    )
    .await;
    let kv = call("get lk", client.get("lk", None)).await;
    assert_eq!(kv.kvs()[0].lease(), id);
    // ignore_lease keeps the lease across a put.
    call(
        "put ignore_lease",
        client.put("lk", "v2", Some(PutOptions::new().with_ignore_lease())),
    )
    .await;
    assert_eq!(
        call("get lk", client.get("lk", None)).await.kvs()[0].lease(),
        id
    );

    let ttl = call(
        "time to live",
        client.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())),
    )
    .await;
    assert_eq!(ttl.id(), id);
    assert!((1..=60).contains(&ttl.ttl()), "ttl {}", ttl.ttl());
    assert_eq!(ttl.granted_ttl(), 60);
    assert_eq!(ttl.keys(), [b"lk".to_vec()]);

    let listed = call("leases", client.leases()).await;
    assert!(listed.leases().iter().any(|l| l.id() == id));

    // The keep-alive stream renews the TTL on every request.
    let (mut keeper, mut responses) = call("keep alive", client.lease_keep_alive(id)).await;
    assert_eq!(keeper.id(), id);
    for _ in 0..2 {
        call("keep alive request", keeper.keep_alive()).await;
        let resp = call("keep alive response", responses.message())
            .await
            .expect("keep-alive stream ended");
        assert_eq!((resp.id(), resp.ttl()), (id, 60));
    }

    // An explicit ID, and a second grant of the same ID.
    let chosen = 0x00c0_ffee;
    let grant = call(
        "grant with id",
        client.lease_grant(30, Some(LeaseGrantOptions::new().with_id(chosen))),
    )
    .await;
    assert_eq!(grant.id(), chosen);
    let (code, message) = call_err(
        "grant a duplicate id",
        client.lease_grant(30, Some(LeaseGrantOptions::new().with_id(chosen))),
    )
    .await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("FailedPrecondition", "etcdserver: lease already exists")
    );

    // Revoke deletes the attached keys.
    call("revoke", client.lease_revoke(id)).await;
    assert_eq!(call("get lk", client.get("lk", None)).await.count(), 0);
    let ttl = call(
        "time to live after revoke",
        client.lease_time_to_live(id, None),
    )
    .await;
    assert_eq!(ttl.ttl(), -1);
    let (code, message) = call_err("revoke again", client.lease_revoke(id)).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("NotFound", "etcdserver: requested lease not found")
    );

    // A 2 s lease kept alive for 4 s survives, then expires once the keep-alives stop.
    let short = call("grant 2s", client.lease_grant(2, None)).await.id();
    call(
        "put short",
        client.put("short", "v", Some(PutOptions::new().with_lease(short))),
    )
    .await;
    let (mut keeper, mut responses) =
        call("keep alive short", client.lease_keep_alive(short)).await;
    let kept_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < kept_until {
        call("keep alive request", keeper.keep_alive()).await;
        call("keep alive response", responses.message()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        call("get short", client.get("short", None)).await.count(),
        1,
        "a lease that is kept alive must not expire"
    );
    drop(keeper);
    drop(responses);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call("get short", client.get("short", None)).await.count() != 0 {
        assert!(
            Instant::now() < deadline,
            "the key of a 2 s lease is still there 10 s after its last keep-alive"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_etcd_codes_and_messages() {
    let c = Cluster::start_with(1, &["--max-request-bytes", "4096"]);
    let mut client = connect(&c.members[0].client_url).await;
    put(&mut client, "k", "v").await;

    let cases = [
        (
            "future revision",
            call_err(
                "get at a future revision",
                client.get("k", Some(GetOptions::new().with_revision(1_000_000))),
            )
            .await,
            (
                "OutOfRange",
                "etcdserver: mvcc: required revision is a future revision",
            ),
        ),
        (
            "empty key",
            call_err("put an empty key", client.put("", "v", None)).await,
            ("InvalidArgument", "etcdserver: key is not provided"),
        ),
        (
            "ignore_value on a missing key",
            call_err(
                "put ignore_value on a missing key",
                client.put("nokey", "", Some(PutOptions::new().with_ignore_value())),
            )
            .await,
            ("InvalidArgument", "etcdserver: key not found"),
        ),
        (
            "unknown lease on put",
            call_err(
                "put with an unknown lease",
                client.put("k", "v", Some(PutOptions::new().with_lease(12345))),
            )
            .await,
            ("NotFound", "etcdserver: requested lease not found"),
        ),
        (
            "unknown lease on revoke",
            call_err("revoke an unknown lease", client.lease_revoke(12345)).await,
            ("NotFound", "etcdserver: requested lease not found"),
        ),
        (
            "too many txn ops",
            call_err(
                "txn with 129 ops",
                client.txn(
                    Txn::new().and_then(
                        (0..129)
                            .map(|i| TxnOp::put(format!("many/{i}"), "x", None))
                            .collect::<Vec<_>>(),
                    ),
                ),
            )
            .await,
            (
                "InvalidArgument",
                "etcdserver: too many operations in txn request",
            ),
        ),
        (
            "duplicate key in txn",
            call_err(
                "txn writing one key twice",
                client.txn(
                    Txn::new()
                        .and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)]),
                ),
            )
            .await,
            (
                "InvalidArgument",
                "etcdserver: duplicate key given in txn request",
            ),
        ),
        (
            "request too large",
            call_err("put 5000 bytes", client.put("big", "x".repeat(5000), None)).await,
            ("InvalidArgument", "etcdserver: request is too large"),
        ),
    ];
    let mut wrong = Vec::new();
    for (case, (code, message), (want_code, want_message)) in &cases {
        if code != want_code || message != want_message {
            wrong.push(format!(
                "{case}: got {code} {message:?}, want {want_code} {want_message:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "errors differ from etcd's:\n{}",
        wrong.join("\n")
    );

    // The member still serves, and the failed requests changed nothing.
    let resp = call(
        "get all",
        client.get("", Some(GetOptions::new().with_all_keys())),
    )
    .await;
    assert_eq!(pairs(&resp), [("k".to_owned(), "v".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_status_and_member_list() {
    let c = Cluster::start(1);
    let m = &c.members[0];
    let mut client = connect(&m.client_url).await;

    let list = call("member list", client.member_list()).await;
    let members = list.members();
    assert_eq!(members.len(), 1);
    let me = &members[0];
    assert_eq!(me.name(), "m0");
    assert_eq!(me.peer_urls(), [m.peer_url.as_str()]);
    assert_eq!(me.client_urls(), [m.client_url.as_str()]);
    assert!(!me.is_learner());
    assert_ne!(me.id(), 0);

    let status = call("status", client.status()).await;
    assert_eq!(status.leader(), me.id(), "a single member leads");
    assert_eq!(status.header().expect("header").member_id(), me.id());
    assert!(status.raft_index() > 0);
    assert!(status.raft_term() > 0);
    assert!(!status.version().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster() {
    let c = Cluster::start(3);
    let mut clients = Vec::new();
    for m in &c.members {
        clients.push(connect(&m.client_url).await);
    }

    // Every member lists the same three members.
    let mut ids = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let list = call(&format!("member list on m{i}"), client.member_list()).await;
        let mut seen: Vec<(String, Vec<String>, Vec<String>, u64)> = list
            .members()
            .iter()
            .map(|m| {
                (
                    m.name().to_owned(),
                    m.peer_urls().to_vec(),
                    m.client_urls().to_vec(),
                    m.id(),
                )
            })
            .collect();
        seen.sort();
        let names: Vec<&str> = seen.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["m0", "m1", "m2"], "member list on m{i}");
        for (j, member) in seen.iter().enumerate() {
            assert_eq!(member.1, [c.members[j].peer_url.clone()]);
            assert_eq!(member.2, [c.members[j].client_url.clone()]);
        }
        let these: Vec<u64> = seen.iter().map(|m| m.3).collect();
        if ids.is_empty() {
            ids = these;
        } else {
            assert_eq!(ids, these, "member IDs differ between members");
        }
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "member IDs {ids:?}");

    // Every member names the same leader, and its own ID in its headers.
    let deadline = Instant::now() + WAIT;
    let leader_id = loop {
        let mut leaders = Vec::new();
        for (i, client) in clients.iter_mut().enumerate() {
            let status = call(&format!("status on m{i}"), client.status()).await;
            assert_eq!(status.header().expect("header").member_id(), ids[i]);
            assert!(status.raft_index() > 0);
            leaders.push(status.leader());
        }
        if leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) {
            break leaders[0];
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let leader = ids
        .iter()
        .position(|&id| id == leader_id)
        .expect("the leader is a member");
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A watch through one follower sees writes made through the leader and the other
    // follower.
    let start = call("get", clients[other].get("probe", None))
        .await
        .header()
        .expect("header")
        .revision()
        + 1;
    let mut stream = call(
        "watch on a follower",
        clients[other].watch(
            "cl/",
            Some(WatchOptions::new().with_prefix().with_start_revision(start)),
        ),
    )
    .await;
    let r1 = put(&mut clients[leader], "cl/1", "via-leader").await;
    let r2 = put(&mut clients[follower], "cl/2", "via-follower").await;
    assert_eq!(r2, r1 + 1);
    let got: Vec<(String, i64)> = next_events(&mut stream, 2)
        .await
        .into_iter()
        .map(|(_, e)| (e.key, e.mod_revision))
        .collect();
    assert_eq!(got, [("cl/1".to_owned(), r1), ("cl/2".to_owned(), r2)]);

    // Linearizable reads see both writes everywhere; serializable ones eventually.
    for (i, client) in clients.iter_mut().enumerate() {
        let resp = call(
            &format!("get on m{i}"),
            client.get("cl/", Some(GetOptions::new().with_prefix())),
        )
        .await;
        assert_eq!(resp.count(), 2, "linearizable read on m{i}");
        let deadline = Instant::now() + WAIT;
        loop {
            let resp = call(
                &format!("serializable get on m{i}"),
                client.get(
                    "cl/",
                    Some(GetOptions::new().with_prefix().with_serializable()),
                ),
            )
            .await;
            if resp.count() == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "serializable read on m{i} never caught up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A client that knows every endpoint works too; leases work through followers.
    let urls: Vec<&str> = c.members.iter().map(|m| m.client_url.as_str()).collect();
    let mut balanced = call("connect to all", Client::connect(urls, None)).await;
    let lease = call("grant via balanced client", balanced.lease_grant(30, None))
        .await
        .id();
    call(
        "put with lease via a follower",
        clients[follower].put("cl/leased", "x", Some(PutOptions::new().with_lease(lease))),
    )
    .await;
    let resp = call("get via the leader", clients[leader].get("cl/leased", None)).await;
    assert_eq!(resp.kvs()[0].lease(), lease);
    call(
        "revoke via another follower",
        clients[other].lease_revoke(lease),
    )
    .await;
    assert_eq!(
        call("get via balanced", balanced.get("cl/leased", None))
            .await
            .count(),
        0
    );
}

/// A watcher whose client does not read while thousands of writes land falls
/// behind the hub's broadcast; it must catch up from storage and then deliver every
/// event once, in revision order, with no gap (the watch hub's slow path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_without_gaps() {
    const WRITES: usize = 3000;
    let c = Cluster::start(1);
    let mut client = connect(&c.members[0].client_url).await;
    let mut stream = call(
        "watch slow/",
        client.watch("slow/", Some(WatchOptions::new().with_prefix())),
    )
    .await;
    let created = next_response(&mut stream).await;
    assert!(created.created(), "{created:?}");
    // Sequential puts: each one its own applied batch, far more than the hub keeps,
    // and big enough (2 KiB) to fill the HTTP/2 windows of the unread stream.
    let pad = "x".repeat(2048);
    let mut first = 0;
    for i in 0..WRITES {
        let value = format!("{i:08}{pad}");
        let rev = put(&mut client, &format!("slow/{}", i % 50), &value).await;
        if i == 0 {
            first = rev;
        }
    }
    let events = next_events(&mut stream, WRITES).await;
    assert_eq!(events.len(), WRITES, "no duplicates");
    for (i, (_, ev)) in events.iter().enumerate() {
        assert_eq!(
            ev.mod_revision,
            first + i as i64,
            "event {i} out of order or missing"
        );
        assert!(ev.value.starts_with(&format!("{i:08}")), "event {i}");
    }
    if !common::against_reference_etcd() {
        let (status, body) =
            common::http_get(c.members[0].metrics_addr(), "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        let slow = body
            .lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_slow_watcher_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("slow watcher metric");
        assert!(slow >= 1.0, "the catch-up path was not exercised: {slow}");
    }
}
