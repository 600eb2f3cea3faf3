//! Event recording, as client-go's recorder and the API server's event storage do
//! it: a `v1 Event` per distinct (object, type, reason, message), repeated
//! occurrences folded into its `count` and `lastTimestamp`, each stored under
//! `/registry/events/<ns>/<name>` with a lease so it expires an hour after it was
//! last written (the API server's `--event-ttl`). Leases are shared by the events
//! of one minute, as the API server's lease manager does, so a burst of events
//! costs one lease, not one each.
//!
//! Recording is best effort: a failure is returned for the caller to log, and a
//! controller never waits on it for its own work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use tokio::sync::Mutex;

use crate::client::{encode, now, resource_version};
use crate::error::{Error, Result};
use crate::kind::{Object, ObjectRef};
use crate::Client;

/// How long an event is kept after it was last written.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Events written within this window share one lease.
const LEASE_REUSE: Duration = Duration::from_secs(60);
/// Longest message recorded (client-go truncates to the same).
const MAX_MESSAGE: usize = 1024;
/// Distinct events remembered for folding repeats (client-go's cache size).
const MAX_REMEMBERED: usize = 4096;

/// The object an event is about.
pub fn reference<K: Object>(obj: &K) -> ObjectReference {
    let meta = obj.metadata();
    ObjectReference {
        api_version: Some(K::TYPE.api_version().to_string()),
        kind: Some(K::TYPE.name().to_string()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: resource_version(obj).map(|rv| rv.to_string()),
        field_path: None,
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    object: String,
    uid: String,
    type_: String,
    reason: String,
    message: String,
}

struct Seen {
    name: String,
    count: i32,
    first: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    lease: i64,
    leased_at: Instant,
}

#[derive(Default)]
struct State {
    lease: Option<(i64, Instant)>,
    seen: HashMap<Key, Seen>,
}

/// Records events on behalf of one component (`endpoint-slice-controller`, ...).
pub struct Recorder {
    client: Client,
    component: String,
    state: Mutex<State>,
}

impl Recorder {
    /// A recorder writing through `client` as `component`.
    pub fn new(client: Client, component: impl Into<String>) -> Self {
        Recorder {
            client,
            component: component.into(),
            state: Mutex::new(State::default()),
        }
    }

    /// Records one occurrence of an event about `object`: a new Event, or one more
    /// count on the same event recorded earlier. `type_` is `Normal` or `Warning`.
    pub async fn record(
        &self,
        object: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        let message = truncate(message, MAX_MESSAGE);
        let namespace = object
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let name = object.name.clone().unwrap_or_default();
        let key = Key {
            object: format!(
                "{}/{}/{namespace}/{name}",
                object.api_version.as_deref().unwrap_or_default(),
                object.kind.as_deref().unwrap_or_default()
            ),
            uid: object.uid.clone().unwrap_or_default(),
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let mut state = self.state.lock().await;
        let stamp = now();
        let mut event = Event {
            involved_object: object.clone(),
            type_: Some(type_.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            first_timestamp: Some(stamp.clone()),
            last_timestamp: Some(stamp.clone()),
            count: Some(1),
            ..Default::default()
        };
        event.metadata.namespace = Some(namespace.clone());

        // A repeat: one more on the existing event, under its lease while that
        // lease still has most of its life.
        if let Some(seen) = state.seen.get_mut(&key) {
            if seen.leased_at.elapsed() + LEASE_REUSE < EVENT_TTL {
                seen.count += 1;
                event.metadata.name = Some(seen.name.clone());
                event.count = Some(seen.count);
                event.first_timestamp = Some(seen.first.clone());
                let r = ObjectRef::of(&event);
                let put = self
                    .client
                    .etcd()
                    .kv_client()
                    .put(
                        r.key(),
                        encode(&event)?,
                        Some(PutOptions::new().with_lease(seen.lease)),
                    )
                    .await;
                match put {
                    Ok(_) => return Ok(()),
                    // The lease ran out: record it afresh below.
                    Err(e) => tracing::debug!(event = %r, error = %e, "event repeat not recorded"),
                }
            }
            state.seen.remove(&key);
        }

        let lease = self.lease(&mut state).await?;
        let nanos = jiff::Timestamp::now().as_nanosecond();
        event.metadata.name = Some(format!("{name}.{nanos:x}"));
        event.count = Some(1);
        event.first_timestamp = Some(stamp);
        event.apply_defaults();
        let errors = event.validate(None);
        let r = ObjectRef::of(&event);
        if !errors.is_empty() {
            return Err(Error::Invalid { object: r, errors });
        }
        let txn = Txn::new()
            .when([Compare::version(r.key(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                r.key(),
                encode(&event)?,
                Some(PutOptions::new().with_lease(lease.0)),
            )]);
        if !self.client.etcd().kv_client().txn(txn).await?.succeeded() {
            return Err(Error::AlreadyExists { object: r });
        }
        if state.seen.len() >= MAX_REMEMBERED {
            state.seen.clear();
        }
        state.seen.insert(
            key,
            Seen {
                name: r.name.clone(),
                count: 1,
                first: event.first_timestamp.clone().unwrap_or_else(now),
                lease: lease.0,
                leased_at: lease.1,
            },
        );
        Ok(())
    }

    /// The lease for events written now: the current one while it is younger than
    /// the reuse window, else a new one living the TTL past the window's end.
    async fn lease(&self, state: &mut State) -> Result<(i64, Instant)> {
        if let Some((id, at)) = state.lease {
            if at.elapsed() < LEASE_REUSE {
                return Ok((id, at));
            }
        }
        let ttl = (EVENT_TTL + LEASE_REUSE).as_secs() as i64;
        let granted = self.client.etcd().lease_client().grant(ttl, None).await?;
        let lease = (granted.id(), Instant::now());
        state.lease = Some(lease);
        Ok(lease)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
