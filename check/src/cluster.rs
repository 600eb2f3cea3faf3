//! A capstan cluster of real member processes on loopback, wired for faults.
//!
//! Member `i` listens for peers on a private port, and every other member reaches
//! it through a [`FaultProxy`] on its advertised peer port. Each member binds its
//! outgoing peer connections to its own loopback source address (127.0.0.11,
//! 127.0.0.12, ...; `--peer-source-ip`), so a proxy knows which link a connection
//! belongs to and can cut, delay or break one direction of one link. Clients talk
//! to the members directly. Everything is loopback; `Drop` kills every process it
//! started (by PID) and removes the data directories.

use std::fs::{self, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::proxy::{Fault, FaultProxy};

/// One member: its ports, its data, its process.
#[derive(Debug)]
pub struct Node {
    /// `--name`.
    pub name: String,
    /// Client URL.
    pub client_url: String,
    /// The advertised peer URL (the proxy in front of the member).
    pub peer_url: String,
    /// Where the member really listens for peers.
    pub listen_peer_url: String,
    /// `--listen-metrics-urls`.
    pub metrics_url: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// stdout + stderr, appended across restarts.
    pub log: PathBuf,
    /// Source IP of its peer connections.
    pub source_ip: IpAddr,
    /// The process, while running.
    pub child: Option<Child>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
    /// `new` or `existing`, for the next start.
    pub state: String,
    /// `--initial-cluster` for the next start.
    pub initial_cluster: String,
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The `capstan` binary.
    pub binary: PathBuf,
    /// Members by index.
    pub nodes: Vec<Node>,
    /// One proxy per member, in front of its peer port.
    pub proxies: Vec<FaultProxy>,
    /// `--initial-cluster-token`.
    pub token: String,
    /// Flags added to every member's command line.
    pub extra_args: Vec<String>,
    dir: PathBuf,
    keep_dir: bool,
}

/// A loopback port that was free a moment ago, below Linux's ephemeral range
/// (32768-60999): a member restarted on its port must not find it taken by some
/// outgoing connection. Unique within the process; the start depends on the pid.
pub fn free_port() -> u16 {
    const LO: u16 = 20_000;
    const HI: u16 = 32_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        let start = LO + (std::process::id() % u32::from(HI - LO)) as u16;
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let p = NEXT.fetch_add(1, Ordering::Relaxed);
        if p >= HI {
            NEXT.store(LO, Ordering::Relaxed);
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

impl Cluster {
    /// Prepares and starts `n` members under `dir` (created; removed on drop
    /// unless [`Cluster::keep`] is called).
    pub async fn start(
        binary: &Path,
        n: usize,
        dir: &Path,
        token: &str,
    ) -> std::io::Result<Cluster> {
        Cluster::start_with(binary, n, dir, token, &[]).await
    }

    /// Like [`Cluster::start`], with `extra` flags on every member.
    pub async fn start_with(
        binary: &Path,
        n: usize,
        dir: &Path,
        token: &str,
        extra: &[&str],
    ) -> std::io::Result<Cluster> {
        // A kept directory of an earlier run with this seed must not leak its data in.
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..n {
            let (client, real_peer, metrics) = (free_port(), free_port(), free_port());
            let target: SocketAddr = ([127, 0, 0, 1], real_peer).into();
            // A port free when probed can be taken before the proxy binds it
            // (another process on the machine): try a few.
            let mut attempt = 0;
            let (peer, proxy) = loop {
                let peer = free_port();
                match FaultProxy::start(([127, 0, 0, 1], peer).into(), target).await {
                    Ok(p) => break (peer, p),
                    Err(e) if attempt < 10 && e.kind() == std::io::ErrorKind::AddrInUse => {
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            };
            proxies.push(proxy);
            nodes.push(Node {
                name: format!("m{i}"),
                client_url: url(client),
                peer_url: url(peer),
                listen_peer_url: url(real_peer),
                metrics_url: url(metrics),
                data_dir: dir.join(format!("m{i}.data")),
                log: dir.join(format!("m{i}.log")),
                source_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8)),
                child: None,
                paused: false,
                state: "new".into(),
                initial_cluster: String::new(),
            });
        }
        let initial = nodes
            .iter()
            .map(|n| format!("{}={}", n.name, n.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for n in &mut nodes {
            n.initial_cluster = initial.clone();
        }
        let mut c = Cluster {
            binary: binary.to_path_buf(),
            nodes,
            proxies,
            token: token.to_string(),
            dir: dir.to_path_buf(),
            keep_dir: false,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// Keeps the directory (data and logs) after the cluster is dropped.
    pub fn keep(&mut self) {
        self.keep_dir = true;
    }

    /// Starts member `i`'s process.
    pub fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let n = &mut self.nodes[i];
        if n.child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new().create(true).append(true).open(&n.log)?;
        let err = log.try_clone()?;
        let child = Command::new(&self.binary)
            .arg("server")
            .args(["--name", &n.name])
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--listen-client-urls", &n.client_url])
            .args(["--advertise-client-urls", &n.client_url])
            .args(["--listen-peer-urls", &n.listen_peer_url])
            .args(["--initial-advertise-peer-urls", &n.peer_url])
            .args(["--listen-metrics-urls", &n.metrics_url])
            .args(["--initial-cluster", &n.initial_cluster])
            .args(["--initial-cluster-state", &n.state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--peer-source-ip", &n.source_ip.to_string()])
            .args(["--snapshot-count", "500"])
            .args(&self.extra_args)
            .env("RUST_LOG", "info,openraft=error,h2=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()?;
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.child.take() {
            if n.paused {
                signal(c.id(), "CONT");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        n.paused = false;
    }

    /// SIGSTOP member `i`.
    pub fn pause(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(c) = &n.child {
            if signal(c.id(), "STOP") {
                n.paused = true;
            }
        }
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(c) = &n.child {
            if n.paused {
                signal(c.id(), "CONT");
            }
        }
        n.paused = false;
    }

    /// Whether member `i`'s process has exited on its own (and reaps it).
    pub fn exited(&mut self, i: usize) -> bool {
        let n = &mut self.nodes[i];
        match n.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) => {
                n.child = None;
                true
            }
            Some(Ok(None)) => false,
            _ => n.child.is_none(),
        }
    }

    /// Cuts every link to and from member `i`, both directions.
    pub fn isolate(&self, i: usize) {
        let me = self.nodes[i].source_ip;
        for (j, n) in self.nodes.iter().enumerate() {
            if j != i {
                self.proxies[i].set_fault(n.source_ip, Fault::Cut);
                self.proxies[j].set_fault(me, Fault::Cut);
            }
        }
    }

    /// Cuts the links from `from` to `to` only (requests one way and their replies).
    pub fn cut_link(&self, from: usize, to: usize) {
        self.proxies[to].set_fault(self.nodes[from].source_ip, Fault::Cut);
    }

    /// Applies `fault` to every peer link.
    pub fn all_links(&self, fault: Fault) {
        for p in &self.proxies {
            p.set_all(fault.clone());
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        for p in &self.proxies {
            p.heal();
        }
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_url.clone()).collect()
    }

    /// Indexes of members with a running, unpaused process.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some() && !self.nodes[i].paused)
            .collect()
    }

    /// The last `lines` lines of every member's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("----- {} ({}) -----\n", n.name, n.log.display()));
            out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// Member `i`'s data directory is removed (the process must be stopped).
    pub fn wipe(&mut self, i: usize) -> std::io::Result<()> {
        let d = &self.nodes[i].data_dir;
        if d.exists() {
            fs::remove_dir_all(d)?;
        }
        Ok(())
    }
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits, polling, until `f` returns `Some` or `timeout` passes.
pub async fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}
