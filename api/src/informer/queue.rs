//! A de-duplicating, rate-limited work queue (client-go's workqueue semantics): a key
//! queued twice is queued once; a key re-added while a worker holds it is handed out
//! again only after that worker is done, so at most one worker runs per key; failed
//! keys come back after a per-key exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-key exponential backoff: `base * 2^(failures-1)`, capped.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// Delay after the first failure.
    pub base: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for RateLimit {
    /// client-go's defaults: 5 ms doubling to 1000 s.
    fn default() -> Self {
        RateLimit {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1000),
        }
    }
}

impl RateLimit {
    /// The delay after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(40);
        self.base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

struct Inner<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    processing: HashSet<T>,
    dirty: HashSet<T>,
    waiting: HashMap<T, Instant>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

/// The work queue. Cheap to clone; clones share the queue.
pub struct WorkQueue<T> {
    inner: Arc<Mutex<Inner<T>>>,
    notify: Arc<Notify>,
    limit: RateLimit,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
            notify: self.notify.clone(),
            limit: self.limit,
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue::new(RateLimit::default())
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    /// An empty queue.
    pub fn new(limit: RateLimit) -> Self {
        WorkQueue {
            inner: Arc::new(Mutex::new(Inner {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                waiting: HashMap::new(),
                failures: HashMap::new(),
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
            limit,
        }
    }

    /// Queues a key (once, however often it is added).
    pub fn add(&self, key: T) {
        let mut inner = self.inner.lock();
        if inner.shut_down || inner.queued.contains(&key) {
            return;
        }
        if inner.processing.contains(&key) {
            inner.dirty.insert(key);
            return;
        }
        inner.queued.insert(key.clone());
        inner.queue.push_back(key);
        drop(inner);
        self.notify.notify_one();
    }

    /// Queues a key after `delay`. An earlier pending delay for the key wins.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        {
            let mut inner = self.inner.lock();
            if inner.shut_down {
                return;
            }
            match inner.waiting.get(&key) {
                Some(existing) if *existing <= at => return,
                _ => {
                    inner.waiting.insert(key.clone(), at);
                }
            }
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut inner = queue.inner.lock();
                match inner.waiting.get(&key) {
                    Some(when) if *when == at => {
                        inner.waiting.remove(&key);
                        true
                    }
                    _ => false,
                }
            };
            if due {
                queue.add(key);
            }
        });
    }

    /// Queues a key after its backoff, counting one more failure.
    pub fn add_rate_limited(&self, key: T) {
        let failures = {
            let mut inner = self.inner.lock();
            let n = inner.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.add_after(key, self.limit.delay(failures));
    }

    /// Clears a key's failure count (call after a success).
    pub fn forget(&self, key: &T) {
        self.inner.lock().failures.remove(key);
    }

    /// How many failures in a row the key has had.
    pub fn failures(&self, key: &T) -> u32 {
        self.inner.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key, waiting for one; `None` once the queue is shut down. Call
    /// [`WorkQueue::done`] when finished with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.inner.lock();
                if let Some(key) = inner.queue.pop_front() {
                    inner.queued.remove(&key);
                    inner.processing.insert(key.clone());
                    let more = !inner.queue.is_empty();
                    drop(inner);
                    if more {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                if inner.shut_down {
                    drop(inner);
                    self.notify.notify_one();
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks a key finished; if it was added meanwhile it is queued again now.
    pub fn done(&self, key: &T) {
        let mut inner = self.inner.lock();
        inner.processing.remove(key);
        if inner.dirty.remove(key) {
            inner.queued.insert(key.clone());
            inner.queue.push_back(key.clone());
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Keys waiting to be handed out (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys: every `get` returns `None`.
    pub fn shut_down(&self) {
        self.inner.lock().shut_down = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// What a reconcile wants next for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Look again after this long even without a change.
    Requeue(Duration),
    /// Nothing more until something changes.
    AwaitChange,
}

/// Runs `workers` workers over the queue until it shuts down. A reconcile error is
/// logged and the key retried with backoff; success clears the key's backoff.
pub async fn run_workers<T, F, Fut, E>(queue: WorkQueue<T>, workers: usize, reconcile: F)
where
    T: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Action, E>> + Send,
    E: Display,
{
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                match reconcile(key.clone()).await {
                    Ok(Action::Requeue(after)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), after);
                    }
                    Ok(Action::AwaitChange) => queue.forget(&key),
                    Err(e) => {
                        tracing::warn!(?key, error = %e, failures = queue.failures(&key) + 1, "reconcile failed; retrying with backoff");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn dedups_and_one_in_flight_per_key() {
        let q: WorkQueue<&str> = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        // Re-added while in flight: not handed out until done.
        q.add("a");
        assert_eq!(q.get().await, Some("b"));
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        q.done(&"b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_and_forget_resets() {
        let limit = RateLimit {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        assert_eq!(limit.delay(1), Duration::from_millis(10));
        assert_eq!(limit.delay(2), Duration::from_millis(20));
        assert_eq!(limit.delay(3), Duration::from_millis(40));
        assert_eq!(limit.delay(4), Duration::from_millis(50));
        assert_eq!(limit.delay(400), Duration::from_millis(50));
        let q: WorkQueue<u32> = WorkQueue::new(limit);
        q.add_rate_limited(7);
        q.add_rate_limited(7);
        assert_eq!(q.failures(&7), 2);
        assert!(q.is_empty());
        let start = Instant::now();
        assert_eq!(q.get().await, Some(7));
        // The first (earlier) delay wins over the second.
        assert_eq!(start.elapsed(), Duration::from_millis(10));
        q.forget(&7);
        assert_eq!(q.failures(&7), 0);
        q.done(&7);
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_releases_waiters() {
        let q: WorkQueue<u8> = WorkQueue::default();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.get().await })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.ok().flatten(), None);
        q.add(1);
        assert_eq!(q.get().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn workers_retry_failures() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let q: WorkQueue<u8> = WorkQueue::default();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let q2 = q.clone();
        let runner = tokio::spawn(run_workers(q.clone(), 2, move |_k: u8| {
            let c = c.clone();
            let q2 = q2.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err("not yet")
                } else {
                    q2.shut_down();
                    Ok(Action::AwaitChange)
                }
            }
        }));
        q.add(1);
        let _ = runner.await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
