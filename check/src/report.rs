//! The checks of a fault run's watch streams, and the combined report.
//!
//! In a fault run every write goes to the run's key prefix and changes one key,
//! so the store's revisions from the watch start on are exactly the events of
//! that prefix, one per revision. Each watcher must therefore see every revision
//! from its start to the last one it saw, once, in order; all watchers must agree
//! on the event at each revision; and every write a client saw acknowledged must
//! be the event at its revision (else the write was lost).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::clients::{WatchEvent, WatcherLog};
use crate::history::{History, WriteKind};
use crate::linearizable::{check, CheckConfig, CheckResult};

/// What the watch checks found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchCheck {
    /// Events received, over all watchers.
    pub events: u64,
    /// Revisions a watcher skipped (between its start and the last it saw).
    pub gaps: u64,
    /// Events received twice, or out of order.
    pub duplicates: u64,
    /// Revisions on which two watchers saw different events.
    pub disagreements: u64,
    /// Acknowledged writes whose revision carries another event, or none at all.
    pub lost_writes: u64,
    /// Acknowledged writes checked.
    pub acknowledged_writes: u64,
    /// Watchers told their start revision was compacted.
    pub compacted: u64,
    /// Watchers that resumed after a broken stream.
    pub resumes: u64,
    /// The first problems, described.
    pub problems: Vec<String>,
}

impl WatchCheck {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 10 {
            self.problems.push(p);
        }
    }

    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.gaps == 0
            && self.duplicates == 0
            && self.disagreements == 0
            && self.lost_writes == 0
            && self.compacted == 0
    }
}

/// Checks the watch logs against each other and against the acknowledged writes.
pub fn check_watches(history: &History, logs: &[WatcherLog]) -> WatchCheck {
    let mut c = WatchCheck::default();
    let mut at: BTreeMap<i64, &WatchEvent> = BTreeMap::new();
    for (w, log) in logs.iter().enumerate() {
        c.events += log.events.len() as u64;
        c.resumes += log.resumed;
        if let Some(r) = log.compacted {
            c.compacted += 1;
            c.problem(format!("watcher {w}: start revision compacted (at {r})"));
        }
        let mut expect = log.start_revision;
        for e in &log.events {
            if e.revision < expect {
                c.duplicates += 1;
                c.problem(format!(
                    "watcher {w}: revision {} again or out of order (expected {expect})",
                    e.revision
                ));
                continue;
            }
            if e.revision > expect {
                c.gaps += (e.revision - expect) as u64;
                c.problem(format!(
                    "watcher {w}: revisions {expect}..{} missing",
                    e.revision - 1
                ));
            }
            expect = e.revision + 1;
            match at.get(&e.revision) {
                Some(seen) if *seen != e => {
                    c.disagreements += 1;
                    c.problem(format!(
                        "revision {}: watchers saw {seen:?} and {e:?}",
                        e.revision
                    ));
                }
                Some(_) => {}
                None => {
                    at.insert(e.revision, e);
                }
            }
        }
    }
    let first = logs.iter().map(|l| l.start_revision).min().unwrap_or(0);
    let last = logs
        .iter()
        .filter_map(|l| l.events.last().map(|e| e.revision))
        .min()
        .unwrap_or(0);
    for w in history.acknowledged_writes() {
        let r = w.revision.0;
        c.acknowledged_writes += 1;
        if r < first || r > last {
            // Outside what every watcher saw: a tail no watcher reached is a gap
            // (counted below), not a lost write.
            if r > last && !logs.is_empty() {
                c.gaps += 1;
                c.problem(format!(
                    "acknowledged write at revision {r} after the last revision every watcher saw ({last})"
                ));
            }
            continue;
        }
        let want = WatchEvent {
            revision: r,
            key: w.key.clone(),
            put: w.kind == WriteKind::Put,
            value: w.value.clone(),
        };
        match at.get(&r) {
            Some(e) if **e == want => {}
            other => {
                c.lost_writes += 1;
                c.problem(format!(
                    "acknowledged write {want:?} not in the watch streams (saw {other:?})"
                ));
            }
        }
    }
    c
}

/// Everything a fault run's checks found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Records by outcome.
    pub outcomes: crate::history::OutcomeCounts,
    /// Linearizability.
    pub linearizability: CheckResult,
    /// Watch streams.
    pub watch: WatchCheck,
}

impl Report {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.linearizability.ok && self.watch.ok()
    }
    /// Operations the linearizability check placed.
    pub fn ops_checked(&self) -> u64 {
        self.linearizability.ops_checked as u64
    }
    /// Watch events checked.
    pub fn watch_events(&self) -> u64 {
        self.watch.events
    }
    /// Keys whose history is not linearizable (a budget overrun counts too).
    pub fn linearizability_violations(&self) -> u64 {
        self.linearizability
            .per_key
            .iter()
            .filter(|k| !k.ok)
            .count() as u64
    }
    /// Acknowledged writes missing from the watch streams.
    pub fn lost_writes(&self) -> u64 {
        self.watch.lost_writes
    }
    /// Revisions watchers skipped.
    pub fn watch_gaps(&self) -> u64 {
        self.watch.gaps
    }
    /// Events seen twice or out of order.
    pub fn watch_duplicates(&self) -> u64 {
        self.watch.duplicates
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.outcomes;
        writeln!(
            f,
            "operations: {} ({} ok, {} failed, {} unknown; {} reads, {} writes)",
            o.total, o.ok, o.fail, o.unknown, o.reads, o.writes
        )?;
        write!(f, "{}", self.linearizability)?;
        let w = &self.watch;
        writeln!(
            f,
            "watch: {} events, {} acknowledged writes checked, {} lost, {} gaps, {} duplicates, {} disagreements, {} resumes",
            w.events, w.acknowledged_writes, w.lost_writes, w.gaps, w.duplicates, w.disagreements, w.resumes
        )?;
        for p in &w.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Runs every check on a fault run's history and watch logs.
pub fn check_all(history: &History, logs: &[WatcherLog]) -> Report {
    Report {
        outcomes: history.counts(),
        linearizability: check(
            history,
            &CheckConfig {
                max_steps_per_key: 50_000_000,
                time_budget_per_key: std::time::Duration::from_secs(30),
            },
        ),
        watch: check_watches(history, logs),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::history::{ClientId, Op, Outcome, Output, Record, Revision};

    fn put(rev: i64, key: &str, value: &str) -> WatchEvent {
        WatchEvent {
            revision: rev,
            key: key.into(),
            put: true,
            value: Some(value.into()),
        }
    }

    fn acked_put(rev: i64, key: &str, value: &str) -> Record {
        Record {
            client: ClientId(0),
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
            invoke_ns: 0,
            complete_ns: Some(1),
            outcome: Outcome::Ok(Output::Put {
                revision: Some(Revision(rev)),
            }),
        }
    }

    fn log(start: i64, events: Vec<WatchEvent>) -> WatcherLog {
        WatcherLog {
            start_revision: start,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn clean_streams_pass() {
        let h = History::new(vec![acked_put(5, "a", "1"), acked_put(6, "b", "2")]);
        let e = vec![put(5, "a", "1"), put(6, "b", "2")];
        let c = check_watches(&h, &[log(5, e.clone()), log(5, e)]);
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.acknowledged_writes, 2);
    }

    #[test]
    fn gaps_duplicates_disagreements_and_lost_writes_are_found() {
        let h = History::new(vec![acked_put(5, "a", "1"), acked_put(7, "a", "3")]);
        let gap = check_watches(&h, &[log(5, vec![put(5, "a", "1"), put(7, "a", "3")])]);
        assert_eq!(gap.gaps, 1);
        let dup = check_watches(
            &h,
            &[log(
                5,
                vec![
                    put(5, "a", "1"),
                    put(6, "b", "x"),
                    put(6, "b", "x"),
                    put(7, "a", "3"),
                ],
            )],
        );
        assert_eq!(dup.duplicates, 1);
        let disagree = check_watches(
            &h,
            &[
                log(
                    5,
                    vec![put(5, "a", "1"), put(6, "b", "x"), put(7, "a", "3")],
                ),
                log(
                    5,
                    vec![put(5, "a", "1"), put(6, "b", "y"), put(7, "a", "3")],
                ),
            ],
        );
        assert_eq!(disagree.disagreements, 1);
        let lost = check_watches(
            &h,
            &[log(
                5,
                vec![put(5, "a", "1"), put(6, "b", "x"), put(7, "a", "other")],
            )],
        );
        assert_eq!(lost.lost_writes, 1);
        assert!(!lost.ok());
    }
}
