//! Shared harness for capstan's end-to-end tests.
//!
//! A [`Cluster`] starts real `capstan server` processes on loopback ports, each member in
//! its own data directory under one temporary directory, with its stdout and stderr in
//! `<member>.log` beside it. Tests drive the members with Debian's `etcdctl` (3.4) through
//! [`etcdctl`] and friends, or with any other etcd v3 client. Every wait is bounded, and
//! `Drop` kills every process the harness started (by PID) and removes the directories;
//! a test that panics gets the tail of every member's log on stderr.
//!
//! `CAPSTAN_TEST_SERVER=etcd` runs the same tests against Debian's `etcd` binary instead
//! of capstan: that checks the tests themselves against the reference implementation.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

/// How long a freshly started (or restarted) cluster may take to serve every member.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default bound for a test's own waits (an event to arrive, a leader to be elected).
pub const WAIT: Duration = Duration::from_secs(20);
/// The bound on one whole `etcdctl` run; its own `--command-timeout` is 5 s.
const ETCDCTL_RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for a member to exit after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Log lines shown per member when a test fails.
const LOG_TAIL_LINES: usize = 80;

// ---------------------------------------------------------------------------------------
// Environment: CI, skipping, which server binary
// ---------------------------------------------------------------------------------------

/// True when running in CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok(v) if !v.is_empty() && v != "0" && v != "false")
}

/// True when `etcdctl` can be run.
pub fn etcdctl_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("etcdctl")
            .arg("version")
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Whether a test that drives `etcdctl` can run. Without `etcdctl` the test is skipped
/// with a message on a developer's machine, and fails loudly in CI.
///
/// Use as `if !common::need_etcdctl("name") { return; }`.
pub fn need_etcdctl(test: &str) -> bool {
    if etcdctl_available() {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: etcdctl is not installed and CI is set; scripts/deps.sh --test installs it \
         (Debian package etcd-client)"
    );
    eprintln!(
        "SKIPPED {test}: etcdctl is not installed (scripts/deps.sh --test installs it, \
         Debian package etcd-client)"
    );
    false
}

/// True when the tests run against Debian's `etcd` (`CAPSTAN_TEST_SERVER=etcd`) rather
/// than capstan.
pub fn against_reference_etcd() -> bool {
    matches!(std::env::var("CAPSTAN_TEST_SERVER").as_deref(), Ok("etcd"))
}

/// The program and leading arguments that start one member.
fn server_command() -> Command {
    if against_reference_etcd() {
        Command::new("etcd")
    } else {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.arg("server");
        cmd
    }
}

/// `capstan <subcommand>`, for the commands beside `server`.
pub fn server_command_for(subcommand: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.arg(subcommand);
    cmd
}

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

/// Lowest and highest port `free_port` hands out: below Linux's ephemeral range
/// (32768-60999), so that the kernel never gives one of them to an outgoing connection
/// between the moment we pick it and the moment the member binds it.
const PORT_LO: u16 = 20_000;
const PORT_HI: u16 = 32_000;

/// A loopback TCP port that is free now and that no other call in this process returned.
pub fn free_port() -> u16 {
    struct Ports {
        rng: u64,
        taken: HashSet<u16>,
    }
    static PORTS: OnceLock<Mutex<Ports>> = OnceLock::new();
    let ports = PORTS.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Mutex::new(Ports {
            rng: (nanos ^ (u64::from(std::process::id()) << 32)) | 1,
            taken: HashSet::new(),
        })
    });
    let mut ports = ports
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..10_000 {
        // xorshift64: cheap, and good enough to spread ports across the range.
        ports.rng ^= ports.rng << 13;
        ports.rng ^= ports.rng >> 7;
        ports.rng ^= ports.rng << 17;
        let port = PORT_LO + (ports.rng % u64::from(PORT_HI - PORT_LO)) as u16;
        if ports.taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.taken.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {PORT_LO}..{PORT_HI} after 10000 tries");
}

// ---------------------------------------------------------------------------------------
// Members and clusters
// ---------------------------------------------------------------------------------------

/// One member of a test cluster: its addresses, its data directory, its process.
pub struct Member {
    /// `--name`.
    pub name: String,
    /// `http://127.0.0.1:<port>`: the etcd v3 gRPC API.
    pub client_url: String,
    /// `http://127.0.0.1:<port>`: Raft traffic between members.
    pub peer_url: String,
    /// `http://127.0.0.1:<port>`: `/metrics` and `/health`.
    pub metrics_url: String,
    /// `--data-dir`; not created by the harness, the member creates it.
    pub data_dir: PathBuf,
    /// The member's stdout and stderr, appended across restarts.
    pub log_path: PathBuf,
    /// The running process, `None` once killed or stopped.
    pub child: Option<Child>,
    /// Every flag the member was started with; `restart` reuses them.
    args: Vec<String>,
}

impl Member {
    /// `127.0.0.1:<client port>`, the form clients such as python-etcd3 take.
    pub fn client_addr(&self) -> &str {
        strip_scheme(&self.client_url)
    }

    /// `127.0.0.1:<metrics port>`.
    pub fn metrics_addr(&self) -> &str {
        strip_scheme(&self.metrics_url)
    }

    /// True while the harness holds a process for this member.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of this member's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "member {} is already running",
            self.name
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let log_err = log.try_clone().unwrap_or_else(|e| {
            panic!(
                "cannot clone the handle of {}: {e}",
                self.log_path.display()
            )
        });
        let mut cmd = server_command();
        cmd.args(&self.args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start member {} ({cmd:?}): {e}", self.name));
        self.child = Some(child);
    }

    /// Why this member is not serving yet, or `Ok` when it is: its client port accepts
    /// connections, `GET /health` on its metrics URL answers 200, and (when `etcdctl` is
    /// installed) `etcdctl endpoint health` succeeds.
    fn probe(&self) -> Result<(), String> {
        let addr: SocketAddr = self
            .client_addr()
            .parse()
            .map_err(|e| format!("bad client address {}: {e}", self.client_addr()))?;
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map_err(|e| format!("client port {addr}: {e}"))?;
        match http_get(self.metrics_addr(), "/health") {
            Ok((200, _)) => {}
            Ok((status, body)) => return Err(format!("GET /health: {status} {body}")),
            Err(e) => return Err(format!("GET /health: {e}")),
        }
        // Over TLS the test itself knows which certificates to present.
        if etcdctl_available() && !self.client_url.starts_with("https://") {
            let out = etcdctl(&self.client_url, &["endpoint", "health"]);
            if !out.status.success() {
                return Err(format!("etcdctl endpoint health: {}", output_text(&out)));
            }
        }
        Ok(())
    }
}

fn strip_scheme(url: &str) -> &str {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
}

/// A set of members started together with one `--initial-cluster`.
pub struct Cluster {
    /// The members, in the order of `--initial-cluster`; member `i` is named `m{i}`.
    pub members: Vec<Member>,
    token: String,
    extra_args: Vec<String>,
    _dir: TempDir,
}

/// A member's flags: loopback ports, its data dir and log under `dir`.
fn new_member(
    dir: &std::path::Path,
    name: &str,
    (client, peer, metrics): (u16, u16, u16),
    initial_cluster: &str,
    state: &str,
    token: &str,
    extra_args: &[&str],
) -> Member {
    // `--cert-file` in the extra flags means TLS on both the client and the peer URLs.
    let scheme = if extra_args.contains(&"--cert-file") {
        "https"
    } else {
        "http"
    };
    let client_url = format!("{scheme}://127.0.0.1:{client}");
    let peer_url = format!("{scheme}://127.0.0.1:{peer}");
    let metrics_url = format!("http://127.0.0.1:{metrics}");
    // Joiners may reuse a name (to test that it is refused): the peer port keeps
    // their files apart.
    let data_dir = dir.join(format!("{name}-{peer}.data"));
    let log_path = dir.join(format!("{name}-{peer}.log"));
    let data_dir_arg = data_dir.to_string_lossy().into_owned();
    let mut args: Vec<String> = [
        "--name",
        name,
        "--data-dir",
        data_dir_arg.as_str(),
        "--listen-client-urls",
        client_url.as_str(),
        "--advertise-client-urls",
        client_url.as_str(),
        "--listen-peer-urls",
        peer_url.as_str(),
        "--initial-advertise-peer-urls",
        peer_url.as_str(),
        "--listen-metrics-urls",
        metrics_url.as_str(),
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        state,
        "--initial-cluster-token",
        token,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra_args.iter().map(|s| s.to_string()));
    Member {
        name: name.to_string(),
        client_url,
        peer_url,
        metrics_url,
        data_dir,
        log_path,
        child: None,
        args,
    }
}

impl Cluster {
    /// Starts `n` members and waits until every one serves.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// Starts `n` members with extra flags (e.g. `["--max-txn-ops", "4"]`) on every
    /// member, and waits until every one serves.
    pub fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::spawn(n, extra_args);
        cluster.wait_ready(READY_TIMEOUT);
        cluster
    }

    /// Starts `n` members without waiting for them.
    pub fn spawn(n: usize, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(n, extra_args);
        for member in &mut cluster.members {
            member.spawn();
        }
        cluster
    }

    /// Builds a new `n`-member cluster from a snapshot file: `capstan snapshot restore`
    /// into each member's data dir, then starts them and waits until they serve.
    pub fn restore_from(snapshot: &std::path::Path, n: usize) -> Cluster {
        let mut cluster = Cluster::prepare(n, &[]);
        let initial = cluster
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &cluster.members {
            let mut cmd = server_command_for("snapshot");
            cmd.arg("restore")
                .arg(snapshot)
                .arg("--data-dir")
                .arg(&m.data_dir)
                .args(["--name", &m.name, "--initial-cluster", &initial])
                .args(["--initial-cluster-token", &cluster.token])
                .args(["--initial-advertise-peer-urls", &m.peer_url]);
            let out = run_bounded(cmd, None, WAIT);
            assert!(
                out.status.success(),
                "capstan snapshot restore for {}: {}",
                m.name,
                output_text(&out)
            );
        }
        for member in &mut cluster.members {
            member.spawn();
        }
        cluster.wait_ready(READY_TIMEOUT);
        cluster
    }

    /// The members' flags and directories, nothing started.
    fn prepare(n: usize, extra_args: &[&str]) -> Cluster {
        assert!(n > 0, "a cluster needs at least one member");
        let dir = tempfile::Builder::new()
            .prefix("capstan-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, _))| {
                let scheme = if extra_args.contains(&"--cert-file") {
                    "https"
                } else {
                    "http"
                };
                format!("m{i}={scheme}://127.0.0.1:{peer}")
            })
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("capstan-test-{}", ports[0].1);
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                new_member(
                    dir.path(),
                    &format!("m{i}"),
                    p,
                    &initial_cluster,
                    "new",
                    &token,
                    extra_args,
                )
            })
            .collect();
        Cluster {
            members,
            token,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        }
    }

    /// The cluster's temporary directory (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Waits until every running member serves (see `Member::probe`). Panics, with the
    /// members' logs, when one has exited or is still not serving after `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..self.members.len() {
            if !self.members[i].is_running() {
                continue;
            }
            loop {
                self.assert_alive(i);
                let why = match self.members[i].probe() {
                    Ok(()) => break,
                    Err(why) => why,
                };
                assert!(
                    Instant::now() < deadline,
                    "member {} is not serving after {timeout:?}: {why}",
                    self.members[i].name
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Panics when member `i`'s process has exited on its own.
    pub fn assert_alive(&mut self, i: usize) {
        let member = &mut self.members[i];
        let status = match member.child.as_mut().map(Child::try_wait) {
            None | Some(Ok(None)) => return,
            Some(Ok(Some(status))) => status,
            Some(Err(e)) => panic!("cannot poll member {}: {e}", member.name),
        };
        member.child = None;
        panic!("member {} exited on its own: {status}", member.name);
    }

    /// Kills member `i` with SIGKILL (by PID) and reaps it.
    pub fn kill(&mut self, i: usize) {
        let member = &mut self.members[i];
        let mut child = member
            .child
            .take()
            .unwrap_or_else(|| panic!("member {} is not running", member.name));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops member `i` with SIGTERM and returns its exit status. If it has not exited
    /// after 15 s it is killed with SIGKILL (and the status says so).
    pub fn stop(&mut self, i: usize) -> ExitStatus {
        let member = &mut self.members[i];
        let mut child = member
            .child
            .take()
            .unwrap_or_else(|| panic!("member {} is not running", member.name));
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        if sent {
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(status)) => return status,
                    Ok(None) => thread::sleep(Duration::from_millis(50)),
                    Err(e) => panic!("cannot poll member {}: {e}", member.name),
                }
            }
            eprintln!(
                "member {} did not exit within {STOP_TIMEOUT:?} of SIGTERM: sending SIGKILL",
                member.name
            );
        } else {
            eprintln!(
                "could not send SIGTERM to member {} (pid {pid}): sending SIGKILL",
                member.name
            );
        }
        let _ = child.kill();
        child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap member {}: {e}", member.name))
    }

    /// Starts member `i` again with the same flags and data directory (after `kill` or
    /// `stop`), then waits until every running member serves.
    pub fn restart(&mut self, i: usize) {
        self.members[i].spawn();
        self.wait_ready(READY_TIMEOUT);
    }

    /// Adds a member the way an operator does: `etcdctl member add` (as a learner if
    /// asked) against the running members, then starts it with
    /// `--initial-cluster-state existing` and the `ETCD_INITIAL_CLUSTER` that etcdctl
    /// printed. Waits until it serves; returns its index.
    pub fn add_member(&mut self, learner: bool) -> usize {
        let name = format!("m{}", self.members.len());
        let i = self.join(&name, learner);
        self.wait_ready(READY_TIMEOUT);
        i
    }

    /// `etcdctl member add <name>` and starts the member, without waiting for it.
    pub fn join(&mut self, name: &str, learner: bool) -> usize {
        let ports = (free_port(), free_port(), free_port());
        let peer_arg = format!("--peer-urls=http://127.0.0.1:{}", ports.1);
        let mut args = vec!["member", "add", name, peer_arg.as_str()];
        if learner {
            args.push("--learner");
        }
        let out = etcdctl_ok(&self.live_endpoints(), &args);
        let initial_cluster = out
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
            .unwrap_or_else(|| {
                panic!("no ETCD_INITIAL_CLUSTER in `etcdctl member add` output:\n{out}")
            })
            .trim_matches('"')
            .to_string();
        self.spawn_joiner(name, ports, &initial_cluster)
    }

    /// Starts a member with `--initial-cluster-state existing` that nobody added: the
    /// running members plus itself in `--initial-cluster`. Does not wait.
    pub fn spawn_unadded(&mut self, name: &str) -> usize {
        let ports = (free_port(), free_port(), free_port());
        let mut initial: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        initial.push(format!("{name}=http://127.0.0.1:{}", ports.1));
        self.spawn_joiner(name, ports, &initial.join(","))
    }

    fn spawn_joiner(&mut self, name: &str, ports: (u16, u16, u16), initial: &str) -> usize {
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let mut member = new_member(
            self._dir.path(),
            name,
            ports,
            initial,
            "existing",
            &self.token,
            &extra,
        );
        member.spawn();
        self.members.push(member);
        self.members.len() - 1
    }

    /// Member `i`'s id as its own `endpoint status` reports it.
    pub fn member_id(&self, i: usize) -> u64 {
        endpoint_status(&self.members[i].client_url)
            .unwrap_or_else(|| panic!("no status from member {}", self.members[i].name))
            .member_id
    }

    /// Starts member `i` without waiting for it.
    pub fn spawn_member(&mut self, i: usize) {
        self.members[i].spawn();
    }

    /// Waits (bounded) for member `i`'s process to exit on its own; returns its status.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> ExitStatus {
        let member = &mut self.members[i];
        let deadline = Instant::now() + timeout;
        loop {
            let child = member
                .child
                .as_mut()
                .unwrap_or_else(|| panic!("member {} is not running", member.name));
            if let Some(status) = child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot poll member {}: {e}", member.name))
            {
                member.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "member {} did not exit within {timeout:?}",
                member.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every member's client URL, comma-joined, as `--endpoints` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs of the members that are running, comma-joined.
    pub fn live_endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// The index of the member that every running member names as leader, if they agree
    /// and that member is running; `None` while there is no such leader.
    pub fn leader(&self) -> Option<usize> {
        let mut leader_id = None;
        let mut index_of_id = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            if !member.is_running() {
                continue;
            }
            let status = endpoint_status(&member.client_url)?;
            if status.leader == 0 || leader_id.is_some_and(|l| l != status.leader) {
                return None;
            }
            leader_id = Some(status.leader);
            index_of_id.push((status.member_id, i));
        }
        let leader_id = leader_id?;
        index_of_id
            .iter()
            .find(|(id, _)| *id == leader_id)
            .map(|&(_, i)| i)
    }

    /// Waits until the running members agree on a running leader; returns its index.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "the running members did not agree on a leader within {timeout:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The tail of every member's log, with a header per member.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "----- {} ({}) last {LOG_TAIL_LINES} lines of {} -----\n{}",
                    m.name,
                    m.client_url,
                    m.log_path.display(),
                    m.log_tail(LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running programs with a bound
// ---------------------------------------------------------------------------------------

/// Runs `cmd` to completion with `input` on its stdin, and panics if it has not finished
/// within `timeout` (after killing it).
pub fn run_bounded(mut cmd: Command, input: Option<&str>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let text = text.to_owned();
        // A thread, so that a command that does not read its input cannot block us;
        // dropping `stdin` at its end closes the pipe.
        thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let stdout = read_all_in_thread(child.stdout.take());
    let stderr = read_all_in_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {timeout:?}");
            }
            Err(e) => panic!("cannot poll {what}: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn read_all_in_thread<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// stdout and stderr of a finished command, for messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "exit {}; stdout: {:?}; stderr: {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

// ---------------------------------------------------------------------------------------
// etcdctl
// ---------------------------------------------------------------------------------------

fn etcdctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("etcdctl");
    // Flags win over ETCDCTL_* variables, but drop the ones that could still change
    // what is asked of the members.
    for var in [
        "ETCDCTL_ENDPOINTS",
        "ETCDCTL_USER",
        "ETCDCTL_PASSWORD",
        "ETCDCTL_WRITE_OUT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s")
        .args(args);
    cmd
}

/// Runs `etcdctl --endpoints=<endpoints> <args>` (API 3, 5 s command timeout).
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    run_bounded(etcdctl_command(endpoints, args), None, ETCDCTL_RUN_TIMEOUT)
}

/// Like [`etcdctl`], with `input` on stdin (e.g. for `txn`).
pub fn etcdctl_input(endpoints: &str, args: &[&str], input: &str) -> Output {
    run_bounded(
        etcdctl_command(endpoints, args),
        Some(input),
        ETCDCTL_RUN_TIMEOUT,
    )
}

/// Runs etcdctl, asserts that it succeeded, returns its stdout.
pub fn etcdctl_ok(endpoints: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    assert!(
        out.status.success(),
        "etcdctl {} failed: {}",
        args.join(" "),
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs etcdctl with `input` on stdin, asserts that it succeeded, returns its stdout.
pub fn etcdctl_input_ok(endpoints: &str, args: &[&str], input: &str) -> String {
    let out = etcdctl_input(endpoints, args, input);
    assert!(
        out.status.success(),
        "etcdctl {} (stdin {input:?}) failed: {}",
        args.join(" "),
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs etcdctl, asserts that it failed and that its output contains `expected`;
/// returns stdout and stderr together.
pub fn etcdctl_err(endpoints: &str, args: &[&str], expected: &str) -> String {
    let out = etcdctl(endpoints, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "etcdctl {} should have failed with {expected:?}: {}",
        args.join(" "),
        output_text(&out)
    );
    assert!(
        text.contains(expected),
        "etcdctl {} failed, but without {expected:?}: {}",
        args.join(" "),
        output_text(&out)
    );
    text
}

/// Runs etcdctl with `-w json` appended, asserts success, parses its stdout.
pub fn etcdctl_json(endpoints: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    let out = etcdctl_ok(endpoints, &all);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("etcdctl {} printed no JSON ({e}): {out:?}", all.join(" ")))
}

/// The lines of etcdctl's simple output, without the empty line etcdctl prints for an
/// empty value.
pub fn nonempty_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A numeric field of etcdctl's JSON, 0 when absent (Go's `omitempty` drops zeros).
pub fn json_i64(v: &Value, field: &str) -> i64 {
    match v.get(field) {
        None | Some(Value::Null) => 0,
        Some(x) => x
            .as_i64()
            .or_else(|| x.as_u64().map(|u| u as i64))
            .unwrap_or_else(|| panic!("field {field} is not a number in {v}")),
    }
}

/// An unsigned 64-bit field of etcdctl's JSON (member and cluster IDs), 0 when absent.
pub fn json_u64(v: &Value, field: &str) -> u64 {
    match v.get(field) {
        None | Some(Value::Null) => 0,
        Some(x) => x
            .as_u64()
            .unwrap_or_else(|| panic!("field {field} is not an unsigned number in {v}")),
    }
}

/// A bytes field of etcdctl's JSON (keys and values are base64), "" when absent.
pub fn json_bytes(v: &Value, field: &str) -> String {
    match v.get(field).and_then(Value::as_str) {
        None => String::new(),
        Some(b64) => String::from_utf8(base64_decode(b64))
            .unwrap_or_else(|e| panic!("field {field} of {v} is not UTF-8: {e}")),
    }
}

/// The `kvs` array of a range response as (key, value, create, mod, version, lease).
pub fn json_kvs(resp: &Value) -> Vec<JsonKv> {
    resp.get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| kvs.iter().map(JsonKv::from_json).collect())
        .unwrap_or_default()
}

/// One key-value pair as etcdctl prints it in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonKv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl JsonKv {
    pub fn from_json(kv: &Value) -> JsonKv {
        JsonKv {
            key: json_bytes(kv, "key"),
            value: json_bytes(kv, "value"),
            create_revision: json_i64(kv, "create_revision"),
            mod_revision: json_i64(kv, "mod_revision"),
            version: json_i64(kv, "version"),
            lease: json_i64(kv, "lease"),
        }
    }
}

/// Decodes standard base64 (padding optional). Panics on anything else.
pub fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let sextet = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {text:?}")) as u32;
        acc = (acc << 6) | sextet;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The store revision a member reports (the header of a serializable-free `get`).
pub fn current_revision(endpoints: &str) -> i64 {
    let resp = etcdctl_json(endpoints, &["get", "capstan-test-revision-probe"]);
    json_i64(&resp["header"], "revision")
}

/// Parses the lease ID out of `lease NNNN granted with TTL(60s)`.
pub fn lease_id_from_grant(out: &str) -> String {
    out.split_whitespace()
        .nth(1)
        .filter(|_| out.starts_with("lease "))
        .unwrap_or_else(|| panic!("unexpected `lease grant` output: {out:?}"))
        .to_owned()
}

/// One member's `etcdctl endpoint status` as the harness needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointStatus {
    pub member_id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub revision: i64,
}

/// `etcdctl endpoint status -w json` for one endpoint; `None` when it fails.
pub fn endpoint_status(endpoint: &str) -> Option<EndpointStatus> {
    let out = etcdctl(endpoint, &["endpoint", "status", "-w", "json"]);
    if !out.status.success() {
        return None;
    }
    let all: Value = serde_json::from_slice(&out.stdout).ok()?;
    let status = all.as_array()?.first()?.get("Status")?;
    let header = status.get("header")?;
    Some(EndpointStatus {
        member_id: json_u64(header, "member_id"),
        leader: json_u64(status, "leader"),
        raft_term: json_u64(status, "raftTerm"),
        raft_index: json_u64(status, "raftIndex"),
        revision: json_i64(header, "revision"),
    })
}

// ---------------------------------------------------------------------------------------
// A running `etcdctl watch`
// ---------------------------------------------------------------------------------------

/// A running `etcdctl watch ...` whose stdout is read line by line with bounded waits.
/// `Drop` kills it.
pub struct EtcdctlWatch {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl EtcdctlWatch {
    /// Starts `etcdctl --endpoints=<endpoints> watch <args>`.
    pub fn spawn(endpoints: &str, args: &[&str]) -> EtcdctlWatch {
        let mut all = vec!["watch"];
        all.extend_from_slice(args);
        let mut cmd = etcdctl_command(endpoints, &all);
        let what = format!("etcdctl watch {}", args.join(" "));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let collected = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&collected);
        thread::spawn(move || {
            let mut text = String::new();
            let mut reader = BufReader::new(stderr);
            while reader.read_line(&mut text).is_ok_and(|n| n > 0) {
                sink.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push_str(&text);
                text.clear();
            }
        });
        EtcdctlWatch {
            child,
            lines,
            stderr: collected,
            what,
        }
    }

    /// The next stdout line, or `None` when none came within `timeout` or the watch
    /// exited.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next `n` stdout lines; panics with what came and the watch's stderr when
    /// they do not all come within `timeout`.
    pub fn lines(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) => got.push(line),
                None => panic!(
                    "{}: got {} of {n} lines within {timeout:?}: {got:?}; stderr: {:?}",
                    self.what,
                    got.len(),
                    self.stderr()
                ),
            }
        }
        got
    }

    /// Reads `-w json` watch responses until they hold at least `n` events in all, and
    /// returns those events. Panics when they do not come within `timeout`.
    pub fn json_events(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.next_line(left) else {
                panic!(
                    "{}: got {} of {n} events within {timeout:?}: {events:?}; stderr: {:?}",
                    self.what,
                    events.len(),
                    self.stderr()
                );
            };
            events.extend(parse_watch_line(&line));
        }
        events
    }

    /// Every event that arrives within `quiet` of the previous line (at most `timeout`
    /// in all); for "nothing more arrives" checks.
    pub fn drain_json_events(&mut self, quiet: Duration, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while Instant::now() < deadline {
            match self.next_line(quiet) {
                Some(line) => events.extend(parse_watch_line(&line)),
                None => break,
            }
        }
        events
    }

    /// True once the etcdctl process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// What the watch printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for EtcdctlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events of one `etcdctl watch -w json` line.
pub fn parse_watch_line(line: &str) -> Vec<Value> {
    let resp: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("watch printed a line that is not JSON ({e}): {line:?}"));
    resp.get("Events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `"PUT"` or `"DELETE"` for an event of etcdctl's JSON (`type` is omitted for PUT).
pub fn event_type(event: &Value) -> &'static str {
    match json_i64(event, "type") {
        0 => "PUT",
        1 => "DELETE",
        other => panic!("unknown event type {other} in {event}"),
    }
}

/// The key-value of an event of etcdctl's JSON.
pub fn event_kv(event: &Value) -> JsonKv {
    JsonKv::from_json(
        event
            .get("kv")
            .unwrap_or_else(|| panic!("event without kv: {event}")),
    )
}

/// The previous key-value of an event of etcdctl's JSON, if it has one.
pub fn event_prev_kv(event: &Value) -> Option<JsonKv> {
    event.get("prev_kv").map(JsonKv::from_json)
}

// ---------------------------------------------------------------------------------------
// HTTP (metrics and health)
// ---------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET over loopback: returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad address {addr}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "not an HTTP response: {:.200}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    let mut body = &raw[split + 4..];
    let decoded;
    if head.contains("transfer-encoding: chunked") {
        decoded = dechunk(body);
        body = &decoded;
    }
    let body = String::from_utf8_lossy(body).into_owned();
    Ok((status, body))
}

/// Decodes an HTTP/1.1 chunked body (as much of it as is well-formed).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_field = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        let data = &rest[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    out
}

/// Writes `bytes` to a fresh file (for tests that need a file argument).
pub fn write_file(path: &std::path::Path, bytes: &[u8]) {
    let mut file =
        File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.write_all(bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Polls `check` every 100 ms until it returns `Some`, and returns that; panics with
/// `what` when `timeout` passes first.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
