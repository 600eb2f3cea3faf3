//! The Raft type configuration and the requests that travel through the log.
//!
//! A log entry carries one [`Request`]: etcd's own protobuf request messages,
//! wrapped in [`Pb`] so that openraft's serde bounds hold without a parallel set
//! of request types. Applying an entry yields an [`Applied`].

use std::fmt;

use prost::Message;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::EtcdError;
use crate::pb::etcdserverpb as rpc;

/// A member's id: etcd's 64-bit member id.
pub type NodeId = u64;

/// What every member knows about another: its name and URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// `--name`.
    pub name: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// `--advertise-client-urls`, published by the member itself once it runs.
    pub client_urls: Vec<String>,
    /// Added by MemberAdd as a voter: it joins as a Raft learner and the leader
    /// promotes it once it has caught up, so an unstarted member never costs
    /// the cluster its quorum.
    #[serde(default)]
    pub promote: bool,
}

impl fmt::Display for MemberInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

openraft::declare_raft_types!(
    /// capstan's Raft type configuration.
    pub TypeConfig:
        D = Request,
        R = Applied,
        NodeId = NodeId,
        Node = MemberInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

/// The Raft instance of a store member.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// Storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// A protobuf message carried through serde as its protobuf encoding.
#[derive(Clone, Default, PartialEq)]
pub struct Pb<T>(pub T);

impl<T: fmt::Debug> fmt::Debug for Pb<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Message> Serialize for Pb<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de, T: Message + Default> Deserialize<'de> for Pb<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        T::decode(bytes.as_slice())
            .map(Pb)
            .map_err(D::Error::custom)
    }
}

fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("protobuf bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(V)
}

/// A replicated request: everything that changes the state machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// KV Put.
    Put(Pb<rpc::PutRequest>),
    /// KV DeleteRange.
    DeleteRange(Pb<rpc::DeleteRangeRequest>),
    /// KV Txn.
    Txn(Pb<rpc::TxnRequest>),
    /// KV Compact.
    Compact(Pb<rpc::CompactionRequest>),
    /// Lease grant; the id is chosen before proposing so apply is deterministic.
    LeaseGrant {
        /// Lease id, never 0.
        id: i64,
        /// Granted TTL in seconds.
        ttl: i64,
    },
    /// Lease revoke by a client.
    LeaseRevoke {
        /// Lease id.
        id: i64,
    },
    /// Lease expiry, proposed by the leader when a lease's TTL ran out.
    LeaseExpire {
        /// Lease ids.
        ids: Vec<i64>,
    },
    /// Client requests batched into one log entry by the leader's proposer: they
    /// share one append and one fsync, and are applied in order.
    Batch(Vec<Request>),
    /// Raise or clear an alarm (etcd's AlarmRequest ACTIVATE / DEACTIVATE).
    Alarm {
        /// Raise (true) or clear (false).
        activate: bool,
        /// The member the alarm is about (0 = every member, when clearing).
        member: NodeId,
        /// etcd's `AlarmType` (1 = NOSPACE, 2 = CORRUPT; 0 = every type, when clearing).
        alarm: i32,
    },
    /// A member publishes its name and client URLs (etcd's member attributes).
    MemberAttr {
        /// Member id.
        id: NodeId,
        /// `--name`.
        name: String,
        /// `--advertise-client-urls`.
        client_urls: Vec<String>,
    },
}

/// The result of applying one entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// Store revision after the entry.
    pub revision: i64,
    /// The reply, or the etcd error the request failed with.
    pub reply: Reply,
}

/// The reply to a [`Request`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Reply {
    /// Entries that do not answer a client (blank, membership).
    #[default]
    None,
    /// The request failed deterministically.
    Err(EtcdError),
    /// Put.
    Put(Pb<rpc::PutResponse>),
    /// DeleteRange.
    DeleteRange(Pb<rpc::DeleteRangeResponse>),
    /// Txn.
    Txn(Pb<rpc::TxnResponse>),
    /// Compact.
    Compact,
    /// LeaseGrant.
    LeaseGrant {
        /// Lease id.
        id: i64,
        /// TTL.
        ttl: i64,
    },
    /// LeaseRevoke.
    LeaseRevoke,
    /// Alarm: the alarms the request changed, as (member, type).
    Alarm(Vec<(NodeId, i32)>),
    /// One result per request of a [`Request::Batch`].
    Batch(Vec<Applied>),
}

impl Request {
    /// Approximate encoded size, to bound the size of a batch.
    pub fn approx_size(&self) -> usize {
        use prost::Message as _;
        match self {
            Request::Put(Pb(p)) => p.encoded_len(),
            Request::DeleteRange(Pb(d)) => d.encoded_len(),
            Request::Txn(Pb(t)) => t.encoded_len(),
            Request::Batch(b) => b.iter().map(Request::approx_size).sum(),
            Request::MemberAttr { client_urls, .. } => {
                64 + client_urls.iter().map(String::len).sum::<usize>()
            }
            Request::LeaseExpire { ids } => 8 * ids.len() + 8,
            Request::Compact(_)
            | Request::LeaseGrant { .. }
            | Request::LeaseRevoke { .. }
            | Request::Alarm { .. } => 24,
        }
    }
}

/// Encodes with bincode; used for the log, the peer protocol and snapshots.
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // bincode only fails on types serde cannot describe; ours are all plain data.
    bincode::serialize(v).unwrap_or_default()
}

/// Decodes bincode, naming the record in the error.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> crate::error::Result<T> {
    bincode::deserialize(bytes).map_err(|e| crate::error::Error::Corrupt {
        what,
        detail: e.to_string(),
    })
}
