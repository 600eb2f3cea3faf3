//! The reflector's cache: one `Arc` per object, keyed by [`ObjectRef`], with
//! secondary indexes (namespace, node name, label, owner) kept in step on every
//! change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::kind::{Object, ObjectRef};

use super::watcher::{revision_of, Event, WatcherStats};

/// Computes the index values of an object.
pub type IndexFn<K> = fn(&K) -> Vec<String>;

/// Ready-made indexers.
pub mod indexers {
    use k8s_openapi::api::core::v1::Pod;

    use crate::kind::Object;

    /// Index name: the object's namespace.
    pub const NAMESPACE: &str = "namespace";
    /// Index name: `key=value` for each label.
    pub const LABEL: &str = "label";
    /// Index name: the uid of each owner reference.
    pub const OWNER: &str = "owner";
    /// Index name: the node a pod is bound to.
    pub const NODE_NAME: &str = "nodeName";

    /// The namespace.
    pub fn namespace<K: Object>(obj: &K) -> Vec<String> {
        obj.metadata().namespace.iter().cloned().collect()
    }

    /// `key=value` per label.
    pub fn label<K: Object>(obj: &K) -> Vec<String> {
        obj.metadata()
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// Owner uids.
    pub fn owner<K: Object>(obj: &K) -> Vec<String> {
        obj.metadata()
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.uid.clone())
            .collect()
    }

    /// A pod's `spec.nodeName`.
    pub fn pod_node_name(pod: &Pod) -> Vec<String> {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .into_iter()
            .collect()
    }

    /// The indexers every cache gets: namespace, label and owner.
    pub fn standard<K: Object>() -> Vec<(&'static str, super::IndexFn<K>)> {
        vec![
            (NAMESPACE, namespace::<K> as super::IndexFn<K>),
            (LABEL, label::<K>),
            (OWNER, owner::<K>),
        ]
    }
}

struct Inner<K> {
    objects: HashMap<ObjectRef, Arc<K>>,
    indexers: Vec<(&'static str, IndexFn<K>)>,
    indexes: HashMap<&'static str, HashMap<String, HashSet<ObjectRef>>>,
    revision: i64,
}

impl<K: Object> Inner<K> {
    fn index(&mut self, r: &ObjectRef, obj: &K, add: bool) {
        for (name, f) in &self.indexers {
            let index = self.indexes.entry(name).or_default();
            for value in f(obj) {
                if add {
                    index.entry(value).or_default().insert(r.clone());
                } else if let Some(set) = index.get_mut(&value) {
                    set.remove(r);
                    if set.is_empty() {
                        index.remove(&value);
                    }
                }
            }
        }
    }

    fn insert(&mut self, obj: Arc<K>) {
        let r = ObjectRef::of(obj.as_ref());
        if let Some(old) = self.objects.remove(&r) {
            self.index(&r, &old, false);
        }
        self.index(&r, &obj, true);
        self.objects.insert(r, obj);
    }

    fn remove(&mut self, r: &ObjectRef) {
        if let Some(old) = self.objects.remove(r) {
            self.index(r, &old, false);
        }
    }
}

/// An indexed cache of one kind, filled by a reflector. Cheap to clone; clones share
/// the cache. Reads never wait for the watch.
pub struct Store<K> {
    inner: Arc<RwLock<Inner<K>>>,
    ready: watch::Sender<bool>,
    seen: watch::Sender<i64>,
    stats: Arc<WatcherStats>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
            ready: self.ready.clone(),
            seen: self.seen.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<K: Object> Default for Store<K> {
    fn default() -> Self {
        Store::new(indexers::standard())
    }
}

impl<K: Object> Store<K> {
    /// An empty cache with these indexers.
    pub fn new(indexers: Vec<(&'static str, IndexFn<K>)>) -> Self {
        Store {
            inner: Arc::new(RwLock::new(Inner {
                objects: HashMap::new(),
                indexers,
                indexes: HashMap::new(),
                revision: 0,
            })),
            ready: watch::channel(false).0,
            seen: watch::channel(0).0,
            stats: Arc::default(),
        }
    }

    /// Applies one watcher event.
    pub fn apply(&self, event: &Event<K>) {
        let mut inner = self.inner.write();
        match event {
            Event::Apply(obj) => {
                inner.revision = inner.revision.max(revision_of(obj.as_ref()));
                inner.insert(obj.clone());
            }
            Event::Delete(obj) => {
                inner.revision = inner.revision.max(revision_of(obj.as_ref()));
                inner.remove(&ObjectRef::of(obj.as_ref()));
            }
            Event::Remove(r) => inner.remove(r),
            Event::Restart { objects, revision } => {
                inner.objects = HashMap::with_capacity(objects.len());
                inner.indexes.clear();
                for obj in objects {
                    inner.insert(obj.clone());
                }
                inner.objects.shrink_to_fit();
                inner.revision = *revision;
                drop(inner);
                self.ready.send_replace(true);
                self.seen.send_replace(*revision);
                return;
            }
        }
        let revision = inner.revision;
        drop(inner);
        self.seen.send_replace(revision);
    }

    /// Waits until the cache has seen `revision` (a write of this kind made by the
    /// caller), so a reconcile does not act on a cache older than its own writes.
    /// Gives up after `timeout`; returns whether the revision was reached.
    pub async fn wait_revision(&self, revision: i64, timeout: std::time::Duration) -> bool {
        let mut rx = self.seen.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|seen| *seen >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// One object.
    pub fn get(&self, r: &ObjectRef) -> Option<Arc<K>> {
        self.inner.read().objects.get(r).cloned()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.read().objects.values().cloned().collect()
    }

    /// The objects whose index `name` has `value`.
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read();
        inner
            .indexes
            .get(name)
            .and_then(|index| index.get(value))
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| inner.objects.get(r).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.inner.read().objects.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest revision the cache has seen.
    pub fn revision(&self) -> i64 {
        self.inner.read().revision
    }

    /// Whether the first list has landed.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list has landed.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in self, so wait_for cannot fail.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// The watcher's counters.
    pub fn stats(&self) -> Arc<WatcherStats> {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};

    fn pod(ns: &str, name: &str, node: &str, app: &str, rv: i64) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(rv.to_string());
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p.spec = Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn indexes_follow_changes() {
        let mut idx = indexers::standard::<Pod>();
        idx.push((indexers::NODE_NAME, indexers::pod_node_name));
        let store = Store::new(idx);
        assert!(!store.is_ready());
        store.apply(&Event::Restart {
            objects: vec![
                pod("a", "p1", "n1", "web", 5),
                pod("b", "p2", "n1", "db", 6),
            ],
            revision: 10,
        });
        assert!(store.is_ready());
        assert_eq!(store.len(), 2);
        assert_eq!(store.by_index(indexers::NODE_NAME, "n1").len(), 2);
        assert_eq!(store.by_index(indexers::NAMESPACE, "a").len(), 1);
        // A pod moves node and changes label: old index entries disappear.
        store.apply(&Event::Apply(pod("a", "p1", "n2", "api", 11)));
        assert_eq!(store.by_index(indexers::NODE_NAME, "n1").len(), 1);
        assert_eq!(store.by_index(indexers::NODE_NAME, "n2").len(), 1);
        assert!(store.by_index(indexers::LABEL, "app=web").is_empty());
        assert_eq!(store.by_index(indexers::LABEL, "app=api").len(), 1);
        assert_eq!(store.revision(), 11);
        store.apply(&Event::Delete(pod("b", "p2", "n1", "db", 12)));
        assert!(store.by_index(indexers::NODE_NAME, "n1").is_empty());
        assert_eq!(store.len(), 1);
        // A relist replaces everything, indexes included.
        store.apply(&Event::Restart {
            objects: vec![pod("c", "p3", "n3", "x", 20)],
            revision: 20,
        });
        assert_eq!(store.len(), 1);
        assert!(store.by_index(indexers::NODE_NAME, "n2").is_empty());
        assert_eq!(store.by_index(indexers::NODE_NAME, "n3").len(), 1);
        assert!(store
            .get(&ObjectRef::namespaced(crate::Kind::Pod, "c", "p3"))
            .is_some());
    }
}
