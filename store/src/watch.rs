//! The watch hub: applied events fan out to watchers without a copy per watcher.
//!
//! The state machine publishes each applied batch once, as an `Arc`, on a
//! bounded broadcast channel. A watcher that keeps up takes batches from there
//! ("synced"). A watcher that falls behind — its client reads slowly, or it
//! starts at an old revision — reads history from RocksDB instead ("unsynced",
//! etcd's catch-up path) and rejoins the broadcast when it has caught up. Memory
//! stays bounded by the channel, never by a slow client.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::error::Result;
use crate::mvcc::{EventBatch, KeyRange, Mvcc};
use crate::pb::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::pb::mvccpb::{event::EventType, Event};

/// Batches kept for synced watchers before a slow one is moved to catch-up.
const BROADCAST_CAPACITY: usize = 1024;
/// Events read from storage per catch-up round.
const CATCH_UP_EVENTS: usize = 1000;
/// A response is cut at a revision boundary past this many bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Publishes applied events to every watcher.
#[derive(Debug, Clone)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<EventBatch>>,
}

impl Default for WatchHub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        WatchHub { tx }
    }
}

impl WatchHub {
    /// Publishes a batch; nobody listening is fine.
    pub fn publish(&self, batch: EventBatch) {
        if !batch.events.is_empty() {
            let _ = self.tx.send(Arc::new(batch));
        }
    }

    /// Tells every watcher that the store jumped to `revision` without events
    /// (a snapshot was installed): they catch up from storage.
    pub fn publish_jump(&self, revision: i64) {
        let _ = self.tx.send(Arc::new(EventBatch {
            events: Vec::new(),
            revision,
        }));
    }

    /// A receiver of batches published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.tx.subscribe()
    }
}

/// Fills response headers (cluster id, member id, term) for a revision.
pub type HeaderFn = Arc<dyn Fn(i64) -> ResponseHeader + Send + Sync>;

/// One watch as the client created it.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Watch id within its stream.
    pub id: i64,
    /// Keys watched.
    pub range: KeyRange,
    /// Attach the previous value to each event.
    pub prev_kv: bool,
    /// Drop put events.
    pub no_put: bool,
    /// Drop delete events.
    pub no_delete: bool,
    /// Split a revision too big for one message.
    pub fragment: bool,
    /// Send empty progress responses when idle.
    pub progress_notify: bool,
}

/// Where a running watcher is: the next revision it will deliver.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicI64>);

impl Progress {
    /// Revision up to which everything was delivered.
    pub fn delivered(&self) -> i64 {
        self.0.load(Ordering::Acquire) - 1
    }
    fn set_next(&self, rev: i64) {
        self.0.store(rev, Ordering::Release);
    }
}

/// Runs one watcher until its stream goes away or it is compacted.
#[allow(clippy::too_many_arguments)]
pub async fn run_watcher(
    spec: WatchSpec,
    mut rx: broadcast::Receiver<Arc<EventBatch>>,
    next: i64,
    mvcc: Arc<Mvcc>,
    out: mpsc::Sender<Result<WatchResponse, tonic::Status>>,
    header: HeaderFn,
    progress: Progress,
    progress_interval: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut next = next;
    progress.set_next(next);
    let mut ticker = tokio::time::interval(progress_interval);
    ticker.tick().await;
    loop {
        // Catch up from storage while behind the store.
        loop {
            let current = mvcc.revision();
            if next > current {
                break;
            }
            let compacted = mvcc.compact_revision();
            if next < compacted {
                let resp = WatchResponse {
                    header: Some(header(current)),
                    watch_id: spec.id,
                    canceled: true,
                    compact_revision: compacted,
                    cancel_reason: "mvcc: required revision has been compacted".into(),
                    ..Default::default()
                };
                let _ = out.send(Ok(resp)).await;
                return;
            }
            let mvcc2 = mvcc.clone();
            let events = match tokio::task::spawn_blocking(move || {
                mvcc2.events(next, current, CATCH_UP_EVENTS)
            })
            .await
            {
                Ok(Ok(ev)) => ev,
                Ok(Err(e)) => {
                    debug!(watch_id = spec.id, error = %e, "catch-up read failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => return,
            };
            // A full chunk may have stopped short of `current`; resume after its last revision.
            let upto = match events.last().and_then(|e| e.kv.as_ref()) {
                Some(kv) if events.len() >= CATCH_UP_EVENTS => kv.mod_revision,
                _ => current,
            };
            if !deliver(&spec, &events, upto, &mvcc, &out, &header).await {
                return;
            }
            next = upto + 1;
            progress.set_next(next);
        }
        // Synced: take batches from the hub.
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(batch) => {
                        if batch.revision < next {
                            continue;
                        }
                        // Revisions this batch does not start with were applied
                        // without events on the hub (a snapshot installed from the
                        // leader): read them from storage.
                        let first = batch
                            .events
                            .first()
                            .and_then(|e| e.kv.as_ref())
                            .map(|kv| kv.mod_revision);
                        if first.is_none_or(|f| f > next) {
                            break;
                        }
                        let fresh: Vec<Event> = batch
                            .events
                            .iter()
                            .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= next))
                            .cloned()
                            .collect();
                        if !deliver(&spec, &fresh, batch.revision, &mvcc, &out, &header).await {
                            return;
                        }
                        next = batch.revision + 1;
                        progress.set_next(next);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        metrics.slow_watchers.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if spec.progress_notify => {
                    let resp = WatchResponse {
                        header: Some(header(next - 1)),
                        watch_id: spec.id,
                        ..Default::default()
                    };
                    if out.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
                _ = out.closed() => return,
            }
        }
    }
}

/// Filters `events` for this watcher and sends them, cut into messages at
/// revision boundaries. False when the stream is gone.
async fn deliver(
    spec: &WatchSpec,
    events: &[Event],
    revision: i64,
    mvcc: &Arc<Mvcc>,
    out: &mpsc::Sender<Result<WatchResponse, tonic::Status>>,
    header: &HeaderFn,
) -> bool {
    let mut pending: Vec<Event> = Vec::new();
    let mut bytes = 0usize;
    let mut last_rev = 0i64;
    for ev in events {
        let Some(kv) = ev.kv.as_ref() else { continue };
        if !spec.range.contains(&kv.key) {
            continue;
        }
        let is_put = ev.r#type == EventType::Put as i32;
        if (is_put && spec.no_put) || (!is_put && spec.no_delete) {
            continue;
        }
        let mut ev = ev.clone();
        if spec.prev_kv {
            ev.prev_kv = mvcc.prev_kv(&kv.key, kv.mod_revision).ok().flatten();
        }
        let size = prost::Message::encoded_len(&ev);
        if bytes + size > MAX_RESPONSE_BYTES && !pending.is_empty() && kv.mod_revision != last_rev {
            if !send(
                spec,
                std::mem::take(&mut pending),
                last_rev,
                false,
                out,
                header,
            )
            .await
            {
                return false;
            }
            bytes = 0;
        } else if bytes + size > MAX_RESPONSE_BYTES && !pending.is_empty() && spec.fragment {
            if !send(
                spec,
                std::mem::take(&mut pending),
                last_rev,
                true,
                out,
                header,
            )
            .await
            {
                return false;
            }
            bytes = 0;
        }
        last_rev = kv.mod_revision;
        bytes += size;
        pending.push(ev);
    }
    if pending.is_empty() {
        return true;
    }
    send(spec, pending, revision.max(last_rev), false, out, header).await
}

async fn send(
    spec: &WatchSpec,
    events: Vec<Event>,
    revision: i64,
    fragment: bool,
    out: &mpsc::Sender<Result<WatchResponse, tonic::Status>>,
    header: &HeaderFn,
) -> bool {
    let resp = WatchResponse {
        header: Some(header(revision)),
        watch_id: spec.id,
        fragment,
        events,
        ..Default::default()
    };
    out.send(Ok(resp)).await.is_ok()
}
