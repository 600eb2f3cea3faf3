//! The combined verdict of a run: linearizability of the history
//! ([`crate::linearizable`]) and the watch checks ([`crate::watch`]).
//!
//! [`check_all`] runs both with default budgets; the [`Report`] prints a summary
//! for humans and serializes to JSON for the report of a failing seed.

use std::fmt;

use serde::Serialize;

use crate::history::{History, OutcomeCounts};
use crate::linearizable::{check, CheckConfig, CheckResult};
use crate::watch::{check_watches, WatchCheckConfig, WatchReport, WatcherLog};

/// Everything the checks of one run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Records by outcome.
    pub outcomes: OutcomeCounts,
    /// Linearizability of the history.
    pub linearizability: CheckResult,
    /// The watch streams.
    pub watch: WatchReport,
}

impl Report {
    /// Whether every check passed (a linearizability budget overrun fails).
    pub fn ok(&self) -> bool {
        self.linearizability.ok && self.watch.ok()
    }

    /// Operations the linearizability check took into account.
    pub fn ops_checked(&self) -> u64 {
        self.linearizability.ops_checked as u64
    }

    /// Watch events checked, over all watchers.
    pub fn watch_events(&self) -> u64 {
        self.watch.events_checked
    }

    /// Keys whose history is not linearizable or could not be decided.
    pub fn linearizability_violations(&self) -> u64 {
        self.linearizability
            .per_key
            .iter()
            .filter(|k| !k.ok)
            .count() as u64
    }

    /// Acknowledged writes that a watcher saw as another event.
    pub fn lost_writes(&self) -> u64 {
        self.watch.lost_writes
    }

    /// Revisions missing from watch streams.
    pub fn watch_gaps(&self) -> u64 {
        self.watch.gaps
    }

    /// Events a watcher received twice.
    pub fn watch_duplicates(&self) -> u64 {
        self.watch.duplicates
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verdict: {}", if self.ok() { "ok" } else { "FAILED" })?;
        let o = &self.outcomes;
        writeln!(
            f,
            "operations: {} ({} ok, {} failed, {} unknown; {} reads, {} writes)",
            o.total, o.ok, o.fail, o.unknown, o.reads, o.writes
        )?;
        write!(f, "{}", self.linearizability)?;
        write!(f, "{}", self.watch)
    }
}

/// Checks the history for linearizability and the watch logs against it, with
/// default budgets and no compaction expected.
pub fn check_all(history: &History, watchers: &[WatcherLog]) -> Report {
    check_all_with(
        history,
        watchers,
        &CheckConfig::default(),
        &WatchCheckConfig::default(),
    )
}

/// [`check_all`] with explicit options.
pub fn check_all_with(
    history: &History,
    watchers: &[WatcherLog],
    linearizable: &CheckConfig,
    watch: &WatchCheckConfig,
) -> Report {
    Report {
        outcomes: history.counts(),
        linearizability: check(history, linearizable),
        watch: check_watches(history, watchers, watch),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::history::{ClientId, Op, Outcome, Output, Record, Revision, WriteKind};
    use crate::watch::WatchEvent;

    fn record(op: Op, t: u64, out: Output) -> Record {
        Record {
            client: ClientId(0),
            op,
            invoke_ns: t,
            complete_ns: Some(t + 1),
            outcome: Outcome::Ok(out),
        }
    }

    fn run() -> (History, Vec<WatcherLog>) {
        let h = History::new(vec![
            record(
                Op::Put {
                    key: "/r/k0".into(),
                    value: "c0-1".into(),
                },
                0,
                Output::Put {
                    revision: Some(Revision(2)),
                },
            ),
            record(
                Op::Get {
                    key: "/r/k0".into(),
                },
                10,
                Output::Get {
                    value: Some("c0-1".into()),
                    revision: Some(Revision(2)),
                },
            ),
        ]);
        let mut log = WatcherLog::new(0, "/r/", Revision(2));
        log.events.push(WatchEvent {
            revision: Revision(2),
            key: "/r/k0".into(),
            kind: WriteKind::Put,
            value: Some("c0-1".into()),
        });
        (h, vec![log])
    }

    #[test]
    fn clean_run_is_ok() {
        let (h, logs) = run();
        let r = check_all(&h, &logs);
        assert!(r.ok(), "{r}");
        assert_eq!(r.ops_checked(), 2);
        assert_eq!(r.watch_events(), 1);
        let text = r.to_string();
        assert!(text.starts_with("verdict: ok"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outcomes"]["ok"], 2);
    }

    #[test]
    fn either_check_fails_the_report() {
        let (mut h, logs) = run();
        h.records[1].outcome = Outcome::Ok(Output::Get {
            value: Some("never".into()),
            revision: None,
        });
        let r = check_all(&h, &logs);
        assert!(!r.ok());
        assert_eq!(r.linearizability_violations(), 1);
        assert!(r.to_string().contains("NOT linearizable"), "{r}");

        let (h, mut logs) = run();
        logs[0].events[0].value = Some("other".into());
        let r = check_all(&h, &logs);
        assert!(!r.ok());
        assert_eq!(r.lost_writes(), 1);
    }
}
