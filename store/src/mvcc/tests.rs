//! The MVCC state machine against a real RocksDB in a temp dir: revisions,
//! versions, txns, compaction, leases, and rebuilding the index on reopen.

use bytes::Bytes;

use super::*;
use crate::pb::etcdserverpb::{compare, request_op, RequestOp};
use crate::types::{Pb, Reply, Request};

struct Fixture {
    _dir: tempfile::TempDir,
    mvcc: Arc<Mvcc>,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open db");
        let mvcc = Mvcc::open(db).expect("open mvcc");
        Fixture {
            _dir: dir,
            mvcc,
            index: 0,
        }
    }

    fn reopen(self) -> Self {
        let Fixture { _dir, mvcc, index } = self;
        drop(mvcc);
        let db = Db::open(_dir.path()).expect("reopen db");
        Fixture {
            mvcc: Mvcc::open(db).expect("reopen mvcc"),
            _dir,
            index,
        }
    }

    fn apply(&mut self, req: Request) -> (Applied, Vec<Event>) {
        self.index += 1;
        let entry = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), self.index),
            payload: openraft::EntryPayload::Normal(req),
        };
        let mut st = self.mvcc.state.write();
        let mut ap = Applier::new(&self.mvcc.db, &mut st).expect("applier");
        let out = ap.apply_entry(&entry).expect("apply");
        let events = ap.finish().expect("finish");
        (out, events)
    }

    fn put(&mut self, k: &str, v: &str) -> Applied {
        self.apply(Request::Put(Pb(rpc::PutRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            ..Default::default()
        })))
        .0
    }

    fn get(&self, k: &str, rev: i64) -> Result<rpc::RangeResponse> {
        self.mvcc.range(&rpc::RangeRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            revision: rev,
            ..Default::default()
        })
    }

    fn value(&self, k: &str, rev: i64) -> Option<String> {
        let r = self.get(k, rev).expect("range");
        r.kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }
}

use crate::types::{Applied, Entry};

#[test]
fn revisions_versions_and_history() {
    let mut f = Fixture::new();
    assert_eq!(f.put("a", "1").revision, 1);
    assert_eq!(f.put("a", "2").revision, 2);
    assert_eq!(f.put("b", "x").revision, 3);
    let r = f.get("a", 0).expect("range");
    let kv = &r.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
    assert_eq!(f.value("a", 1).as_deref(), Some("1"));
    assert_eq!(f.value("b", 2), None);
    assert!(matches!(
        f.get("a", 4),
        Err(Error::Etcd(EtcdError::FutureRev))
    ));
    let (del, events) = f.apply(Request::DeleteRange(Pb(rpc::DeleteRangeRequest {
        key: Bytes::from_static(b"a"),
        range_end: Bytes::from_static(b"c"),
        prev_kv: true,
    })));
    assert_eq!(del.revision, 4);
    assert_eq!(events.len(), 2);
    match del.reply {
        Reply::DeleteRange(Pb(d)) => assert_eq!((d.deleted, d.prev_kvs.len()), (2, 2)),
        other => panic!("{other:?}"),
    }
    // Deleting nothing does not bump the revision.
    let (none, ev) = f.apply(Request::DeleteRange(Pb(rpc::DeleteRangeRequest {
        key: Bytes::from_static(b"zz"),
        ..Default::default()
    })));
    assert_eq!((none.revision, ev.len()), (4, 0));
    // A key created again starts at version 1.
    f.put("a", "3");
    let kv = f.get("a", 0).expect("range").kvs[0].clone();
    assert_eq!((kv.create_revision, kv.version), (5, 1));
}

#[test]
fn txn_compares_and_sees_its_own_writes() {
    let mut f = Fixture::new();
    f.put("k", "v1");
    let cmp = |v: &'static str| rpc::Compare {
        key: Bytes::from_static(b"k"),
        target: compare::CompareTarget::Value as i32,
        result: compare::CompareResult::Equal as i32,
        target_union: Some(compare::TargetUnion::Value(Bytes::from_static(
            v.as_bytes(),
        ))),
        ..Default::default()
    };
    let put = |k: &'static str, v: &'static str| RequestOp {
        request: Some(request_op::Request::RequestPut(rpc::PutRequest {
            key: Bytes::from_static(k.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
            ..Default::default()
        })),
    };
    let range = |k: &'static str| RequestOp {
        request: Some(request_op::Request::RequestRange(rpc::RangeRequest {
            key: Bytes::from_static(k.as_bytes()),
            ..Default::default()
        })),
    };
    let txn = |c| rpc::TxnRequest {
        compare: vec![c],
        success: vec![put("k", "v2"), put("j", "x"), range("k")],
        failure: vec![range("k")],
    };
    let (a, events) = f.apply(Request::Txn(Pb(txn(cmp("v1")))));
    assert_eq!(a.revision, 2, "one revision for the whole txn");
    assert_eq!(events.len(), 2);
    let Reply::Txn(Pb(t)) = a.reply else {
        panic!("txn reply")
    };
    assert!(t.succeeded);
    let Some(crate::pb::etcdserverpb::response_op::Response::ResponseRange(r)) =
        &t.responses[2].response
    else {
        panic!("range response")
    };
    assert_eq!(r.kvs[0].value.as_ref(), b"v2");
    let (b, _) = f.apply(Request::Txn(Pb(txn(cmp("v1")))));
    let Reply::Txn(Pb(t)) = b.reply else {
        panic!("txn reply")
    };
    assert!(!t.succeeded);
    assert_eq!(
        b.revision, 2,
        "a read-only branch does not bump the revision"
    );
}

#[test]
fn compaction_and_reopen() {
    let mut f = Fixture::new();
    for i in 0..10 {
        f.put("k", &i.to_string());
    }
    f.put("gone", "x");
    f.apply(Request::DeleteRange(Pb(rpc::DeleteRangeRequest {
        key: Bytes::from_static(b"gone"),
        ..Default::default()
    })));
    let (c, _) = f.apply(Request::Compact(Pb(rpc::CompactionRequest {
        revision: 8,
        physical: true,
    })));
    assert!(matches!(c.reply, Reply::Compact));
    assert!(matches!(
        f.get("k", 7),
        Err(Error::Etcd(EtcdError::Compacted))
    ));
    assert_eq!(f.value("k", 8).as_deref(), Some("7"));
    let (again, _) = f.apply(Request::Compact(Pb(rpc::CompactionRequest {
        revision: 8,
        physical: true,
    })));
    assert!(matches!(again.reply, Reply::Err(EtcdError::Compacted)));
    let f = f.reopen();
    assert_eq!(f.mvcc.revision(), 12);
    assert_eq!(f.mvcc.compact_revision(), 8);
    assert_eq!(f.value("k", 0).as_deref(), Some("9"));
    let kv = f.get("k", 0).expect("range").kvs[0].clone();
    assert_eq!(kv.version, 10, "version survives compaction and reopen");
    assert_eq!(f.mvcc.events(9, 12, 100).expect("events").len(), 4);
}

#[test]
fn leases_attach_and_revoke() {
    let mut f = Fixture::new();
    let (g, _) = f.apply(Request::LeaseGrant { id: 7, ttl: 10 });
    assert!(matches!(g.reply, Reply::LeaseGrant { id: 7, ttl: 10 }));
    let (dup, _) = f.apply(Request::LeaseGrant { id: 7, ttl: 10 });
    assert!(matches!(dup.reply, Reply::Err(EtcdError::LeaseExist)));
    let (bad, _) = f.apply(Request::Put(Pb(rpc::PutRequest {
        key: Bytes::from_static(b"x"),
        lease: 99,
        ..Default::default()
    })));
    assert!(matches!(bad.reply, Reply::Err(EtcdError::LeaseNotFound)));
    for k in ["l1", "l2"] {
        f.apply(Request::Put(Pb(rpc::PutRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            lease: 7,
            ..Default::default()
        })));
    }
    let mut f = f.reopen();
    assert_eq!(f.mvcc.lease(7).map(|(_, k)| k.len()), Some(2));
    let (r, events) = f.apply(Request::LeaseRevoke { id: 7 });
    assert!(matches!(r.reply, Reply::LeaseRevoke));
    assert_eq!(events.len(), 2);
    assert_eq!(r.revision, 3, "both keys go in one revision");
    assert_eq!(f.value("l1", 0), None);
    assert!(f.mvcc.lease(7).is_none());
}
