//! Seeded etcd clients and watchers that produce the inputs of the checkers.
//!
//! [`run_workload`] runs `clients` tasks for a duration. Each draws operations
//! from its own RNG, derived from the seed and its client id ([`OpChooser`]):
//! linearizable gets, puts, compare-and-sets and deletes on `keys` keys under a
//! prefix ([`key_name`]), writing unique values (`c<client>-<n>`) so the checker can
//! tell every write apart. Every operation goes through the [`Recorder`]: its
//! invoke is stamped just before the request is sent, its outcome when the answer
//! (or the timeout) arrives. [`classify_error`] decides whether a failed request
//! surely did not take effect ([`Outcome::Fail`]) or may have
//! ([`Outcome::Unknown`]); it errs towards unknown.
//!
//! A client talks to one member at a time, picked at random. It first proves the
//! connection with a read that is not recorded; if that fails the operation it was
//! for is recorded as failed (nothing was sent). After any error it drops the
//! connection and picks a member again.
//!
//! [`run_watchers`] runs watchers of the prefix from a start revision until told
//! to stop, each recording what it receives into a [`WatcherLog`]. A broken stream
//! (its member was killed, partitioned or lost its leader) is resumed on the next
//! member from the revision after the last one received, and the resume is
//! recorded; a compaction ends the watcher and is recorded as such.

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, ResponseHeader, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::history::{ClientId, Op, Outcome, Output, Recorder, Revision, WriteKind};
use crate::watch::{Resume, WatchEvent, WatcherLog};

/// Errors of an invalid [`WorkloadConfig`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// No endpoint was given.
    #[error("the workload needs at least one endpoint")]
    NoEndpoints,
    /// An endpoint is not `[http[s]://]<loopback ip or localhost>:<port>`.
    #[error(
        "endpoint {endpoint:?} is not a loopback address with a port (like http://127.0.0.1:2379)"
    )]
    NotLoopback {
        /// The endpoint as given.
        endpoint: String,
    },
    /// `keys`, `clients` or `op_timeout` is zero.
    #[error("{field} must not be zero")]
    Zero {
        /// The field.
        field: &'static str,
    },
}

/// What [`run_workload`] does.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Client URLs of the members, e.g. `http://127.0.0.1:2379` (loopback only).
    pub endpoints: Vec<String>,
    /// Number of keys shared by all clients (see [`key_name`]).
    pub keys: usize,
    /// Number of concurrent clients.
    pub clients: usize,
    /// How long clients start new operations.
    pub duration: Duration,
    /// Seeds every client's choices.
    pub seed: u64,
    /// Bound on each operation; a write that times out is unknown.
    pub op_timeout: Duration,
    /// Prefix of every key. Must be fresh (no keys under it) when the run starts:
    /// the checker assumes every key starts absent.
    pub prefix: String,
}

impl WorkloadConfig {
    /// Checks the config.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        if self.endpoints.is_empty() {
            return Err(WorkloadError::NoEndpoints);
        }
        for e in &self.endpoints {
            validate_endpoint(e)?;
        }
        let zero = [
            ("keys", self.keys == 0),
            ("clients", self.clients == 0),
            ("op_timeout", self.op_timeout.is_zero()),
        ];
        match zero.iter().find(|(_, z)| *z) {
            Some((field, _)) => Err(WorkloadError::Zero { field }),
            None => Ok(()),
        }
    }
}

/// Accepts `[http://|https://]host:port[/]` with a loopback IP or `localhost`.
fn validate_endpoint(endpoint: &str) -> Result<(), WorkloadError> {
    let bad = || WorkloadError::NotLoopback {
        endpoint: endpoint.to_owned(),
    };
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    if let Some(port) = rest.strip_prefix("localhost:") {
        return port.parse::<u16>().map(|_| ()).map_err(|_| bad());
    }
    match rest.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Ok(()),
        _ => Err(bad()),
    }
}

/// The name of key `index` under `prefix`: `<prefix>k<index>`.
pub fn key_name(prefix: &str, index: usize) -> String {
    format!("{prefix}k{index}")
}

/// Share of each kind of operation, in percent: get, put, cas, delete.
const MIX: [u32; 4] = [40, 25, 20, 15];
/// Chance that a CAS expects the value the client last saw, in percent;
/// otherwise it expects the key to be absent.
const CAS_EXPECTS_SEEN: u32 = 70;

/// The operations of one client: a pure function of the seed, the client id
/// and what the client observed so far.
#[derive(Debug)]
pub struct OpChooser {
    rng: StdRng,
    client: ClientId,
    prefix: String,
    /// Per key: the value this client last saw (read or wrote).
    seen: Vec<Option<String>>,
    issued: u64,
}

impl OpChooser {
    /// The chooser of `client` in a run seeded with `seed`, over `keys` keys.
    pub fn new(seed: u64, client: ClientId, keys: usize, prefix: &str) -> Self {
        let rng = StdRng::seed_from_u64(crate::splitmix64(
            seed ^ crate::splitmix64(u64::from(client.0)),
        ));
        OpChooser {
            rng,
            client,
            prefix: prefix.to_owned(),
            seen: vec![None; keys.max(1)],
            issued: 0,
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let k = self.rng.gen_range(0..self.seen.len());
        let key = key_name(&self.prefix, k);
        self.issued += 1;
        let value = format!("{}-{}", self.client, self.issued);
        let roll = self.rng.gen_range(0..100);
        if roll < MIX[0] {
            Op::Get { key }
        } else if roll < MIX[0] + MIX[1] {
            Op::Put { key, value }
        } else if roll < MIX[0] + MIX[1] + MIX[2] {
            let expect = if self.rng.gen_range(0..100) < CAS_EXPECTS_SEEN {
                self.seen[k].clone()
            } else {
                None
            };
            Op::Cas { key, expect, value }
        } else {
            Op::Delete { key }
        }
    }

    /// Learns from a completed operation, so later CASes expect current values.
    pub fn observe(&mut self, op: &Op, output: &Output) {
        let Some(k) = op
            .key()
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('k'))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&k| k < self.seen.len())
        else {
            return;
        };
        match (op, output) {
            (Op::Get { .. }, Output::Get { value, .. }) => self.seen[k] = value.clone(),
            (Op::Put { value, .. }, Output::Put { .. })
            | (
                Op::Cas { value, .. },
                Output::Cas {
                    succeeded: true, ..
                },
            ) => self.seen[k] = Some(value.clone()),
            (Op::Delete { .. }, Output::Delete { .. }) => self.seen[k] = None,
            _ => {}
        }
    }
}

/// Whether a failed request surely did not take effect.
///
/// [`Outcome::Fail`] only for errors raised before anything reached a member
/// (bad arguments, a refused TCP connection) or for status codes etcd returns
/// only when it rejects a request before proposing it (invalid argument,
/// permission, authentication, unimplemented, out of range). Everything else —
/// timeouts, "unavailable" (no leader, leader changed, request timed out),
/// connection resets, cancellations — is [`Outcome::Unknown`].
pub fn classify_error(error: &etcd_client::Error) -> Outcome {
    use etcd_client::Error as E;
    use tonic::Code;
    let reason = error.to_string();
    let fail = match error {
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) | E::InvalidMetadataValue(_) => {
            true
        }
        E::GRpcStatus(status) => {
            matches!(
                status.code(),
                Code::InvalidArgument
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::Unimplemented
                    | Code::OutOfRange
            ) || connection_refused(status)
        }
        E::TransportError(e) => connection_refused(e),
        E::IoError(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    };
    if fail {
        Outcome::Fail { reason }
    } else {
        Outcome::Unknown { reason }
    }
}

/// Whether the error was caused by a refused TCP connection: no request of this
/// connection can have been sent.
fn connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// Runs the clients until `cfg.duration` has passed and returns when the last
/// operation ended (at most `op_timeout` later). Every operation lands in
/// `recorder`.
///
/// # Panics
///
/// If `cfg` is invalid (see [`WorkloadConfig::validate`]): a harness bug that
/// must not pass as a run without operations.
#[tracing::instrument(skip_all, fields(seed = cfg.seed, clients = cfg.clients, keys = cfg.keys))]
pub async fn run_workload(cfg: WorkloadConfig, recorder: Recorder) {
    if let Err(e) = cfg.validate() {
        panic!("invalid workload config: {e}");
    }
    let deadline = Instant::now() + cfg.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..cfg.clients {
        let id = ClientId(u32::try_from(c).unwrap_or(u32::MAX));
        tasks.spawn(client_loop(id, cfg.clone(), recorder.clone(), deadline));
    }
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!(error = %e, "workload client task failed");
        }
    }
    tracing::info!(records = recorder.len(), "workload done");
}

/// Pause after a failed operation, so a leaderless cluster is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// Pause after a failed connection attempt.
const CONNECT_BACKOFF: Duration = Duration::from_millis(50);

async fn client_loop(id: ClientId, cfg: WorkloadConfig, recorder: Recorder, deadline: Instant) {
    let mut chooser = OpChooser::new(cfg.seed, id, cfg.keys, &cfg.prefix);
    let mut pick =
        StdRng::seed_from_u64(crate::splitmix64(cfg.seed ^ 0xc0ff_ee00 ^ u64::from(id.0)));
    let mut conn: Option<Client> = None;
    while Instant::now() < deadline {
        let op = chooser.next_op();
        if conn.is_none() {
            let endpoint = &cfg.endpoints[pick.gen_range(0..cfg.endpoints.len())];
            match connect(endpoint, &cfg.prefix, cfg.op_timeout).await {
                Ok(c) => conn = Some(c),
                Err(reason) => {
                    // The op was never sent.
                    recorder.invoke(id, op).complete(Outcome::Fail { reason });
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(client) = conn.as_mut() else {
            continue;
        };
        let inv = recorder.invoke(id, op.clone());
        let outcome = match tokio::time::timeout(cfg.op_timeout, execute(client, &op)).await {
            Ok(Ok(out)) => {
                chooser.observe(&op, &out);
                Outcome::Ok(out)
            }
            Ok(Err(e)) => classify_error(&e),
            Err(_) => Outcome::Unknown {
                reason: format!("no answer within {:?}", cfg.op_timeout),
            },
        };
        let failed = !matches!(outcome, Outcome::Ok(_));
        inv.complete(outcome);
        if failed {
            conn = None;
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// Connects to `endpoint` and proves the connection with an unrecorded read.
async fn connect(endpoint: &str, prefix: &str, timeout: Duration) -> Result<Client, String> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_require_leader(true);
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(opts))
            .await
            .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
        client
            .get(prefix, Some(GetOptions::new().with_serializable()))
            .await
            .map_err(|e| format!("probing {endpoint}: {e}"))?;
        Ok(client)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no connection to {endpoint} within {timeout:?}"))?
}

fn header_revision(h: Option<&ResponseHeader>) -> Option<Revision> {
    h.map(|h| Revision(h.revision()))
}

/// Sends `op` and decodes the answer.
async fn execute(client: &mut Client, op: &Op) -> Result<Output, etcd_client::Error> {
    Ok(match op {
        Op::Get { key } => {
            let r = client.get(key.as_str(), None).await?;
            Output::Get {
                value: r
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                revision: header_revision(r.header()),
            }
        }
        Op::Put { key, value } => {
            let r = client.put(key.as_str(), value.as_str(), None).await?;
            Output::Put {
                revision: header_revision(r.header()),
            }
        }
        Op::Delete { key } => {
            let r = client.delete(key.as_str(), None).await?;
            Output::Delete {
                deleted: u64::try_from(r.deleted()).unwrap_or(0),
                revision: header_revision(r.header()),
            }
        }
        Op::Cas { key, expect, value } => {
            let compare = match expect {
                Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(
                key.as_str(),
                value.as_str(),
                None,
            )]);
            let r = client.txn(txn).await?;
            Output::Cas {
                succeeded: r.succeeded(),
                revision: header_revision(r.header()),
            }
        }
    })
}

/// Errors kept per watcher log.
const MAX_WATCH_ERRORS: usize = 16;
/// Bound on opening one watch stream.
const WATCH_OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before re-establishing a broken stream.
const WATCH_BACKOFF: Duration = Duration::from_millis(100);

/// Runs `n` watchers of `prefix` from `start_revision` until `stop` turns true
/// (or its sender is dropped), and returns their logs, by watcher id.
///
/// Watcher `i` starts on endpoint `i % endpoints.len()` and moves to the next
/// one each time its stream breaks.
#[tracing::instrument(skip_all, fields(watchers = n))]
pub async fn run_watchers(
    endpoints: Vec<String>,
    prefix: String,
    n: usize,
    start_revision: impl Into<Revision>,
    stop: watch::Receiver<bool>,
) -> Vec<WatcherLog> {
    let start = start_revision.into();
    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        tasks.push(tokio::spawn(watcher(
            id,
            endpoints.clone(),
            prefix.clone(),
            start,
            stop.clone(),
        )));
    }
    let mut logs = Vec::with_capacity(n);
    for (id, t) in tasks.into_iter().enumerate() {
        logs.push(t.await.unwrap_or_else(|e| {
            let mut log = WatcherLog::new(id, prefix.clone(), start);
            log.errors.push(format!("watcher task failed: {e}"));
            log
        }));
    }
    logs
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn open_watch(endpoint: &str, prefix: &str, from: Revision) -> Result<WatchStream, String> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(WATCH_OPEN_TIMEOUT)
        .with_require_leader(true);
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(opts))
            .await
            .map_err(|e| e.to_string())?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from.0);
        client
            .watch(prefix, Some(options))
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(WATCH_OPEN_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no watch stream within {WATCH_OPEN_TIMEOUT:?}"))?
        .map_err(|e| format!("watching on {endpoint}: {e}"))
}

fn note(log: &mut WatcherLog, error: String) {
    tracing::debug!(watcher = log.id, %error, "watch stream problem");
    if log.errors.len() < MAX_WATCH_ERRORS {
        log.errors.push(error);
    }
}

/// How a watch stream ended.
enum StreamEnd {
    Stopped,
    Compacted(Revision),
    Broken(String),
}

async fn watcher(
    id: usize,
    endpoints: Vec<String>,
    prefix: String,
    start: Revision,
    mut stop: watch::Receiver<bool>,
) -> WatcherLog {
    let mut log = WatcherLog::new(id, prefix.clone(), start);
    if endpoints.is_empty() {
        note(&mut log, "no endpoints".to_owned());
        return log;
    }
    let mut next = start;
    let mut attempt = id;
    let mut broken: Option<String> = None;
    loop {
        let endpoint = endpoints[attempt % endpoints.len()].clone();
        attempt += 1;
        let opened = tokio::select! {
            r = open_watch(&endpoint, &prefix, next) => r,
            () = stopped(&mut stop) => return log,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                note(&mut log, e);
                tokio::select! {
                    () = tokio::time::sleep(WATCH_BACKOFF) => continue,
                    () = stopped(&mut stop) => return log,
                }
            }
        };
        if let Some(reason) = broken.take() {
            log.resumes.push(Resume {
                from_revision: next,
                endpoint: endpoint.clone(),
                reason,
            });
        }
        let end = loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                () = stopped(&mut stop) => break StreamEnd::Stopped,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => break StreamEnd::Broken(format!("stream from {endpoint} ended")),
                Err(e) => break StreamEnd::Broken(format!("stream from {endpoint}: {e}")),
            };
            if resp.compact_revision() > 0 {
                break StreamEnd::Compacted(Revision(resp.compact_revision()));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else {
                    continue;
                };
                let kind = match ev.event_type() {
                    EventType::Put => WriteKind::Put,
                    EventType::Delete => WriteKind::Delete,
                };
                let revision = Revision(kv.mod_revision());
                log.events.push(WatchEvent {
                    revision,
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    kind,
                    value: (kind == WriteKind::Put)
                        .then(|| String::from_utf8_lossy(kv.value()).into_owned()),
                });
                next = next.max(Revision(revision.0 + 1));
            }
            if resp.canceled() {
                break StreamEnd::Broken(format!(
                    "watch on {endpoint} canceled: {}",
                    resp.cancel_reason()
                ));
            }
        };
        match end {
            StreamEnd::Stopped => return log,
            StreamEnd::Compacted(at) => {
                note(
                    &mut log,
                    format!("revision {next} compacted (compact revision {at})"),
                );
                log.compacted = Some(at);
                return log;
            }
            StreamEnd::Broken(reason) => {
                note(&mut log, reason.clone());
                broken = Some(reason);
                tokio::select! {
                    () = tokio::time::sleep(WATCH_BACKOFF) => {}
                    () = stopped(&mut stop) => return log,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
