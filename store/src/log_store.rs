//! The Raft log and vote in RocksDB, with group commit.
//!
//! `append` writes entries to RocksDB without syncing (they are readable at
//! once) and hands the completion callback to one flusher thread. The flusher
//! takes every callback queued since its last round, fsyncs the write-ahead log
//! once, and completes them all: concurrent proposals share one fsync.

// openraft's `StorageError` is large; it is the trait's error type, so it stays unboxed.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{cf, Db};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::types::{decode, encode, Entry, LogId, NodeId, StorageError, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"purged";
const KEY_COMMITTED: &[u8] = b"committed";

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

fn log_err(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

/// The Raft log store of one member.
pub struct LogStore {
    db: Db,
    flush_tx: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    /// Opens the log store and starts its flusher thread.
    pub fn new(db: Db, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (flush_tx, flush_rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let fdb = db.clone();
        std::thread::Builder::new()
            .name("capstan-wal-sync".into())
            .spawn(move || flusher(fdb, flush_rx, metrics))?;
        Ok(LogStore { db, flush_tx })
    }
}

/// The group-commit loop: one fsync for everything queued since the last one.
fn flusher(db: Db, rx: mpsc::Receiver<LogFlushed<TypeConfig>>, metrics: Arc<Metrics>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let res = db.sync_wal();
        metrics.wal_fsync.observe(started.elapsed().as_secs_f64());
        for cb in waiting {
            let r = match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            cb.log_io_completed(r);
        }
    }
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn read_entries<RB: RangeBounds<u64>>(db: &Db, range: RB) -> Result<Vec<Entry>, StorageError> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let h = db.cf(cf::RAFT_LOG).map_err(log_err)?;
    let key = index_key(start);
    let it = db
        .raw()
        .iterator_cf(h, IteratorMode::From(&key, Direction::Forward));
    let mut out = Vec::new();
    for item in it {
        let (k, v) = item.map_err(log_err)?;
        let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(log_err)?);
        if !range.contains(&idx) {
            break;
        }
        out.push(decode::<Entry>("raft log entry", &v).map_err(log_err)?);
    }
    Ok(out)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        tokio::task::block_in_place(|| read_entries(&db, range))
    }
}

impl LogStore {
    fn get_state<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.db.get(cf::RAFT_STATE, key).map_err(log_err)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode("raft state", &v).map_err(log_err)?)),
        }
    }

    fn put_state<T: serde::Serialize>(&self, key: &[u8], v: &T, sync: bool) -> Result<(), Error> {
        let mut b = WriteBatch::default();
        b.put_cf(self.db.cf(cf::RAFT_STATE)?, key, encode(v));
        if sync {
            self.db.write_sync(b)
        } else {
            self.db.write_nosync(b)
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_state(KEY_PURGED)?;
        let h = self.db.cf(cf::RAFT_LOG).map_err(log_err)?;
        let last = match self.db.raw().iterator_cf(h, IteratorMode::End).next() {
            None => None,
            Some(item) => {
                let (_, v) = item.map_err(log_err)?;
                Some(
                    decode::<Entry>("raft log entry", &v)
                        .map_err(log_err)?
                        .log_id,
                )
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            db: self.db.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        tokio::task::block_in_place(|| self.put_state(KEY_VOTE, vote, true))
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_state(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_state(KEY_COMMITTED, &committed, false)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_state::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write = || -> Result<(), Error> {
            let h = self.db.cf(cf::RAFT_LOG)?;
            let mut b = WriteBatch::default();
            for e in entries {
                b.put_cf(h, index_key(e.log_id.index), encode(&e));
            }
            self.db.write_nosync(b)
        };
        // An unsynced write only reaches the memtable and the WAL's page cache
        // (microseconds); handing the thread over with `block_in_place` cost more
        // than that per request (BENCHMARKS.md, history). The fsync, the one slow
        // part, runs on the flusher thread.
        write().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        if let Err(mpsc::SendError(cb)) = self.flush_tx.send(callback) {
            // The flusher thread is gone; sync here so the write is still durable.
            let r = self
                .db
                .sync_wal()
                .map_err(|e| std::io::Error::other(e.to_string()));
            cb.log_io_completed(r);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let run = || -> Result<(), Error> {
            let h = self.db.cf(cf::RAFT_LOG)?;
            let mut b = WriteBatch::default();
            b.delete_range_cf(h, index_key(log_id.index), index_key(u64::MAX));
            b.delete_cf(h, index_key(u64::MAX));
            self.db.write_sync(b)
        };
        tokio::task::block_in_place(run)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let run = || -> Result<(), Error> {
            let h = self.db.cf(cf::RAFT_LOG)?;
            let mut b = WriteBatch::default();
            b.put_cf(self.db.cf(cf::RAFT_STATE)?, KEY_PURGED, encode(&log_id));
            b.delete_range_cf(h, index_key(0), index_key(log_id.index.saturating_add(1)));
            self.db.write_nosync(b)
        };
        tokio::task::block_in_place(run)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// A reader of the log for replication tasks.
pub struct LogReader {
    db: Db,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        tokio::task::block_in_place(|| read_entries(&db, range))
    }
}
