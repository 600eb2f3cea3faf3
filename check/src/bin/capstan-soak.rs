//! `capstan-soak`: runs many seeded fault runs against a capstan binary and
//! writes a report (JSON with every run, and a Markdown summary on stdout).
//!
//! ```text
//! capstan-soak --capstan target/release/capstan --runs 100 --first-seed 1000 \
//!     --duration 12 --members mix --out soak.json
//! ```
//!
//! Runs are sequential; each is bounded by its duration plus the time to heal and
//! converge (at most about a minute more). Failed runs keep their data and logs and
//! their seed is listed, to be kept as a regression test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capstan_check::faults::{run, FaultKind, RunConfig, RunReport};

struct Args {
    capstan: PathBuf,
    runs: u64,
    first_seed: u64,
    duration: u64,
    members: String,
    out: PathBuf,
    dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        capstan: PathBuf::from("target/release/capstan"),
        runs: 10,
        first_seed: 1,
        duration: 12,
        members: "mix".into(),
        out: PathBuf::from("soak.json"),
        dir: std::env::temp_dir().join("capstan-soak"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--capstan" => a.capstan = PathBuf::from(val()?),
            "--runs" => a.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--first-seed" => {
                a.first_seed = val()?.parse().map_err(|e| format!("--first-seed: {e}"))?
            }
            "--duration" => a.duration = val()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--members" => a.members = val()?,
            "--out" => a.out = PathBuf::from(val()?),
            "--dir" => a.dir = PathBuf::from(val()?),
            "-h" | "--help" => {
                return Err(
                    "usage: capstan-soak [--capstan PATH] [--runs N] [--first-seed S] \
                            [--duration SECS] [--members 3|5|mix] [--out FILE] [--dir DIR]"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !matches!(a.members.as_str(), "3" | "5" | "mix") {
        return Err("--members must be 3, 5 or mix".into());
    }
    Ok(a)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut reports: Vec<RunReport> = Vec::new();
    for k in 0..a.runs {
        let seed = a.first_seed + k;
        let members = match a.members.as_str() {
            "3" => 3,
            "5" => 5,
            _ if seed % 4 == 0 => 5,
            _ => 3,
        };
        let cfg = RunConfig {
            binary: a.capstan.clone(),
            members,
            seed,
            duration: Duration::from_secs(a.duration),
            clients: 8,
            keys: 5,
            watchers: 2,
            dir: a.dir.join(format!("seed-{seed}")),
            kinds: FaultKind::ALL.to_vec(),
        };
        let r = run(cfg).await;
        let c = r.check.as_ref();
        eprintln!(
            "seed {seed} ({members} members): {} — {} faults, {} ops, {} watch events{}",
            if r.ok() { "ok" } else { "FAILED" },
            r.faults.len(),
            c.map(|c| c.ops_checked()).unwrap_or(0),
            c.map(|c| c.watch_events()).unwrap_or(0),
            r.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        reports.push(r);
        if let Ok(json) = serde_json::to_string_pretty(&reports) {
            let _ = std::fs::write(&a.out, json);
        }
    }
    summary(&reports, started.elapsed(), &a);
    if reports.iter().any(|r| !r.ok()) {
        std::process::exit(1);
    }
}

fn summary(reports: &[RunReport], took: Duration, a: &Args) {
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ops, mut events, mut violations, mut lost, mut gaps, mut dups) = (0, 0, 0, 0, 0, 0);
    let mut recovery: Vec<u64> = Vec::new();
    let mut failed = Vec::new();
    for r in reports {
        for (k, n) in &r.fault_counts {
            *kinds.entry(k.clone()).or_default() += n;
        }
        if let Some(c) = &r.check {
            ops += c.ops_checked();
            events += c.watch_events();
            violations += c.linearizability_violations();
            lost += c.lost_writes();
            gaps += c.watch_gaps();
            dups += c.watch_duplicates();
        }
        recovery.extend(&r.leader_recovery_ms);
        if !r.ok() {
            failed.push(r.seed);
        }
    }
    recovery.sort_unstable();
    let first = a.first_seed;
    let last = a.first_seed + a.runs.saturating_sub(1);
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| fault runs | {} (seeds {first}..={last}, members {}, {} s of faults each) |",
        reports.len(),
        a.members,
        a.duration
    );
    println!("| failed runs | {} {:?} |", failed.len(), failed);
    println!(
        "| faults injected | {} ({}) |",
        kinds.values().sum::<u64>(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| operations checked | {ops} |");
    println!("| linearizability violations | {violations} |");
    println!("| acknowledged writes lost | {lost} |");
    println!("| watch events checked | {events} |");
    println!("| watch gaps / duplicates | {gaps} / {dups} |");
    println!(
        "| time without a leader after a leader kill | p50 {} ms, p99 {} ms, max {} ms ({} kills) |",
        percentile(&recovery, 0.5),
        percentile(&recovery, 0.99),
        recovery.last().copied().unwrap_or(0),
        recovery.len()
    );
    println!("| wall time | {:.0} s |", took.as_secs_f64());
}
