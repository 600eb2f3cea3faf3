//! etcd's MVCC model over RocksDB: the state machine that Raft entries are applied to.
//!
//! Values are stored in the `kv` column family keyed by revision, exactly like
//! etcd's bbolt layout; [`index::KeyIndex`] maps keys to revisions in memory and
//! is rebuilt from the `kv` column family at start. Every write bumps the store
//! revision; history stays until a compaction, so reads and watches can start at
//! an old revision.
//!
//! Readers take the state lock only to resolve keys to revisions and read the
//! values afterwards: a revision's record never changes once written.

mod apply;
pub mod index;
mod range;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use prost::Message;
use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};

use crate::db::{cf, Db};
use crate::error::{Error, EtcdError, Result};
use crate::pb::etcdserverpb as rpc;
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};
use crate::types::{decode, LogId, MemberInfo, NodeId};

pub use apply::Applier;
use index::{KeyIndex, Rev};
pub use range::KeyRange;

pub(crate) const META_APPLIED: &[u8] = b"applied";
pub(crate) const META_MEMBERSHIP: &[u8] = b"membership";
pub(crate) const META_REVISION: &[u8] = b"revision";
pub(crate) const META_COMPACT: &[u8] = b"compact";
pub(crate) const META_MEMBERS: &[u8] = b"members";
pub(crate) const META_ALARMS: &[u8] = b"alarms";

/// The Raft membership as stored by the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, MemberInfo>;

/// A lease as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Lease id.
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl: i64,
}

/// A lease in memory: its TTL and the keys attached to it.
#[derive(Debug, Clone, Default)]
pub struct LeaseState {
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Keys whose latest version is attached to this lease.
    pub keys: BTreeSet<Bytes>,
}

/// Everything the state machine holds in memory.
#[derive(Debug, Default)]
pub struct State {
    pub(crate) index: BTreeMap<Bytes, KeyIndex>,
    /// Current store revision.
    pub revision: i64,
    /// Revision of the last compaction (reads below it fail).
    pub compact_revision: i64,
    pub(crate) leases: BTreeMap<i64, LeaseState>,
    /// Last applied log id.
    pub applied: Option<LogId>,
    /// Last applied membership.
    pub membership: StoredMembership,
    /// Names and client URLs published by members.
    pub members: BTreeMap<NodeId, MemberInfo>,
    /// Raft term of the last applied entry.
    pub term: u64,
    /// Active alarms as (member, etcd `AlarmType`).
    pub alarms: BTreeSet<(NodeId, i32)>,
}

impl State {
    /// Reads the applied state from the `meta` column family and rebuilds the
    /// index and lease table from the others.
    pub(crate) fn load(db: &Db) -> Result<State> {
        let mut st = State::default();
        let meta = |k: &[u8]| db.get(cf::META, k);
        if let Some(v) = meta(META_APPLIED)? {
            st.applied = decode("applied log id", &v)?;
        }
        if let Some(v) = meta(META_MEMBERSHIP)? {
            st.membership = decode("membership", &v)?;
        }
        if let Some(v) = meta(META_REVISION)? {
            st.revision = decode("revision", &v)?;
        }
        if let Some(v) = meta(META_COMPACT)? {
            st.compact_revision = decode("compact revision", &v)?;
        }
        if let Some(v) = meta(META_MEMBERS)? {
            st.members = decode("members", &v)?;
        }
        if let Some(v) = meta(META_ALARMS)? {
            st.alarms = decode("alarms", &v)?;
        }
        st.term = st.applied.map(|l| l.leader_id.term).unwrap_or(0);
        Mvcc::rebuild(db, &mut st)?;
        Ok(st)
    }
}

/// The MVCC store: RocksDB plus the in-memory index.
#[derive(Debug)]
pub struct Mvcc {
    pub(crate) db: Db,
    pub(crate) state: RwLock<State>,
}

/// A batch of applied events, published to watchers.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// Events in revision order.
    pub events: Vec<Event>,
    /// Store revision after the batch.
    pub revision: i64,
}

impl Mvcc {
    /// Opens the state machine and rebuilds the index from the `kv` column family.
    pub fn open(db: Db) -> Result<Arc<Self>> {
        let st = State::load(&db)?;
        Ok(Arc::new(Mvcc {
            db,
            state: RwLock::new(st),
        }))
    }

    /// Rebuilds the in-memory index and lease table from the column families.
    pub(crate) fn rebuild(db: &Db, st: &mut State) -> Result<()> {
        st.index.clear();
        st.leases.clear();
        for item in db.raw().iterator_cf(db.cf(cf::LEASE)?, IteratorMode::Start) {
            let (_, v) = item.map_err(Error::db("scan leases"))?;
            let rec: LeaseRecord = decode("lease", &v)?;
            st.leases.insert(
                rec.id,
                LeaseState {
                    ttl: rec.ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        for item in db.raw().iterator_cf(db.cf(cf::KV)?, IteratorMode::Start) {
            let (k, v) = item.map_err(Error::db("scan kv"))?;
            let Some((rev, tomb)) = Rev::from_key(&k) else {
                return Err(Error::Corrupt {
                    what: "kv revision key",
                    detail: format!("{} bytes", k.len()),
                });
            };
            let kv = KeyValue::decode(v.as_ref()).map_err(|e| Error::Corrupt {
                what: "kv record",
                detail: e.to_string(),
            })?;
            let ki = st.index.entry(kv.key.clone()).or_default();
            if tomb {
                ki.tombstone(rev);
            } else {
                ki.restore(rev, kv.create_revision, kv.version, kv.lease);
            }
            st.revision = st.revision.max(rev.main);
        }
        // Lease attachments follow each key's latest version.
        for (key, ki) in &st.index {
            if ki.lease != 0 && ki.latest().is_some() {
                if let Some(l) = st.leases.get_mut(&ki.lease) {
                    l.keys.insert(key.clone());
                }
            }
        }
        Ok(())
    }

    /// The current store revision.
    pub fn revision(&self) -> i64 {
        self.state.read().revision
    }

    /// The revision of the last compaction.
    pub fn compact_revision(&self) -> i64 {
        self.state.read().compact_revision
    }

    /// Last applied log id, membership, member attributes and term, read together.
    pub fn raft_view(
        &self,
    ) -> (
        Option<LogId>,
        StoredMembership,
        BTreeMap<NodeId, MemberInfo>,
        u64,
    ) {
        let st = self.state.read();
        (
            st.applied,
            st.membership.clone(),
            st.members.clone(),
            st.term,
        )
    }

    /// Serves a Range request from local state (the caller ensures linearizability).
    pub fn range(&self, req: &rpc::RangeRequest) -> Result<rpc::RangeResponse> {
        let plan = {
            let st = self.state.read();
            range::plan(&st, req, st.revision)?
        };
        let values = self.fetch(&plan.hits)?;
        Ok(range::finish(req, plan, values))
    }

    /// Reads the records of `hits` (revisions resolved by the index).
    fn fetch(&self, hits: &[(Bytes, index::Hit)]) -> Result<Vec<KeyValue>> {
        let h = self.db.cf(cf::KV)?;
        let keys: Vec<[u8; 16]> = hits.iter().map(|(_, hit)| hit.rev.to_key()).collect();
        let got = self.db.raw().batched_multi_get_cf(h, keys.iter(), false);
        let mut out = Vec::with_capacity(hits.len());
        for r in got {
            match r.map_err(Error::db("multi get"))? {
                Some(v) => out.push(KeyValue::decode(v.as_ref()).map_err(|e| Error::Corrupt {
                    what: "kv record",
                    detail: e.to_string(),
                })?),
                // Compacted between resolving and reading.
                None => return Err(EtcdError::Compacted.into()),
            }
        }
        Ok(out)
    }

    /// The key's value just before `rev` (a watch event's `prev_kv`).
    pub fn prev_kv(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        let hit = {
            let st = self.state.read();
            st.index.get(key).and_then(|ki| ki.before(rev))
        };
        match hit {
            None => Ok(None),
            Some(h) => read_record(&self.db, h.rev),
        }
    }

    /// Events with revisions in `from..=to` from storage (a watcher catching up),
    /// stopping after the revision at which `max_events` is reached.
    pub fn events(&self, from: i64, to: i64, max_events: usize) -> Result<Vec<Event>> {
        let h = self.db.cf(cf::KV)?;
        let start = Rev::new(from, 0).to_key();
        let mut out = Vec::new();
        let mut last_main = None;
        // Created under the state lock, the iterator's view is consistent: a
        // snapshot install holds the lock for writing while it replaces the data.
        let iter = {
            let _st = self.state.read();
            self.db
                .raw()
                .iterator_cf(h, IteratorMode::From(&start, Direction::Forward))
        };
        for item in iter {
            let (k, v) = item.map_err(Error::db("scan events"))?;
            let Some((rev, tomb)) = Rev::from_key(&k) else {
                continue;
            };
            if rev.main > to {
                break;
            }
            if out.len() >= max_events && last_main != Some(rev.main) {
                break;
            }
            last_main = Some(rev.main);
            let kv = KeyValue::decode(v.as_ref()).map_err(|e| Error::Corrupt {
                what: "kv record",
                detail: e.to_string(),
            })?;
            out.push(Event {
                r#type: if tomb {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(out)
    }

    /// Lease TTL and attached keys.
    pub fn lease(&self, id: i64) -> Option<(i64, Vec<Bytes>)> {
        let st = self.state.read();
        st.leases
            .get(&id)
            .map(|l| (l.ttl, l.keys.iter().cloned().collect()))
    }

    /// All lease ids with their TTLs.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.state
            .read()
            .leases
            .iter()
            .map(|(id, l)| (*id, l.ttl))
            .collect()
    }

    /// etcd's HashKV: a hash over every record up to `rev` (0 = current).
    /// Returns (hash, revision hashed, compact revision).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let (cur, compact) = {
            let st = self.state.read();
            (st.revision, st.compact_revision)
        };
        let rev = if rev == 0 { cur } else { rev };
        if rev > cur {
            return Err(EtcdError::FutureRev.into());
        }
        if rev < compact {
            return Err(EtcdError::Compacted.into());
        }
        let h = self.db.cf(cf::KV)?;
        let mut hasher = crc32::Crc32::new();
        for item in self.db.raw().iterator_cf(h, IteratorMode::Start) {
            let (k, v) = item.map_err(Error::db("hash"))?;
            let Some((r, _)) = Rev::from_key(&k) else {
                continue;
            };
            if r.main > rev {
                break;
            }
            hasher.update(&k);
            hasher.update(&v);
        }
        Ok((hasher.finish(), rev, compact))
    }
}

/// Reads one record by revision.
pub(crate) fn read_record(db: &Db, rev: Rev) -> Result<Option<KeyValue>> {
    match db.get(cf::KV, &rev.to_key())? {
        None => Ok(None),
        Some(v) => Ok(Some(KeyValue::decode(v.as_slice()).map_err(|e| {
            Error::Corrupt {
                what: "kv record",
                detail: e.to_string(),
            }
        })?)),
    }
}

/// CRC-32 (Castagnoli), for HashKV.
mod crc32 {
    pub struct Crc32(u32);
    impl Crc32 {
        pub fn new() -> Self {
            Crc32(!0)
        }
        pub fn update(&mut self, data: &[u8]) {
            let mut c = self.0;
            for &b in data {
                c ^= b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        (c >> 1) ^ 0x82F6_3B78
                    } else {
                        c >> 1
                    };
                }
            }
            self.0 = c;
        }
        pub fn finish(&self) -> u32 {
            !self.0
        }
    }
}

#[cfg(test)]
mod tests;
