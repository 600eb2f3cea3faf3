//! Histories of single-key KV operations issued by concurrent clients.
//!
//! Client tasks describe each operation with an [`Op`], announce it to a shared
//! [`Recorder`] just before sending it ([`Recorder::invoke`]) and report what came
//! back ([`Invocation::complete`]). The recorder stamps both instants against one
//! common start, so the records of all clients share a time line. A finished run is
//! a [`History`]: the input of the linearizability checker
//! ([`crate::linearizable`]) and, through [`History::acknowledged_writes`], of the
//! watch checker ([`crate::watch`]). Everything serializes to JSON so the history of
//! a failing seed can be saved next to its report.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Identifies one client task of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub u32);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// An etcd store revision (the `revision` of a response header or a key's
/// `mod_revision`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub i64);

impl From<i64> for Revision {
    fn from(r: i64) -> Self {
        Revision(r)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// One single-key operation as a client issued it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Linearizable read of one key.
    Get {
        /// The key read.
        key: String,
    },
    /// Unconditional write.
    Put {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
    },
    /// Delete of one key (a no-op, without a new revision, if it is absent).
    Delete {
        /// The key deleted.
        key: String,
    },
    /// Compare-and-set as one txn: if the key's value equals `expect` (or, for
    /// `expect == None`, the key is absent: `create_revision == 0`) then put `value`.
    Cas {
        /// The key compared and written.
        key: String,
        /// The value the key must hold; `None` means the key must be absent.
        expect: Option<String>,
        /// The value written when the comparison holds.
        value: String,
    },
}

impl Op {
    /// The key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    /// Whether the operation may change the store.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Get { key } => write!(f, "get({key})"),
            Op::Put { key, value } => write!(f, "put({key}, {value:?})"),
            Op::Delete { key } => write!(f, "delete({key})"),
            Op::Cas { key, expect, value } => {
                write!(
                    f,
                    "cas({key}, {}, {value:?})",
                    show_value(expect.as_deref())
                )
            }
        }
    }
}

/// What a completed operation returned. Variants mirror [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// Result of [`Op::Get`].
    Get {
        /// The value read; `None` if the key was absent.
        value: Option<String>,
        /// Header revision of the response, when known.
        revision: Option<Revision>,
    },
    /// Result of [`Op::Put`].
    Put {
        /// Header revision of the response (the revision of this write), when known.
        revision: Option<Revision>,
    },
    /// Result of [`Op::Delete`].
    Delete {
        /// Number of keys deleted: 0 or 1.
        deleted: u64,
        /// Header revision of the response (the revision of this delete if
        /// `deleted == 1`), when known.
        revision: Option<Revision>,
    },
    /// Result of [`Op::Cas`].
    Cas {
        /// Whether the comparison held and the value was written.
        succeeded: bool,
        /// Header revision of the response (the revision of this write if it
        /// succeeded), when known.
        revision: Option<Revision>,
    },
}

impl Output {
    /// The header revision of the response, when known.
    pub fn revision(&self) -> Option<Revision> {
        match self {
            Output::Get { revision, .. }
            | Output::Put { revision }
            | Output::Delete { revision, .. }
            | Output::Cas { revision, .. } => *revision,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Get { value, .. } => write!(f, "{}", show_value(value.as_deref())),
            Output::Put { .. } => write!(f, "ok"),
            Output::Delete { deleted, .. } => write!(f, "deleted={deleted}"),
            Output::Cas { succeeded, .. } => write!(f, "succeeded={succeeded}"),
        }?;
        match self.revision() {
            Some(r) => write!(f, " @{r}"),
            None => Ok(()),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The operation completed and returned this output.
    Ok(Output),
    /// The operation definitely did not take effect (for example the client could
    /// not connect, or the request was rejected before it was proposed).
    Fail {
        /// Why, for reports.
        reason: String,
    },
    /// The operation may or may not have taken effect (timeout, connection lost
    /// mid-request, leader change, ...).
    Unknown {
        /// Why, for reports.
        reason: String,
    },
}

/// One operation of one client, with its real-time interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The client that issued the operation.
    pub client: ClientId,
    /// The operation.
    pub op: Op,
    /// When the client sent it, in nanoseconds since the recorder's start.
    pub invoke_ns: u64,
    /// When the client got the answer, in nanoseconds since the recorder's start;
    /// `None` (infinitely late) for [`Outcome::Unknown`].
    pub complete_ns: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = match self.complete_ns {
            Some(ns) => secs(ns),
            None => "inf".to_owned(),
        };
        write!(
            f,
            "[{}, {end}] {} {} -> ",
            secs(self.invoke_ns),
            self.client,
            self.op
        )?;
        match &self.outcome {
            Outcome::Ok(out) => write!(f, "{out}"),
            Outcome::Fail { reason } => write!(f, "FAIL ({reason})"),
            Outcome::Unknown { reason } => write!(f, "UNKNOWN ({reason})"),
        }
    }
}

/// Nanoseconds as exact seconds, e.g. `1.000250000s`.
fn secs(ns: u64) -> String {
    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// Renders an optional register value for humans: the value quoted, or `absent`.
pub(crate) fn show_value(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "absent".to_owned(),
    }
}

/// Kind of change a write made to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// The key was set to a value.
    Put,
    /// The key was deleted.
    Delete,
}

/// A write whose success the client saw, with the revision it created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckWrite {
    /// Revision the write created (the response header revision).
    pub revision: Revision,
    /// The key written.
    pub key: String,
    /// Put or delete.
    pub kind: WriteKind,
    /// The value written; `None` for deletes.
    pub value: Option<String>,
    /// Index of the record in [`History::records`].
    pub record: usize,
}

/// Counts of records by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// All records.
    pub total: usize,
    /// Records with [`Outcome::Ok`].
    pub ok: usize,
    /// Records with [`Outcome::Fail`].
    pub fail: usize,
    /// Records with [`Outcome::Unknown`].
    pub unknown: usize,
    /// Reads among all records.
    pub reads: usize,
    /// Writes among all records.
    pub writes: usize,
}

/// All records of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Records in completion order (the order the recorder received them).
    pub records: Vec<Record>,
}

impl History {
    /// A history of the given records.
    pub fn new(records: Vec<Record>) -> Self {
        History { records }
    }

    /// Counts records by outcome and kind.
    pub fn counts(&self) -> OutcomeCounts {
        let mut c = OutcomeCounts {
            total: self.records.len(),
            ..OutcomeCounts::default()
        };
        for r in &self.records {
            match r.outcome {
                Outcome::Ok(_) => c.ok += 1,
                Outcome::Fail { .. } => c.fail += 1,
                Outcome::Unknown { .. } => c.unknown += 1,
            }
            if r.op.is_write() {
                c.writes += 1;
            } else {
                c.reads += 1;
            }
        }
        c
    }

    /// Writes that the client saw succeed and that created a revision: puts,
    /// successful CASes and deletes that removed a key, each with a known header
    /// revision. Sorted by revision.
    pub fn acknowledged_writes(&self) -> Vec<AckWrite> {
        let mut acks: Vec<AckWrite> = self
            .records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let Outcome::Ok(out) = &r.outcome else {
                    return None;
                };
                let (kind, value, revision) = match (&r.op, out) {
                    (Op::Put { value, .. }, Output::Put { revision }) => {
                        (WriteKind::Put, Some(value.clone()), *revision)
                    }
                    (
                        Op::Cas { value, .. },
                        Output::Cas {
                            succeeded: true,
                            revision,
                        },
                    ) => (WriteKind::Put, Some(value.clone()), *revision),
                    (Op::Delete { .. }, Output::Delete { deleted, revision }) if *deleted > 0 => {
                        (WriteKind::Delete, None, *revision)
                    }
                    _ => return None,
                };
                Some(AckWrite {
                    revision: revision?,
                    key: r.op.key().to_owned(),
                    kind,
                    value,
                    record: i,
                })
            })
            .collect();
        acks.sort_by_key(|a| (a.revision, a.record));
        acks
    }
}

struct RecorderInner {
    start: Instant,
    records: Mutex<Vec<Record>>,
}

/// Collects records from many tasks. Cheap to clone; all clones share one history
/// and one start instant.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("start", &self.inner.start)
            .field("records", &self.len())
            .finish()
    }
}

impl Recorder {
    /// A recorder whose time line starts now.
    pub fn new() -> Self {
        Recorder {
            inner: Arc::new(RecorderInner {
                start: Instant::now(),
                records: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The instant all timestamps are measured from.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// Nanoseconds elapsed since [`Recorder::start`].
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Marks `op` as sent by `client` now. Complete the returned invocation with
    /// the outcome; an invocation dropped without completion (for example because
    /// its task was cancelled mid-request) is recorded as [`Outcome::Unknown`].
    pub fn invoke(&self, client: ClientId, op: Op) -> Invocation {
        Invocation {
            recorder: self.clone(),
            client,
            op: Some(op),
            invoke_ns: self.now_ns(),
        }
    }

    /// Adds a finished record as is (for records built elsewhere, e.g. in tests).
    pub fn record(&self, record: Record) {
        self.inner.records.lock().push(record);
    }

    /// Number of records so far.
    pub fn len(&self) -> usize {
        self.inner.records.lock().len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of everything recorded so far.
    pub fn history(&self) -> History {
        History::new(self.inner.records.lock().clone())
    }
}

/// An operation that was sent and awaits its outcome. See [`Recorder::invoke`].
#[derive(Debug)]
pub struct Invocation {
    recorder: Recorder,
    client: ClientId,
    /// `None` once completed.
    op: Option<Op>,
    invoke_ns: u64,
}

impl Invocation {
    /// The operation in flight.
    pub fn op(&self) -> Option<&Op> {
        self.op.as_ref()
    }

    /// Records the outcome, stamping the completion time now (none for
    /// [`Outcome::Unknown`]).
    pub fn complete(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        let Some(op) = self.op.take() else {
            return;
        };
        let complete_ns = match outcome {
            Outcome::Unknown { .. } => None,
            _ => Some(self.recorder.now_ns().max(self.invoke_ns)),
        };
        self.recorder.record(Record {
            client: self.client,
            op,
            invoke_ns: self.invoke_ns,
            complete_ns,
            outcome,
        });
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        self.finish(Outcome::Unknown {
            reason: "abandoned before completion".to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn invocation_records_interval_and_outcome() {
        let rec = Recorder::new();
        let inv = rec.invoke(ClientId(1), put("k", "v"));
        inv.complete(Outcome::Ok(Output::Put {
            revision: Some(Revision(5)),
        }));
        let inv = rec.invoke(ClientId(2), put("k", "w"));
        inv.complete(Outcome::Unknown {
            reason: "timeout".to_owned(),
        });
        let h = rec.history();
        assert_eq!(h.records.len(), 2);
        let done = h.records[0].complete_ns.unwrap();
        assert!(done >= h.records[0].invoke_ns);
        assert_eq!(h.records[1].complete_ns, None);
        assert_eq!(h.records[1].client, ClientId(2));
    }

    #[test]
    fn dropped_invocation_is_unknown() {
        let rec = Recorder::new();
        drop(rec.invoke(ClientId(0), put("k", "v")));
        let h = rec.history();
        assert!(matches!(h.records[0].outcome, Outcome::Unknown { .. }));
        assert_eq!(h.records[0].complete_ns, None);
    }

    #[tokio::test]
    async fn recorder_collects_from_many_tasks() {
        let rec = Recorder::new();
        let mut tasks = Vec::new();
        for c in 0..8u32 {
            let rec = rec.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..50 {
                    let inv = rec.invoke(
                        ClientId(c),
                        Op::Get {
                            key: format!("k{n}"),
                        },
                    );
                    tokio::task::yield_now().await;
                    inv.complete(Outcome::Ok(Output::Get {
                        value: None,
                        revision: None,
                    }));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(rec.len(), 400);
        assert_eq!(rec.history().counts().reads, 400);
    }

    #[test]
    fn acknowledged_writes_pick_revision_creating_writes() {
        let ok = |op: Op, out: Output| Record {
            client: ClientId(0),
            op,
            invoke_ns: 0,
            complete_ns: Some(1),
            outcome: Outcome::Ok(out),
        };
        let h = History::new(vec![
            ok(
                put("a", "1"),
                Output::Put {
                    revision: Some(Revision(3)),
                },
            ),
            ok(
                Op::Delete { key: "a".into() },
                Output::Delete {
                    deleted: 0,
                    revision: Some(Revision(3)),
                },
            ),
            ok(
                Op::Delete { key: "a".into() },
                Output::Delete {
                    deleted: 1,
                    revision: Some(Revision(4)),
                },
            ),
            ok(
                Op::Cas {
                    key: "a".into(),
                    expect: None,
                    value: "2".into(),
                },
                Output::Cas {
                    succeeded: false,
                    revision: Some(Revision(4)),
                },
            ),
            ok(
                Op::Cas {
                    key: "a".into(),
                    expect: None,
                    value: "3".into(),
                },
                Output::Cas {
                    succeeded: true,
                    revision: Some(Revision(2)),
                },
            ),
            ok(put("a", "no-rev"), Output::Put { revision: None }),
        ]);
        let acks = h.acknowledged_writes();
        let got: Vec<_> = acks
            .iter()
            .map(|a| (a.revision.0, a.kind, a.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, WriteKind::Put, Some("3".to_owned())),
                (3, WriteKind::Put, Some("1".to_owned())),
                (4, WriteKind::Delete, None),
            ]
        );
    }

    #[test]
    fn history_round_trips_through_json() {
        let h = History::new(vec![Record {
            client: ClientId(3),
            op: Op::Cas {
                key: "k".into(),
                expect: Some("x".into()),
                value: "y".into(),
            },
            invoke_ns: 10,
            complete_ns: None,
            outcome: Outcome::Unknown {
                reason: "timeout".into(),
            },
        }]);
        let json = serde_json::to_string(&h).unwrap();
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }
}
