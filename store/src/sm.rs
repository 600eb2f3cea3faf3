//! The Raft state machine: openraft's view of [`Mvcc`], plus snapshots.
//!
//! A snapshot is a file (see [`crate::snapshot`]) holding the whole MVCC state
//! at the applied log id, written from a RocksDB snapshot on a blocking thread;
//! openraft streams it to members that fell behind the purged log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::mvcc::{Applier, EventBatch, Mvcc, State, StoredMembership};
use crate::snapshot::{self, SnapshotDir};
use crate::types::{Applied, Entry, LogId, MemberInfo, NodeId, StorageError, TypeConfig};
use crate::watch::WatchHub;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

/// The state machine handed to openraft.
pub struct StateMachine {
    mvcc: Arc<Mvcc>,
    hub: WatchHub,
    metrics: Arc<Metrics>,
    snaps: SnapshotDir,
    /// Where the snapshot being received from the leader is written.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    /// Wraps the MVCC store; snapshots live in `snaps`.
    pub fn new(mvcc: Arc<Mvcc>, hub: WatchHub, metrics: Arc<Metrics>, snaps: SnapshotDir) -> Self {
        StateMachine {
            mvcc,
            hub,
            metrics,
            snaps,
            receiving: None,
        }
    }
}

fn meta_of(h: &snapshot::Header) -> SnapshotMeta<NodeId, MemberInfo> {
    SnapshotMeta {
        last_log_id: h.last_log_id,
        last_membership: h.membership.clone(),
        snapshot_id: h.snapshot_id.clone(),
    }
}

/// Builds a snapshot file of the current state and makes it the current one.
fn build(mvcc: &Mvcc, snaps: &SnapshotDir) -> Result<(SnapshotMeta<NodeId, MemberInfo>, PathBuf)> {
    let tmp = snaps.temp_path("build");
    let header = snapshot::write(mvcc, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    let path = snaps.keep(&tmp, &header)?;
    Ok((meta_of(&header), path))
}

async fn open_data(path: &std::path::Path) -> Result<Box<tokio::fs::File>, StorageError> {
    tokio::fs::File::open(path)
        .await
        .map(Box::new)
        .map_err(|e| sm_err(ErrorVerb::Read, e))
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
            snaps: self.snaps.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snaps.temp_path("recv");
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.receiving = Some(path);
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MemberInfo>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let Some(tmp) = self.receiving.take() else {
            return Err(sm_err(
                ErrorVerb::Write,
                "snapshot installed without being received",
            ));
        };
        snapshot
            .sync_all()
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        drop(snapshot);
        let (mvcc, snaps, meta) = (self.mvcc.clone(), self.snaps.clone(), meta.clone());
        let revision = tokio::task::spawn_blocking(move || -> Result<i64> {
            let header = snapshot::verify(&tmp)?.header;
            if header.last_log_id != meta.last_log_id {
                return Err(Error::Corrupt {
                    what: "snapshot",
                    detail: format!(
                        "file covers {:?}, the leader announced {:?}",
                        header.last_log_id, meta.last_log_id
                    ),
                });
            }
            let path = snaps.keep(&tmp, &header)?;
            // Readers wait while the state is replaced under them.
            let mut st = mvcc.state.write();
            snapshot::load(&mvcc.db, &path, snapshot::Load::Raft)?;
            *st = State::load(&mvcc.db)?;
            Ok(st.revision)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.hub.publish_jump(revision);
        self.metrics
            .snapshot_installs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (mvcc, snaps) = (self.mvcc.clone(), self.snaps.clone());
        let found = tokio::task::spawn_blocking(move || -> Result<_> {
            match snaps.latest()? {
                Some((h, p)) => Ok((meta_of(&h), p)),
                None => build(&mvcc, &snaps),
            }
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Read, e))?
        .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let (meta, path) = found;
        Ok(Some(Snapshot {
            meta,
            snapshot: open_data(&path).await?,
        }))
    }
}

/// Builds snapshots off the apply path.
pub struct SnapshotBuilder {
    mvcc: Arc<Mvcc>,
    snaps: SnapshotDir,
    metrics: Arc<Metrics>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (mvcc, snaps) = (self.mvcc.clone(), self.snaps.clone());
        let (meta, path) = tokio::task::spawn_blocking(move || build(&mvcc, &snaps))
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        self.metrics
            .snapshot_builds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: open_data(&path).await?,
        })
    }
}
