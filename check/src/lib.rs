//! Fault-injection test support for capstan.
//!
//! This crate owns everything a fault-injection test or a soak run needs besides
//! the cluster itself:
//!
//! - [`workload`] drives seeded concurrent etcd clients against the cluster and
//!   watchers over the same keys, recording each operation into a
//!   [`history::Recorder`] and each watch stream into a [`watch::WatcherLog`];
//! - [`proxy`] sits on peer links ([`proxy::FaultProxy`]) and cuts, delays or
//!   breaks the traffic of chosen members while the workload runs;
//! - [`linearizable`] checks the recorded [`history::History`] against a register
//!   per key, and [`watch`] checks the watch logs against each other and against the
//!   writes the clients saw acknowledged;
//! - [`check_all`] combines both checks into a [`Report`] that prints a summary and
//!   serializes to JSON next to the history of a failing seed;
//! - [`cluster`] and [`faults`] run real capstan members behind the proxies under a
//!   seeded fault schedule (the `capstan-soak` binary drives many such runs).
//!
//! [`linkproxy`] and [`clients`] only re-export [`proxy`], [`workload`] and
//! [`watch`] items under their earlier names.
//!
//! Data flows one way: workload → recorder/logs → checkers → report. The checkers
//! are pure functions over plain data, tested without sockets.

pub mod cluster;
pub mod faults;
pub mod history;
pub mod linearizable;
pub mod proxy;
pub mod report;
pub mod watch;
pub mod workload;

pub use report::{check_all, check_all_with, Report};

/// SplitMix64: a cheap, well-mixed hash of a `u64`, for deriving seeds and
/// fingerprints deterministically.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
