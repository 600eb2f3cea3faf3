//! The in-memory key index: for every key, its generations of revisions.
//!
//! This is etcd's `treeIndex`. Values live in RocksDB keyed by revision; the
//! index maps a key and a read revision to the revision holding the value. A
//! generation runs from a key's creation to its deletion (tombstone); a key
//! that is created again starts a new generation.

use serde::{Deserialize, Serialize};

/// A store revision: `main` is the store revision of the write, `sub` orders
/// the writes of one transaction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Rev {
    /// Store revision.
    pub main: i64,
    /// Position within the revision's transaction.
    pub sub: i64,
}

impl Rev {
    /// Creates a revision.
    pub fn new(main: i64, sub: i64) -> Self {
        Rev { main, sub }
    }

    /// The `kv` column family key of a put at this revision.
    pub fn to_key(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.main.to_be_bytes());
        k[8..].copy_from_slice(&self.sub.to_be_bytes());
        k
    }

    /// The `kv` column family key of a tombstone at this revision.
    pub fn to_tombstone_key(self) -> [u8; 17] {
        let mut k = [b't'; 17];
        k[..16].copy_from_slice(&self.to_key());
        k
    }

    /// Parses a `kv` column family key; the flag says whether it is a tombstone.
    pub fn from_key(k: &[u8]) -> Option<(Rev, bool)> {
        if k.len() != 16 && k.len() != 17 {
            return None;
        }
        let main = i64::from_be_bytes(k[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(k[8..16].try_into().ok()?);
        Some((Rev { main, sub }, k.len() == 17))
    }
}

/// One life of a key, from creation to deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Revision that created the key (its `create_revision`).
    pub created: i64,
    /// Version of `revs[0]` (grows when compaction drops older revisions).
    pub first_version: i64,
    /// Puts of this generation, ascending.
    pub revs: Vec<Rev>,
    /// The delete that ended this generation.
    pub tombstone: Option<Rev>,
}

/// What a read at some revision finds for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Revision holding the value (`mod_revision` is `rev.main`).
    pub rev: Rev,
    /// `create_revision`.
    pub created: i64,
    /// `version`.
    pub version: i64,
}

/// A key's generations; the last one is live unless it has a tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    gens: Vec<Generation>,
    /// Lease of the latest put (0 = none, or the key is deleted).
    pub lease: i64,
}

impl KeyIndex {
    /// Records a put; returns the new version and create revision.
    pub fn put(&mut self, rev: Rev, lease: i64) -> (i64, i64) {
        self.lease = lease;
        match self.gens.last_mut() {
            Some(g) if g.tombstone.is_none() => {
                g.revs.push(rev);
                (g.first_version + g.revs.len() as i64 - 1, g.created)
            }
            _ => {
                self.gens.push(Generation {
                    created: rev.main,
                    first_version: 1,
                    revs: vec![rev],
                    tombstone: None,
                });
                (1, rev.main)
            }
        }
    }

    /// Rebuilds from a stored record whose create revision and version are known
    /// (older revisions may have been compacted away).
    pub fn restore(&mut self, rev: Rev, created: i64, version: i64, lease: i64) {
        self.lease = lease;
        match self.gens.last_mut() {
            Some(g) if g.tombstone.is_none() && g.created == created => g.revs.push(rev),
            _ => self.gens.push(Generation {
                created,
                first_version: version,
                revs: vec![rev],
                tombstone: None,
            }),
        }
    }

    /// Records a delete; false if the key was not live.
    pub fn tombstone(&mut self, rev: Rev) -> bool {
        self.lease = 0;
        match self.gens.last_mut() {
            Some(g) if g.tombstone.is_none() => {
                g.tombstone = Some(rev);
                true
            }
            _ => false,
        }
    }

    /// The key's state as of revision `at`.
    pub fn get(&self, at: i64) -> Option<Hit> {
        for g in self.gens.iter().rev() {
            let first = g.revs.first()?;
            if first.main > at {
                continue;
            }
            if let Some(t) = g.tombstone {
                if t.main <= at {
                    return None;
                }
            }
            let n = g.revs.partition_point(|r| r.main <= at);
            if n == 0 {
                return None;
            }
            return Some(Hit {
                rev: g.revs[n - 1],
                created: g.created,
                version: g.first_version + n as i64 - 1,
            });
        }
        None
    }

    /// The latest state, if the key is live.
    pub fn latest(&self) -> Option<Hit> {
        self.get(i64::MAX)
    }

    /// Drops what is not needed to read at revisions `>= at`; returns the `kv`
    /// keys of the dropped records. True in the second value if the key is gone.
    pub fn compact(&mut self, at: i64, dropped: &mut Vec<Vec<u8>>) -> bool {
        self.gens.retain_mut(|g| {
            if let Some(t) = g.tombstone {
                if t.main <= at {
                    dropped.extend(g.revs.iter().map(|r| r.to_key().to_vec()));
                    dropped.push(t.to_tombstone_key().to_vec());
                    return false;
                }
            }
            let n = g.revs.partition_point(|r| r.main <= at);
            if n > 1 {
                dropped.extend(g.revs[..n - 1].iter().map(|r| r.to_key().to_vec()));
                g.revs.drain(..n - 1);
                g.first_version += n as i64 - 1;
            }
            true
        });
        self.gens.is_empty()
    }

    /// The revision before `rev` at which the key was live, for a watch's `prev_kv`.
    pub fn before(&self, rev: i64) -> Option<Hit> {
        self.get(rev - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: i64) -> Rev {
        Rev::new(m, 0)
    }

    #[test]
    fn versions_and_generations() {
        let mut k = KeyIndex::default();
        assert_eq!(k.put(r(2), 0), (1, 2));
        assert_eq!(k.put(r(4), 0), (2, 2));
        assert!(k.tombstone(r(6)));
        assert!(!k.tombstone(r(7)));
        assert_eq!(k.put(r(8), 0), (1, 8));
        let cases = [
            (1, None),
            (2, Some((2, 2, 1))),
            (3, Some((2, 2, 1))),
            (5, Some((4, 2, 2))),
            (6, None),
            (7, None),
            (8, Some((8, 8, 1))),
            (100, Some((8, 8, 1))),
        ];
        for (at, want) in cases {
            let got = k.get(at).map(|h| (h.rev.main, h.created, h.version));
            assert_eq!(got, want, "at {at}");
        }
    }

    #[test]
    fn compaction_keeps_what_reads_need() {
        let mut k = KeyIndex::default();
        k.put(r(2), 0);
        k.put(r(3), 0);
        k.tombstone(r(4));
        k.put(r(5), 0);
        k.put(r(6), 0);
        k.put(r(9), 0);
        let mut dropped = Vec::new();
        assert!(!k.compact(7, &mut dropped));
        // first generation gone (with its tombstone), rev 5 dropped, 6 kept for reads at 7..
        assert_eq!(dropped.len(), 4);
        assert_eq!(k.get(7).map(|h| (h.rev.main, h.version)), Some((6, 2)));
        assert_eq!(k.get(9).map(|h| (h.rev.main, h.version)), Some((9, 3)));
        let mut k2 = KeyIndex::default();
        k2.put(r(1), 0);
        k2.tombstone(r(2));
        let mut d = Vec::new();
        assert!(k2.compact(2, &mut d));
    }

    #[test]
    fn rev_keys_round_trip() {
        let rev = Rev::new(42, 3);
        assert_eq!(Rev::from_key(&rev.to_key()), Some((rev, false)));
        assert_eq!(Rev::from_key(&rev.to_tombstone_key()), Some((rev, true)));
        assert_eq!(Rev::from_key(b"short"), None);
    }
}
