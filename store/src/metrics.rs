//! Prometheus metrics of a store member, named like etcd's so that existing
//! dashboards and alerts keep working. Rendered by hand in the text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed upper bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// etcd's disk histogram buckets: 1 ms doubling 14 times.
    pub fn disk() -> Self {
        let bounds: Vec<f64> = (0..14).map(|i| 0.001 * f64::from(1u32 << i)).collect();
        Self::with_bounds(bounds)
    }

    /// Buckets from the given bounds.
    pub fn with_bounds(bounds: Vec<f64>) -> Self {
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            counts,
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation in seconds.
    pub fn observe(&self, secs: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if secs <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Counters and histograms of one member.
#[derive(Debug)]
pub struct Metrics {
    /// `etcd_disk_wal_fsync_duration_seconds`.
    pub wal_fsync: Histogram,
    /// `etcd_disk_backend_commit_duration_seconds` (state machine batch writes).
    pub backend_commit: Histogram,
    /// `etcd_server_proposals_committed_total` (applied entries).
    pub proposals_committed: AtomicU64,
    /// `etcd_server_proposals_failed_total`.
    pub proposals_failed: AtomicU64,
    /// `etcd_debugging_mvcc_watcher_total`-like gauge of open watches.
    pub watchers: AtomicU64,
    /// `etcd_debugging_mvcc_slow_watcher_total`: watchers moved to catch-up.
    pub slow_watchers: AtomicU64,
    /// `capstan_snapshot_builds_total`: snapshot files written for Raft.
    pub snapshot_builds: AtomicU64,
    /// `capstan_snapshot_installs_total`: snapshots received from a leader and loaded.
    pub snapshot_installs: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            wal_fsync: Histogram::disk(),
            backend_commit: Histogram::disk(),
            proposals_committed: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            watchers: AtomicU64::new(0),
            slow_watchers: AtomicU64::new(0),
            snapshot_builds: AtomicU64::new(0),
            snapshot_installs: AtomicU64::new(0),
        }
    }
}

/// Values read from Raft and the database at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// A leader is known.
    pub has_leader: bool,
    /// This member leads.
    pub is_leader: bool,
    /// Leader changes seen.
    pub leader_changes: u64,
    /// Database size in bytes.
    pub db_size: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Current term.
    pub term: u64,
    /// Store revision.
    pub revision: i64,
    /// Compacted revision.
    pub compact_revision: i64,
    /// Number of keys.
    pub keys: u64,
}

impl Metrics {
    /// Renders everything in the Prometheus text format.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            "gauge",
            f64::from(u8::from(g.has_leader)),
        );
        gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            "gauge",
            f64::from(u8::from(g.is_leader)),
        );
        gauge(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            "counter",
            g.leader_changes as f64,
        );
        gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            "gauge",
            self.proposals_committed.load(Ordering::Relaxed) as f64,
        );
        gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            "gauge",
            g.applied_index as f64,
        );
        gauge(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            "counter",
            self.proposals_failed.load(Ordering::Relaxed) as f64,
        );
        gauge(
            "etcd_server_term",
            "The current raft term.",
            "gauge",
            g.term as f64,
        );
        gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            "gauge",
            g.db_size as f64,
        );
        gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            "gauge",
            g.revision as f64,
        );
        gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            "gauge",
            g.compact_revision as f64,
        );
        gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            "gauge",
            g.keys as f64,
        );
        gauge(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            "gauge",
            self.watchers.load(Ordering::Relaxed) as f64,
        );
        gauge(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of watchers moved to catch-up.",
            "counter",
            self.slow_watchers.load(Ordering::Relaxed) as f64,
        );
        gauge(
            "capstan_snapshot_builds_total",
            "Snapshots of the state machine written for Raft.",
            "counter",
            self.snapshot_builds.load(Ordering::Relaxed) as f64,
        );
        gauge(
            "capstan_snapshot_installs_total",
            "Snapshots received from the leader and installed.",
            "counter",
            self.snapshot_installs.load(Ordering::Relaxed) as f64,
        );
        self.wal_fsync.render(
            &mut out,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        );
        self.backend_commit.render(
            &mut out,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        );
        out
    }
}
