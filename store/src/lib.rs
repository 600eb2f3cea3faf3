//! `capstan-store`: capstan's etcd v3 compatible, Raft-replicated MVCC key-value store.
//!
//! Data flows like this: a client's gRPC request reaches [`server`]; writes
//! become [`types::Request`] entries that [`node::Store`] proposes through
//! openraft (forwarded to the leader from a follower); [`log_store`] persists
//! the log in RocksDB with group commit; committed entries are applied by
//! [`sm`] to [`mvcc`], etcd's revisioned key space over RocksDB; applied events
//! fan out through [`watch`] to watchers. Reads are served from [`mvcc`] after a
//! read-index barrier (linearizable) or directly (serializable). Members talk to
//! each other through [`network`].

pub mod authority;
pub mod config;
pub mod db;
pub mod error;
pub mod lessor;
pub mod log_store;
pub mod metrics;
pub mod mvcc;
pub mod network;
pub mod node;
pub mod pb;
pub mod proposer;
pub mod server;
pub mod sm;
pub mod snapshot;
pub mod tls;
pub mod types;
pub mod watch;

pub use config::{ClusterState, StoreConfig};
pub use error::{Error, EtcdError, Result};
pub use node::Store;
