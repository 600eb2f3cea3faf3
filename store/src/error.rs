//! Errors of the store, and their mapping to the gRPC statuses etcd returns.
//!
//! etcd clients match on the exact message text (`etcdserver: ...`,
//! `mvcc: ...`), so [`EtcdError`] keeps etcd's wording and codes verbatim.

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// A request failed the way etcd would fail it. These are part of the wire
/// contract: the code and message are what etcd sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// Put/Range/Delete with an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More operations in one txn than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Two writes to one key in one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A request over `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// Read or compaction at a revision below the compacted one.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// Read at a revision that does not exist yet.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The backend quota is exceeded.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Unknown lease id.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// LeaseGrant with an id that is in use.
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    /// LeaseGrant with a TTL over etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// No leader is known (election in progress or quorum lost).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request could not be committed in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Unknown member id.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// MemberAdd/MemberUpdate with a peer URL another member has.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    /// MemberAdd/MemberUpdate with URLs that do not parse.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// MemberPromote of a voting member.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// MemberPromote of a learner that has not caught up with the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// MemberRemove of the only voting member.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// The member is stopping.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// An RPC capstan does not serve (yet).
    #[error("etcdserver: not capable")]
    NotCapable,
}

impl EtcdError {
    /// The gRPC code etcd uses for this error.
    pub fn code(self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | PeerUrlExist
            | MemberNotLearner
            | LearnerNotReady
            | NotEnoughStartedMembers => Code::FailedPrecondition,
            MemberBadUrls => Code::InvalidArgument,
            NoLeader | Timeout | Stopped => Code::Unavailable,
            NotCapable => Code::Unimplemented,
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Failures of the store's own machinery (disk, codec, consensus).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client-visible etcd error.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// RocksDB failed.
    #[error("rocksdb {op}: {source}")]
    Db {
        /// What we were doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: rocksdb::Error,
    },
    /// A record on disk or from a peer did not decode.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Raft refused or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// A peer could not be reached.
    #[error("peer {target}: {detail}")]
    Peer {
        /// The member id (hex).
        target: String,
        /// What went wrong.
        detail: String,
    },
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
    /// IO error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
        move |source| Error::Db { op, source }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Etcd(e) => e.into(),
            Error::Raft(_) | Error::Peer { .. } => Status::unavailable(e.to_string()),
            other => Status::internal(other.to_string()),
        }
    }
}
