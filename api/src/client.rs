//! A typed client over the etcd v3 API: the only way capstan's components write
//! objects.
//!
//! Every write is a compare-and-swap transaction on the key's `mod_revision`, which
//! is the object's `metadata.resourceVersion`; there are no blind overwrites. Create
//! checks in the same transaction that the key is free and that the namespace still
//! holds the revision we saw (so nothing is created in a namespace being deleted).
//! Defaulting and validation run before every write, so an invalid object is
//! refused with field-named errors and nothing reaches the store.

use std::collections::HashSet;
use std::sync::Arc;

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::stream::{self, Stream};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::Rng;

use crate::error::{Error, Result};
use crate::kind::{Kind, Object, ObjectRef};
use crate::validation::Path;

/// How many keys one page of a list reads.
pub const DEFAULT_PAGE_SIZE: i64 = 500;

/// How many times create retries when a claimed cluster IP or node port turned out
/// to be taken by a concurrent writer.
const ALLOCATION_ATTEMPTS: usize = 32;

/// A key that must be free and is written in the same transaction as the object:
/// the record of an allocated cluster IP or node port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The claim's key.
    pub key: String,
    /// The claim's value.
    pub value: Vec<u8>,
}

/// Fills in a Service's cluster IPs and node ports and says which keys record them.
/// Implemented by `capstan-controllers`' allocators; a client without one refuses to
/// write Services (so no writer can take an address without claiming it).
pub trait ServiceAllocator: Send + Sync {
    /// Allocates for `svc` (on create `old` is `None`) and returns the claims to
    /// write with it. `taken` holds claim keys found taken by earlier attempts.
    fn allocate(
        &self,
        svc: &mut Service,
        old: Option<&Service>,
        taken: &HashSet<String>,
    ) -> Result<Vec<Claim>>;

    /// The claim keys a stored Service holds (released when it is deleted or when
    /// an update drops them).
    fn claim_keys(&self, svc: &Service) -> Vec<String>;

    /// The key prefixes holding every claim: after a lost race the client reads
    /// them all, so the next attempt knows every taken address.
    fn claim_prefixes(&self) -> Vec<String>;
}

/// Objects of one kind read at one revision.
#[derive(Clone, Debug)]
pub struct List<K> {
    /// The objects, in key order.
    pub items: Vec<K>,
    /// The store revision the list was read at: watch from `revision + 1`.
    pub revision: i64,
    /// Stored values that did not parse (logged and skipped).
    pub skipped: usize,
}

/// One change seen by a watch.
#[derive(Clone, Debug)]
pub enum WatchEvent<K> {
    /// The object was created.
    Added(K),
    /// The object was updated.
    Modified(K),
    /// The object was deleted; this is its last state, with `resourceVersion` the
    /// revision of the delete.
    Deleted(K),
    /// Nothing of interest up to this revision (a progress notification); resume
    /// after it.
    Bookmark(i64),
    /// The object is gone from view: deleted without its last state (the store had
    /// compacted it away), or its stored value no longer parses (logged). Drop what
    /// you knew of it.
    Removed {
        /// The object.
        object: ObjectRef,
        /// The revision of the bad write.
        revision: i64,
    },
}

impl<K> WatchEvent<K> {
    /// The revision this event happened at, when the object carries it.
    pub fn revision(&self) -> Option<i64>
    where
        K: Object,
    {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                resource_version(o)
            }
            WatchEvent::Bookmark(r) => Some(*r),
            WatchEvent::Removed { revision, .. } => Some(*revision),
        }
    }
}

/// The typed client. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    etcd: etcd_client::Client,
    allocator: Option<Arc<dyn ServiceAllocator>>,
    page_size: i64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("allocator", &self.allocator.is_some())
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// `metadata.resourceVersion` as a revision.
pub fn resource_version<K: Object>(obj: &K) -> Option<i64> {
    obj.metadata()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
}

/// The current time at the second, as the API server stamps objects.
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Decodes a stored value, setting `resourceVersion` from the key's `mod_revision`.
pub fn decode<K: Object>(kv: &KeyValue) -> Result<K> {
    decode_at(kv.key(), kv.value(), kv.mod_revision())
}

fn decode_at<K: Object>(key: &[u8], value: &[u8], revision: i64) -> Result<K> {
    let mut obj: K = serde_json::from_slice(value).map_err(|source| Error::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        kind: K::TYPE.name(),
        source,
    })?;
    obj.metadata_mut().resource_version = Some(revision.to_string());
    Ok(obj)
}

/// Encodes an object for the store: `resourceVersion` is never stored (it is the
/// key's `mod_revision`), as the API server does.
pub fn encode<K: Object>(obj: &K) -> Result<Vec<u8>> {
    let mut obj = obj.clone();
    obj.metadata_mut().resource_version = None;
    serde_json::to_vec(&obj).map_err(|e| Error::BadRequest(format!("cannot encode object: {e}")))
}

/// The characters the API server uses for `generateName` suffixes (no vowels, no
/// look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let mut name = prefix.to_string();
    for _ in 0..5 {
        name.push(NAME_ALPHABET[rng.gen_range(0..NAME_ALPHABET.len())] as char);
    }
    name
}

impl Client {
    /// Connects to the store's client URLs.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").to_string())
            .collect();
        let etcd = etcd_client::Client::connect(&endpoints, None).await?;
        Ok(Client::from_etcd(etcd))
    }

    /// Wraps an existing etcd client.
    pub fn from_etcd(etcd: etcd_client::Client) -> Self {
        Client {
            etcd,
            allocator: None,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Lets this client write Services, allocating through `allocator`.
    pub fn with_service_allocator(mut self, allocator: Arc<dyn ServiceAllocator>) -> Self {
        self.allocator = Some(allocator);
        self
    }

    /// Sets how many keys one list page reads.
    pub fn with_page_size(mut self, page_size: i64) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The underlying etcd client.
    pub fn etcd(&self) -> etcd_client::Client {
        self.etcd.clone()
    }

    /// Reads one object; `None` if it does not exist.
    pub async fn get_opt<K: Object>(&self, r: &ObjectRef) -> Result<Option<K>> {
        let resp = self.etcd.kv_client().get(r.key(), None).await?;
        resp.kvs().first().map(decode::<K>).transpose()
    }

    /// Reads one object; [`Error::NotFound`] if it does not exist.
    pub async fn get<K: Object>(&self, r: &ObjectRef) -> Result<K> {
        self.get_opt(r)
            .await?
            .ok_or_else(|| Error::NotFound { object: r.clone() })
    }

    /// Lists every object of a kind (in one namespace, or all with `None`), page by
    /// page at one revision, so the result is a consistent snapshot. Values that do
    /// not parse are logged and skipped.
    pub async fn list<K: Object>(&self, namespace: Option<&str>) -> Result<List<K>> {
        let mut items = Vec::new();
        let mut skipped = 0;
        self.list_raw(K::TYPE, namespace, |kv| match decode::<K>(kv) {
            Ok(obj) => items.push(obj),
            Err(e) => {
                skipped += 1;
                tracing::warn!(error = %e, "skipping stored object that does not parse");
            }
        })
        .await
        .map(|revision| List {
            items,
            revision,
            skipped,
        })
    }

    /// Reads every key of a kind page by page at one revision, calling `each` per
    /// key-value; returns the revision.
    pub async fn list_raw(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        mut each: impl FnMut(&KeyValue),
    ) -> Result<i64> {
        let prefix = kind.prefix(namespace);
        let end = prefix_end(prefix.as_bytes());
        let mut kv = self.etcd.kv_client();
        let mut from = prefix.into_bytes();
        let mut revision = 0;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(self.page_size);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = match kv.get(from.clone(), Some(opts)).await {
                Ok(r) => r,
                Err(e) => return Err(compacted_or(e, revision)),
            };
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            for item in resp.kvs() {
                each(item);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(revision),
            }
        }
    }

    /// Creates an object. Fails with [`Error::AlreadyExists`] if the key is taken
    /// and [`Error::NamespaceNotFound`] if its namespace does not exist. Sets uid,
    /// creationTimestamp, generation and (from `generateName`) the name. Returns the
    /// stored object with its `resourceVersion`.
    pub async fn create<K: Object>(&self, mut obj: K) -> Result<K> {
        {
            let meta = obj.metadata_mut();
            if K::TYPE.namespaced() && meta.namespace.as_deref().unwrap_or("").is_empty() {
                meta.namespace = Some("default".to_string());
            }
            if meta.name.as_deref().unwrap_or("").is_empty() {
                if let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
                    meta.name = Some(generated_name(prefix));
                }
            }
            meta.uid = Some(uuid::Uuid::new_v4().to_string());
            meta.creation_timestamp = Some(now());
            meta.generation = Some(1);
            meta.resource_version = None;
            meta.deletion_timestamp = None;
        }
        obj.apply_defaults();
        self.resolve_priority(&mut obj).await?;
        let r = ObjectRef::of(&obj);
        let errors = obj.validate(None);
        if !errors.is_empty() {
            return Err(Error::Invalid { object: r, errors });
        }
        let namespace = self.live_namespace(&r).await?;

        let mut taken = HashSet::new();
        for _ in 0..ALLOCATION_ATTEMPTS {
            let mut attempt = obj.clone();
            let claims = self.allocate(&mut attempt, None, &taken, &r)?;
            let mut compares = vec![Compare::version(r.key(), CompareOp::Equal, 0)];
            let mut checks = vec![TxnOp::get(r.key(), None)];
            if let Some((ns_key, ns_rev)) = &namespace {
                compares.push(Compare::mod_revision(
                    ns_key.clone(),
                    CompareOp::Equal,
                    *ns_rev,
                ));
                checks.push(TxnOp::get(ns_key.clone(), None));
            }
            let mut puts = vec![TxnOp::put(r.key(), encode(&attempt)?, None)];
            for c in &claims {
                compares.push(Compare::version(c.key.clone(), CompareOp::Equal, 0));
                checks.push(TxnOp::get(c.key.clone(), None));
                puts.push(TxnOp::put(c.key.clone(), c.value.clone(), None));
            }
            let txn = Txn::new().when(compares).and_then(puts).or_else(checks);
            let resp = self.etcd.kv_client().txn(txn).await?;
            if resp.succeeded() {
                let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
                attempt.metadata_mut().resource_version = Some(rev.to_string());
                return Ok(attempt);
            }
            let found = found_keys(&resp.op_responses());
            if found.contains(&r.key()) {
                return Err(Error::AlreadyExists { object: r });
            }
            if let Some((ns_key, _)) = &namespace {
                if !found.contains(ns_key) {
                    return Err(Error::NamespaceNotFound {
                        namespace: r.namespace.clone().unwrap_or_default(),
                    });
                }
                // The namespace changed under us: it may be terminating now.
                if self.live_namespace(&r).await?.is_none() {
                    return Err(Error::NamespaceNotFound {
                        namespace: r.namespace.clone().unwrap_or_default(),
                    });
                }
            }
            if claims.iter().any(|c| found.contains(&c.key)) {
                taken.extend(self.all_claims().await?);
            }
        }
        Err(Error::Allocation {
            object: r,
            message: "gave up after repeated allocation conflicts with concurrent writers".into(),
        })
    }

    /// Every claim key that exists now.
    async fn all_claims(&self) -> Result<HashSet<String>> {
        let mut keys = HashSet::new();
        let Some(a) = &self.allocator else {
            return Ok(keys);
        };
        for prefix in a.claim_prefixes() {
            let resp = self
                .etcd
                .kv_client()
                .get(
                    prefix,
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await?;
            keys.extend(
                resp.kvs()
                    .iter()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
            );
        }
        Ok(keys)
    }

    /// Replaces an object, compare-and-swap on its `resourceVersion`: a stale one
    /// gets [`Error::Conflict`]. uid and creationTimestamp are kept from the stored
    /// object; generation goes up when anything but metadata and status changed.
    pub async fn update<K: Object>(&self, mut obj: K) -> Result<K> {
        let r = ObjectRef::of(&obj);
        let Some(rv) = resource_version(&obj) else {
            return Err(Error::Invalid {
                object: r,
                errors: vec![Path::new("metadata")
                    .child("resourceVersion")
                    .invalid(0, "must be specified for an update")],
            });
        };
        let old: K = self.get(&r).await?;
        if resource_version(&old) != Some(rv) {
            return Err(Error::Conflict { object: r });
        }
        {
            let old_meta = old.metadata();
            let generation = old_meta.generation.unwrap_or(1);
            let bump = obj.spec_changed(&old);
            let meta = obj.metadata_mut();
            meta.uid = old_meta.uid.clone();
            meta.creation_timestamp = old_meta.creation_timestamp.clone();
            meta.generation = Some(if bump { generation + 1 } else { generation });
            // Deletion is marked through delete, never by an update (the API server
            // copies these two from the stored object too).
            meta.deletion_timestamp = old_meta.deletion_timestamp.clone();
            meta.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds;
        }
        obj.apply_defaults();
        // The stored object is compared as the API server would decode it: with
        // today's defaults, so an object written before a default existed can still
        // be updated.
        let mut old_defaulted = old.clone();
        old_defaulted.apply_defaults();
        let errors = obj.validate(Some(&old_defaulted));
        if !errors.is_empty() {
            return Err(Error::Invalid { object: r, errors });
        }
        let old_claims = self.claim_keys(&old);
        let mut taken = HashSet::new();
        for _ in 0..ALLOCATION_ATTEMPTS {
            let mut attempt = obj.clone();
            let claims = self.allocate(&mut attempt, Some(&old), &taken, &r)?;
            let mut compares = vec![Compare::mod_revision(r.key(), CompareOp::Equal, rv)];
            let mut checks = vec![TxnOp::get(r.key(), None)];
            let mut ops = vec![TxnOp::put(r.key(), encode(&attempt)?, None)];
            let kept: HashSet<String> = self.claim_keys(&attempt).into_iter().collect();
            for c in &claims {
                compares.push(Compare::version(c.key.clone(), CompareOp::Equal, 0));
                checks.push(TxnOp::get(c.key.clone(), None));
                ops.push(TxnOp::put(c.key.clone(), c.value.clone(), None));
            }
            for k in old_claims.iter().filter(|k| !kept.contains(*k)) {
                ops.push(TxnOp::delete(k.clone(), None));
            }
            let txn = Txn::new().when(compares).and_then(ops).or_else(checks);
            let resp = self.etcd.kv_client().txn(txn).await?;
            if resp.succeeded() {
                let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
                attempt.metadata_mut().resource_version = Some(rev.to_string());
                return Ok(attempt);
            }
            let responses = resp.op_responses();
            match responses.first() {
                Some(TxnOpResponse::Get(g))
                    if g.kvs().first().map(|kv| kv.mod_revision()) == Some(rv) => {}
                Some(TxnOpResponse::Get(g)) if g.kvs().is_empty() => {
                    return Err(Error::NotFound { object: r })
                }
                _ => return Err(Error::Conflict { object: r }),
            }
            let found = found_keys(&responses);
            if claims.iter().any(|c| found.contains(&c.key)) {
                taken.extend(self.all_claims().await?);
            }
        }
        Err(Error::Allocation {
            object: r,
            message: "gave up after repeated allocation conflicts with concurrent writers".into(),
        })
    }

    /// Deletes an object now, compare-and-swap on `precondition` (a
    /// `resourceVersion`) or, without one, on the revision just read. Releases a
    /// Service's cluster IPs and node ports in the same transaction. Deleting a
    /// Namespace marks it terminating, deletes everything in it, then deletes it.
    /// Returns the object's last state.
    pub async fn delete<K: Object>(&self, r: &ObjectRef, precondition: Option<i64>) -> Result<K> {
        if r.kind != K::TYPE {
            return Err(Error::BadRequest(format!(
                "{r} is not a {}",
                K::TYPE.name()
            )));
        }
        if K::TYPE == Kind::Namespace {
            self.terminate_namespace(&r.name, precondition).await?;
        }
        loop {
            let current: K = self.get(r).await?;
            let rv = resource_version(&current).unwrap_or_default();
            if precondition.is_some_and(|p| p != rv) && K::TYPE != Kind::Namespace {
                return Err(Error::Conflict { object: r.clone() });
            }
            let mut ops = vec![TxnOp::delete(r.key(), None)];
            for k in self.claim_keys(&current) {
                ops.push(TxnOp::delete(k, None));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(r.key(), CompareOp::Equal, rv)])
                .and_then(ops);
            let resp = self.etcd.kv_client().txn(txn).await?;
            if resp.succeeded() {
                let mut last = current;
                let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
                last.metadata_mut().resource_version = Some(rev.to_string());
                return Ok(last);
            }
            if precondition.is_some() && K::TYPE != Kind::Namespace {
                return Err(Error::Conflict { object: r.clone() });
            }
        }
    }

    /// Starts a graceful delete: sets `deletionTimestamp` (now + grace) and
    /// `deletionGracePeriodSeconds`, as the API server does for a pod on a node; the
    /// object stays until its owner (the node agent) finishes it. Idempotent.
    pub async fn mark_deleting<K: Object>(&self, r: &ObjectRef, grace_seconds: i64) -> Result<K> {
        loop {
            let mut obj: K = self.get(r).await?;
            if obj.metadata().deletion_timestamp.is_some() {
                return Ok(obj);
            }
            let meta = obj.metadata_mut();
            let at = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(grace_seconds.max(0)))
                .unwrap_or_else(|_| jiff::Timestamp::now());
            meta.deletion_timestamp = Some(Time(
                jiff::Timestamp::from_second(at.as_second()).unwrap_or(at),
            ));
            meta.deletion_grace_period_seconds = Some(grace_seconds.max(0));
            let rv = resource_version(&obj).unwrap_or_default();
            let txn = Txn::new()
                .when([Compare::mod_revision(r.key(), CompareOp::Equal, rv)])
                .and_then([TxnOp::put(r.key(), encode(&obj)?, None)]);
            let resp = self.etcd.kv_client().txn(txn).await?;
            if resp.succeeded() {
                let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
                obj.metadata_mut().resource_version = Some(rev.to_string());
                return Ok(obj);
            }
        }
    }

    /// Watches every object of a kind (in one namespace or all) from `from_revision`
    /// on. The stream ends when the server closes it; a compacted start revision is
    /// [`Error::Compacted`]. Values that do not parse are logged and turned into
    /// bookmarks, so the caller's resume position still moves past them.
    pub async fn watch<K: Object>(
        &self,
        namespace: Option<&str>,
        from_revision: i64,
    ) -> Result<impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static> {
        let prefix = K::TYPE.prefix(namespace);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision)
            .with_prev_key()
            .with_progress_notify();
        let stream = self.etcd.watch_client().watch(prefix, Some(opts)).await?;
        let state = (
            stream,
            std::collections::VecDeque::<Result<WatchEvent<K>>>::new(),
            false,
        );
        Ok(stream::unfold(
            state,
            move |(mut stream, mut buf, done)| async move {
                loop {
                    if let Some(item) = buf.pop_front() {
                        return Some((item, (stream, buf, done)));
                    }
                    if done {
                        return None;
                    }
                    match stream.message().await {
                        Ok(Some(resp)) => {
                            if resp.canceled() {
                                let err = if resp.compact_revision() > 0 {
                                    Error::Compacted {
                                        requested: from_revision,
                                        compacted: resp.compact_revision(),
                                    }
                                } else {
                                    Error::BadRequest(format!(
                                        "watch canceled by the server: {}",
                                        resp.cancel_reason()
                                    ))
                                };
                                return Some((Err(err), (stream, buf, true)));
                            }
                            let header_rev =
                                resp.header().map(|h| h.revision()).unwrap_or_default();
                            if resp.events().is_empty() && !resp.created() && header_rev > 0 {
                                buf.push_back(Ok(WatchEvent::Bookmark(header_rev)));
                            }
                            for ev in resp.events() {
                                buf.push_back(Ok(translate::<K>(ev)));
                            }
                        }
                        Ok(None) => return None,
                        Err(e) => return Some((Err(Error::Store(e)), (stream, buf, true))),
                    }
                }
            },
        ))
    }

    /// The namespace key and revision a namespaced create must compare against;
    /// errors if the namespace is missing or terminating.
    async fn live_namespace(&self, r: &ObjectRef) -> Result<Option<(String, i64)>> {
        let Some(ns_ref) = r.namespace_ref() else {
            return Ok(None);
        };
        let ns: Namespace = match self.get_opt(&ns_ref).await? {
            Some(ns) => ns,
            None => {
                return Err(Error::NamespaceNotFound {
                    namespace: ns_ref.name,
                })
            }
        };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            return Err(Error::NamespaceTerminating {
                object: r.clone(),
                namespace: ns_ref.name,
            });
        }
        Ok(Some((
            ns_ref.key(),
            resource_version(&ns).unwrap_or_default(),
        )))
    }

    /// Pod priority from its PriorityClass (or the global default), as the API
    /// server's Priority admission plugin does.
    async fn resolve_priority<K: Object>(&self, obj: &mut K) -> Result<()> {
        let Some(pod) = (obj as &mut dyn std::any::Any).downcast_mut::<Pod>() else {
            return Ok(());
        };
        let pod_ref = ObjectRef::of(&*pod);
        let Some(spec) = pod.spec.as_mut() else {
            return Ok(());
        };
        let class = match spec
            .priority_class_name
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            Some(name) => {
                match self
                    .get_opt::<PriorityClass>(&ObjectRef::cluster(Kind::PriorityClass, name))
                    .await?
                {
                    Some(pc) => Some(pc),
                    None if name == "system-node-critical" || name == "system-cluster-critical" => {
                        let mut pc = PriorityClass {
                            value: Some(if name == "system-node-critical" {
                                2_000_001_000
                            } else {
                                2_000_000_000
                            }),
                            ..Default::default()
                        };
                        pc.metadata.name = Some(name.to_string());
                        Some(pc)
                    }
                    None => {
                        return Err(Error::Invalid {
                            object: pod_ref.clone(),
                            errors: vec![Path::new("spec")
                                .child("priorityClassName")
                                .not_found(name)],
                        })
                    }
                }
            }
            None => {
                let all = self.list::<PriorityClass>(None).await?;
                all.items
                    .into_iter()
                    .find(|pc| pc.global_default == Some(true))
            }
        };
        match class {
            Some(pc) => {
                if spec.priority.is_some_and(|p| Some(p) != pc.value) {
                    return Err(Error::Invalid {
                        object: pod_ref.clone(),
                        errors: vec![Path::new("spec").child("priority").forbidden(
                            "the integer value of priority must not be provided in pod spec; priority admission controller computed it from the given PriorityClass name",
                        )],
                    });
                }
                spec.priority = Some(pc.value.unwrap_or(0));
                if spec.priority_class_name.is_none() {
                    spec.priority_class_name = pc.metadata.name.clone();
                }
                if let Some(policy) = pc.preemption_policy {
                    spec.preemption_policy = Some(policy);
                }
            }
            None => {
                spec.priority.get_or_insert(0);
            }
        }
        Ok(())
    }

    fn allocate<K: Object>(
        &self,
        obj: &mut K,
        old: Option<&K>,
        taken: &HashSet<String>,
        r: &ObjectRef,
    ) -> Result<Vec<Claim>> {
        let Some(svc) = (obj as &mut dyn std::any::Any).downcast_mut::<Service>() else {
            return Ok(Vec::new());
        };
        let old = old.and_then(|o| (o as &dyn std::any::Any).downcast_ref::<Service>());
        match &self.allocator {
            Some(a) => a.allocate(svc, old, taken),
            None => Err(Error::Allocation {
                object: r.clone(),
                message: "this client has no service allocator, so it cannot write Services \
                          (use a client built with capstan-controllers' allocator)"
                    .into(),
            }),
        }
    }

    fn claim_keys<K: Object>(&self, obj: &K) -> Vec<String> {
        match (
            (obj as &dyn std::any::Any).downcast_ref::<Service>(),
            &self.allocator,
        ) {
            (Some(svc), Some(a)) => a.claim_keys(svc),
            _ => Vec::new(),
        }
    }

    async fn terminate_namespace(&self, name: &str, precondition: Option<i64>) -> Result<()> {
        let r = ObjectRef::cluster(Kind::Namespace, name);
        loop {
            let mut ns: Namespace = self.get(&r).await?;
            let rv = resource_version(&ns).unwrap_or_default();
            if precondition.is_some_and(|p| p != rv) {
                return Err(Error::Conflict { object: r });
            }
            if ns.metadata.deletion_timestamp.is_some() {
                break;
            }
            ns.metadata.deletion_timestamp = Some(now());
            ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
            let txn = Txn::new()
                .when([Compare::mod_revision(r.key(), CompareOp::Equal, rv)])
                .and_then([TxnOp::put(r.key(), encode(&ns)?, None)]);
            if self.etcd.kv_client().txn(txn).await?.succeeded() {
                break;
            }
        }
        // Services go one by one so their claims are released with them.
        for svc in self.list::<Service>(Some(name)).await?.items {
            match Box::pin(self.delete::<Service>(&ObjectRef::of(&svc), None)).await {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
            self.etcd
                .kv_client()
                .delete(
                    kind.prefix(Some(name)),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await?;
        }
        Ok(())
    }
}

fn translate<K: Object>(ev: &etcd_client::Event) -> WatchEvent<K> {
    let Some(kv) = ev.kv() else {
        return WatchEvent::Bookmark(0);
    };
    let rev = kv.mod_revision();
    let decoded = match ev.event_type() {
        etcd_client::EventType::Put => decode::<K>(kv).map(|o| {
            if kv.create_revision() == kv.mod_revision() {
                WatchEvent::Added(o)
            } else {
                WatchEvent::Modified(o)
            }
        }),
        etcd_client::EventType::Delete => match ev.prev_kv() {
            Some(prev) => decode_at::<K>(prev.key(), prev.value(), rev).map(WatchEvent::Deleted),
            None => Ok(match ObjectRef::from_key(K::TYPE, kv.key()) {
                Some(object) => WatchEvent::Removed {
                    object,
                    revision: rev,
                },
                None => WatchEvent::Bookmark(rev),
            }),
        },
    };
    decoded.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "skipping watched object that does not parse");
        match ObjectRef::from_key(K::TYPE, kv.key()) {
            Some(object) => WatchEvent::Removed {
                object,
                revision: rev,
            },
            None => WatchEvent::Bookmark(rev),
        }
    })
}

/// The keys that existed, from a failed transaction's `get` checks.
fn found_keys(responses: &[TxnOpResponse]) -> HashSet<String> {
    responses
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
            _ => None,
        })
        .collect()
}

fn compacted_or(e: etcd_client::Error, requested: i64) -> Error {
    if let etcd_client::Error::GRpcStatus(s) = &e {
        if s.message().contains("compacted") {
            return Error::Compacted {
                requested,
                compacted: 0,
            };
        }
    }
    Error::Store(e)
}

/// The end of the range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
