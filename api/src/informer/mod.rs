//! The informer, in kube-rs's stream style: [`watcher`] lists at a revision and
//! watches from the next (resuming a broken watch from the last revision seen and
//! relisting when that revision is compacted), [`Store`] is the indexed local cache a
//! reflector keeps, and [`WorkQueue`] hands de-duplicated keys to reconcilers with
//! per-key exponential backoff and at most one worker per key.
//!
//! Memory is bounded by the objects: the cache holds one `Arc` per object, the queue
//! one entry per key however many events arrive for it.

mod queue;
mod store;
mod watcher;

pub use queue::{run_workers, Action, RateLimit, WorkQueue};
pub use store::{indexers, IndexFn, Store};
pub use watcher::{spawn, watcher, Event, WatcherStats};

/// Aborts the tasks it holds when dropped, so informers started by a controller end
/// with it (also when the controller's own task is aborted).
#[derive(Debug, Default)]
pub struct TaskGuard(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
