//! Checks of recorded watch streams.
//!
//! Input: one [`WatcherLog`] per watcher (its prefix, start revision and the
//! events it received in order, including across resumes on other members), and
//! the [`History`] whose acknowledged writes carry the revisions they created.
//! [`check_watches`] verifies, per watcher and across watchers:
//!
//! - order: revisions never go back, and no `(revision, key)` event arrives twice;
//! - completeness: every revision known to exist — because some watcher saw an
//!   event at it or an acknowledged write created it — between the watcher's start
//!   and the last revision it saw, and touching its prefix, is in its stream, with
//!   every key known to change at that revision;
//! - agreement: all watchers saw the same event (kind and value) at each
//!   `(revision, key)`;
//! - durability: every acknowledged write at revision `r` is the event at `r` for
//!   every watcher whose range covers `r`, and no two acknowledged writes claim one
//!   revision;
//! - compaction: a watcher told its start revision was compacted is a problem
//!   unless the run expected compactions.
//!
//! Revisions nobody knows about (a write outside the prefix, say) are not gaps:
//! the check never assumes revisions are dense.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{show_value, AckWrite, History, Revision, WriteKind};

/// One event as a watcher received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The revision of the change (the key's `mod_revision`).
    pub revision: Revision,
    /// The key changed.
    pub key: String,
    /// Put or delete.
    pub kind: WriteKind,
    /// The new value of a put; `None` for deletes.
    pub value: Option<String>,
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WriteKind::Put => write!(
                f,
                "{} put {} = {}",
                self.revision,
                self.key,
                show_value(self.value.as_deref())
            ),
            WriteKind::Delete => write!(f, "{} delete {}", self.revision, self.key),
        }
    }
}

/// A watch stream that broke and was established again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The revision the new stream started from (last seen + 1).
    pub from_revision: Revision,
    /// The member it was established on.
    pub endpoint: String,
    /// Why the previous stream ended.
    pub reason: String,
}

/// Everything one watcher received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherLog {
    /// Index of the watcher.
    pub id: usize,
    /// The key prefix it watched.
    pub prefix: String,
    /// The revision it watched from (inclusive).
    pub start_revision: Revision,
    /// Events in the order received.
    pub events: Vec<WatchEvent>,
    /// Each time the stream broke and was resumed.
    pub resumes: Vec<Resume>,
    /// Set if the server reported the requested revision as compacted (the
    /// compact revision it named); the watcher stopped there.
    pub compacted: Option<Revision>,
    /// The first errors the watcher met (streams that failed to open or broke).
    pub errors: Vec<String>,
}

impl WatcherLog {
    /// An empty log of watcher `id` over `prefix` from `start_revision`.
    pub fn new(id: usize, prefix: impl Into<String>, start_revision: Revision) -> Self {
        WatcherLog {
            id,
            prefix: prefix.into(),
            start_revision,
            ..WatcherLog::default()
        }
    }

    /// The highest revision received.
    pub fn last_revision(&self) -> Option<Revision> {
        self.events.iter().map(|e| e.revision).max()
    }
}

/// Options of [`check_watches`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchCheckConfig {
    /// Whether the run compacted on purpose, so that a watcher told about a
    /// compaction is not a problem.
    pub compaction_expected: bool,
}

/// How many problems [`WatchReport::problems`] describes.
const MAX_PROBLEMS: usize = 20;

/// What [`check_watches`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchReport {
    /// Watchers checked.
    pub watchers: usize,
    /// Events received, over all watchers.
    pub events_checked: u64,
    /// Watch streams resumed after breaking, over all watchers.
    pub resumes: u64,
    /// Revisions missing from a watcher's stream (per watcher and revision).
    pub gaps: u64,
    /// Events a watcher received twice.
    pub duplicates: u64,
    /// Events that arrived after an event of a higher revision, or before the
    /// watcher's start revision.
    pub out_of_order: u64,
    /// Events outside the watcher's prefix.
    pub foreign_events: u64,
    /// `(revision, key)` pairs on which watchers disagree: another kind or value,
    /// or a key missing from a revision the watcher did see.
    pub disagreements: u64,
    /// Acknowledged writes compared with at least one watcher.
    pub acknowledged_writes: u64,
    /// Acknowledged writes beyond every watcher's last revision (not checked).
    pub acknowledged_unchecked: u64,
    /// Acknowledged writes whose event, as some watcher saw it, differs.
    pub lost_writes: u64,
    /// Revisions claimed by two different acknowledged writes.
    pub revision_conflicts: u64,
    /// Watchers told their start revision was compacted, when not expected.
    pub compactions: u64,
    /// Number of problems found (all of the above that fail the check).
    pub problems_total: u64,
    /// The first problems, described.
    pub problems: Vec<String>,
}

impl WatchReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.problems_total == 0
    }

    /// Disagreements, lost writes and revision conflicts together.
    pub fn mismatches(&self) -> u64 {
        self.disagreements + self.lost_writes + self.revision_conflicts
    }

    fn problem(&mut self, text: String) {
        self.problems_total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }
}

impl fmt::Display for WatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "watch: {} ({} watchers, {} events, {} resumes; {} acknowledged writes checked, {} beyond every watcher)",
            if self.ok() { "ok" } else { "FAILED" },
            self.watchers,
            self.events_checked,
            self.resumes,
            self.acknowledged_writes,
            self.acknowledged_unchecked,
        )?;
        if !self.ok() {
            writeln!(
                f,
                "  {} gaps, {} duplicates, {} out of order, {} foreign, {} disagreements, {} lost writes, {} revision conflicts, {} compactions",
                self.gaps,
                self.duplicates,
                self.out_of_order,
                self.foreign_events,
                self.disagreements,
                self.lost_writes,
                self.revision_conflicts,
                self.compactions,
            )?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
            let more = self
                .problems_total
                .saturating_sub(self.problems.len() as u64);
            if more > 0 {
                writeln!(f, "  ... and {more} more")?;
            }
        }
        Ok(())
    }
}

/// One watcher's events, de-duplicated and indexed.
struct Indexed<'a> {
    log: &'a WatcherLog,
    by_rev: HashMap<Revision, HashMap<&'a str, &'a WatchEvent>>,
    last: Option<Revision>,
}

impl Indexed<'_> {
    fn covers(&self, revision: Revision, key: &str) -> bool {
        key.starts_with(&self.log.prefix)
            && revision >= self.log.start_revision
            && self.last.is_some_and(|last| revision <= last)
    }
}

/// Checks the watch logs against each other and against the writes of `history`
/// the clients saw acknowledged. See the module docs for what is checked.
#[tracing::instrument(skip_all, fields(watchers = logs.len()))]
pub fn check_watches(
    history: &History,
    logs: &[WatcherLog],
    cfg: &WatchCheckConfig,
) -> WatchReport {
    let mut report = WatchReport {
        watchers: logs.len(),
        ..WatchReport::default()
    };

    // Per watcher: order, duplicates, prefix, compaction.
    let mut indexed: Vec<Indexed<'_>> = Vec::with_capacity(logs.len());
    for log in logs {
        report.events_checked += log.events.len() as u64;
        report.resumes += log.resumes.len() as u64;
        if let Some(at) = log.compacted {
            if !cfg.compaction_expected {
                report.compactions += 1;
                report.problem(format!(
                    "watcher {}: told revision {} was compacted (compact revision {at})",
                    log.id, log.start_revision
                ));
            }
        }
        let mut seen: HashSet<(Revision, &str)> = HashSet::new();
        let mut by_rev: HashMap<Revision, HashMap<&str, &WatchEvent>> = HashMap::new();
        let mut high: Option<Revision> = None;
        for e in &log.events {
            if !seen.insert((e.revision, e.key.as_str())) {
                report.duplicates += 1;
                report.problem(format!("watcher {}: received {e} twice", log.id));
                continue;
            }
            if !e.key.starts_with(&log.prefix) {
                report.foreign_events += 1;
                report.problem(format!(
                    "watcher {}: received {e}, outside its prefix {:?}",
                    log.id, log.prefix
                ));
                continue;
            }
            if e.revision < log.start_revision {
                report.out_of_order += 1;
                report.problem(format!(
                    "watcher {}: received {e}, before its start revision {}",
                    log.id, log.start_revision
                ));
            } else if let Some(h) = high.filter(|h| e.revision < *h) {
                report.out_of_order += 1;
                report.problem(format!(
                    "watcher {}: received {e} after an event at {h}",
                    log.id
                ));
            }
            high = high.max(Some(e.revision));
            by_rev
                .entry(e.revision)
                .or_default()
                .insert(e.key.as_str(), e);
        }
        indexed.push(Indexed {
            log,
            by_rev,
            last: high,
        });
    }

    // Agreement: the first watcher to show a (revision, key) sets the reference.
    let mut reference: BTreeMap<Revision, BTreeMap<&str, (&WatchEvent, usize)>> = BTreeMap::new();
    for w in &indexed {
        for (&rev, keys) in &w.by_rev {
            for (&key, &e) in keys {
                let slot = reference.entry(rev).or_default();
                match slot.get(key) {
                    None => {
                        slot.insert(key, (e, w.log.id));
                    }
                    Some((first, by)) if first.kind != e.kind || first.value != e.value => {
                        report.disagreements += 1;
                        report.problem(format!(
                            "watchers disagree: {} received {first}, {} received {e}",
                            by, w.log.id
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    // Acknowledged writes: one per revision.
    let acks = history.acknowledged_writes();
    let mut acks_by_rev: BTreeMap<Revision, &AckWrite> = BTreeMap::new();
    for a in &acks {
        match acks_by_rev.get(&a.revision) {
            None => {
                acks_by_rev.insert(a.revision, a);
            }
            Some(other) => {
                report.revision_conflicts += 1;
                report.problem(format!(
                    "two acknowledged writes claim revision {}: {} {:?} (record {}) and {} {:?} (record {})",
                    a.revision, other.key, other.value, other.record, a.key, a.value, a.record
                ));
            }
        }
    }

    // Completeness: every known (revision, key) in a watcher's range.
    let mut known: BTreeMap<Revision, BTreeSet<&str>> = BTreeMap::new();
    for (&rev, keys) in &reference {
        known.entry(rev).or_default().extend(keys.keys().copied());
    }
    for (&rev, a) in &acks_by_rev {
        known.entry(rev).or_default().insert(a.key.as_str());
    }
    for w in &indexed {
        let Some(last) = w.last else {
            continue;
        };
        for (&rev, keys) in known.range(w.log.start_revision..=last) {
            let mine = w.by_rev.get(&rev);
            let wanted: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| k.starts_with(&w.log.prefix))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let Some(mine) = mine else {
                report.gaps += 1;
                report.problem(format!(
                    "watcher {}: revision {rev} ({}) missing between its start {} and its last {last}",
                    w.log.id,
                    wanted.join(", "),
                    w.log.start_revision
                ));
                continue;
            };
            for key in wanted {
                if !mine.contains_key(key) {
                    report.disagreements += 1;
                    report.problem(format!(
                        "watcher {}: revision {rev} lacks the change of {key} others know of",
                        w.log.id
                    ));
                }
            }
        }
    }

    // Durability: each acknowledged write is the event at its revision.
    for (&rev, a) in &acks_by_rev {
        let covering: Vec<&Indexed<'_>> =
            indexed.iter().filter(|w| w.covers(rev, &a.key)).collect();
        if covering.is_empty() {
            if indexed.iter().any(|w| w.log.start_revision <= rev) {
                report.acknowledged_unchecked += 1;
            }
            continue;
        }
        report.acknowledged_writes += 1;
        for w in covering {
            // A missing event was counted as a gap above.
            let Some(e) = w.by_rev.get(&rev).and_then(|m| m.get(a.key.as_str())) else {
                continue;
            };
            if e.kind != a.kind || e.value != a.value {
                report.lost_writes += 1;
                let wrote = match a.kind {
                    WriteKind::Put => format!("put {} = {}", a.key, show_value(a.value.as_deref())),
                    WriteKind::Delete => format!("delete {}", a.key),
                };
                report.problem(format!(
                    "acknowledged write at {rev} ({wrote}, record {}) but watcher {} received {e}",
                    a.record, w.log.id
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::history::{ClientId, Op, Outcome, Output, Record};

    const P: &str = "/t/";

    fn put(rev: i64, key: &str, value: &str) -> WatchEvent {
        WatchEvent {
            revision: Revision(rev),
            key: format!("{P}{key}"),
            kind: WriteKind::Put,
            value: Some(value.into()),
        }
    }

    fn del(rev: i64, key: &str) -> WatchEvent {
        WatchEvent {
            revision: Revision(rev),
            key: format!("{P}{key}"),
            kind: WriteKind::Delete,
            value: None,
        }
    }

    fn log(id: usize, start: i64, events: Vec<WatchEvent>) -> WatcherLog {
        WatcherLog {
            events,
            ..WatcherLog::new(id, P, Revision(start))
        }
    }

    fn acked(op: Op, out: Output) -> Record {
        Record {
            client: ClientId(0),
            op,
            invoke_ns: 0,
            complete_ns: Some(1),
            outcome: Outcome::Ok(out),
        }
    }

    fn acked_put(rev: i64, key: &str, value: &str) -> Record {
        acked(
            Op::Put {
                key: format!("{P}{key}"),
                value: value.into(),
            },
            Output::Put {
                revision: Some(Revision(rev)),
            },
        )
    }

    fn acked_delete(rev: i64, key: &str) -> Record {
        acked(
            Op::Delete {
                key: format!("{P}{key}"),
            },
            Output::Delete {
                deleted: 1,
                revision: Some(Revision(rev)),
            },
        )
    }

    fn check(history: Vec<Record>, logs: &[WatcherLog]) -> WatchReport {
        check_watches(&History::new(history), logs, &WatchCheckConfig::default())
    }

    fn stream() -> Vec<WatchEvent> {
        vec![
            put(5, "a", "1"),
            put(6, "b", "2"),
            del(7, "a"),
            put(9, "a", "3"),
        ]
    }

    fn history() -> Vec<Record> {
        vec![
            acked_put(5, "a", "1"),
            acked_put(6, "b", "2"),
            acked_delete(7, "a"),
            acked_put(9, "a", "3"),
        ]
    }

    #[test]
    fn clean_streams_pass() {
        let r = check(history(), &[log(0, 5, stream()), log(1, 5, stream())]);
        assert!(r.ok(), "{r}");
        assert_eq!(r.events_checked, 8);
        assert_eq!(r.acknowledged_writes, 4);
        // Revision 8 is unknown to everyone (a write elsewhere): not a gap.
        assert_eq!(r.gaps, 0);
    }

    #[test]
    fn later_start_and_shorter_streams_are_judged_on_their_range() {
        let r = check(
            history(),
            &[
                log(0, 5, stream()),
                log(1, 7, vec![del(7, "a")]),
                log(2, 5, vec![put(5, "a", "1")]),
                log(3, 5, vec![]),
            ],
        );
        assert!(r.ok(), "{r}");
    }

    #[test]
    fn resumed_stream_without_gap_passes() {
        let mut l = log(0, 5, stream());
        l.resumes.push(Resume {
            from_revision: Revision(7),
            endpoint: "http://127.0.0.1:1".into(),
            reason: "stream closed".into(),
        });
        let r = check(history(), &[l]);
        assert!(r.ok(), "{r}");
        assert_eq!(r.resumes, 1);
    }

    #[test]
    fn gap_against_another_watcher() {
        let mut skipped = stream();
        skipped.remove(1);
        let r = check(vec![], &[log(0, 5, stream()), log(1, 5, skipped)]);
        assert_eq!(r.gaps, 1, "{r}");
        assert!(!r.ok());
        assert!(r.problems[0].contains("watcher 1"), "{r}");
    }

    #[test]
    fn gap_against_an_acknowledged_write() {
        let mut skipped = stream();
        skipped.remove(2);
        let r = check(history(), &[log(0, 5, skipped)]);
        assert_eq!(r.gaps, 1, "{r}");
    }

    #[test]
    fn duplicate_event() {
        let mut twice = stream();
        twice.insert(2, put(6, "b", "2"));
        let r = check(history(), &[log(0, 5, twice)]);
        assert_eq!(r.duplicates, 1, "{r}");
        assert_eq!(r.out_of_order, 0, "{r}");
        assert!(!r.ok());
    }

    #[test]
    fn out_of_order_and_before_start() {
        let mut swapped = stream();
        swapped.swap(1, 2);
        let r = check(history(), &[log(0, 5, swapped)]);
        assert_eq!(r.out_of_order, 1, "{r}");
        let r = check(history(), &[log(0, 6, stream())]);
        assert_eq!(r.out_of_order, 1, "{r}");
    }

    #[test]
    fn watchers_disagree_on_a_value() {
        let mut other = stream();
        other[1] = put(6, "b", "x");
        let r = check(vec![], &[log(0, 5, stream()), log(1, 5, other)]);
        assert_eq!(r.disagreements, 1, "{r}");
        assert!(!r.ok());
    }

    #[test]
    fn watchers_disagree_on_the_key() {
        let mut other = stream();
        other[1] = put(6, "c", "2");
        let r = check(vec![], &[log(0, 5, stream()), log(1, 5, other)]);
        // Each lacks the key the other saw at revision 6.
        assert_eq!(r.disagreements, 2, "{r}");
    }

    #[test]
    fn acknowledged_write_with_another_event() {
        let mut h = history();
        h[1] = acked_put(6, "b", "mine");
        let r = check(h, &[log(0, 5, stream())]);
        assert_eq!(r.lost_writes, 1, "{r}");
        assert_eq!(r.mismatches(), 1);
        assert!(!r.ok());
    }

    #[test]
    fn acknowledged_delete_seen_as_put() {
        let mut h = history();
        h[2] = acked_delete(7, "b");
        let r = check(h, &[log(0, 5, stream())]);
        // Watcher saw "delete a" at 7, the client deleted b: key missing and lost.
        assert!(r.disagreements >= 1, "{r}");
        assert!(!r.ok());
    }

    #[test]
    fn two_acknowledged_writes_claim_one_revision() {
        let mut h = history();
        h.push(acked_put(6, "c", "9"));
        let r = check(h, &[log(0, 5, stream())]);
        assert_eq!(r.revision_conflicts, 1, "{r}");
    }

    #[test]
    fn acknowledged_write_beyond_every_watcher_is_unchecked_not_failed() {
        let mut h = history();
        h.push(acked_put(12, "a", "late"));
        let r = check(h, &[log(0, 5, stream())]);
        assert!(r.ok(), "{r}");
        assert_eq!(r.acknowledged_unchecked, 1);
    }

    #[test]
    fn unacknowledged_failed_and_unknown_writes_are_not_expected() {
        let mut h = history();
        h.push(Record {
            outcome: Outcome::Unknown {
                reason: "timeout".into(),
            },
            complete_ns: None,
            ..acked_put(8, "a", "maybe")
        });
        let r = check(h, &[log(0, 5, stream())]);
        assert!(r.ok(), "{r}");
    }

    #[test]
    fn foreign_event() {
        let mut s = stream();
        s.push(WatchEvent {
            revision: Revision(10),
            key: "/other/x".into(),
            kind: WriteKind::Put,
            value: Some("1".into()),
        });
        let r = check(history(), &[log(0, 5, s)]);
        assert_eq!(r.foreign_events, 1, "{r}");
    }

    #[test]
    fn compaction_is_a_problem_unless_expected() {
        let mut l = log(0, 5, vec![]);
        l.compacted = Some(Revision(8));
        let r = check(vec![], std::slice::from_ref(&l));
        assert_eq!(r.compactions, 1);
        assert!(!r.ok());
        let r = check_watches(
            &History::default(),
            &[l],
            &WatchCheckConfig {
                compaction_expected: true,
            },
        );
        assert!(r.ok(), "{r}");
    }

    #[test]
    fn problems_are_capped_but_counted() {
        let many: Vec<WatchEvent> = (0..50).map(|_| put(5, "a", "1")).collect();
        let r = check(vec![], &[log(0, 5, many)]);
        assert_eq!(r.duplicates, 49);
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
        assert_eq!(r.problems_total, 49);
        assert!(r.to_string().contains("and 29 more"));
    }

    #[test]
    fn report_serializes() {
        let r = check(history(), &[log(0, 5, stream())]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["gaps"], 0);
        let l = serde_json::to_string(&log(0, 5, stream())).unwrap();
        let back: WatcherLog = serde_json::from_str(&l).unwrap();
        assert_eq!(back.events.len(), 4);
    }
}
