//! capstan's resource layer: everything that is not the store reads and writes
//! Kubernetes objects through this crate.
//!
//! - [`kind`]: the kinds, typed [`ObjectRef`]s and the one function producing
//!   `/registry/...` keys;
//! - [`validation`] and [`defaults`]: the API server's rules, applied by the client
//!   before every write, with errors that name the field;
//! - [`client`]: a typed client over the etcd v3 API (get, paged list, create, update
//!   and delete as compare-and-swap on `mod_revision` = `resourceVersion`, watch);
//! - [`informer`]: list at a revision + watch from the next, an indexed cache, and a
//!   de-duplicating rate-limited work queue;
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease.
//!
//! Data flows one way: the store's watch stream feeds informers, controllers turn
//! cache state into desired objects and write them back with compare-and-swap.

pub mod client;
pub mod defaults;
pub mod error;
pub mod events;
pub mod informer;
pub mod kind;
pub mod leader;
pub mod quantity;
pub mod selector;
pub mod validation;

pub use client::{Client, List, WatchEvent};
pub use error::{Error, Result};
pub use etcd_client;
pub use k8s_openapi;
pub use kind::{Kind, Object, ObjectRef};
