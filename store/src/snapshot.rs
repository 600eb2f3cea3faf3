//! Snapshot files: the MVCC state at one applied log id, in one checksummed file.
//!
//! Raft sends them to members that fell behind the purged log, Maintenance.Snapshot
//! streams one to `etcdctl snapshot save`, and `capstan snapshot restore` builds a
//! data dir from one. A file is written from a RocksDB snapshot taken under the
//! state lock, so it is consistent without stopping the apply path for the copy.
//!
//! Layout: the magic `CAPSNAP1`; a length-prefixed bincode [`Header`]; records of
//! (kind, length-prefixed key, length-prefixed value) for the `kv` and `lease`
//! column families; an end marker; zero padding to a multiple of 512 bytes; then
//! the SHA-256 of every byte before it. That trailer is what etcd appends to its
//! snapshot stream and what `etcdctl snapshot save` checks for.
//! Loading is crash-safe: the file being loaded is recorded in the data dir
//! first, and a member that crashes halfway loads it again when it restarts.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{cf, Db};
use crate::error::{Error, Result};
use crate::mvcc::{
    Mvcc, StoredMembership, META_ALARMS, META_APPLIED, META_COMPACT, META_MEMBERS, META_MEMBERSHIP,
    META_REVISION,
};
use crate::types::{decode, encode, LogId, MemberInfo, NodeId};

const MAGIC: &[u8; 8] = b"CAPSNAP1";
const KIND_END: u8 = 0;
const KIND_KV: u8 = 1;
const KIND_LEASE: u8 = 2;
/// Records are written to RocksDB in batches of about this size while loading.
const LOAD_BATCH_BYTES: usize = 4 << 20;
/// Names the snapshot file a load is in progress from (in the `meta` family).
const META_LOADING: &[u8] = b"snapshot-loading";
/// The largest key or value a record may claim: a corrupt length must not make
/// the loader allocate gigabytes.
const MAX_RECORD: u32 = 64 << 20;

/// What a snapshot covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// The last applied log id and membership at the snapshot.
    pub last_log_id: Option<LogId>,
    /// The Raft membership at the snapshot.
    pub membership: StoredMembership,
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// Store revision.
    pub revision: i64,
    /// Compacted revision.
    pub compact_revision: i64,
    /// Member names and client URLs.
    pub members: BTreeMap<NodeId, MemberInfo>,
    /// Active alarms.
    pub alarms: std::collections::BTreeSet<(NodeId, i32)>,
}

/// Facts about a checked snapshot file (`capstan snapshot status`).
#[derive(Debug, Clone)]
pub struct Status {
    /// The header.
    pub header: Header,
    /// The first 32 bits of the file's SHA-256.
    pub hash: u32,
    /// Number of `kv` records (every revision of every key).
    pub kv_records: u64,
    /// Number of leases.
    pub leases: u64,
    /// File size in bytes.
    pub size: u64,
}

/// Files are padded to this multiple before the checksum (etcd's page alignment).
const ALIGN: u64 = 512;

struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashReader<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what: "snapshot file",
        detail: format!("{}: {detail}", path.display()),
    }
}

fn write_field(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(bytes)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_field(r: &mut impl Read, path: &Path) -> Result<Vec<u8>> {
    let n = read_u32(r).map_err(|e| corrupt(path, e))?;
    if n > MAX_RECORD {
        return Err(corrupt(path, format!("record of {n} bytes")));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v).map_err(|e| corrupt(path, e))?;
    Ok(v)
}

/// A unique name for a file in the snapshot directory.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{nanos}.tmp")
}

/// The snapshot directory of a member: `<data dir>/snap`.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens (creating) `<data_dir>/snap` and removes temporary files a crash left.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("snap");
        fs::create_dir_all(&dir)?;
        for e in fs::read_dir(&dir)?.flatten() {
            if e.path().extension().is_some_and(|x| x == "tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(SnapshotDir { dir })
    }

    /// A fresh temporary path in the directory.
    pub fn temp_path(&self, prefix: &str) -> PathBuf {
        self.dir.join(unique(prefix))
    }

    fn final_path(&self, h: &Header) -> PathBuf {
        let (term, index) = h
            .last_log_id
            .map(|l| (l.leader_id.term, l.index))
            .unwrap_or_default();
        self.dir.join(format!("{term:016x}-{index:016x}.snap"))
    }

    /// Moves a complete snapshot file into place and removes older ones.
    pub fn keep(&self, tmp: &Path, h: &Header) -> Result<PathBuf> {
        let path = self.final_path(h);
        fs::rename(tmp, &path)?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        for e in fs::read_dir(&self.dir)?.flatten() {
            let p = e.path();
            if p != path && p.extension().is_some_and(|x| x == "snap") {
                let _ = fs::remove_file(p);
            }
        }
        Ok(path)
    }

    /// The newest snapshot file with its header, if any.
    pub fn latest(&self) -> Result<Option<(Header, PathBuf)>> {
        let mut snaps: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .collect();
        snaps.sort();
        match snaps.pop() {
            Some(p) => Ok(Some((read_header(&p)?, p))),
            None => Ok(None),
        }
    }
}

/// Writes the current state of `mvcc` to `path` (a new file) and fsyncs it.
/// Blocking: run it off the async workers.
pub fn write(mvcc: &Mvcc, path: &Path) -> Result<Header> {
    // The log is purged behind snapshots: what they cover must be durable.
    mvcc.db.sync_wal()?;
    let db = mvcc.db.raw();
    let (header, snap) = {
        let st = mvcc.state.read();
        let snapshot_id = format!(
            "{}-{}-{}",
            st.applied.map(|l| l.leader_id.term).unwrap_or(0),
            st.applied.map(|l| l.index).unwrap_or(0),
            st.revision
        );
        let header = Header {
            last_log_id: st.applied,
            membership: st.membership.clone(),
            snapshot_id,
            revision: st.revision,
            compact_revision: st.compact_revision,
            members: st.members.clone(),
            alarms: st.alarms.clone(),
        };
        // Taken under the lock: the files hold exactly what the header says.
        (header, db.snapshot())
    };
    let file = File::create(path)?;
    let mut w = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        len: 0,
    };
    w.write_all(MAGIC)?;
    write_field(&mut w, &encode(&header))?;
    for (kind, name) in [(KIND_KV, cf::KV), (KIND_LEASE, cf::LEASE)] {
        for item in snap.iterator_cf(mvcc.db.cf(name)?, IteratorMode::Start) {
            let (k, v) = item.map_err(Error::db("snapshot scan"))?;
            w.write_all(&[kind])?;
            write_field(&mut w, &k)?;
            write_field(&mut w, &v)?;
        }
    }
    w.write_all(&[KIND_END])?;
    let pad = (ALIGN - w.len % ALIGN) % ALIGN;
    w.write_all(&vec![0u8; pad as usize])?;
    let sum = w.hash.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&sum)?;
    let file = inner.into_inner().map_err(|e| Error::Io(e.into_error()))?;
    file.sync_all()?;
    Ok(header)
}

fn open_checked(path: &Path) -> Result<(HashReader<BufReader<File>>, Header)> {
    let file = File::open(path).map_err(|e| corrupt(path, e))?;
    let mut r = HashReader {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        len: 0,
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| corrupt(path, "too short to be a capstan snapshot"))?;
    if &magic != MAGIC {
        return Err(corrupt(path, "not a capstan snapshot (bad magic)"));
    }
    let header: Header = decode("snapshot header", &read_field(&mut r, path)?)?;
    Ok((r, header))
}

fn read_header(path: &Path) -> Result<Header> {
    open_checked(path).map(|(_, h)| h)
}

/// Reads every record of a snapshot file, calling `each(kind, key, value)`, and
/// checks the checksum at the end. Returns the header and the checksum.
fn scan(
    path: &Path,
    mut each: impl FnMut(u8, Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<(Header, u32)> {
    let (mut r, header) = open_checked(path)?;
    loop {
        let mut kind = [0u8; 1];
        r.read_exact(&mut kind).map_err(|e| corrupt(path, e))?;
        match kind[0] {
            KIND_END => break,
            KIND_KV | KIND_LEASE => {
                let k = read_field(&mut r, path)?;
                let v = read_field(&mut r, path)?;
                each(kind[0], k, v)?;
            }
            other => return Err(corrupt(path, format!("unknown record kind {other}"))),
        }
    }
    let pad = (ALIGN - r.len % ALIGN) % ALIGN;
    let mut padding = vec![0u8; pad as usize];
    r.read_exact(&mut padding)
        .map_err(|e| corrupt(path, format!("no padding: {e}")))?;
    if padding.iter().any(|&b| b != 0) {
        return Err(corrupt(path, "padding is not zero"));
    }
    let sum = r.hash.clone().finalize();
    let mut want = [0u8; 32];
    r.inner
        .read_exact(&mut want)
        .map_err(|e| corrupt(path, format!("no checksum: {e}")))?;
    if sum.as_slice() != want {
        return Err(corrupt(path, "sha256 checksum mismatch"));
    }
    let mut rest = [0u8; 1];
    if r.inner.read(&mut rest).map_err(|e| corrupt(path, e))? != 0 {
        return Err(corrupt(path, "trailing bytes after the checksum"));
    }
    let hash = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
    Ok((header, hash))
}

/// Checks a snapshot file end to end without changing anything.
pub fn verify(path: &Path) -> Result<Status> {
    let (mut kv, mut leases) = (0u64, 0u64);
    let (header, hash) = scan(path, |kind, _, _| {
        if kind == KIND_KV {
            kv += 1;
        } else {
            leases += 1;
        }
        Ok(())
    })?;
    Ok(Status {
        header,
        hash,
        kv_records: kv,
        leases,
        size: fs::metadata(path)?.len(),
    })
}

/// What to take from the snapshot besides keys and leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Raft's InstallSnapshot: the applied log id and membership too.
    Raft,
    /// `snapshot restore`: keys, leases and revisions only; the new cluster
    /// brings its own members.
    Restore,
}

/// Replaces the `kv`, `lease` and applied state in `db` with the snapshot at
/// `path`, after checking the whole file. Blocking. The caller reloads the
/// in-memory state afterwards.
pub fn load(db: &Db, path: &Path, mode: Load) -> Result<Header> {
    verify(path)?;
    let meta = db.cf(cf::META)?;
    let mut b = WriteBatch::default();
    b.put_cf(
        meta,
        META_LOADING,
        encode(&(path.to_string_lossy().into_owned(), mode == Load::Raft)),
    );
    db.write_sync(b)?;
    let (kv, lease) = (db.cf(cf::KV)?, db.cf(cf::LEASE)?);
    let mut b = WriteBatch::default();
    b.delete_range_cf(kv, &[][..], &[0xffu8; 32][..]);
    b.delete_range_cf(lease, &[][..], &[0xffu8; 32][..]);
    let mut size = 0usize;
    let (header, _) = scan(path, |kind, k, v| {
        size += k.len() + v.len();
        b.put_cf(if kind == KIND_KV { kv } else { lease }, k, v);
        if size >= LOAD_BATCH_BYTES {
            db.write_nosync(std::mem::take(&mut b))?;
            size = 0;
        }
        Ok(())
    })?;
    b.put_cf(meta, META_REVISION, encode(&header.revision));
    b.put_cf(meta, META_COMPACT, encode(&header.compact_revision));
    if mode == Load::Raft {
        b.put_cf(meta, META_APPLIED, encode(&header.last_log_id));
        b.put_cf(meta, META_MEMBERSHIP, encode(&header.membership));
        b.put_cf(meta, META_MEMBERS, encode(&header.members));
        b.put_cf(meta, META_ALARMS, encode(&header.alarms));
    }
    b.delete_cf(meta, META_LOADING);
    db.write_sync(b)?;
    Ok(header)
}

/// Finishes a load that a crash interrupted. Call before reading the state.
pub fn resume_load(db: &Db) -> Result<()> {
    let Some(v) = db.get(cf::META, META_LOADING)? else {
        return Ok(());
    };
    let (path, raft): (String, bool) = decode("snapshot load marker", &v)?;
    let path = PathBuf::from(path);
    tracing::warn!(path = %path.display(), "a snapshot load was interrupted; loading it again");
    load(db, &path, if raft { Load::Raft } else { Load::Restore }).map_err(|e| {
        Error::Config(format!(
            "the data dir is half-way through loading snapshot {}, which cannot be read ({e}); \
             remove the data dir and rejoin the member",
            path.display()
        ))
    })?;
    Ok(())
}
