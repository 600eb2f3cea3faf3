//! Seeded etcd clients and watchers for fault runs.
//!
//! Clients pick operations on a small key set from a per-client seeded RNG and
//! record every invocation and outcome. Writes carry unique values
//! (`c<client>-<n>`) so the checkers can tell them apart. A write whose outcome
//! the client cannot know (timeout, connection lost mid-request, "request timed
//! out") is recorded as unknown; one that was never sent (no connection) or that
//! etcd refused before proposing ("no leader") as failed. After any error a
//! client reconnects, to a random member.
//!
//! Watchers watch the key prefix from a start revision and record every event;
//! when a stream breaks (its member was killed, say) they resume on another
//! member from the revision after the last one they saw.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, Txn, TxnOp, WatchOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::history::{ClientId, Op, Outcome, Output, Recorder, Revision};

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Client URLs of the members.
    pub endpoints: Vec<String>,
    /// Number of keys, `<prefix>k0`…
    pub keys: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// How long they run.
    pub duration: Duration,
    /// Seed.
    pub seed: u64,
    /// Bound of each operation.
    pub op_timeout: Duration,
    /// Key prefix.
    pub prefix: String,
}

async fn connect(endpoints: &[String], rng: &mut StdRng) -> Option<Client> {
    let ep = &endpoints[rng.gen_range(0..endpoints.len())];
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(1), Client::connect([ep], Some(opts)))
        .await
        .ok()?
        .ok()
}

/// Whether etcd guarantees the write was not applied.
fn surely_not_applied(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.message().contains("no leader")
                || matches!(
                    s.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::ResourceExhausted
                )
        }
        _ => false,
    }
}

/// Runs the clients until the duration ends.
pub async fn run_workload(cfg: WorkloadConfig, recorder: Recorder) {
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let (cfg, recorder) = (cfg.clone(), recorder.clone());
        tasks.push(tokio::spawn(async move {
            client_loop(c as u32, cfg, recorder).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn client_loop(id: u32, cfg: WorkloadConfig, recorder: Recorder) {
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003) ^ u64::from(id));
    let deadline = Instant::now() + cfg.duration;
    let mut client: Option<Client> = None;
    let mut seen: Vec<Option<String>> = vec![None; cfg.keys.max(1)];
    let mut n = 0u64;
    while Instant::now() < deadline {
        let k = rng.gen_range(0..cfg.keys.max(1));
        let key = format!("{}k{k}", cfg.prefix);
        n += 1;
        let value = format!("c{id}-{n}");
        let op = match rng.gen_range(0..100) {
            0..40 => Op::Get { key: key.clone() },
            40..65 => Op::Put {
                key: key.clone(),
                value,
            },
            65..90 => Op::Cas {
                key: key.clone(),
                expect: seen[k].clone(),
                value,
            },
            _ => Op::Delete { key: key.clone() },
        };
        if client.is_none() {
            client = connect(&cfg.endpoints, &mut rng).await;
        }
        let inv = recorder.invoke(ClientId(id), op.clone());
        let Some(cl) = client.as_mut() else {
            inv.complete(Outcome::Fail {
                reason: "no connection".into(),
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let res = tokio::time::timeout(cfg.op_timeout, execute(cl, &op)).await;
        match res {
            Ok(Ok(out)) => {
                if let Output::Get { value, .. } = &out {
                    seen[k] = value.clone();
                }
                inv.complete(Outcome::Ok(out));
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                let outcome = if !op.is_write() || surely_not_applied(&e) {
                    Outcome::Fail { reason }
                } else {
                    Outcome::Unknown { reason }
                };
                inv.complete(outcome);
                client = None;
            }
            Err(_) => {
                let reason = format!("no answer within {:?}", cfg.op_timeout);
                inv.complete(if op.is_write() {
                    Outcome::Unknown { reason }
                } else {
                    Outcome::Fail { reason }
                });
                client = None;
            }
        }
    }
}

async fn execute(c: &mut Client, op: &Op) -> Result<Output, etcd_client::Error> {
    let rev = |h: Option<&etcd_client::ResponseHeader>| h.map(|h| Revision(h.revision()));
    Ok(match op {
        Op::Get { key } => {
            let r = c.get(key.as_str(), None).await?;
            let value = match r.kvs().first() {
                Some(kv) => Some(kv.value_str()?.to_string()),
                None => None,
            };
            Output::Get {
                value,
                revision: rev(r.header()),
            }
        }
        Op::Put { key, value } => {
            let r = c.put(key.as_str(), value.as_str(), None).await?;
            Output::Put {
                revision: rev(r.header()),
            }
        }
        Op::Delete { key } => {
            let r = c.delete(key.as_str(), None).await?;
            Output::Delete {
                deleted: r.deleted() as u64,
                revision: rev(r.header()),
            }
        }
        Op::Cas { key, expect, value } => {
            let cmp = match expect {
                Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let txn =
                Txn::new()
                    .when([cmp])
                    .and_then([TxnOp::put(key.as_str(), value.as_str(), None)]);
            let r = c.txn(txn).await?;
            Output::Cas {
                succeeded: r.succeeded(),
                revision: rev(r.header()),
            }
        }
    })
}

/// One watch event as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchEvent {
    /// The event's revision (the key's mod revision).
    pub revision: i64,
    /// Key.
    pub key: String,
    /// Put (true) or delete.
    pub put: bool,
    /// Value of a put.
    pub value: Option<String>,
}

/// Everything one watcher saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatcherLog {
    /// The revision it watched from.
    pub start_revision: i64,
    /// Events in the order received.
    pub events: Vec<WatchEvent>,
    /// Times the stream broke and was resumed on another member.
    pub resumed: u64,
    /// A compaction reported to the watcher (the start was compacted).
    pub compacted: Option<i64>,
}

/// Runs `n` watchers of `prefix` from `start_revision` until `stop` turns true.
pub async fn run_watchers(
    endpoints: Vec<String>,
    prefix: String,
    n: usize,
    start_revision: i64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<WatcherLog> {
    let mut tasks = Vec::new();
    for w in 0..n {
        let (endpoints, prefix, stop) = (endpoints.clone(), prefix.clone(), stop.clone());
        tasks.push(tokio::spawn(watcher(
            w,
            endpoints,
            prefix,
            start_revision,
            stop,
        )));
    }
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.unwrap_or_default());
    }
    logs
}

async fn watcher(
    w: usize,
    endpoints: Vec<String>,
    prefix: String,
    start_revision: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> WatcherLog {
    let mut log = WatcherLog {
        start_revision,
        ..Default::default()
    };
    let mut next = start_revision;
    let mut attempt = w;
    let mut first = true;
    while !*stop.borrow() {
        let ep = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
        let Ok(Ok(mut client)) =
            tokio::time::timeout(Duration::from_secs(1), Client::connect([ep], Some(opts))).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let wo = WatchOptions::new().with_prefix().with_start_revision(next);
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            client.watch(prefix.as_str(), Some(wo)),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !first {
            log.resumed += 1;
        }
        first = false;
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = stop.changed() => return log,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                // The stream broke: resume elsewhere.
                _ => break,
            };
            if resp.compact_revision() > 0 {
                log.compacted = Some(resp.compact_revision());
                return log;
            }
            if resp.canceled() {
                break;
            }
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let put = e.event_type() == EventType::Put;
                log.events.push(WatchEvent {
                    revision: kv.mod_revision(),
                    key: kv.key_str().unwrap_or("").to_string(),
                    put,
                    value: put.then(|| kv.value_str().unwrap_or("").to_string()),
                });
                next = next.max(kv.mod_revision() + 1);
            }
        }
    }
    log
}
