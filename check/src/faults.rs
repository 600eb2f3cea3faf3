//! Seeded fault runs: a [`Cluster`] under a random schedule of faults while
//! clients record a history and watchers record events; then the checks.
//!
//! One run: start the members, start the watchers and the clients, inject one
//! fault at a time (chosen and timed by the seed) for the run's duration, heal
//! everything, wait until every member has applied the same revision, compare
//! their HashKV, and check the history (linearizability) and the watch streams
//! (ordered, gap-free, no duplicates, every acknowledged write present).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::{poll, Cluster};
use crate::proxy::Fault;

/// The kinds of fault a run may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum FaultKind {
    /// SIGKILL a random member, restart it a little later.
    Kill,
    /// SIGKILL the leader (recovery time is measured), restart it later.
    KillLeader,
    /// SIGSTOP a random member, SIGCONT it later.
    Pause,
    /// Cut every link of a random member.
    Isolate,
    /// Cut every link of the leader.
    IsolateLeader,
    /// Cut one direction of one link.
    OneWayCut,
    /// Delay every peer link.
    Delay,
    /// Break peer connections at random (message loss).
    Flaky,
    /// Remove a follower, wipe its data dir, add it again and let it rejoin.
    Rejoin,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::Isolate,
        FaultKind::IsolateLeader,
        FaultKind::OneWayCut,
        FaultKind::Delay,
        FaultKind::Flaky,
        FaultKind::Rejoin,
    ];
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The `capstan` binary.
    pub binary: PathBuf,
    /// 3 or 5.
    pub members: usize,
    /// Seeds the schedule and the clients.
    pub seed: u64,
    /// How long faults are injected (clients run as long).
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients share.
    pub keys: usize,
    /// Watchers.
    pub watchers: usize,
    /// Working directory (created, removed unless the run fails).
    pub dir: PathBuf,
    /// Fault kinds to choose from.
    pub kinds: Vec<FaultKind>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Seed.
    pub seed: u64,
    /// Members.
    pub members: usize,
    /// Faults injected, in order, with their start time (ms into the run).
    pub faults: Vec<(u64, String)>,
    /// Faults per kind.
    pub fault_counts: BTreeMap<String, u64>,
    /// The checks of the history and the watch streams.
    pub check: Option<crate::Report>,
    /// Time without a leader after each leader kill, in milliseconds.
    pub leader_recovery_ms: Vec<u64>,
    /// Whether every member had the same HashKV at the final revision.
    pub hashes_agree: bool,
    /// The final revision.
    pub final_revision: i64,
    /// A problem that stopped the run or failed a check, if any.
    pub error: Option<String>,
    /// Where the logs were kept (failed runs only).
    pub kept: Option<PathBuf>,
}

impl RunReport {
    /// Whether the run found nothing wrong.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.hashes_agree && self.check.as_ref().is_some_and(|c| c.ok())
    }
}

async fn client(ep: &str) -> Option<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    Client::connect([ep], Some(opts)).await.ok()
}

/// (member id, leader id) as member `ep` reports them.
async fn status(ep: &str) -> Option<(u64, u64)> {
    let mut c = client(ep).await?;
    let s = c.status().await.ok()?;
    Some((s.header()?.member_id(), s.leader()))
}

/// The leader's index, when every live member agrees on one that is live.
async fn leader(c: &Cluster) -> Option<usize> {
    let mut agreed = None;
    let mut ids = BTreeMap::new();
    for i in c.live() {
        let (me, leader) = status(&c.nodes[i].client_url).await?;
        if leader == 0 || agreed.is_some_and(|l| l != leader) {
            return None;
        }
        agreed = Some(leader);
        ids.insert(me, i);
    }
    ids.get(&agreed?).copied()
}

async fn serializable_revision(ep: &str) -> Option<i64> {
    let mut c = client(ep).await?;
    let r = c
        .get("/", Some(GetOptions::new().with_serializable()))
        .await
        .ok()?;
    Some(r.header()?.revision())
}

/// Runs one seeded fault run to the end and reports.
pub async fn run(cfg: RunConfig) -> RunReport {
    let mut report = RunReport {
        seed: cfg.seed,
        members: cfg.members,
        faults: Vec::new(),
        fault_counts: BTreeMap::new(),
        check: None,
        leader_recovery_ms: Vec::new(),
        hashes_agree: false,
        final_revision: 0,
        error: None,
        kept: None,
    };
    let token = format!("fault-{}", cfg.seed);
    let mut cluster = match Cluster::start(&cfg.binary, cfg.members, &cfg.dir, &token).await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("starting the cluster: {e}"));
            return report;
        }
    };
    if let Err(e) = run_inner(&cfg, &mut cluster, &mut report).await {
        report.error = Some(e);
    }
    if !report.ok() {
        cluster.keep();
        report.kept = Some(cfg.dir.clone());
        let _ = std::fs::write(cfg.dir.join("tails.txt"), cluster.log_tails(60));
    }
    report
}

async fn run_inner(cfg: &RunConfig, c: &mut Cluster, report: &mut RunReport) -> Result<(), String> {
    let started = Instant::now();
    poll(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || leader(c).await,
    )
    .await
    .ok_or("the cluster elected no leader within 30 s")?;
    let endpoints = c.endpoints();
    let prefix = format!("/fault/{}/", cfg.seed);
    let start_rev = serializable_revision(&endpoints[0])
        .await
        .ok_or("no revision from member 0")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watchers = tokio::spawn(crate::workload::run_watchers(
        endpoints.clone(),
        prefix.clone(),
        cfg.watchers,
        start_rev + 1,
        stop_rx,
    ));
    let recorder = crate::history::Recorder::new();
    let workload = tokio::spawn(crate::workload::run_workload(
        crate::workload::WorkloadConfig {
            endpoints: endpoints.clone(),
            keys: cfg.keys,
            clients: cfg.clients,
            duration: cfg.duration,
            seed: cfg.seed,
            op_timeout: Duration::from_secs(3),
            prefix: prefix.clone(),
        },
        recorder.clone(),
    ));

    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_fa17);
    let faults_end = Instant::now() + cfg.duration;
    while Instant::now() + Duration::from_secs(2) < faults_end && !cfg.kinds.is_empty() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        let kind = cfg.kinds[rng.gen_range(0..cfg.kinds.len())];
        let hold = Duration::from_millis(rng.gen_range(500..3000));
        let at = started.elapsed().as_millis() as u64;
        let what = inject(c, kind, hold, &mut rng, report).await?;
        report.faults.push((at, what));
        *report.fault_counts.entry(format!("{kind:?}")).or_default() += 1;
    }

    // Heal everything and bring every member back.
    c.heal();
    for i in 0..c.nodes.len() {
        c.resume(i);
        if c.nodes[i].child.is_none() {
            c.spawn(i).map_err(|e| format!("restarting m{i}: {e}"))?;
        }
    }
    workload
        .await
        .map_err(|e| format!("the workload task failed: {e}"))?;
    poll(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || leader(c).await,
    )
    .await
    .ok_or("no leader after healing")?;

    // Every member converges on one revision and one hash.
    let final_rev = poll(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let mut revs = Vec::new();
            for ep in &endpoints {
                revs.push(serializable_revision(ep).await?);
            }
            let first = revs[0];
            revs.iter().all(|&r| r == first).then_some(first)
        },
    )
    .await
    .ok_or("the members did not converge on one revision within 30 s")?;
    report.final_revision = final_rev;
    let mut hashes = Vec::new();
    for ep in &endpoints {
        let mut cl = client(ep).await.ok_or("no client for hashkv")?;
        let h = cl
            .hash_kv(final_rev)
            .await
            .map_err(|e| format!("hashkv on {ep}: {e}"))?;
        hashes.push(h.hash());
    }
    report.hashes_agree = hashes.iter().all(|&h| h == hashes[0]);
    if !report.hashes_agree {
        return Err(format!(
            "HashKV differs at revision {final_rev}: {hashes:?}"
        ));
    }

    // Let the watchers reach the final revision, then stop them and check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let logs = watchers
        .await
        .map_err(|e| format!("the watcher task failed: {e}"))?;
    let check = crate::check_all(&recorder.history(), &logs);
    let unchecked = check.watch.acknowledged_unchecked;
    report.check = Some(check);
    // After convergence every watcher must have reached every acknowledged write.
    if unchecked > 0 {
        return Err(format!(
            "{unchecked} acknowledged writes lie beyond what the watchers saw after convergence"
        ));
    }
    Ok(())
}

/// Applies one fault, holds it, heals it; returns a description.
async fn inject(
    c: &mut Cluster,
    kind: FaultKind,
    hold: Duration,
    rng: &mut StdRng,
    report: &mut RunReport,
) -> Result<String, String> {
    let n = c.nodes.len();
    let any = rng.gen_range(0..n);
    let what = match kind {
        FaultKind::Kill => {
            c.kill(any);
            tokio::time::sleep(hold).await;
            c.spawn(any).map_err(|e| e.to_string())?;
            format!("kill -9 m{any} for {hold:?}")
        }
        FaultKind::KillLeader => {
            let Some(l) = leader(c).await else {
                return Ok("kill leader: no leader to kill".into());
            };
            let (old, _) = status(&c.nodes[l].client_url).await.unwrap_or((0, 0));
            c.kill(l);
            let killed = Instant::now();
            let others: Vec<String> = (0..n)
                .filter(|&i| i != l)
                .map(|i| c.nodes[i].client_url.clone())
                .collect();
            let recovered = poll(
                Duration::from_secs(20),
                Duration::from_millis(20),
                async || {
                    for ep in &others {
                        if let Some((_, ld)) = status(ep).await {
                            if ld != 0 && ld != old {
                                return Some(());
                            }
                        }
                    }
                    None
                },
            )
            .await;
            if recovered.is_some() {
                report
                    .leader_recovery_ms
                    .push(killed.elapsed().as_millis() as u64);
            }
            tokio::time::sleep(hold).await;
            c.spawn(l).map_err(|e| e.to_string())?;
            format!(
                "kill -9 leader m{l}, new leader after {:?}",
                killed.elapsed()
            )
        }
        FaultKind::Pause => {
            c.pause(any);
            tokio::time::sleep(hold).await;
            c.resume(any);
            format!("SIGSTOP m{any} for {hold:?}")
        }
        FaultKind::Isolate => {
            c.isolate(any);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("isolate m{any} for {hold:?}")
        }
        FaultKind::IsolateLeader => {
            let l = leader(c).await.unwrap_or(any);
            c.isolate(l);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("isolate leader m{l} for {hold:?}")
        }
        FaultKind::OneWayCut => {
            let to = (any + rng.gen_range(1..n)) % n;
            c.cut_link(any, to);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("cut m{any} -> m{to} for {hold:?}")
        }
        FaultKind::Delay => {
            let d = Duration::from_millis(rng.gen_range(20..200));
            c.all_links(Fault::Delay(d));
            tokio::time::sleep(hold).await;
            c.heal();
            format!("delay every link by {d:?} for {hold:?}")
        }
        FaultKind::Flaky => {
            let p = rng.gen_range(0.02..0.2);
            c.all_links(Fault::Flaky {
                close_probability: p,
            });
            tokio::time::sleep(hold).await;
            c.heal();
            format!("break peer connections with p={p:.2} for {hold:?}")
        }
        FaultKind::Rejoin => rejoin(c, rng).await?,
    };
    Ok(what)
}

/// Removes a follower, wipes its data dir, adds it back and restarts it.
async fn rejoin(c: &mut Cluster, rng: &mut StdRng) -> Result<String, String> {
    let Some(l) = leader(c).await else {
        return Ok("rejoin: no leader, skipped".into());
    };
    let n = c.nodes.len();
    let i = (l + rng.gen_range(1..n)) % n;
    let (id, _) = status(&c.nodes[i].client_url)
        .await
        .ok_or("rejoin: no status from the member")?;
    let leader_ep = c.nodes[l].client_url.clone();
    let mut cl = client(&leader_ep).await.ok_or("rejoin: no client")?;
    if let Err(e) = cl.member_remove(id).await {
        return Ok(format!("rejoin m{i}: remove refused ({e}), skipped"));
    }
    // A removed member stops by itself.
    let exited = poll(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || c.exited(i).then_some(()),
    )
    .await;
    if exited.is_none() {
        c.kill(i);
    }
    c.wipe(i).map_err(|e| format!("wiping m{i}: {e}"))?;
    let peer = c.nodes[i].peer_url.clone();
    let added = poll(
        Duration::from_secs(15),
        Duration::from_millis(300),
        async || {
            let mut cl = client(&leader_ep).await?;
            cl.member_add([peer.clone()], None).await.ok()
        },
    )
    .await;
    if added.is_none() {
        return Err(format!("rejoin m{i}: member add failed for 15 s"));
    }
    c.nodes[i].state = "existing".into();
    c.spawn(i).map_err(|e| e.to_string())?;
    Ok(format!("remove m{i}, wipe its data, add it again"))
}
