//! The member's one RocksDB database and its column families.
//!
//! Everything durable lives in one database so that one write-ahead log and one
//! fsync cover the Raft log, the vote and the MVCC state together:
//!
//! | column family | key | value |
//! |---|---|---|
//! | `raft_log` | log index (u64, big endian) | bincode `Entry` |
//! | `raft_state` | `vote`, `purged`, `committed` | bincode |
//! | `kv` | revision (main, sub: 2 × i64 BE) [+ `t` for a tombstone] | protobuf `mvccpb.KeyValue` |
//! | `lease` | lease id (i64 BE) | bincode [`crate::mvcc::LeaseRecord`] |
//! | `meta` | `applied`, `membership`, `revision`, `compact`, `members` | bincode |

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteOptions, DB};

use crate::error::{Error, Result};

/// Column family names.
pub(crate) mod cf {
    pub const RAFT_LOG: &str = "raft_log";
    pub const RAFT_STATE: &str = "raft_state";
    pub const KV: &str = "kv";
    pub const LEASE: &str = "lease";
    pub const META: &str = "meta";
    pub const ALL: [&str; 5] = [RAFT_LOG, RAFT_STATE, KV, LEASE, META];
}

/// Shared handle on the member's database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path())
            .finish()
    }
}

/// Bound on the write-ahead log files kept (see [`Db::open`]).
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

impl Db {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // A write-ahead log file can only go once every column family with data
        // in it has flushed. The small families (meta, raft_state, lease) fill
        // their memtables slowly and would pin every log file under endless
        // churn (measured: 1.7 GB of logs after two minutes); past this total
        // RocksDB flushes them so old logs can be deleted.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let cfs = cf::ALL.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs).map_err(Error::db("open"))?;
        Ok(Db {
            inner: Arc::new(db),
        })
    }

    /// The raw RocksDB handle.
    pub fn raw(&self) -> &DB {
        &self.inner
    }

    /// A column family handle; the names are fixed at open, so a missing one is a bug
    /// in this module, reported as corruption rather than a panic.
    pub fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.inner.cf_handle(name).ok_or(Error::Corrupt {
            what: "column family",
            detail: format!("{name} missing"),
        })
    }

    /// Writes a batch without waiting for the disk; a later [`Db::sync_wal`] (the
    /// log flusher's group commit) makes it durable.
    pub fn write_nosync(&self, batch: rocksdb::WriteBatch) -> Result<()> {
        let mut o = WriteOptions::default();
        o.set_sync(false);
        self.inner.write_opt(batch, &o).map_err(Error::db("write"))
    }

    /// Writes a batch and fsyncs the write-ahead log before returning.
    pub fn write_sync(&self, batch: rocksdb::WriteBatch) -> Result<()> {
        let mut o = WriteOptions::default();
        o.set_sync(true);
        self.inner.write_opt(batch, &o).map_err(Error::db("write"))
    }

    /// Fsyncs the write-ahead log: every write issued before this call is durable after it.
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.flush_wal(true).map_err(Error::db("sync wal"))
    }

    /// Reads one value.
    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner
            .get_cf(self.cf(cf)?, key)
            .map_err(Error::db("get"))
    }

    /// Approximate on-disk size of the database in bytes (SST files plus memtables).
    pub fn size_bytes(&self) -> u64 {
        let mut total = 0;
        for name in cf::ALL {
            if let Ok(h) = self.cf(name) {
                for prop in [
                    "rocksdb.total-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ] {
                    total += self
                        .inner
                        .property_int_value_cf(h, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
        }
        total
    }
}
