//! List + watch as one endless stream of [`Event`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};

use crate::client::{resource_version, Client, WatchEvent};
use crate::error::Error;
use crate::kind::Object;

use super::store::Store;

/// What the watcher saw.
#[derive(Debug)]
pub enum Event<K> {
    /// The object was created or changed.
    Apply(Arc<K>),
    /// The object was deleted (its last state).
    Delete(Arc<K>),
    /// The object left without its last state (deleted after a compaction, or its
    /// value stopped parsing): it leaves the cache.
    Remove(crate::kind::ObjectRef),
    /// A fresh list: these are now all the objects, as of `revision`.
    Restart {
        /// Every object.
        objects: Vec<Arc<K>>,
        /// The revision of the list.
        revision: i64,
    },
}

/// Counters a watcher keeps, for metrics and tests.
#[derive(Debug, Default)]
pub struct WatcherStats {
    /// Full lists (the first one and every relist).
    pub lists: AtomicU64,
    /// Watches resumed from the last revision seen, without a list.
    pub resumes: AtomicU64,
    /// Relists forced by a compacted revision.
    pub compactions: AtomicU64,
    /// Objects skipped because they did not parse.
    pub skipped: AtomicU64,
}

enum State<K> {
    List,
    Watch {
        from: i64,
    },
    Watching {
        stream: BoxStream<'static, crate::Result<WatchEvent<K>>>,
        last: i64,
    },
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// An endless stream of list + watch events for one kind (one namespace or all).
/// Store errors never end it: they are logged and retried with backoff.
pub fn watcher<K: Object>(
    client: Client,
    namespace: Option<String>,
    stats: Arc<WatcherStats>,
) -> impl Stream<Item = Event<K>> + Send + 'static {
    let init = (State::<K>::List, BACKOFF_MIN);
    futures::stream::unfold(init, move |(mut state, mut backoff)| {
        let client = client.clone();
        let namespace = namespace.clone();
        let stats = stats.clone();
        async move {
            loop {
                match state {
                    State::List => match client.list::<K>(namespace.as_deref()).await {
                        Ok(list) => {
                            stats.lists.fetch_add(1, Ordering::Relaxed);
                            stats
                                .skipped
                                .fetch_add(list.skipped as u64, Ordering::Relaxed);
                            let event = Event::Restart {
                                objects: list.items.into_iter().map(Arc::new).collect(),
                                revision: list.revision,
                            };
                            return Some((
                                event,
                                (
                                    State::Watch {
                                        from: list.revision + 1,
                                    },
                                    BACKOFF_MIN,
                                ),
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(kind = %K::TYPE, error = %e, "list failed; retrying");
                            backoff = pause(backoff).await;
                            state = State::List;
                        }
                    },
                    State::Watch { from } => {
                        match client.watch::<K>(namespace.as_deref(), from).await {
                            Ok(stream) => {
                                state = State::Watching {
                                    stream: stream.boxed(),
                                    last: from - 1,
                                };
                            }
                            Err(e) => {
                                tracing::warn!(kind = %K::TYPE, error = %e, "watch failed; retrying");
                                backoff = pause(backoff).await;
                                state = State::Watch { from };
                            }
                        }
                    }
                    State::Watching {
                        mut stream,
                        mut last,
                    } => match stream.next().await {
                        Some(Ok(ev)) => {
                            if let Some(rev) = ev.revision() {
                                last = last.max(rev);
                            }
                            let out = match ev {
                                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                                    Some(Event::Apply(Arc::new(o)))
                                }
                                WatchEvent::Deleted(o) => Some(Event::Delete(Arc::new(o))),
                                WatchEvent::Bookmark(_) => None,
                                WatchEvent::Removed { object, .. } => Some(Event::Remove(object)),
                            };
                            let next = State::Watching { stream, last };
                            match out {
                                Some(event) => return Some((event, (next, BACKOFF_MIN))),
                                None => state = next,
                            }
                        }
                        Some(Err(Error::Compacted {
                            requested,
                            compacted,
                        })) => {
                            stats.compactions.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(kind = %K::TYPE, requested, compacted, "watch revision compacted; relisting");
                            state = State::List;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(kind = %K::TYPE, error = %e, last, "watch broke; resuming");
                            stats.resumes.fetch_add(1, Ordering::Relaxed);
                            backoff = pause(backoff).await;
                            state = State::Watch { from: last + 1 };
                        }
                        None => {
                            tracing::info!(kind = %K::TYPE, last, "watch closed by the server; resuming");
                            stats.resumes.fetch_add(1, Ordering::Relaxed);
                            backoff = pause(backoff).await;
                            state = State::Watch { from: last + 1 };
                        }
                    },
                }
            }
        }
    })
}

async fn pause(backoff: Duration) -> Duration {
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    tokio::time::sleep(backoff.mul_f64(jitter)).await;
    (backoff * 2).min(BACKOFF_MAX)
}

/// Runs an informer: keeps `store` in step with the store's objects of `K` and calls
/// `on_event` after each change is applied (controllers enqueue keys there). Stops
/// when the returned task is aborted.
pub fn spawn<K, F>(
    client: Client,
    namespace: Option<String>,
    store: Store<K>,
    mut on_event: F,
) -> tokio::task::JoinHandle<()>
where
    K: Object,
    F: FnMut(&Event<K>) + Send + 'static,
{
    let stats = store.stats();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::<K>(client, namespace, stats));
        while let Some(event) = events.next().await {
            store.apply(&event);
            on_event(&event);
        }
    })
}

/// The revision an object was last written at (0 if unknown).
pub(crate) fn revision_of<K: Object>(obj: &K) -> i64 {
    resource_version(obj).unwrap_or_default()
}
