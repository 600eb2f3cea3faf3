//! The write path: applying replicated requests to the MVCC state.
//!
//! One [`Applier`] covers one batch of log entries: it mutates the in-memory
//! index under the state lock, collects every record into one RocksDB write
//! batch (written once, with the applied log id, so a crash never leaves half a
//! batch), and collects the watch events to publish after the write.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use prost::Message;
use rocksdb::{ColumnFamily, WriteBatch};

use super::index::Rev;
use super::range::{self, KeyRange};
use super::{
    read_record, LeaseRecord, LeaseState, State, META_ALARMS, META_APPLIED, META_COMPACT,
    META_MEMBERS, META_MEMBERSHIP, META_REVISION,
};
use crate::db::{cf, Db};
use crate::error::{Error, EtcdError, Result};
use crate::pb::etcdserverpb::{
    self as rpc, compare::CompareResult, compare::CompareTarget, compare::TargetUnion,
    request_op::Request as Op, response_op::Response as OpResp,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};
use crate::types::{encode, Applied, Entry, Pb, Reply, Request};

/// Applies a batch of entries to the state; see the module docs.
pub struct Applier<'a> {
    db: &'a Db,
    st: &'a mut State,
    kv_cf: &'a ColumnFamily,
    lease_cf: &'a ColumnFamily,
    batch: WriteBatch,
    /// Records written by this batch, readable before the batch hits RocksDB.
    pending: HashMap<Rev, KeyValue>,
    events: Vec<Event>,
    membership_changed: bool,
    members_changed: bool,
}

/// The revision being written: `main` is fixed for one request, `sub` counts its writes.
struct Writing {
    main: i64,
    sub: i64,
}

impl Writing {
    fn next(&mut self) -> Rev {
        let r = Rev::new(self.main, self.sub);
        self.sub += 1;
        r
    }
}

fn header(revision: i64) -> Option<rpc::ResponseHeader> {
    Some(rpc::ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl<'a> Applier<'a> {
    /// Starts a batch.
    pub fn new(db: &'a Db, st: &'a mut State) -> Result<Self> {
        Ok(Applier {
            kv_cf: db.cf(cf::KV)?,
            lease_cf: db.cf(cf::LEASE)?,
            db,
            st,
            batch: WriteBatch::default(),
            pending: HashMap::new(),
            events: Vec::new(),
            membership_changed: false,
            members_changed: false,
        })
    }

    /// Applies one log entry.
    pub fn apply_entry(&mut self, entry: &Entry) -> Result<Applied> {
        self.st.applied = Some(entry.log_id);
        self.st.term = entry.log_id.leader_id.term;
        let reply = match &entry.payload {
            openraft::EntryPayload::Blank => Reply::None,
            openraft::EntryPayload::Membership(m) => {
                self.st.membership = openraft::StoredMembership::new(Some(entry.log_id), m.clone());
                self.membership_changed = true;
                Reply::None
            }
            openraft::EntryPayload::Normal(Request::Batch(reqs)) => {
                let mut out = Vec::with_capacity(reqs.len());
                for r in reqs {
                    let reply = self.apply(r)?;
                    out.push(Applied {
                        revision: self.st.revision,
                        reply,
                    });
                }
                Reply::Batch(out)
            }
            openraft::EntryPayload::Normal(req) => self.apply(req)?,
        };
        Ok(Applied {
            revision: self.st.revision,
            reply,
        })
    }

    fn apply(&mut self, req: &Request) -> Result<Reply> {
        let rev = self.st.revision;
        let out = match req {
            Request::Put(Pb(p)) => {
                if let Err(e) = self.check_put(p) {
                    return Ok(Reply::Err(e));
                }
                let mut w = Writing {
                    main: rev + 1,
                    sub: 0,
                };
                let prev = self.put(p, &mut w)?;
                self.st.revision = w.main;
                Reply::Put(Pb(rpc::PutResponse {
                    header: header(w.main),
                    prev_kv: prev,
                }))
            }
            Request::DeleteRange(Pb(d)) => {
                let mut w = Writing {
                    main: rev + 1,
                    sub: 0,
                };
                let (deleted, prev_kvs) = self.delete(
                    &KeyRange::new(d.key.clone(), d.range_end.clone()),
                    d.prev_kv,
                    &mut w,
                )?;
                if w.sub > 0 {
                    self.st.revision = w.main;
                }
                Reply::DeleteRange(Pb(rpc::DeleteRangeResponse {
                    header: header(self.st.revision),
                    deleted,
                    prev_kvs,
                }))
            }
            Request::Txn(Pb(t)) => {
                let mut w = Writing {
                    main: rev + 1,
                    sub: 0,
                };
                match self.txn(t, &mut w)? {
                    Err(e) => Reply::Err(e),
                    Ok(mut resp) => {
                        if w.sub > 0 {
                            self.st.revision = w.main;
                        }
                        resp.header = header(self.st.revision);
                        Reply::Txn(Pb(resp))
                    }
                }
            }
            Request::Compact(Pb(c)) => match self.compact(c.revision)? {
                Err(e) => Reply::Err(e),
                Ok(()) => Reply::Compact,
            },
            Request::LeaseGrant { id, ttl } => {
                if self.st.leases.contains_key(id) {
                    Reply::Err(EtcdError::LeaseExist)
                } else {
                    self.st.leases.insert(
                        *id,
                        LeaseState {
                            ttl: *ttl,
                            keys: BTreeSet::new(),
                        },
                    );
                    self.batch.put_cf(
                        self.lease_cf,
                        id.to_be_bytes(),
                        encode(&LeaseRecord { id: *id, ttl: *ttl }),
                    );
                    Reply::LeaseGrant { id: *id, ttl: *ttl }
                }
            }
            Request::LeaseRevoke { id } => {
                if self.revoke(*id)? {
                    Reply::LeaseRevoke
                } else {
                    Reply::Err(EtcdError::LeaseNotFound)
                }
            }
            Request::LeaseExpire { ids } => {
                for id in ids {
                    self.revoke(*id)?;
                }
                Reply::None
            }
            Request::Batch(reqs) => {
                // Batches are only built at the top level; a nested one is applied flat.
                let mut last = Reply::None;
                for r in reqs {
                    last = self.apply(r)?;
                }
                last
            }
            Request::MemberAttr {
                id,
                name,
                client_urls,
            } => {
                let m = self.st.members.entry(*id).or_default();
                m.name = name.clone();
                m.client_urls = client_urls.clone();
                self.members_changed = true;
                Reply::None
            }
            Request::Alarm {
                activate,
                member,
                alarm,
            } => {
                let mut changed = Vec::new();
                if *activate {
                    if self.st.alarms.insert((*member, *alarm)) {
                        changed.push((*member, *alarm));
                    }
                } else {
                    self.st.alarms.retain(|&(m, a)| {
                        let hit = (*member == 0 || m == *member) && (*alarm == 0 || a == *alarm);
                        if hit {
                            changed.push((m, a));
                        }
                        !hit
                    });
                }
                self.members_changed = true;
                Reply::Alarm(changed)
            }
        };
        Ok(out)
    }

    /// Writes the batch with the applied state; returns the events to publish.
    pub fn finish(self) -> Result<Vec<Event>> {
        let meta = self.db.cf(cf::META)?;
        let mut batch = self.batch;
        batch.put_cf(meta, META_APPLIED, encode(&self.st.applied));
        batch.put_cf(meta, META_REVISION, encode(&self.st.revision));
        if self.membership_changed {
            batch.put_cf(meta, META_MEMBERSHIP, encode(&self.st.membership));
        }
        if self.members_changed {
            batch.put_cf(meta, META_MEMBERS, encode(&self.st.members));
            batch.put_cf(meta, META_ALARMS, encode(&self.st.alarms));
        }
        batch.put_cf(meta, META_COMPACT, encode(&self.st.compact_revision));
        self.db.write_nosync(batch)?;
        Ok(self.events)
    }

    fn record(&self, rev: Rev) -> Result<Option<KeyValue>> {
        if let Some(kv) = self.pending.get(&rev) {
            return Ok(Some(kv.clone()));
        }
        read_record(self.db, rev)
    }

    fn latest_record(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.st.index.get(key).and_then(|ki| ki.latest()) {
            None => Ok(None),
            Some(h) => self.record(h.rev),
        }
    }

    /// State-dependent checks of a put, done before anything is written.
    fn check_put(&self, p: &rpc::PutRequest) -> Result<(), EtcdError> {
        if p.lease != 0 && !self.st.leases.contains_key(&p.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease)
            && self.st.index.get(&p.key).and_then(|k| k.latest()).is_none()
        {
            return Err(EtcdError::KeyNotFound);
        }
        Ok(())
    }

    fn put(&mut self, p: &rpc::PutRequest, w: &mut Writing) -> Result<Option<KeyValue>> {
        let prev = if p.prev_kv || p.ignore_value || p.ignore_lease {
            self.latest_record(&p.key)?
        } else {
            None
        };
        let value = match (&prev, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => p.value.clone(),
        };
        let old_lease = self.st.index.get(&p.key).map(|k| k.lease).unwrap_or(0);
        let lease = if p.ignore_lease { old_lease } else { p.lease };
        let rev = w.next();
        let ki = self.st.index.entry(p.key.clone()).or_default();
        let (version, created) = ki.put(rev, lease);
        if old_lease != lease {
            if let Some(l) = self.st.leases.get_mut(&old_lease) {
                l.keys.remove(&p.key);
            }
        }
        if lease != 0 {
            if let Some(l) = self.st.leases.get_mut(&lease) {
                l.keys.insert(p.key.clone());
            }
        }
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: created,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        self.batch
            .put_cf(self.kv_cf, rev.to_key(), kv.encode_to_vec());
        self.pending.insert(rev, kv.clone());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(if p.prev_kv { prev } else { None })
    }

    fn delete(
        &mut self,
        range: &KeyRange,
        want_prev: bool,
        w: &mut Writing,
    ) -> Result<(i64, Vec<KeyValue>)> {
        let hits = range::scan(self.st, range, i64::MAX);
        let mut prevs = Vec::new();
        for (key, hit) in &hits {
            if want_prev {
                if let Some(kv) = self.record(hit.rev)? {
                    prevs.push(kv);
                }
            }
            let rev = w.next();
            let ki = self.st.index.entry(key.clone()).or_default();
            let lease = ki.lease;
            ki.tombstone(rev);
            if let Some(l) = self.st.leases.get_mut(&lease) {
                l.keys.remove(key);
            }
            let tomb = KeyValue {
                key: key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            self.batch
                .put_cf(self.kv_cf, rev.to_tombstone_key(), tomb.encode_to_vec());
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(tomb),
                prev_kv: None,
            });
        }
        Ok((hits.len() as i64, prevs))
    }

    fn compare(&self, c: &rpc::Compare) -> Result<bool> {
        let range = KeyRange::new(c.key.clone(), c.range_end.clone());
        let hits = range::scan(self.st, &range, i64::MAX);
        let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
        if hits.is_empty() {
            if target == CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_kv(c, target, &KeyValue::default()));
        }
        for (key, hit) in hits {
            let kv = if target == CompareTarget::Value {
                match self.record(hit.rev)? {
                    Some(kv) => kv,
                    None => return Ok(false),
                }
            } else {
                let lease = self.st.index.get(&key).map(|k| k.lease).unwrap_or(0);
                KeyValue {
                    key,
                    create_revision: hit.created,
                    mod_revision: hit.rev.main,
                    version: hit.version,
                    lease,
                    value: Bytes::new(),
                }
            };
            if !compare_kv(c, target, &kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Picks the branch a txn takes given the current state.
    fn branch<'t>(&self, t: &'t rpc::TxnRequest) -> Result<(bool, &'t [rpc::RequestOp])> {
        for c in &t.compare {
            if !self.compare(c)? {
                return Ok((false, &t.failure));
            }
        }
        Ok((true, &t.success))
    }

    /// State-dependent checks of the ops a txn will run, nested txns included.
    fn check_ops(&self, ops: &[rpc::RequestOp]) -> Result<Result<(), EtcdError>> {
        for op in ops {
            match &op.request {
                Some(Op::RequestPut(p)) => {
                    if let Err(e) = self.check_put(p) {
                        return Ok(Err(e));
                    }
                }
                Some(Op::RequestRange(r)) => {
                    if r.revision > self.st.revision {
                        return Ok(Err(EtcdError::FutureRev));
                    }
                    if r.revision > 0 && r.revision < self.st.compact_revision {
                        return Ok(Err(EtcdError::Compacted));
                    }
                }
                Some(Op::RequestTxn(t)) => {
                    let (_, ops) = self.branch(t)?;
                    if let Err(e) = self.check_ops(ops)? {
                        return Ok(Err(e));
                    }
                }
                Some(Op::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(Ok(()))
    }

    fn txn(
        &mut self,
        t: &rpc::TxnRequest,
        w: &mut Writing,
    ) -> Result<Result<rpc::TxnResponse, EtcdError>> {
        let (succeeded, ops) = self.branch(t)?;
        if let Err(e) = self.check_ops(ops)? {
            return Ok(Err(e));
        }
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                None => continue,
                Some(Op::RequestRange(r)) => {
                    let current = if w.sub > 0 { w.main } else { self.st.revision };
                    let plan = match range::plan(self.st, r, current) {
                        Ok(p) => p,
                        Err(Error::Etcd(e)) => return Ok(Err(e)),
                        Err(e) => return Err(e),
                    };
                    let mut kvs = Vec::with_capacity(plan.hits.len());
                    for (_, hit) in &plan.hits {
                        if let Some(kv) = self.record(hit.rev)? {
                            kvs.push(kv);
                        }
                    }
                    OpResp::ResponseRange(range::finish(r, plan, kvs))
                }
                Some(Op::RequestPut(p)) => {
                    let prev = self.put(p, w)?;
                    OpResp::ResponsePut(rpc::PutResponse {
                        header: header(w.main),
                        prev_kv: prev,
                    })
                }
                Some(Op::RequestDeleteRange(d)) => {
                    let (deleted, prev_kvs) = self.delete(
                        &KeyRange::new(d.key.clone(), d.range_end.clone()),
                        d.prev_kv,
                        w,
                    )?;
                    OpResp::ResponseDeleteRange(rpc::DeleteRangeResponse {
                        header: header(if w.sub > 0 { w.main } else { self.st.revision }),
                        deleted,
                        prev_kvs,
                    })
                }
                Some(Op::RequestTxn(inner)) => match self.txn(inner, w)? {
                    Err(e) => return Ok(Err(e)),
                    Ok(mut r) => {
                        r.header = header(if w.sub > 0 { w.main } else { self.st.revision });
                        OpResp::ResponseTxn(r)
                    }
                },
            };
            responses.push(rpc::ResponseOp {
                response: Some(resp),
            });
        }
        Ok(Ok(rpc::TxnResponse {
            header: None,
            succeeded,
            responses,
        }))
    }

    fn compact(&mut self, rev: i64) -> Result<Result<(), EtcdError>> {
        if rev <= self.st.compact_revision {
            return Ok(Err(EtcdError::Compacted));
        }
        if rev > self.st.revision {
            return Ok(Err(EtcdError::FutureRev));
        }
        let mut dropped = Vec::new();
        self.st.index.retain(|_, ki| !ki.compact(rev, &mut dropped));
        for k in dropped {
            self.batch.delete_cf(self.kv_cf, k);
        }
        self.st.compact_revision = rev;
        Ok(Ok(()))
    }

    /// Revokes a lease and deletes its keys in one revision; false if unknown.
    fn revoke(&mut self, id: i64) -> Result<bool> {
        let Some(lease) = self.st.leases.remove(&id) else {
            return Ok(false);
        };
        self.batch.delete_cf(self.lease_cf, id.to_be_bytes());
        let mut w = Writing {
            main: self.st.revision + 1,
            sub: 0,
        };
        for key in lease.keys {
            self.delete(&KeyRange::new(key, Bytes::new()), false, &mut w)?;
        }
        if w.sub > 0 {
            self.st.revision = w.main;
        }
        Ok(true)
    }
}

fn compare_kv(c: &rpc::Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_ref().cmp(v.as_ref()),
        (CompareTarget::Value, _) => kv.value.as_ref().cmp(&[][..]),
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => kv.create_revision.cmp(v),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        (CompareTarget::Version, _) => kv.version.cmp(&0),
        (CompareTarget::Create, _) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, _) => kv.mod_revision.cmp(&0),
        (CompareTarget::Lease, _) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}
