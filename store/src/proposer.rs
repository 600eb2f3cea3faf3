//! Group commit at the proposal level.
//!
//! openraft 0.9 waits for each log append to be flushed before it takes the
//! next client write, so one entry per request would mean one fsync per
//! request. The proposer queues requests and submits everything that queued
//! up while the previous batch was being committed as one
//! [`Request::Batch`] entry: concurrent clients share one append, one fsync on
//! every member and one state machine write. A lone request goes alone, with
//! no added wait.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::types::{Applied, Raft, Reply, Request};

/// Most requests in one batch.
const MAX_BATCH: usize = 4096;
/// Most bytes in one batch (requests are at most `--max-request-bytes` each).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Batches handed to Raft but not yet applied.
const IN_FLIGHT: usize = 2;
/// Requests waiting for a batch; senders wait when it is full.
const QUEUE: usize = 16 * 1024;

/// Why a proposal was not applied.
#[derive(Debug, Clone)]
pub enum ProposeError {
    /// This member is not the leader (any more); nothing was proposed.
    NotLeader,
    /// Raft stopped or failed.
    Fatal(String),
}

struct Proposal {
    req: Request,
    done: oneshot::Sender<Result<Applied, ProposeError>>,
}

/// Handle to submit requests through the batching proposer.
#[derive(Debug, Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.req.fmt(f)
    }
}

impl Proposer {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    /// Proposes one request and waits until it is applied on this member.
    pub async fn propose(&self, req: Request) -> Result<Applied, ProposeError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Proposal { req, done })
            .await
            .map_err(|_| ProposeError::Fatal("proposer stopped".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(ProposeError::Fatal("proposer dropped a request".into())))
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot before draining: whatever arrives meanwhile joins this batch.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.req.approx_size();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.req.approx_size();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn commit(raft: &Raft, mut batch: Vec<Proposal>) {
    let single = batch.len() == 1;
    let (reqs, dones): (Vec<Request>, Vec<_>) = batch.drain(..).map(|p| (p.req, p.done)).unzip();
    let entry = if single {
        reqs.into_iter()
            .next()
            .unwrap_or(Request::Batch(Vec::new()))
    } else {
        Request::Batch(reqs)
    };
    let result = match raft.client_write(entry).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(ProposeError::NotLeader)
        }
        Err(e) => Err(ProposeError::Fatal(e.to_string())),
    };
    match result {
        Ok(applied) if single => {
            for d in dones {
                let _ = d.send(Ok(applied.clone()));
            }
        }
        Ok(Applied {
            reply: Reply::Batch(results),
            ..
        }) if results.len() == dones.len() => {
            for (d, r) in dones.into_iter().zip(results) {
                let _ = d.send(Ok(r));
            }
        }
        Ok(other) => {
            let e =
                ProposeError::Fatal(format!("batch applied with an unexpected reply {other:?}"));
            for d in dones {
                let _ = d.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for d in dones {
                let _ = d.send(Err(e.clone()));
            }
        }
    }
}
