//! The Raft state machine: openraft's view of [`Mvcc`], plus snapshots.
//!
//! A snapshot is the whole MVCC state (records, leases, member attributes) at
//! the applied log id, streamed from RocksDB on a blocking thread.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::cf;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::mvcc::{
    Applier, EventBatch, LeaseRecord, Mvcc, StoredMembership, META_APPLIED, META_COMPACT,
    META_MEMBERS, META_MEMBERSHIP, META_REVISION,
};
use crate::types::{
    decode, encode, Applied, Entry, LogId, MemberInfo, NodeId, StorageError, TypeConfig,
};
use crate::watch::WatchHub;

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

/// What a snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBody {
    revision: i64,
    compact_revision: i64,
    members: BTreeMap<NodeId, MemberInfo>,
    leases: Vec<LeaseRecord>,
    /// `kv` column family entries (revision key, record).
    kv: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The state machine handed to openraft.
pub struct StateMachine {
    mvcc: Arc<Mvcc>,
    hub: WatchHub,
    metrics: Arc<Metrics>,
}

impl StateMachine {
    /// Wraps the MVCC store.
    pub fn new(mvcc: Arc<Mvcc>, hub: WatchHub, metrics: Arc<Metrics>) -> Self {
        StateMachine { mvcc, hub, metrics }
    }
}

fn build(mvcc: &Mvcc) -> Result<(SnapshotMeta<NodeId, MemberInfo>, Vec<u8>)> {
    // The log is purged behind snapshots: make what they cover durable first.
    mvcc.db.sync_wal()?;
    let (applied, membership, revision, compact_revision, members, leases) = {
        let st = mvcc.state.read();
        let leases = st
            .leases
            .iter()
            .map(|(id, l)| LeaseRecord {
                id: *id,
                ttl: l.ttl,
            })
            .collect::<Vec<_>>();
        (
            st.applied,
            st.membership.clone(),
            st.revision,
            st.compact_revision,
            st.members.clone(),
            leases,
        )
    };
    let mut kv = Vec::new();
    for item in mvcc
        .db
        .raw()
        .iterator_cf(mvcc.db.cf(cf::KV)?, IteratorMode::Start)
    {
        let (k, v) = item.map_err(Error::db("snapshot scan"))?;
        match crate::mvcc::index::Rev::from_key(&k) {
            Some((rev, _)) if rev.main > revision => break,
            _ => kv.push((k.to_vec(), v.to_vec())),
        }
    }
    let body = SnapshotBody {
        revision,
        compact_revision,
        members,
        leases,
        kv,
    };
    let snapshot_id = format!(
        "{}-{}-{}",
        applied.map(|l| l.leader_id.term).unwrap_or(0),
        applied.map(|l| l.index).unwrap_or(0),
        revision
    );
    let meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id,
    };
    Ok((meta, encode(&body)))
}

fn install(mvcc: &Mvcc, meta: &SnapshotMeta<NodeId, MemberInfo>, data: &[u8]) -> Result<()> {
    let body: SnapshotBody = decode("snapshot", data)?;
    let db = &mvcc.db;
    let mut st = mvcc.state.write();
    let mut b = WriteBatch::default();
    let (kv, lease, meta_cf) = (db.cf(cf::KV)?, db.cf(cf::LEASE)?, db.cf(cf::META)?);
    b.delete_range_cf(kv, &[][..], &[0xffu8; 32][..]);
    b.delete_range_cf(lease, &[][..], &[0xffu8; 32][..]);
    for (k, v) in &body.kv {
        b.put_cf(kv, k, v);
    }
    for l in &body.leases {
        b.put_cf(lease, l.id.to_be_bytes(), encode(l));
    }
    let membership: StoredMembership = meta.last_membership.clone();
    b.put_cf(meta_cf, META_APPLIED, encode(&meta.last_log_id));
    b.put_cf(meta_cf, META_MEMBERSHIP, encode(&membership));
    b.put_cf(meta_cf, META_REVISION, encode(&body.revision));
    b.put_cf(meta_cf, META_COMPACT, encode(&body.compact_revision));
    b.put_cf(meta_cf, META_MEMBERS, encode(&body.members));
    db.write_sync(b)?;
    st.applied = meta.last_log_id;
    st.membership = membership;
    st.revision = body.revision;
    st.compact_revision = body.compact_revision;
    st.members = body.members;
    st.term = meta.last_log_id.map(|l| l.leader_id.term).unwrap_or(0);
    Mvcc::rebuild(db, &mut st)?;
    st.revision = st.revision.max(body.revision);
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.mvcc.state.read();
        Ok((st.applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // A batch entry carries many client proposals; count each, as etcd does.
        let proposals: usize = entries
            .iter()
            .map(|e| match &e.payload {
                openraft::EntryPayload::Normal(crate::types::Request::Batch(b)) => b.len(),
                openraft::EntryPayload::Normal(_) => 1,
                _ => 0,
            })
            .sum();
        let mvcc = &self.mvcc;
        let started = Instant::now();
        // Inline for the same reason as the log append: the batch is written
        // unsynced (the log flusher's fsync makes it durable), which is cheaper
        // than moving this worker off its thread per apply.
        let (out, batch) = (|| -> Result<_> {
            let mut st = mvcc.state.write();
            let mut ap = Applier::new(&mvcc.db, &mut st)?;
            let mut out = Vec::with_capacity(entries.len());
            for e in &entries {
                out.push(ap.apply_entry(e)?);
            }
            let events = ap.finish()?;
            let revision = st.revision;
            Ok((out, EventBatch { events, revision }))
        })()
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.metrics
            .backend_commit
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .proposals_committed
            .fetch_add(proposals as u64, std::sync::atomic::Ordering::Relaxed);
        self.hub.publish(batch);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            mvcc: self.mvcc.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MemberInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        tokio::task::block_in_place(|| install(&self.mvcc, meta, &data))
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Always the current state: a cached older snapshot could predate the
        // purged part of the log.
        let (meta, data) = tokio::task::block_in_place(|| build(&self.mvcc))
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds snapshots off the apply path.
pub struct SnapshotBuilder {
    mvcc: Arc<Mvcc>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mvcc = self.mvcc.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || build(&mvcc))
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
