//! The resource layer's errors, shaped like the API server's status reasons
//! (NotFound, AlreadyExists, Conflict, Invalid) so callers can branch on them.

use crate::kind::ObjectRef;
use crate::validation::{render, FieldError};

/// An error from the resource layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{} {:?} not found", .object.kind.plural(), .object.name)]
    NotFound {
        /// What was looked up.
        object: ObjectRef,
    },
    /// Create found an object under the same key.
    #[error("{} {:?} already exists", .object.kind.plural(), .object.name)]
    AlreadyExists {
        /// What was created.
        object: ObjectRef,
    },
    /// Update or delete with a stale `resourceVersion`.
    #[error("Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again", .object.kind.plural(), .object.name)]
    Conflict {
        /// What was written.
        object: ObjectRef,
    },
    /// The object failed validation; nothing was written.
    #[error("{}", render(.object.kind.name(), &.object.name, .errors))]
    Invalid {
        /// The object.
        object: ObjectRef,
        /// Every invalid field.
        errors: Vec<FieldError>,
    },
    /// A namespaced object names a namespace that does not exist.
    #[error("namespaces {namespace:?} not found")]
    NamespaceNotFound {
        /// The missing namespace.
        namespace: String,
    },
    /// The namespace is being deleted, so nothing new can be created in it.
    #[error("{} {:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated", .object.kind.plural(), .object.name)]
    NamespaceTerminating {
        /// What was created.
        object: ObjectRef,
        /// The terminating namespace.
        namespace: String,
    },
    /// A watch or list asked for a revision the store has compacted away.
    #[error("revision {requested} has been compacted (compact revision {compacted}); relist")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compact revision.
        compacted: i64,
    },
    /// A stored value is not a valid object of its kind.
    #[error("{key}: stored value does not parse as {kind}: {source}")]
    Decode {
        /// The store key.
        key: String,
        /// The expected kind.
        kind: &'static str,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A cluster IP or node port could not be allocated.
    #[error("{object}: {message}")]
    Allocation {
        /// The Service.
        object: ObjectRef,
        /// What failed (range full, address taken, ...).
        message: String,
    },
    /// Talking to the store failed.
    #[error("store: {0}")]
    Store(#[from] etcd_client::Error),
    /// The request was refused or is not supported.
    #[error("{0}")]
    BadRequest(String),
}

impl Error {
    /// Whether retrying with fresh data can succeed (a conflict or a store hiccup).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::Store(_))
    }
}

/// The resource layer's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
